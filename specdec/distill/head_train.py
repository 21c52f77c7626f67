"""Train a feature head (:mod:`specdec.models.feature_head`) against its target, online.

Each batch of token sequences (:mod:`.head_data`) goes through the target once, without gradients:
its hidden states are the head's input features and its next-token distribution (top-k) the
teacher. Losses, after EAGLE and EAGLE-3:

* soft cross-entropy (KL on the target's top-k, plus CE on its argmax: the loss of
  :func:`specdec.distill.train.distill_loss`) for the token after next;
* for an EAGLE-1 head (the last hidden state only), SmoothL1 between the predicted and the real
  next feature, weighted ``reg_weight``;
* training-time test: the head is unrolled ``ttt_steps`` times on its own outputs, step i weighted
  ``ttt_decay``^i, with EAGLE-3's mask (:func:`chain_mask`): a drafted position attends to the
  real-feature context and its own chain only, as at inference;
* uniform noise of ``noise`` × the features' RMS on the real features.

Held-out: whole prompts by key (:func:`specdec.distill.sources.is_heldout`); the agreement of the
head's first and second draft with the target's greedy choice on held-out answers is logged to
``training_log.csv`` over time, the best head is kept in ``out_dir`` and a checkpoint (head,
optimizer state as safetensors, progress as JSON) in ``out_dir/checkpoint`` so a run resumes.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm
from transformers import DynamicCache

from ..models import load_head, load_model
from ..models.feature_head import FeatureHead, FeatureHeadConfig, load_feature_head
from .head_data import Sequence, load_sequences
from .sources import is_heldout
from .train import distill_loss, lr_schedule

log = logging.getLogger(__name__)
CALIBRATION_STEPS = 5  # steps timed, after as many warm-up steps, to size the schedule to the time budget
LOG_COLUMNS = ("step", "elapsed_s", "positions", "train_loss", "heldout_agreement", "heldout_agreement_2", "lr")


@dataclass
class HeadTrainConfig:
    """Options of the training stage of ``specdec distill head``."""

    target: str = "smollm2-135m-instruct"
    data_dir: str = "distill_work/head-data"
    out_dir: str = "distill_work/head"
    feature_layers: tuple[int, ...] = ()  # empty: the last hidden state (EAGLE-1)
    head_vocab: int = 0  # > 0: the head's own output layer over the K ids the data uses most
    head_layers: int = 1  # decoder layers; with init_from, more than the saved head's grows it (new layers start as no-ops)
    minutes: float = 30.0
    max_steps: int = 0
    lr: float = 1e-3
    warmup: int = 50
    min_lr_frac: float = 0.05
    weight_decay: float = 0.01
    batch_tokens: int = 4096
    max_len: int = 512
    topk: int = 32
    ce_weight: float = 0.5
    reg_weight: float = 0.1
    ttt_steps: int = 3
    ttt_decay: float = 0.8
    noise: float = 0.05
    text_frac: float = 0.5  # share of a batch's sequences that are prompts without answers
    cache_gb: float = 6.0  # the target's outputs for the first epoch's batches are kept (up to this) for later epochs
    heldout_frac: float = 0.05
    max_heldout: int = 64  # held-out answers scored while training, taken from each kind in turn
    init_from: str = ""  # a saved head to start from (a new stage: fresh optimizer and schedule)
    eval_every_s: float = 240.0
    target_dtype: str = "auto"
    device: str = "cpu"
    seed: int = 0


def pad_batch(seqs: list[Sequence], pad: int, max_len: int, device: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, attention mask, answer mask) right-padded to the longest sequence (cut to ``max_len``)."""
    width = min(max(len(s.ids) for s in seqs), max_len)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    att = torch.zeros(len(seqs), width, dtype=torch.long)
    answer = torch.zeros(len(seqs), width, dtype=torch.bool)
    for b, s in enumerate(seqs):
        row = s.ids[:width]
        ids[b, :len(row)] = torch.tensor(row)
        att[b, :len(row)] = 1
        if s.answer_start >= 0:
            answer[b, s.answer_start:len(row)] = True
    return ids.to(device), att.to(device), answer.to(device)


def choose_head_vocab(seqs: list[Sequence], size: int, always: set[int], among: set[int] | None = None) -> list[int]:
    """``always`` plus the ids the target's answers use most, then (to fill ``size``) those the rest of
    the text uses most: what the head must propose is what the target writes. ``among``: only these ids."""
    answers: Counter[int] = Counter()
    text: Counter[int] = Counter()
    for s in seqs:
        cut = s.answer_start if s.answer_start >= 0 else len(s.ids)
        answers.update(s.ids[cut:])
        text.update(s.ids[:cut])
    seen = set(answers) | set(text)
    if among is not None:
        seen, always = seen & among, always & among
    ranked = sorted(seen, key=lambda t: (-answers[t], -text[t], t))
    return sorted(set([t for t in ranked if t not in always][: max(size - len(always), 0)]) | always)


def head_columns(head: FeatureHead, vocab_size: int, device: Any) -> torch.Tensor | None:
    """Target id -> column of the head's own output layer (-1 where it does not score); None for a full head."""
    ids = head.head_config.draft_vocab
    if ids is None:
        return None
    cols = torch.full((vocab_size,), -1, dtype=torch.long, device=device)
    cols[torch.tensor(ids, device=device)] = torch.arange(len(ids), device=device)
    return cols


@torch.no_grad()
def teacher(target: Any, ids: torch.Tensor, att: torch.Tensor,
            topk: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
    """The target's hidden states (float32) and its top-k next-token logits (values, ids) at every position."""
    out = target(input_ids=ids, attention_mask=att, output_hidden_states=True)
    vals, tids = out.logits.topk(topk, dim=-1)  # in the target's dtype: no float copy of every logit
    return tuple(h.float() for h in out.hidden_states), vals.float(), tids


def chain_mask(lengths: list[int], device: Any, additive: bool = False) -> torch.Tensor:
    """The attention of unrolled step i = ``len(lengths) - 1`` over the keys of steps 0..i, in cache
    order (EAGLE-3's training-time test): query t sees step 0's keys 0..t (the context the target's
    real features gave) and, in each later step, only its own chain's key t, as a drafted token does
    at inference. Boolean (True: attend), or additive (0 / -inf-like) for eager attention."""
    t = torch.arange(lengths[-1], device=device).unsqueeze(1)
    blocks = [torch.arange(lengths[0], device=device).unsqueeze(0) <= t]
    blocks += [torch.arange(m, device=device).unsqueeze(0) == t for m in lengths[1:]]
    mask = torch.cat(blocks, dim=1)[None, None]
    if not additive:
        return mask
    return torch.zeros(mask.shape, device=device).masked_fill_(~mask, torch.finfo(torch.float32).min)


def unroll(head: FeatureHead, feats: torch.Tensor, ids: torch.Tensor, steps: int,
           drafted: bool = False) -> list[torch.Tensor]:
    """The head's outputs of unrolled steps 0..steps-1 over a right-padded batch, through one KV cache.

    Step i's output at index t (position t + i) predicts token t + i + 2; it reads step i-1's output
    at t as its feature and token t + i + 1: the data's (training), or with ``drafted`` the head's
    own greedy draft of it from step i-1 (as at inference).
    """
    cache = DynamicCache(config=head.body.config)
    additive = head.body.config._attn_implementation != "sdpa"
    width, inputs, outs, lengths = ids.shape[1], feats, [], []
    for i in range(min(steps, width - 1)):
        n = width - 1 - i  # indices t = 0 .. n - 1 of this step
        lengths.append(n)
        pos = torch.arange(i, i + n, device=ids.device).unsqueeze(0)
        mask = chain_mask(lengths, ids.device, additive) if i else None  # step 0: the causal mask
        nxt = head.logits(outs[-1][:, :n]).argmax(-1) if drafted and i else ids[:, i + 1:]
        out = head.step(inputs[:, :n], nxt, past_key_values=cache, position_ids=pos, attention_mask=mask)
        outs.append(out)
        inputs = out
    return outs


def unrolled_loss(head: FeatureHead, hidden: tuple[torch.Tensor, ...], vals: torch.Tensor, tids: torch.Tensor,
                  ids: torch.Tensor, att: torch.Tensor, cfg: HeadTrainConfig,
                  columns: torch.Tensor | None) -> torch.Tensor:
    """Σ_i decay^i · loss of unrolled step i (:func:`unroll`); step i's output at t predicts token t + i + 2."""
    feats = head.features(hidden)
    feats = feats + cfg.noise * feats.pow(2).mean().sqrt() * (2 * torch.rand_like(feats) - 1)
    real = att.bool()
    total = feats.new_zeros(())
    for i, out in enumerate(unroll(head, feats, ids, cfg.ttt_steps)):
        n = out.shape[1]
        # out[:, t] predicts token t + i + 2, whose target distribution sits in row t + i + 1
        mask = real[:, i + 1:] & real[:, :n]
        batch = {"mask": mask, "vals": vals[:, i + 1:], "tids": tids[:, i + 1:]}
        loss = distill_loss(head.head_logits(out), batch, cfg.ce_weight, columns=columns)
        if i == 0 and head.fuse is None and cfg.reg_weight > 0:  # EAGLE-1: regress the real next feature
            loss = loss + cfg.reg_weight * F.smooth_l1_loss(out[mask], hidden[-1][:, 1:][mask])
        total = total + cfg.ttt_decay ** i * loss
    return total


@torch.no_grad()
def agreement(head: FeatureHead, target: Any, held: list[Sequence], pad: int, cfg: HeadTrainConfig) -> tuple[float, float]:
    """(first, second): the share of held-out answer tokens where the head's first draft (from real
    features) equals the target's greedy token, and the share of those where its second draft (from
    its own first draft and feature, as at inference: :func:`unroll`) does too."""
    head.eval()
    hit1 = n1 = hit2 = n2 = 0
    for i in range(0, len(held), 8):
        ids, att, answer = pad_batch(held[i:i + 8], pad, cfg.max_len, target.device)
        width = ids.shape[1]
        if width < 4:
            continue
        hidden, _, tids = teacher(target, ids, att, 1)
        greedy = tids[..., 0]  # greedy[:, t]: the target's choice for token t + 1
        out1, out2 = unroll(head, head.features(hidden), ids, 2, drafted=True)
        first = head.logits(out1).argmax(-1)  # first[:, t] drafts token t + 2
        right1 = first[:, :-1] == greedy[:, 1:-1]  # (B, width - 2), position t: token t + 2
        m1 = answer[:, 2:]
        hit1, n1 = hit1 + int(right1[m1].sum()), n1 + int(m1.sum())
        second = head.logits(out2).argmax(-1)  # token t + 3, drafted after first[:, t]
        m2 = answer[:, 3:] & right1[:, :-1]
        hit2, n2 = hit2 + int((second[:, :-1] == greedy[:, 2:-1])[m2].sum()), n2 + int(m2.sum())
    head.train()
    return hit1 / max(n1, 1), hit2 / max(n2, 1)


def heldout_answers(seqs: list[Sequence], frac: float, limit: int) -> list[Sequence]:
    """Up to ``limit`` held-out sequences with answers, taking each kind (pool answers, self-written
    questions) in turn, so adding shards of one kind never crowds the other out of the score."""
    by_kind: dict[str, list[Sequence]] = {}
    for s in seqs:
        if s.answer_start >= 0 and is_heldout(s.key, frac):
            by_kind.setdefault(s.kind, []).append(s)
    out: list[Sequence] = []
    for i in range(max(map(len, by_kind.values()), default=0)):
        out += [group[i] for group in by_kind.values() if i < len(group)]
    return out[:limit]


def batches(seqs: list[Sequence], cfg: HeadTrainConfig, rng: random.Random) -> list[list[Sequence]]:
    """Length-bucketed batches of at most ``batch_tokens`` padded tokens, answers and text mixed per ``text_frac``."""
    answers = [s for s in seqs if s.answer_start >= 0]
    text = [s for s in seqs if s.answer_start < 0]
    n_text = min(len(text), round(len(answers) * cfg.text_frac / max(1e-9, 1 - cfg.text_frac))) if answers else len(text)
    pool = answers + rng.sample(text, n_text)
    pool.sort(key=lambda s: min(len(s.ids), cfg.max_len) + rng.random())
    out, cur, longest = [], [], 0
    for s in pool:
        n = min(len(s.ids), cfg.max_len)
        if cur and max(longest, n) * (len(cur) + 1) > cfg.batch_tokens:
            out.append(cur)
            cur, longest = [], 0
        cur.append(s)
        longest = max(longest, n)
    if cur:
        out.append(cur)
    rng.shuffle(out)
    return out


class TeacherCache:
    """The target's outputs per batch, kept in memory after the first epoch computed them, so later
    epochs train the head alone (only the hidden states the head reads are kept, in bfloat16)."""

    def __init__(self, layers: set[int], limit_gb: float) -> None:
        self.layers, self.limit, self.used, self.items = layers, limit_gb * 2**30, 0, {}

    def get(self, key: int, target: Any, ids: torch.Tensor, att: torch.Tensor, topk: int):
        """(hidden, vals, tids) of batch ``key``: from memory, or computed now (and kept if room)."""
        if key in self.items:
            kept, vals, tids = self.items[key]
            return [kept[i].float() if i in kept else None for i in range(max(kept) + 1)], vals.float(), tids
        hidden, vals, tids = teacher(target, ids, att, topk)
        kept = {i: hidden[i].to(torch.bfloat16) for i in self.layers}
        size = sum(t.numel() * 2 for t in kept.values()) + vals.numel() * 2 + tids.numel() * 8
        if self.used + size <= self.limit:
            self.items[key] = (kept, vals.to(torch.bfloat16), tids)
            self.used += size
        return hidden, vals, tids


def _save_checkpoint(path: Path, head: FeatureHead, opt: torch.optim.Optimizer, progress: dict) -> None:
    head.save(path)
    names = {id(p): n for n, p in head.named_parameters()}
    state = {}
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                state[f"{names[id(p)]}::{k}"] = v.detach().reshape(-1).clone() if v.dim() == 0 else v.detach().clone()
    save_file(state, str(path / "optimizer.safetensors"))
    (path / "progress.json").write_text(json.dumps(progress, indent=1) + "\n")


def _load_checkpoint(path: Path, head: FeatureHead, opt: torch.optim.Optimizer) -> dict:
    state = load_file(str(path / "optimizer.safetensors"))
    params = dict(head.named_parameters())
    for key, value in state.items():
        name, slot = key.split("::")
        opt.state[params[name]][slot] = value.reshape(()) if slot == "step" else value
    return json.loads((path / "progress.json").read_text())


def train_head(cfg: HeadTrainConfig) -> Path:
    """Train (or resume) a head for ``cfg.target``; return the directory holding the best one."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    loaded = load_model(cfg.target, device=cfg.device, dtype=cfg.target_dtype)
    target, tok = loaded.model, loaded.tokenizer
    for p in target.parameters():
        p.requires_grad_(False)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    seqs = load_sequences(cfg.data_dir)
    if not seqs:
        raise ValueError(f"no sequences in {cfg.data_dir}: build the data first")
    train = [s for s in seqs if not is_heldout(s.key, cfg.heldout_frac)]
    held = heldout_answers(seqs, cfg.heldout_frac, cfg.max_heldout)
    out_dir, ckpt = Path(cfg.out_dir), Path(cfg.out_dir) / "checkpoint"
    special = {int(t) for t in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) if t is not None}
    if (ckpt / "head_config.json").is_file():
        head = load_feature_head(ckpt, target).to(torch.float32)
    elif cfg.init_from:
        head = load_head(cfg.init_from, loaded).model.to(torch.float32)
        now = head.head_config.draft_vocab or list(range(target.config.vocab_size))
        if 0 < cfg.head_vocab < len(now):  # cut the readout to the ids the data uses most
            head = head.restricted(choose_head_vocab(train, cfg.head_vocab, special, set(now)), target)
        if cfg.head_layers > head.head_config.num_layers:
            head = head.grown(cfg.head_layers, target)
        log.info("starting from the head %s, vocabulary %d of its %d ids, %d layers", cfg.init_from,
                 len(head.head_config.draft_vocab or now), len(now), head.head_config.num_layers)
    else:
        vocab = choose_head_vocab(train, cfg.head_vocab, special) if cfg.head_vocab > 0 else None
        hcfg = FeatureHeadConfig.for_target(target, cfg.target, list(cfg.feature_layers) or None, vocab, cfg.head_layers)
        head = FeatureHead(hcfg, target, dtype=torch.float32)
    head.train()
    columns = head_columns(head, target.config.vocab_size, target.device)
    opt = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    progress = {"step": 0, "elapsed_s": 0.0, "positions": 0, "best": -1.0, "epoch": 0}
    if (ckpt / "progress.json").is_file():
        progress = _load_checkpoint(ckpt, head, opt)
        log.info("resuming at step %d (%.0f s trained)", progress["step"], progress["elapsed_s"])
    total_steps = cfg.max_steps or max(1, int(progress.get("total_steps", 0)) or _estimate_steps(cfg))
    progress["total_steps"] = total_steps
    sched = _schedule_at(opt, cfg, total_steps, progress["step"])
    # A fresh run with a time budget times steps CALIBRATION_STEPS .. 2 x that, then sizes the schedule to it.
    size_at, t_mark = (None if cfg.max_steps or progress["step"] else 2 * CALIBRATION_STEPS), 0.0
    log_path = out_dir / "training_log.csv"
    out_dir.mkdir(parents=True, exist_ok=True)
    if not log_path.exists():
        log_path.write_text(",".join(LOG_COLUMNS) + "\n")
    log.info("train sequences %d (%d with answers), held-out %d; head params %.2fM, vocabulary %s",
             len(train), sum(s.answer_start >= 0 for s in train), len(held),
             sum(p.numel() for p in head.parameters()) / 1e6, len(head.head_config.draft_vocab or []) or "full")
    budget = cfg.minutes * 60
    # bf16 matrix products (fp32 weights and loss) where the target itself runs in bf16: 2-3x faster steps
    autocast = target.dtype == torch.bfloat16
    t_start, last_eval, losses = time.monotonic() - progress["elapsed_s"], -math.inf, []
    bar = tqdm(total=total_steps, initial=progress["step"], unit="step", dynamic_ncols=True)

    def evaluate_and_save(elapsed: float) -> None:
        a1, a2 = agreement(head, target, held, pad, cfg)
        row = [progress["step"], f"{elapsed:.0f}", progress["positions"],
               f"{sum(losses) / max(len(losses), 1):.4f}", f"{a1:.4f}", f"{a2:.4f}", f"{opt.param_groups[0]['lr']:.2e}"]
        with log_path.open("a", newline="") as f:
            csv.writer(f).writerow(row)
        losses.clear()
        bar.set_postfix_str(f"agreement {a1:.3f} / {a2:.3f}")
        if a1 > progress["best"]:
            progress["best"] = a1
            export = FeatureHead(head.head_config, target).eval()  # the target's dtype, for inference
            export.load_state_dict({k: v.to(export.fc.weight.dtype) for k, v in head.state_dict().items()})
            export.save(out_dir)
        progress["elapsed_s"] = elapsed
        _save_checkpoint(ckpt, head, opt, progress)

    # The first epoch's batches are kept and reshuffled each epoch, their teacher outputs cached.
    epoch_batches = list(enumerate(batches(train, cfg, rng)))
    last = head.head_config.target_num_layers
    cache = TeacherCache(set(head.head_config.feature_layers) | {last}, cfg.cache_gb)
    with bar:
        while True:
            if progress["epoch"] == 1 and size_at is None and not cfg.max_steps:
                size_at = progress["step"] + 2 * CALIBRATION_STEPS  # cached epochs run faster: re-size
                t_mark = 0.0
            for key, batch in rng.sample(epoch_batches, len(epoch_batches)):
                elapsed = time.monotonic() - t_start
                done = elapsed > budget or (cfg.max_steps and progress["step"] >= cfg.max_steps)
                if done or elapsed - last_eval >= cfg.eval_every_s:
                    evaluate_and_save(elapsed)
                    last_eval = elapsed
                if done:
                    log.info("best held-out agreement %.4f after %d steps", progress["best"], progress["step"])
                    return out_dir
                ids, att, _ = pad_batch(batch, pad, cfg.max_len, target.device)
                hidden, vals, tids = cache.get(key, target, ids, att, cfg.topk)
                with torch.autocast(target.device.type, dtype=torch.bfloat16, enabled=autocast):
                    loss = unrolled_loss(head, hidden, vals, tids, ids, att, cfg, columns)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
                progress["step"] += 1
                progress["positions"] += int(att.sum())
                bar.update(1)
                if size_at is not None and progress["step"] == size_at - CALIBRATION_STEPS:
                    t_mark = time.monotonic()
                elif progress["step"] == size_at:
                    per_step = (time.monotonic() - t_mark) / CALIBRATION_STEPS
                    total_steps = progress["step"] + int((budget - (time.monotonic() - t_start)) / per_step)
                    progress["total_steps"] = bar.total = total_steps
                    sched, size_at = _schedule_at(opt, cfg, total_steps, progress["step"]), None
                    log.info("%.2f s/step: cosine schedule over %d steps", per_step, total_steps)
            progress["epoch"] += 1


def _schedule_at(opt: torch.optim.Optimizer, cfg: HeadTrainConfig, total_steps: int, step: int):
    """The warmup + cosine schedule over ``total_steps``, advanced to ``step`` (a resumed or re-sized run)."""
    sched = lr_schedule(opt, cfg, total_steps)
    with warnings.catch_warnings():  # advancing a schedule before the next optimizer step is intended here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(step):
            sched.step()
    return sched


def _estimate_steps(cfg: HeadTrainConfig) -> int:
    """A first guess at the steps the time budget allows (``batch_tokens`` at an assumed 1,000
    positions/s); a fresh run re-sizes the schedule from measured steps."""
    per_step_s = cfg.batch_tokens / 1000.0
    return max(cfg.warmup + 1, int(cfg.minutes * 60 / per_step_s))

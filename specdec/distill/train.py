"""Training the draft on teacher records: KL(target top-k || draft) + CE on the target's argmax,
a time budget, a CSV log of held-out agreement, and the best checkpoint kept.

The learning rate follows transformers' linear warmup + cosine decay to ``min_lr_frac`` of the
peak over the steps estimated to fit the budget (or ``max_steps``), then stays at that floor.
"""

from __future__ import annotations

import csv
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from specdec.models import load_model
from specdec.models.subvocab import SubVocabLlamaForCausalLM, restrict_head

from .draft import DraftConfig, choose_vocab, head_columns, head_coverage, make_draft, pca_embeddings, save_draft
from .evaluate import agreement
from .records import Record, collate, load_records, split_records, token_batches, weight_generations
from .teacher import DEFAULT_TARGET, WORK_DIR, load_target

log = logging.getLogger(__name__)
LOG_COLUMNS = ["step", "epoch", "elapsed_s", "train_loss", "heldout_agreement", "lr"]


@dataclass
class TrainConfig:
    """Options for ``train``."""

    target: str = DEFAULT_TARGET  # preset, .gguf path, local directory or hub id
    data_dir: str = WORK_DIR + "/data"
    out_dir: str = WORK_DIR + "/draft"
    draft: DraftConfig = field(default_factory=DraftConfig)
    init_embeddings: str = "pca"  # "pca" | "random"
    init_from: str = ""  # a saved draft to continue from (its shape wins over ``draft``)
    head_vocab: int = 0  # >0: output head over this many target ids (specdec.models.subvocab)
    gen_repeat: int = 1  # records with target generations appear this many times per epoch
    minutes: float = 45.0
    max_steps: int = 0  # >0: stop after this many steps and schedule the LR over them
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

    def validate(self) -> None:
        """ValueError naming the first unusable option."""
        if not self.init_from:
            self.draft.validate()
        if self.init_embeddings not in ("pca", "random"):
            raise ValueError(f"--init-embeddings must be pca or random, got {self.init_embeddings!r}")
        for name in ("gen_repeat", "batch_tokens", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("head_vocab", "max_steps", "warmup", "weight_decay", "ce_weight", "eval_every_s", "max_heldout"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.minutes <= 0 or self.lr <= 0:
            raise ValueError(f"--minutes and --lr must be > 0, got {self.minutes} and {self.lr}")
        if not 0.0 <= self.min_lr_frac <= 1.0 or not 0.0 < self.heldout_frac < 1.0:
            raise ValueError(f"--min-lr-frac must be in [0, 1] and --heldout-frac in (0, 1), "
                             f"got {self.min_lr_frac} and {self.heldout_frac}")


def distill_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor], ce_weight: float,
                 temp: float = 1.0, columns: torch.Tensor | None = None) -> torch.Tensor:
    """KL(renormalised target top-k || draft restricted to top-k) + CE on target argmax, masked mean.

    ``columns`` maps target ids to the draft's logit columns (-1: not scored, for a sub-vocabulary
    head); teacher entries outside the head are dropped and the rest renormalised."""
    m = batch["mask"]
    lg = logits[m].float()  # (positions, columns)
    tid, tv = batch["tids"][m], batch["vals"][m]  # (positions, k)
    if columns is not None:
        tid = columns[tid]
        tv = tv.masked_fill(tid < 0, float("-inf"))
        keep = tid[:, 0] >= 0  # rows whose argmax the head can score (the rest: nothing to learn)
        lg, tid, tv = lg[keep], tid[keep].clamp_min(0), tv[keep]
    p = F.softmax(tv / temp, -1)
    logq = F.log_softmax(lg / temp, -1).gather(-1, tid)  # draft log-probs at the teacher's k ids
    kl = (p * (p.clamp_min(1e-9).log() - logq)).sum(-1).mean()
    ce = -logq[:, 0].mean()
    return kl + ce_weight * ce


def train_logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits for the loss: the head's own columns only (no full-width tensor for a sub-vocabulary head)."""
    if isinstance(model, SubVocabLlamaForCausalLM):
        hidden = model.model(input_ids=batch["ids"], attention_mask=batch["att"]).last_hidden_state
        return model.sub_logits(hidden)
    return model(input_ids=batch["ids"], attention_mask=batch["att"]).logits


@dataclass
class Schedule:
    """The library's warmup + cosine schedule, held at its floor after ``total`` steps (past
    ``num_training_steps`` its cosine would rise again)."""

    scheduler: LambdaLR
    total: int

    def step(self) -> None:
        """Advance one optimizer step."""
        if self.scheduler.last_epoch < self.total:
            self.scheduler.step()


def lr_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> Schedule:
    """Linear warmup over ``cfg.warmup`` steps to the optimizer's lr, cosine decay to
    ``cfg.min_lr_frac`` of it at ``total_steps``, then that floor."""
    total = max(total_steps, cfg.warmup + 1)
    sched = get_cosine_with_min_lr_schedule_with_warmup(opt, num_warmup_steps=cfg.warmup, num_training_steps=total,
                                                        min_lr_rate=cfg.min_lr_frac)
    return Schedule(sched, total)


def estimate_steps(draft: Any, recs: list[Record], cfg: TrainConfig, pad: int,
                   columns: torch.Tensor | None = None) -> int:
    """Steps that fit in the time budget, from timing three training steps (weights restored after)."""
    batches = token_batches(recs, cfg.batch_tokens, random.Random(cfg.seed + 1))[:3]
    state = {k: v.clone() for k, v in draft.state_dict().items()}
    opt = torch.optim.SGD(draft.parameters(), lr=0.0)
    t = time.perf_counter()
    for br in batches:
        b = collate(br, pad)
        distill_loss(train_logits(draft, b), b, cfg.ce_weight, columns=columns).backward()
        opt.step()
        opt.zero_grad()
    per = (time.perf_counter() - t) / max(len(batches), 1)
    draft.load_state_dict(state)
    steps = int(cfg.minutes * 60 * 0.93 / per)  # 7% of the budget left for held-out evaluations
    log.info("~%.2f s/step -> cosine schedule over %d steps", per, steps)
    return steps


def initial_draft(cfg: TrainConfig) -> tuple[Any, Any, int]:
    """(draft, target config, pad id): continued from ``cfg.init_from`` or fresh with PCA/random
    embeddings; the target is loaded for its config and embeddings, then freed."""
    target, tok = load_target(cfg.target)
    tcfg, pad = target.config, int(tok.pad_token_id)
    if cfg.init_from:
        draft = load_model(cfg.init_from, device="cpu", dtype="float32").model
    else:
        draft = make_draft(tcfg, cfg.draft)
        if cfg.init_embeddings == "pca":
            with torch.no_grad():
                draft.get_input_embeddings().weight.copy_(pca_embeddings(target.get_input_embeddings().weight,
                                                                         cfg.draft.hidden))
    return draft, tcfg, pad


def write_log_row(path: Path, row: list[Any]) -> None:
    """Append one row to the training CSV."""
    with path.open("a", newline="") as fh:
        csv.writer(fh).writerow(row)


def train(cfg: TrainConfig) -> float:
    """Train the draft for ``cfg.minutes`` (or ``cfg.max_steps``), log held-out agreement every
    ``cfg.eval_every_s`` to ``training_log.csv``, keep the best checkpoint in ``cfg.out_dir``;
    returns the best held-out agreement."""
    cfg.validate()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    train_recs, held = split_records(load_records(cfg.data_dir), cfg.heldout_frac)
    if not train_recs:
        raise ValueError(f"no training records in {cfg.data_dir} outside the held-out split")
    held = held[: cfg.max_heldout]
    if not held:
        log.warning("no held-out greedy answers: agreement reads 0 and the first checkpoint is kept")
    draft, tcfg, pad = initial_draft(cfg)
    if cfg.head_vocab and not isinstance(draft, SubVocabLlamaForCausalLM):
        special = tuple(sorted({int(t) for t in (tcfg.bos_token_id, tcfg.eos_token_id, pad) if t is not None}))
        draft = restrict_head(draft, choose_vocab(train_recs, cfg.head_vocab, tcfg.vocab_size, special))
    train_recs = weight_generations(train_recs, cfg.gen_repeat)
    columns = head_columns(draft)
    if columns is not None:
        log.info("head scores %d of %d ids; they cover %.4f of held-out target tokens",
                 len(draft.config.draft_vocab), tcfg.vocab_size, head_coverage(held, draft.config.draft_vocab, pad))
    log.info("train records %d (%d supervised tokens), held-out %d (%d tokens), draft params %.2fM",
             len(train_recs), sum(r.positions for r in train_recs), len(held), sum(r.positions for r in held),
             sum(p.numel() for p in draft.parameters()) / 1e6)
    draft.train()
    opt = torch.optim.AdamW(draft.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    total = cfg.max_steps or estimate_steps(draft, train_recs, cfg, pad, columns)
    schedule = lr_schedule(opt, cfg, total)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "training_log.csv"
    with log_path.open("w", newline="") as fh:
        csv.writer(fh).writerow(LOG_COLUMNS)
    budget = cfg.minutes * 60
    t0, step, epoch, best, last_eval, losses = time.monotonic(), 0, 0, -1.0, float("-inf"), []
    by_steps = cfg.max_steps > 0  # the bar follows whichever limit is set: steps, else the time budget
    bar = tqdm(total=cfg.max_steps if by_steps else round(budget), desc="train", unit="step" if by_steps else "s",
               bar_format="{l_bar}{bar}| {n:.0f}/{total} {unit}{postfix}")
    try:
        while True:
            for batch_recs in token_batches(train_recs, cfg.batch_tokens, rng):
                el = time.monotonic() - t0
                bar.update((step if by_steps else min(el, budget)) - bar.n)
                done = el > budget or 0 < cfg.max_steps <= step
                if done or el - last_eval >= cfg.eval_every_s:
                    acc = agreement(draft, held, pad)
                    loss = sum(losses) / max(len(losses), 1)
                    write_log_row(log_path, [step, epoch, f"{el:.0f}", f"{loss:.4f}", f"{acc:.4f}",
                                             f"{opt.param_groups[0]['lr']:.2e}"])
                    log.info("step %d epoch %d %.0f s loss %.4f held-out agreement %.4f", step, epoch, el, loss, acc)
                    bar.set_postfix(step=step, loss=f"{loss:.3f}", agree=f"{acc:.3f}")
                    losses, last_eval = [], time.monotonic() - t0
                    if acc > best:
                        best = acc
                        save_draft(draft, out)
                    draft.train()
                if done:
                    log.info("best held-out agreement %.4f, saved in %s", best, out)
                    return best
                b = collate(batch_recs, pad)
                loss = distill_loss(train_logits(draft, b), b, cfg.ce_weight, columns=columns)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(draft.parameters(), 1.0)
                opt.step()
                schedule.step()
                losses.append(loss.item())
                step += 1
            epoch += 1
    finally:
        bar.close()

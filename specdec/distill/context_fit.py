"""Fit a reduced head's context columns (:mod:`specdec.models.context_vocab`) on held-out answers.

The columns score a context id outside the head's vocabulary as ``scale · w · h + bias`` through the
target's own LM-head row, which the head was never trained against; two numbers calibrate that row
against the head's trained ones. They are chosen on held-out target answers of the head's own data
(never the study's prompts), teacher-forced, for the head's first-draft agreement, then written into a
copy of the head's config; the weights are copied unchanged.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..files import atomic_write_text
from ..models import load_head, load_model
from ..models.feature_head import CONFIG_FILE
from .head_data import load_sequences
from .head_train import heldout_answers
from .teacher import DEFAULT_TARGET

log = logging.getLogger(__name__)
GRID_FILE = "context_grid.csv"


def parse_floats(text: str) -> tuple[float, ...]:
    """``"0.5,1"`` -> (0.5, 1.0); ValueError naming the text otherwise."""
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise ValueError(f"expected comma-separated numbers, got {text!r}")
    return values


@dataclass
class ContextFitConfig:
    """Options of ``specdec distill context-vocab``."""

    head: str = "smollm2-head"
    data_dir: str = "distill_data/smollm2-head"
    out_dir: str = "distill_work/head-context"
    target: str = DEFAULT_TARGET
    scales: tuple[float, ...] = (0.5, 0.625, 0.75, 0.875, 1.0, 1.125, 1.25, 1.5)
    biases: tuple[float, ...] = (-4.0, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0)
    heldout_frac: float = 0.05
    max_heldout: int = 240  # held-out answers, each kind in turn
    dtype: str = "float32"
    threads: int = 2

    def validate(self) -> None:
        """ValueError naming the first unusable option."""
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError(f"--scales must be positive, got {self.scales}")
        if not self.biases:
            raise ValueError("--biases needs at least one value")
        if not 0.0 < self.heldout_frac <= 1.0:
            raise ValueError(f"--heldout-frac must be in (0, 1], got {self.heldout_frac}")
        if self.max_heldout < 1 or self.threads < 1:
            raise ValueError("--max-heldout and --threads must be >= 1")
        if not Path(self.data_dir).is_dir():
            raise ValueError(f"--data-dir {self.data_dir} is not a directory")


@torch.no_grad()
def context_grid(target: Any, head: Any, seqs: list, scales: tuple[float, ...],
                 biases: tuple[float, ...]) -> tuple[torch.Tensor, int, int]:
    """(hits (S, B), hits without context columns, positions): a reduced head's first-draft agreement with
    the target's greedy token over the answers of ``seqs``, per scale and bias, teacher-forced."""
    s = torch.tensor(scales)[:, None, None, None]
    b = torch.tensor(biases)[None, :, None, None]
    hits = torch.zeros(len(scales), len(biases), dtype=torch.long)
    base = positions = 0
    for seq in tqdm(seqs, desc="held-out answers", unit="answer"):
        full = torch.tensor([seq.ids], device=target.device)
        if full.shape[1] < 4:
            continue
        res = target(full[:, :-1], output_hidden_states=True)
        out = head.step(head.features(res.hidden_states)[:, :-1], full[:, 1:-1])[0]  # row t drafts token t + 2
        greedy = res.logits[0, 1:].argmax(-1)  # greedy[t]: the target's own choice for token t + 2
        rows = torch.arange(max(seq.answer_start - 1, 0), len(out), device=out.device)  # tokens answer_start + 1 ..
        small, col = head.head_logits(out[rows]).float().max(-1)
        own = head.vocab_ids[col]
        right = int((own == greedy[rows]).sum())
        base, positions = base + right, positions + len(rows)
        context = head.context_vocab(scale=1.0, bias=0.0)  # raw scores: scale and bias applied below
        context.add(full[0])
        if not len(context):
            hits += right
            continue
        raw = context.scores(out[rows]).float()
        raw = raw.masked_fill(~context.seen_by(rows + 1), float("-inf"))
        val, extra = (raw[None, None] * s + b).max(-1)  # (S, B, P)
        pick = torch.where(val > small, context.ids[extra], own)
        hits += (pick == greedy[rows]).sum(-1)
    return hits, base, positions


def fit_context(cfg: ContextFitConfig) -> dict[str, float]:
    """Choose scale and bias on held-out answers, write the head with them to ``out_dir`` and the grid
    to ``out_dir/context_grid.csv``; returns the agreements without and with the columns."""
    cfg.validate()
    torch.set_num_threads(cfg.threads)
    target = load_model(cfg.target, dtype=cfg.dtype)
    loaded = load_head(cfg.head, target)
    head = loaded.model
    if head.lm_head is None:
        raise ValueError(f"head {cfg.head!r} scores every id already: context columns need a reduced vocabulary")
    held = heldout_answers(load_sequences(cfg.data_dir), cfg.heldout_frac, cfg.max_heldout)
    if not held:
        raise ValueError(f"no held-out answers in {cfg.data_dir} at --heldout-frac {cfg.heldout_frac}")
    hits, base, positions = context_grid(target.model, head, held, cfg.scales, cfg.biases)
    best = int(hits.argmax())
    i, j = divmod(best, len(cfg.biases))
    if int(hits[i, j]) <= base:
        raise ValueError(f"context columns do not pay on {positions} held-out positions: at best "
                         f"{int(hits[i, j]) / positions:.4f} against {base / positions:.4f} without; nothing written")
    scale, bias = cfg.scales[i], cfg.biases[j]
    out = Path(cfg.out_dir)
    source = Path(loaded.source)
    if out.resolve() != source.resolve():
        shutil.copytree(source, out, dirs_exist_ok=True)
    with (out / GRID_FILE).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scale", "bias", "agreement", "positions"])
        w.writerows([sc, bi, round(int(hits[a, c]) / positions, 5), positions]
                    for a, sc in enumerate(cfg.scales) for c, bi in enumerate(cfg.biases))
    fitted = replace(head.head_config, context_scale=scale, context_bias=bias)
    atomic_write_text(out / CONFIG_FILE, json.dumps(asdict(fitted), indent=1) + "\n")
    res = {"without": base / positions, "with": int(hits[i, j]) / positions, "positions": positions,
           "scale": scale, "bias": bias, "answers": len(held)}
    log.info("head with context columns written to %s (grid: %s)", out, out / GRID_FILE)
    return res

"""How often the draft's greedy token equals the target's: on held-out teacher records, and on the
target's own greedy answers to the speed study's prompts (plays never trained on)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from specdec.engine.loop import autoregressive_generate
from specdec.models import load_model
from specdec.models.context_vocab import ContextVocab
from specdec.study.prompts import prompts_for, study_prompts

from .records import Record, collate, load_records, split_records
from .teacher import DEFAULT_TARGET


@torch.no_grad()
def agreement(model: Any, recs: list[Record], pad_id: int, batch_size: int = 16) -> float:
    """Fraction of answer positions (all supervised positions for forced records) where the
    model's argmax equals the target's argmax, teacher-forced on the target's tokens."""
    hit = tot = 0
    model.eval()
    for i in range(0, len(recs), batch_size):
        b = collate(recs[i:i + batch_size], pad_id, gen_only=True)
        pred = model(input_ids=b["ids"], attention_mask=b["att"]).logits.argmax(-1)
        hit += (pred[b["mask"]] == b["tids"][b["mask"]][:, 0]).sum().item()
        tot += b["mask"].sum().item()
    return hit / max(tot, 1)


def pad_id_of(model: Any) -> int:
    """A pad id for right padding (its value never reaches a real position's logits)."""
    cfg = model.config
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else cfg.eos_token_id
    if isinstance(pad, list):
        pad = pad[0] if pad else None
    return int(pad) if pad is not None else 0


def evaluate(draft: Any, data_dir: str, heldout_frac: float) -> tuple[float, int]:
    """(agreement, positions) of ``draft`` on the held-out greedy answers in ``data_dir``."""
    _, held = split_records(load_records(data_dir), heldout_frac)
    if not held:
        raise ValueError(f"no held-out greedy answers in {data_dir} at --heldout-frac {heldout_frac}")
    return agreement(draft, held, pad_id_of(draft)), sum(r.answer_tokens for r in held)


@torch.no_grad()
def study_agreement(target: Any, draft: Any, tokenizer: Any, prompt_len: int = 128, count: int = 12,
                    new_tokens: int = 64) -> tuple[float, int]:
    """(agreement, positions) of the draft on the target's greedy answers to the speed study's own
    prompts: the held-out figure that matters for the study's acceptance rate."""
    hit = tot = 0
    for p in study_prompts(tokenizer, prompt_len, count):
        ids = torch.tensor([p.ids])
        gen = autoregressive_generate(target, ids, max_new_tokens=new_tokens,
                                      eos_token_id=tokenizer.eos_token_id).tokens
        full = torch.cat([ids, torch.tensor([gen], dtype=ids.dtype)], 1)
        # logits at position prompt_len - 1 + j predict answer token j
        pred = draft(full).logits[0, prompt_len - 1: prompt_len - 1 + len(gen)].argmax(-1)
        hit += int((pred == torch.tensor(gen)).sum())
        tot += len(gen)
    return hit / max(tot, 1), tot


Predictor = Callable[[torch.Tensor], torch.Tensor]  # ids (1, T) -> (T,): the guess for token t, at t


def draft_predictor(draft: Any) -> Predictor:
    """An independent draft's greedy guess for every token, from the tokens before it."""
    def predict(full: torch.Tensor) -> torch.Tensor:
        logits = draft(full).logits[0].argmax(-1)  # position t guesses token t + 1
        return torch.cat([logits.new_full((1,), -1), logits[:-1]])
    return predict


def head_guesses(head: Any, out: torch.Tensor, context: ContextVocab | None) -> torch.Tensor:
    """The head's greedy guess from each output row t of one sequence (``out`` (T', H): the row that
    drafts token t + 2), ``context`` fed the whole sequence: a column counts once tokens 0..t + 1 hold it."""
    scores, cols = head.head_logits(out, context).float(), head.columns(context)
    if context is not None and len(context):
        extra = scores[:, len(cols) - len(context):]
        extra.masked_fill_(~context.seen_by(torch.arange(1, len(out) + 1, device=out.device)), float("-inf"))
    best = scores.argmax(-1)
    return best if cols is None else cols[best]


def head_predictor(target: Any, head: Any) -> Predictor:
    """A feature head's first-draft guess for every token t >= 2: from the target's features up to
    t - 2 and token t - 1, as when it drafts right after the target committed token t - 1 (with its
    context columns, when fitted, holding the ids of tokens 0..t - 1)."""
    def predict(full: torch.Tensor) -> torch.Tensor:
        hidden = target(full[:, :-1], output_hidden_states=True).hidden_states
        out = head.step(head.features(hidden)[:, :-1], full[:, 1:-1])[0]
        context = head.context_vocab()
        if context is not None:
            context.add(full[0])
        first = head_guesses(head, out, context)
        return torch.cat([first.new_full((2,), -1), first])  # first[t] guesses token t + 2
    return predict


def vocabulary_ceiling(head: Any) -> Predictor | None:
    """A guess right at every token a head can propose (its ``draft_vocab``, and with context columns any id
    the tokens before hold; q is 0 elsewhere) and wrong elsewhere: its agreement is the most the head allows.
    None for a head over every id."""
    ids = getattr(head, "vocab_ids", None)
    if ids is None:
        return None

    def predict(full: torch.Tensor) -> torch.Tensor:
        inside = torch.isin(full[0], ids.to(full.device))
        context = head.context_vocab()
        if context is not None:
            context.add(full[0])
            earlier = context.seen_by(torch.arange(-1, full.shape[1] - 1, device=full.device))  # tokens before t
            inside |= ((full[0][:, None] == context.ids[None, :]) & earlier).any(-1)
        return torch.where(inside, full[0], torch.full_like(full[0], -1))
    return predict


@torch.no_grad()
def answer_agreement(target: Any, tokenizer: Any, predictors: dict[str, Predictor], prompt_set: str = "study",
                     count: int = 12, prompt_len: int = 128, new_tokens: int = 64) -> dict[str, tuple[float, int]]:
    """Per predictor, (agreement, positions) with the target's greedy answers to ``count`` prompts of a
    study prompt set, counted from the answer's second token (the first is always the target's own)."""
    hits = dict.fromkeys(predictors, 0)
    total = 0
    for p in prompts_for(tokenizer, prompt_set, prompt_len, count):
        ids = torch.tensor([p.ids], device=target.device)
        gen = autoregressive_generate(target, ids, max_new_tokens=new_tokens, eos_token_id=tokenizer.eos_token_id).tokens
        full = torch.cat([ids, torch.tensor([gen], dtype=ids.dtype, device=ids.device)], 1)
        answer = full[0, ids.shape[1] + 1:]
        total += len(answer)
        for name, predict in predictors.items():
            hits[name] += int((predict(full)[ids.shape[1] + 1:] == answer).sum())
    return {name: (hits[name] / max(total, 1), total) for name in predictors}


@dataclass
class EvalConfig:
    """Options for ``eval``."""

    draft_dir: str
    data_dir: str = ""  # empty: skip the held-out records
    heldout_frac: float = 0.05
    target: str = DEFAULT_TARGET  # answers the study prompts
    study_prompts: int = 0
    study_len: int = 128
    study_new_tokens: int = 64
    threads: int = 2

    def validate(self) -> None:
        """ValueError naming the first unusable option."""
        if not 0.0 < self.heldout_frac <= 1.0:
            raise ValueError(f"--heldout-frac must be in (0, 1], got {self.heldout_frac}")
        if self.study_prompts < 0 or self.study_len < 1 or self.study_new_tokens < 1 or self.threads < 1:
            raise ValueError("--study-prompts must be >= 0; --study-len, --study-new-tokens and --threads >= 1")
        if self.study_prompts and not self.target:
            raise ValueError("--study-prompts needs --target")
        if not (self.data_dir or self.study_prompts):
            raise ValueError("nothing to evaluate: give --data-dir and/or --study-prompts")


def run_eval(cfg: EvalConfig) -> dict[str, float]:
    """The requested agreements of a saved draft: ``heldout`` and/or ``study``, each with its positions."""
    cfg.validate()
    torch.set_num_threads(cfg.threads)
    draft = load_model(cfg.draft_dir, device="cpu", dtype="float32").model
    out: dict[str, float] = {}
    if cfg.data_dir:
        out["heldout"], out["heldout_positions"] = evaluate(draft, cfg.data_dir, cfg.heldout_frac)
    if cfg.study_prompts:
        target = load_model(cfg.target, device="cpu", dtype="float32")
        if target.tokenizer is None:
            raise ValueError(f"target {cfg.target!r} has no tokenizer; the study prompts need one")
        out["study"], out["study_positions"] = study_agreement(target.model, draft, target.tokenizer, cfg.study_len,
                                                               cfg.study_prompts, cfg.study_new_tokens)
    return out

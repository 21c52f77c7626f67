"""Measured costs for the cost model: c = draft step / target step and v(N), per model pair.

``measure_costs`` times one-token decodes of p (target) and q (draft) and a target pass over
N + 1 tokens, each from a KV cache prefilled on the prompt and cropped back after every timed
forward, in interleaved rounds (medians of ``repeats`` rounds after ``warmup``).
``CalibrationCache`` keeps the result per (target, draft, dtype, device) so "auto" N calibrates
once per process, or once per machine when given a JSON path.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from ..engine.forward import Compiler, Forward, compiled_attention
from ..engine.timing import timed
from ..files import atomic_write_json, default_cache_dir

# (call, device) -> (its result, seconds): engine.timing.timed, or a scripted clock in tests
Timer = Callable[[Callable[[], Any], torch.device], tuple[Any, float]]


@dataclass
class Costs:
    """Seconds per one-token step of p and q, c = q / p, and v(N) = t(N+1 tokens) / t(1 token)."""

    target_step_s: float
    draft_step_s: float
    c: float
    verify_cost: dict[int, float]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Costs:
        return cls(float(d["target_step_s"]), float(d["draft_step_s"]), float(d["c"]),
                   {int(k): float(v) for k, v in d["verify_cost"].items()})


def _prefill(model: PreTrainedModel, prompt_ids: torch.Tensor, compiler: Compiler | None, room: int) -> Forward:
    forward = Forward.for_lm(model, compiler, prompt_ids.shape[1] + room)
    forward(prompt_ids.to(model.device), logits_to_keep=1)
    return forward


def _forward_s(forward: Forward, block: torch.Tensor, timer: Timer, logits_to_keep: int = 0) -> float:
    """Seconds of one cached forward over ``block``; the cache is rolled back to where it was."""
    base = forward.length
    _, elapsed = timer(lambda: forward(block, logits_to_keep=logits_to_keep or None), block.device)
    forward.rollback(base)
    return elapsed


@torch.inference_mode()
def measure_costs(target: PreTrainedModel, draft: PreTrainedModel | None, prompt_ids: torch.Tensor,
                  ns: Iterable[int] = range(1, 17), repeats: int = 5, warmup: int = 2,
                  timer: Timer = timed, compiler: Compiler | None = None) -> Costs:
    """Time p's and q's one-token decode and p's (N+1)-token verify pass after a prefilled prompt.

    Interleaved: each of ``warmup + repeats`` rounds times every shape once (1 token, each N + 1,
    the draft's token), so a drift of the machine's speed hits all of them alike; each cost is a
    ratio of medians over the measured rounds. Forwards: 2 prefills + (warmup + repeats) ×
    (2 + len(ns)). ``draft`` None (a drafter without a model, e.g. prompt lookup) gives c = 0.
    ``verify_cost[0] = 1``. With ``compiler``, both run compiled over static caches (the
    first round compiles any graph not yet made: keep ``warmup`` >= 1).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    ns = [int(n) for n in ns]
    if any(n < 1 for n in ns):
        raise ValueError(f"ns must be >= 1, got {ns}")
    with compiled_attention(compiler, target, draft):
        last = prompt_ids[:, -1:].to(target.device)
        cache = _prefill(target, prompt_ids, compiler, max(ns) + 1)
        dcache = _prefill(draft, prompt_ids, compiler, 1) if draft is not None else None
        times: dict[str, list[float]] = {"target": [], "draft": [], **{f"v{n}": [] for n in ns}}
        for i in range(warmup + repeats):
            # The engine's verify pass keeps all logits; a one-token target decode is the same call.
            round_ = {"target": _forward_s(cache, last, timer)}
            for n in ns:
                round_[f"v{n}"] = _forward_s(cache, last.repeat(1, n + 1), timer)
            if dcache is not None:
                round_["draft"] = _forward_s(dcache, last.to(draft.device), timer, logits_to_keep=1)
            if i >= warmup:
                for k, t in round_.items():
                    times[k].append(t)
    t1 = statistics.median(times["target"])
    td = statistics.median(times["draft"]) if dcache is not None else 0.0
    verify = {0: 1.0, **{n: statistics.median(times[f"v{n}"]) / t1 for n in ns}}
    return Costs(target_step_s=t1, draft_step_s=td, c=td / t1, verify_cost=verify)


def default_cache_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache_dir>/calibration.json``; the dir defaults to $SPECDEC_CACHE or ~/.cache/specdec."""
    return default_cache_dir(cache_dir) / "calibration.json"


@dataclass
class CalibrationCache:
    """Costs per (target, draft) × dtype × device; persisted to ``path`` as JSON when given.

    A model is keyed by its ``name_or_path`` with dtype and device; one without a name (built in
    code) gets a token of this cache's own that no other model ever receives (unlike ``id()``,
    which Python reuses after garbage collection), and is never persisted.
    ``policies`` holds each pair's auto-N policy (:mod:`specdec.auto.autotune`), in memory only.
    """

    path: Path | None = None
    entries: dict[str, Costs] = field(default_factory=dict)
    policies: dict[str, object] = field(default_factory=dict)
    _unnamed: weakref.WeakKeyDictionary[torch.nn.Module, str] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False)
    _persisted: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if self.path is not None:
            self.path = Path(self.path)
            if self.path.exists():
                data = json.loads(self.path.read_text())
                self.entries.update({k: Costs.from_json(v) for k, v in data.items()})
                self._persisted.update(data)

    def model_key(self, model: PreTrainedModel | None) -> tuple[str, bool]:
        """(key part, persistable) of one model."""
        if model is None:
            return "none", True
        name = getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "")
        param = next(model.parameters())
        where = f"{param.dtype}|{param.device}"
        if name:
            return f"{name}|{where}", True
        if model not in self._unnamed:
            self._unnamed[model] = f"unnamed:{uuid.uuid4().hex}"
        return f"{self._unnamed[model]}|{where}", False

    def key(self, target: PreTrainedModel, draft: PreTrainedModel | None, compiled: bool = False) -> tuple[str, bool]:
        """(key, persistable) of a pair: both models' keys, and whether they run compiled."""
        (kt, pt), (kd, pd) = self.model_key(target), self.model_key(draft)
        return f"target={kt};draft={kd}" + (";compiled" if compiled else ""), pt and pd

    def get(self, target: PreTrainedModel, draft: PreTrainedModel | None, compiled: bool = False) -> Costs | None:
        return self.entries.get(self.key(target, draft, compiled)[0])

    def put(self, target: PreTrainedModel, draft: PreTrainedModel | None, costs: Costs, compiled: bool = False) -> None:
        key, persistable = self.key(target, draft, compiled)
        self.entries[key] = costs
        if persistable:
            self._persisted.add(key)
            if self.path is not None:
                atomic_write_json(self.path, {k: self.entries[k].to_json() for k in sorted(self._persisted)})

    def get_or_measure(self, target: PreTrainedModel, draft: PreTrainedModel | None,
                       prompt_ids: torch.Tensor, **measure_kwargs) -> Costs:
        """Cached costs for the pair, measuring them (``measure_costs``) on first use, and again when
        the cached v(N) stops short of the ``ns`` asked for; compiled costs (``compiler=...``) are
        kept apart from eager ones."""
        compiled = measure_kwargs.get("compiler") is not None
        costs = self.get(target, draft, compiled)
        ns = measure_kwargs.get("ns")
        if costs is None or (ns and max(ns) > max(costs.verify_cost)):
            costs = measure_costs(target, draft, prompt_ids, **measure_kwargs)
            self.put(target, draft, costs, compiled)
        return costs


@functools.cache
def default_calibration_cache() -> CalibrationCache:
    """The in-memory cache ``num_draft_tokens="auto"`` uses when given none: one per process,
    so auto N calibrates a pair once (``default_calibration_cache.cache_clear()`` forgets it)."""
    return CalibrationCache()

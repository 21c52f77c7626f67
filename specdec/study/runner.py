"""The speed study's runner: paired baseline/candidate timing, one CSV row per pair, resume.

Every generation ignores EOS, so baseline and candidate produce the same number of tokens.
Per prompt: ``warmup`` unrecorded pairs, then ``repeats`` measured pairs, interleaved A B A B.
``speedup`` = baseline wall time / candidate wall time (prefill + decode, end to end);
``decode_speedup`` = baseline decode time / candidate decode time (the STYLE.md metric); NaN for
HF assisted rows, whose prefill cannot be timed apart. A greedy pair whose outputs differ is
classified by :mod:`.divergence` after both are timed.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..auto.autotune import auto_policy
from ..auto.calibration import measure_costs
from ..auto.floor import measure_memory_floor
from ..engine.forward import Compiler, check_compile, compiled_attention_name
from ..engine.loop import context_length
from ..engine.stats import GenerationResult
from ..engine.timing import timed
from ..files import atomic_write_json
from ..methods import METHODS, Request
from ..models import LoadedModel
from ..models.packed import PackUnavailable, pack_refusal, packed_twin
from .config import Cell, StudyConfig, cells
from .divergence import classify
from .prompts import prompts_for
from .provenance import now, provenance
from .store import CsvSink, Row, StudyLock, check_resume, check_writable, meta_path, read_rows, row_key
from .summary import summarize, write_summary

# Interleaved calibration rounds behind the run's c and v(N) (~1 s per round for the default pair in fp32).
CALIBRATION_REPEATS = 15


@dataclass
class Timed:
    """A generation's result and its wall time (s) measured around the call."""

    result: GenerationResult
    wall_s: float


@dataclass
class Study:
    """A configured study over already-loaded models (tests inject tiny ones)."""

    cfg: StudyConfig
    target: LoadedModel
    draft: LoadedModel
    on_row: Callable[[Row], None] | None = None  # called after each row is written (tests)
    head: LoadedModel | None = None  # the feature head of the "eagle" method
    _random_draft: torch.nn.Module | None = field(default=None, repr=False)
    _compiler: Compiler | None = field(default=None, repr=False)
    packed: torch.nn.Module | None = None  # the target's packed twin (--pack-verify): our methods verify with it

    @property
    def candidate_target(self) -> torch.nn.Module:
        """The model our speculative methods run as their target: the packed twin when there is one."""
        return self.packed if self.packed is not None else self.target.model

    @property
    def compiler(self) -> Compiler:
        """The run's compiler: one graph per block shape of the N grid (``cfg.block_rows``)."""
        if self._compiler is None:
            self._compiler = Compiler(block_rows=self.cfg.block_rows())
        return self._compiler

    @property
    def device(self) -> torch.device:
        return self.target.model.device

    def random_draft(self) -> torch.nn.Module:
        """A randomly initialised model of the draft's architecture and dtype (seeded; built once)."""
        if self._random_draft is None:
            model = self.draft.model
            torch.manual_seed(self.cfg.seed)
            # the draft's own class (a sub-vocabulary head stays one), on a config of its own
            rand = type(model)(copy.deepcopy(model.config)).to(model.dtype)
            # A name of its own, so auto N's calibration cache never confuses it with the real draft.
            rand.name_or_path = rand.config._name_or_path = f"random-init:{self.draft.name}:seed{self.cfg.seed}"
            self._random_draft = rand.to(model.device).eval()
        return self._random_draft

    def draft_for(self, method: str) -> torch.nn.Module | None:
        """The model a method drafts with (see :data:`~specdec.methods.METHODS`)."""
        kind = METHODS[method].draft
        if kind == "random":
            return self.random_draft()
        if kind == "head":
            if self.head is None:
                raise ValueError(f"method {method} needs a feature head; none was loaded")
            return self.head.model
        return self.draft.model if kind == "model" else None

    def prompt_ids(self, length: int, count: int) -> list[tuple[str, torch.Tensor]]:
        return [(p.id, torch.tensor([p.ids], device=self.device))
                for p in prompts_for(self.target.tokenizer, self.cfg.prompt_set, length, count)]

    def calibrate_auto(self) -> dict[str, dict]:
        """Per auto method and mode, the costs auto N decides with (c, v(N)) and the seconds spent measuring them.

        Auto N calibrates once per pair, mode and process; doing it here keeps that one-off cost out of
        the timed pairs, and the meta JSON shows what the policy saw (its calibration is shorter
        than the run's, so its c and v(N) can differ from the run's ``costs``). Compiled, it is
        measured over the compiled forwards (the first rounds also compile any graph not yet made).
        """
        out: dict[str, dict] = {}
        auto_cells = sorted({(c.method, c.compiled) for c in cells(self.cfg) if c.n_draft == "auto"})
        if not auto_cells:
            return out
        _, ids = self.prompt_ids(self.cfg.fixed_prompt_len, 1)[0]
        for method, compiled in auto_cells:
            t0 = time.perf_counter()
            costs = auto_policy(self.candidate_target, self.draft_for(method), ids, compiler=self.compiler if compiled else None,
                                **METHODS[method].auto_shape(self.cfg.tree_width, self.cfg.tree_nodes)).costs
            out[method + (" compiled" if compiled else "")] = {
                "seconds": time.perf_counter() - t0, "c": costs.c,
                "verify_cost": {str(k): v for k, v in costs.verify_cost.items()}}
        return out

    def measure_costs(self, compiled: bool = False, unpacked: bool = False) -> dict:
        """c and v(N) of the pair over the N grid (:func:`~specdec.auto.calibration.measure_costs`),
        eager or compiled; through the packed twin when there is one, unless ``unpacked``."""
        _, ids = self.prompt_ids(self.cfg.fixed_prompt_len, 1)[0]
        ns = sorted({n for n in (*self.cfg.ns, self.cfg.fixed_n) if n != "auto"})
        target = self.target.model if unpacked else self.candidate_target
        costs = measure_costs(target, self.draft.model, ids, ns=ns, repeats=CALIBRATION_REPEATS, warmup=2,
                              compiler=self.compiler if compiled else None)
        return {"target_step_s": costs.target_step_s, "draft_step_s": costs.draft_step_s, "c": costs.c,
                "verify_cost": {str(k): v for k, v in costs.verify_cost.items()}}

    def pack(self) -> dict:
        """Build the packed twin (``--pack-verify``, each row count of the N grid kept where measured faster);
        for the meta JSON, the choices, or why there is none (``auto`` where it cannot run; ``on`` refuses)."""
        rows = self.cfg.block_rows()
        reason = "compiled runs pre-pack their weights already" if any(self.cfg.compiled_modes()) \
            else pack_refusal(self.target.model, rows)
        if reason is not None:
            if self.cfg.pack_verify == "on":
                raise PackUnavailable(reason)
            return {"packed": False, "why_not": reason}
        t0 = time.perf_counter()
        self.packed, choices = packed_twin(self.target.model, rows)
        return {"packed": True, "seconds": round(time.perf_counter() - t0, 2), "rows": [c.to_json() for c in choices]}

    def run(self, method: str, cell: Cell, ids: torch.Tensor, seed: int) -> Timed:
        """One timed generation of ``method`` for ``cell``'s N and length, EOS ignored."""
        req = Request(self.target.model, self.draft_for(method), ids, cell.n_draft, cell.max_new_tokens,
                      temperature=self.cfg.temperature, seed=seed, eos_token_id=None,
                      compiler=self.compiler if cell.compiled else None, tree_width=self.cfg.tree_width,
                      tree_nodes=self.cfg.tree_nodes, packed=self.packed)
        return Timed(*timed(lambda: METHODS[method].run(req), self.device))

    def pair(self, cell: Cell, ids: torch.Tensor, seed: int) -> tuple[Timed, Timed]:
        """One baseline run then one candidate run (A B)."""
        return self.run("baseline", cell, ids, seed), self.run(cell.method, cell, ids, seed)

    def pair_outside_compiling(self, cell: Cell, ids: torch.Tensor, seed: int) -> tuple[Timed, Timed]:
        """A measured pair; run again if it compiled a graph (e.g. ``--warmup 0``), so no compile
        time is ever inside a recorded generation."""
        before = len(self.compiler.records) if cell.compiled else 0
        a, b = self.pair(cell, ids, seed)
        if cell.compiled and len(self.compiler.records) > before:
            a, b = self.pair(cell, ids, seed)
        return a, b

    def make_row(self, cell: Cell, prompt_id: str, ids: torch.Tensor, repeat: int, seed: int,
                 a: Timed, b: Timed) -> Row:
        sa, sb = a.result.stats, b.result.stats
        ratio = lambda x, y: x / y if y > 0 else math.nan
        row = Row(
            experiment=cell.experiment, method=cell.method, prompt_id=prompt_id,
            prompt_len=cell.prompt_len, max_new_tokens=cell.max_new_tokens, n_draft=cell.n_draft,
            repeat=repeat, temperature=self.cfg.temperature, new_tokens=len(b.result.tokens),
            baseline_time_s=a.wall_s, speculative_time_s=b.wall_s, speedup=ratio(a.wall_s, b.wall_s),
            decode_speedup=ratio(sa.decode_s, sb.decode_s) if sb.phases_timed else math.nan,
            baseline_tokens_per_s=ratio(len(a.result.tokens), a.wall_s),
            speculative_tokens_per_s=ratio(len(b.result.tokens), b.wall_s),
            acceptance_rate=sb.acceptance_rate, alpha_geometric=sb.alpha_geometric,
            tokens_per_step=sb.tokens_per_step,
            target_forwards=sb.target_forwards, draft_forwards=sb.draft_forwards,
            baseline_prefill_s=sa.prefill_s, baseline_decode_s=sa.decode_s,
            speculative_prefill_s=sb.prefill_s, speculative_decode_s=sb.decode_s,
            outputs_match="", target_model=self.target.name,
            draft_model=self.head.name if METHODS[cell.method].draft == "head" and self.head else self.draft.name,
            dtype=self.cfg.dtype,
            device=str(self.device), seed=seed, prompt_set=self.cfg.prompt_set, prompt_tokens=int(ids.shape[1]),
            compiled=cell.compiled)
        if self.cfg.temperature == 0:
            kind, pos, margin = classify(self.target.model, ids[0].tolist(), a.result.tokens, b.result.tokens)
            row.outputs_match, row.match_class = a.result.tokens == b.result.tokens, kind
            if pos is not None:
                row.first_diff_position, row.baseline_top2_margin = pos, margin
        return row

    def measure(self, done: set, sink: CsvSink, progress) -> Iterator[Row]:
        """Run every unfinished (cell, prompt, repeat); yield each row as it is written."""
        cfg = self.cfg
        prompts: dict[int, list[tuple[str, torch.Tensor]]] = {}
        for cell in cells(cfg):
            if cell.prompt_len not in prompts:
                prompts[cell.prompt_len] = self.prompt_ids(cell.prompt_len, cfg.prompts_per_cell)
            for prompt_id, ids in prompts[cell.prompt_len]:
                todo = [r for r in range(cfg.repeats)
                        if row_key({**asdict(cell), "prompt_id": prompt_id, "repeat": r}) not in done]
                if not todo:
                    continue
                progress.set_postfix_str(f"{cell.experiment} {cell.method} L={cell.prompt_len} "
                                         f"M={cell.max_new_tokens} N={cell.n_draft}"
                                         + (" compiled" if cell.compiled else ""), refresh=False)
                for _ in range(cfg.warmup):
                    self.pair(cell, ids, cfg.seed)
                    progress.update(2)
                for r in todo:
                    seed = cfg.seed + r
                    a, b = self.pair_outside_compiling(cell, ids, seed)
                    row = self.make_row(cell, prompt_id, ids, r, seed, a, b)
                    sink.write(row)
                    progress.update(2)
                    if self.on_row is not None:
                        self.on_row(row)
                    yield row


def planned_generations(cfg: StudyConfig, done: set) -> tuple[int, int]:
    """(total generations of the run, those already finished) for the progress bar."""
    per_prompt = 2 * (cfg.warmup + cfg.repeats)
    total = len(cells(cfg)) * cfg.prompts_per_cell * per_prompt
    return total, 2 * len(done)


def run_study(cfg: StudyConfig, target: LoadedModel, draft: LoadedModel, csv_path: Path, resume: bool = False,
              on_row: Callable[[Row], None] | None = None, show_progress: bool = True,
              head: LoadedModel | None = None) -> dict:
    """Run the configured study on loaded models (``head``: the eagle method's feature head); write CSV,
    provenance and summary; return the summary."""
    from tqdm import tqdm

    cfg.validate()
    check_writable(csv_path)
    context = context_length(target.model)
    if context is not None and cfg.longest_request() > context:
        raise ValueError(f"prompt length + max tokens up to {cfg.longest_request()} exceeds the target's "
                         f"context of {context} tokens")
    compiled = any(cfg.compiled_modes())
    if compiled:
        check_compile(target.model.device)
    with StudyLock(csv_path):
        done = check_resume(cfg, csv_path) if resume else set()
        meta_file = meta_path(csv_path)
        old_meta = json.loads(meta_file.read_text()) if resume and meta_file.exists() else {}
        meta = {**provenance(cfg), "target_source": target.source, "draft_source": draft.source,
                "head_source": head.source if head is not None else None}
        meta["attention"] = {"eager": target.model.config._attn_implementation,
                             "compiled": compiled_attention_name(target.model.device) or target.model.config._attn_implementation}
        study = Study(cfg, target, draft, on_row, head)
        if cfg.pack_verify != "off":
            meta["pack_verify"] = study.pack()
        sink = CsvSink(csv_path, resume)
        try:
            meta["memory_floor"] = measure_memory_floor(target.model).to_json()
            for mode in cfg.compiled_modes():
                key = "costs_compiled" if mode and len(cfg.compiled_modes()) > 1 else "costs"
                meta[key] = old_meta.get(key) or study.measure_costs(mode)
            if study.packed is not None:  # the same costs without the packs, so the run shows what packing changed
                meta["costs_unpacked"] = old_meta.get("costs_unpacked") or study.measure_costs(unpacked=True)
            meta["auto_calibration"] = study.calibrate_auto()
            atomic_write_json(meta_file, meta)
            total, initial = planned_generations(cfg, done)
            with tqdm(total=total, initial=initial, unit="gen", disable=not show_progress,
                      dynamic_ncols=True) as progress:
                for _ in study.measure(done, sink, progress):
                    pass
        finally:
            sink.close()
            if compiled:
                meta["compile"] = {"seconds": study.compiler.seconds(),
                                   "graphs": [asdict(r) for r in study.compiler.records]}
        meta["finished"] = now()
        atomic_write_json(meta_file, meta)
        summary = summarize(read_rows(csv_path), meta)
        write_summary(csv_path, summary)
    return summary

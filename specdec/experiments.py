"""The speed study: sweep configs, paired baseline/candidate timing, one CSV row per pair, resume.

Every generation ignores EOS, so baseline and candidate produce the same number of tokens.
Per prompt: ``warmup`` unrecorded pairs, then ``repeats`` measured pairs, interleaved A B A B.
``speedup`` = baseline wall time / candidate wall time (prefill + decode, end to end);
``decode_speedup`` = baseline decode time / candidate decode time (the STYLE.md metric); NaN for
HF assisted rows, whose prefill cannot be timed apart.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

EXPERIMENTS = ("prompt_length", "max_tokens", "n")
# auto-random: auto N with an unrelated, randomly initialised draft of the draft's shape (the
# adversarial cell: auto N must then decode plainly and stay at the baseline's speed).
EXTRA_METHODS = ("auto", "auto-random", "prompt-lookup", "hf-assisted", "hf-default")
_METHOD_MODULE = {"auto": "specdec.autotune", "auto-random": "specdec.autotune",
                  "hf-assisted": "specdec.hf_assisted", "hf-default": "specdec.hf_assisted"}
KEY_COLUMNS = ("experiment", "method", "prompt_id", "prompt_len", "max_new_tokens", "n_draft", "repeat")
# Interleaved calibration rounds behind the run's c and v(N) (~1 s per round for the default pair in fp32).
CALIBRATION_REPEATS = 15


def available_methods() -> tuple[str, ...]:
    """Extra methods whose implementing module is installed (prompt lookup always is)."""
    return tuple(m for m in EXTRA_METHODS
                 if m not in _METHOD_MODULE or importlib.util.find_spec(_METHOD_MODULE[m]) is not None)


def cpu_has_native_bf16() -> bool:
    """True when /proc/cpuinfo lists avx512_bf16 or amx_bf16 (False where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def study_dtype(name: str, device_type: str) -> str:
    """The study's dtype; ``auto`` is float16 on CUDA, bfloat16 on CPUs with native bf16, else float32.

    On a CPU without native bf16 the target's (N+1)-token verify costs ~3x a 1-token pass in
    bf16 but ~1.7x in fp32, so speculation can only pay in fp32 there.
    """
    if name != "auto":
        return name
    if device_type == "cuda":
        return "float16"
    return "bfloat16" if cpu_has_native_bf16() else "float32"


@dataclass(frozen=True)
class StudyConfig:
    """Everything that decides what a run measures (compared on ``--resume``)."""

    target: str
    draft: str
    device: str = "cpu"
    dtype: str = "float32"
    temperature: float = 0.0
    seed: int = 0
    repeats: int = 3
    warmup: int = 1
    prompts_per_cell: int = 2
    experiments: tuple[str, ...] = EXPERIMENTS
    prompt_lengths: tuple[int, ...] = (64, 128, 512)
    max_tokens: tuple[int, ...] = (32, 64, 128, 256)
    ns: tuple[int | str, ...] = (1, 2, 3, 4, 6, 8)
    fixed_prompt_len: int = 128
    fixed_max_tokens: int = 64
    fixed_n: int = 4
    methods: tuple[str, ...] = field(default_factory=available_methods)

    def fingerprint(self) -> dict:
        """JSON-safe form used to refuse resuming a CSV written by another configuration."""
        return json.loads(json.dumps(asdict(self)))

    def validate(self) -> None:
        """ValueError naming the first bad setting; checks that need no model."""
        for name in self.experiments:
            if name not in EXPERIMENTS:
                raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
        for name in self.methods:
            if name not in EXTRA_METHODS:
                raise ValueError(f"unknown method {name!r}; choose from {', '.join(EXTRA_METHODS)}")
        for label, grid in (("prompt lengths", self.prompt_lengths), ("max tokens", self.max_tokens), ("n", self.ns)):
            if not grid:
                raise ValueError(f"the {label} grid is empty")
        for n in (*self.ns, self.fixed_n):
            if n != "auto" and (not isinstance(n, int) or n < 1):
                raise ValueError(f"N must be an integer >= 1 or 'auto', got {n!r}")
        for label, value in (("prompt length", min(self.prompt_lengths + (self.fixed_prompt_len,))),
                             ("max tokens", min(self.max_tokens + (self.fixed_max_tokens,))),
                             ("repeats", self.repeats), ("prompts per cell", self.prompts_per_cell)):
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.temperature < 0 or not math.isfinite(self.temperature):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")

    def longest_request(self) -> int:
        """The largest prompt length + new tokens any cell asks for."""
        return max(c.prompt_len + c.max_new_tokens for c in cells(self))


@dataclass(frozen=True)
class Cell:
    """One point of a sweep: a method at one prompt length, output length and N."""

    experiment: str
    method: str
    prompt_len: int
    max_new_tokens: int
    n_draft: int | str  # an integer, "auto", or "default" (HF's own settings)


def cells(cfg: StudyConfig) -> list[Cell]:
    """Every cell of the configured experiments, in run order."""
    out: list[Cell] = []
    numeric_ns = [n for n in cfg.ns if n != "auto"]
    if "prompt_length" in cfg.experiments:
        out += [Cell("prompt_length", "speculative", L, cfg.fixed_max_tokens, cfg.fixed_n) for L in cfg.prompt_lengths]
    if "max_tokens" in cfg.experiments:
        out += [Cell("max_tokens", "speculative", cfg.fixed_prompt_len, m, cfg.fixed_n) for m in cfg.max_tokens]
    if "n" in cfg.experiments:
        base = dict(experiment="n", prompt_len=cfg.fixed_prompt_len, max_new_tokens=cfg.fixed_max_tokens)
        out += [Cell(method="speculative", n_draft=n, **base) for n in numeric_ns]
        if "auto" in cfg.methods or "auto" in cfg.ns:
            out.append(Cell(method="auto", n_draft="auto", **base))
        if "auto-random" in cfg.methods:
            out.append(Cell(method="auto-random", n_draft="auto", **base))
        if "prompt-lookup" in cfg.methods:
            out.append(Cell(method="prompt-lookup", n_draft=cfg.fixed_n, **base))
        if "hf-assisted" in cfg.methods:
            out += [Cell(method="hf-assisted", n_draft=n, **base) for n in numeric_ns]
        if "hf-default" in cfg.methods:
            out.append(Cell(method="hf-default", n_draft="default", **base))
    return out


@dataclass
class Row:
    """One measured baseline/candidate pair; the CSV's columns, in order."""

    experiment: str
    method: str
    prompt_id: str
    prompt_len: int
    max_new_tokens: int
    n_draft: int | str
    repeat: int
    temperature: float
    new_tokens: int
    baseline_time_s: float
    speculative_time_s: float
    speedup: float
    decode_speedup: float
    baseline_tokens_per_s: float
    speculative_tokens_per_s: float
    acceptance_rate: float
    alpha_geometric: float
    tokens_per_step: float
    target_forwards: int
    draft_forwards: int
    baseline_prefill_s: float
    baseline_decode_s: float
    speculative_prefill_s: float
    speculative_decode_s: float
    outputs_match: bool | str  # "" when sampling (outputs are not expected to match)
    target_model: str
    draft_model: str
    dtype: str
    device: str
    seed: int


COLUMNS = tuple(f.name for f in fields(Row))


def row_key(row: dict) -> tuple[str, ...]:
    """The identity of a finished row for ``--resume`` (all values as CSV strings)."""
    return tuple(str(row[k]) for k in KEY_COLUMNS)


# ----------------------------------------------------------------------------- CSV and provenance


def meta_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.stem + ".meta.json")


def read_rows(csv_path: Path) -> list[dict]:
    """Rows of an existing results CSV (empty when it does not exist)."""
    if not csv_path.exists():
        return []
    with csv_path.open(newline="") as f:
        return list(csv.DictReader(f))


def check_resume(cfg: StudyConfig, csv_path: Path) -> set[tuple[str, ...]]:
    """Keys of finished rows; ValueError when the CSV or its config does not match ``cfg``."""
    if not csv_path.exists():
        return set()
    with csv_path.open(newline="") as f:
        header = next(csv.reader(f), None)
    if header is None:
        return set()
    if tuple(header) != COLUMNS:
        raise ValueError(f"cannot resume: {csv_path} has different columns (not a results CSV of this version)")
    meta = meta_path(csv_path)
    try:
        saved = json.loads(meta.read_text())["config"]
    except (OSError, ValueError, KeyError):
        raise ValueError(f"cannot resume: {meta} is missing or unreadable, so {csv_path}'s configuration is unknown")
    if saved != cfg.fingerprint():
        diff = sorted(k for k in set(saved) | set(cfg.fingerprint()) if saved.get(k) != cfg.fingerprint().get(k))
        raise ValueError(f"cannot resume: {csv_path} was written with a different configuration ({', '.join(diff)} differ)")
    return {row_key(r) for r in read_rows(csv_path)}


def check_writable(csv_path: Path) -> None:
    """OSError-free check that the CSV and its side files can be written; ValueError if not."""
    parent = csv_path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create output directory {parent}: {exc.strerror or exc}")
    if csv_path.is_dir():
        raise ValueError(f"output path {csv_path} is a directory")
    if not os.access(parent, os.W_OK) or (csv_path.exists() and not os.access(csv_path, os.W_OK)):
        raise ValueError(f"output path {csv_path} is not writable")


class CsvSink:
    """Appends rows to the results CSV, flushing each so an interruption keeps finished rows."""

    def __init__(self, path: Path, resume: bool) -> None:
        fresh = not (resume and path.exists() and path.stat().st_size > 0)
        self.file = path.open("w" if fresh else "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=COLUMNS)
        if fresh:
            self.writer.writeheader()
            self.file.flush()

    def write(self, row: Row) -> None:
        self.writer.writerow(asdict(row))
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo, or what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(cfg: StudyConfig) -> dict:
    """Versions, hardware and configuration of this run."""
    import torch
    import transformers

    from . import __version__

    gpu = torch.cuda.get_device_name(0) if cfg.device.startswith("cuda") and torch.cuda.is_available() else None
    return {
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "specdec": __version__},
        "git_commit": _git_commit(), "cpu": cpu_name(), "gpu": gpu,
        "cpu_native_bf16": cpu_has_native_bf16(), "threads": torch.get_num_threads(),
        "dtype": cfg.dtype, "device": cfg.device, "config": cfg.fingerprint(),
        "grids": {"prompt_lengths": list(cfg.prompt_lengths), "max_tokens": list(cfg.max_tokens),
                  "n": list(cfg.ns)},
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- measuring


@dataclass
class Timed:
    """A generation's result and its wall time (s) measured around the call."""

    result: object
    wall_s: float


def _timed(fn: Callable[[], object], device) -> Timed:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return Timed(result, time.perf_counter() - t0)


@dataclass
class Study:
    """A configured study over already-loaded models (tests inject tiny ones)."""

    cfg: StudyConfig
    target: object  # LoadedModel
    draft: object  # LoadedModel
    on_row: Callable[[Row], None] | None = None  # called after each row is written (tests)
    costs: dict = field(default_factory=dict)
    _random_draft: object = None

    def random_draft(self):
        """A randomly initialised model of the draft's architecture and dtype (seeded; built once)."""
        if self._random_draft is None:
            import copy

            import torch

            model = self.draft.model
            torch.manual_seed(self.cfg.seed)
            # the draft's own class (a sub-vocabulary head stays one), on a config of its own
            rand = type(model)(copy.deepcopy(model.config)).to(model.dtype)
            # A name of its own, so auto N's calibration cache never confuses it with the real draft.
            rand.name_or_path = rand.config._name_or_path = f"random-init:{self.draft.name}:seed{self.cfg.seed}"
            self._random_draft = rand.to(model.device).eval()
        return self._random_draft

    @property
    def device(self):
        return self.target.model.device

    def calibrate_auto(self) -> dict[str, dict]:
        """Per auto method, the costs auto N decides with (c, v(N)) and the seconds spent measuring them.

        Auto N calibrates once per pair and process; doing it here keeps that one-off cost out of
        the timed pairs, and the meta JSON shows what the policy saw (its calibration is shorter
        than the run's, so its c and v(N) can differ from ``costs``).
        """
        import torch

        from .autotune import auto_policy
        from .prompts import study_prompts

        out: dict[str, dict] = {}
        auto_methods = sorted({c.method for c in cells(self.cfg) if c.n_draft == "auto"})
        if not auto_methods:
            return out
        prompt = study_prompts(self.target.tokenizer, self.cfg.fixed_prompt_len, 1)[0]
        ids = torch.tensor([prompt.ids], device=self.device)
        for method in auto_methods:
            draft = self.random_draft() if method == "auto-random" else self.draft.model
            t0 = time.perf_counter()
            costs = auto_policy(self.target.model, draft, ids).costs
            out[method] = {"seconds": time.perf_counter() - t0, "c": costs.c,
                           "verify_cost": {str(k): v for k, v in costs.verify_cost.items()}}
        return out

    def baseline(self, ids, max_new: int, seed: int):
        from .decoding import autoregressive_generate

        return autoregressive_generate(self.target.model, ids, max_new_tokens=max_new,
                                       temperature=self.cfg.temperature, seed=seed, eos_token_id=None)

    def candidate(self, cell: Cell, ids, seed: int):
        from .decoding import speculative_generate
        from .drafters import PromptLookupDrafter

        common = dict(max_new_tokens=cell.max_new_tokens, temperature=self.cfg.temperature,
                      seed=seed, eos_token_id=None)
        if cell.method in ("speculative", "auto"):
            return speculative_generate(self.target.model, self.draft.model, ids,
                                        num_draft_tokens=cell.n_draft, **common)
        if cell.method == "auto-random":
            return speculative_generate(self.target.model, self.random_draft(), ids,
                                        num_draft_tokens="auto", **common)
        if cell.method == "prompt-lookup":
            return speculative_generate(self.target.model, None, ids, num_draft_tokens=cell.n_draft,
                                        drafter=PromptLookupDrafter(), **common)
        from .hf_assisted import hf_assisted_generate

        n = None if cell.n_draft == "default" else cell.n_draft
        return hf_assisted_generate(self.target.model, self.draft.model, ids, n, **common)

    def pair(self, cell: Cell, ids, seed: int) -> tuple[Timed, Timed]:
        """One baseline run then one candidate run (A B)."""
        a = _timed(lambda: self.baseline(ids, cell.max_new_tokens, seed), self.device)
        b = _timed(lambda: self.candidate(cell, ids, seed), self.device)
        return a, b

    def make_row(self, cell: Cell, prompt_id: str, repeat: int, seed: int, a: Timed, b: Timed) -> Row:
        sa, sb = a.result.stats, b.result.stats
        greedy = self.cfg.temperature == 0
        ratio = lambda x, y: x / y if y > 0 else math.nan  # noqa: E731
        return Row(
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
            outputs_match=(a.result.tokens == b.result.tokens) if greedy else "",
            target_model=self.target.name, draft_model=self.draft.name, dtype=self.cfg.dtype,
            device=str(self.device), seed=seed)

    def measure(self, done: set, sink: CsvSink, progress) -> Iterator[Row]:
        """Run every unfinished (cell, prompt, repeat); yield each row as it is written."""
        import torch

        cfg = self.cfg
        prompt_cache: dict[int, list] = {}
        for cell in cells(cfg):
            if cell.prompt_len not in prompt_cache:
                from .prompts import study_prompts

                prompt_cache[cell.prompt_len] = study_prompts(self.target.tokenizer, cell.prompt_len, cfg.prompts_per_cell)
            for prompt in prompt_cache[cell.prompt_len]:
                todo = [r for r in range(cfg.repeats)
                        if row_key({**asdict(cell), "prompt_id": prompt.id, "repeat": r}) not in done]
                if not todo:
                    continue
                ids = torch.tensor([prompt.ids], device=self.device)
                progress.set_postfix_str(f"{cell.experiment} {cell.method} L={cell.prompt_len} "
                                         f"M={cell.max_new_tokens} N={cell.n_draft}", refresh=False)
                for _ in range(cfg.warmup):
                    self.pair(cell, ids, cfg.seed)
                    progress.update(2)
                for r in todo:
                    seed = cfg.seed + r
                    a, b = self.pair(cell, ids, seed)
                    row = self.make_row(cell, prompt.id, r, seed, a, b)
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


def measure_run_costs(study: Study) -> dict:
    """c and v(N) of the pair from :mod:`specdec.calibration` (empty with a note if unavailable)."""
    import torch

    try:
        from .calibration import measure_costs
    except ImportError:
        return {"note": "specdec.calibration is not available; no cost measurement"}
    from .prompts import study_prompts

    cfg = study.cfg
    prompt = study_prompts(study.target.tokenizer, cfg.fixed_prompt_len, 1)[0]
    ids = torch.tensor([prompt.ids], device=study.device)
    ns = sorted({n for n in (*cfg.ns, cfg.fixed_n) if n != "auto"})
    costs = measure_costs(study.target.model, study.draft.model, ids, ns=ns, repeats=CALIBRATION_REPEATS, warmup=2)
    return {"target_step_s": costs.target_step_s, "draft_step_s": costs.draft_step_s, "c": costs.c,
            "verify_cost": {str(k): v for k, v in costs.verify_cost.items()}}


def run_study(cfg: StudyConfig, target, draft, csv_path: Path, resume: bool = False,
              on_row: Callable[[Row], None] | None = None, show_progress: bool = True) -> dict:
    """Run the configured study on loaded models; write CSV, provenance and summary; return the summary."""
    from tqdm import tqdm

    from .summary import summarize, write_summary

    cfg.validate()
    check_writable(csv_path)
    done = check_resume(cfg, csv_path) if resume else set()
    context = getattr(target.model.config, "max_position_embeddings", None)
    if context is not None and cfg.longest_request() > context:
        raise ValueError(f"prompt length + max tokens up to {cfg.longest_request()} exceeds the target's "
                         f"context of {context} tokens")
    meta_file = meta_path(csv_path)
    old_meta = json.loads(meta_file.read_text()) if resume and meta_file.exists() else {}
    meta = {**provenance(cfg), "target_source": target.source, "draft_source": draft.source}
    study = Study(cfg, target, draft, on_row)
    sink = CsvSink(csv_path, resume)
    try:
        meta["costs"] = old_meta.get("costs") or measure_run_costs(study)
        meta["auto_calibration"] = study.calibrate_auto()
        write_json(meta_file, meta)
        total, initial = planned_generations(cfg, done)
        with tqdm(total=total, initial=initial, unit="gen", disable=not show_progress,
                  dynamic_ncols=True) as progress:
            for _ in study.measure(done, sink, progress):
                pass
    finally:
        sink.close()
    meta["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json(meta_file, meta)
    summary = summarize(read_rows(csv_path), meta)
    write_summary(csv_path, summary)
    return summary

"""What a study measures: its configuration and the grid of cells it runs, in order."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from ..methods import DEFAULT_TREE_NODES, DEFAULT_TREE_WIDTH, METHODS, STUDY_EXTRAS
from .prompts import NATURAL_LENGTH, PROMPT_SETS

EXPERIMENTS = ("prompt_length", "max_tokens", "n")
PACK_MODES = ("auto", "on", "off")  # --pack-verify
COMPILE_MODES = {"off": (False,), "on": (True,), "both": (False, True)}  # --compile: which modes each cell runs in


@dataclass(frozen=True)
class StudyConfig:
    """Everything that decides what a run measures (compared on ``--resume``)."""

    target: str
    draft: str
    head: str = ""  # feature head for the "eagle" method (a bundled name or a directory)
    device: str = "cpu"
    dtype: str = "float32"
    temperature: float = 0.0
    seed: int = 0
    prompt_set: str = "study"  # or "everyday" (out of the study's domain; natural-length prompts)
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
    # eagle needs a head; hf-static needs a compiled mode
    methods: tuple[str, ...] = tuple(m for m in STUDY_EXTRAS if METHODS[m].draft != "head" and METHODS[m].modes != "compiled")
    compile: str = "off"  # "on": static caches + compiled forwards for baseline and candidates; "both": each cell twice
    tree_width: int = DEFAULT_TREE_WIDTH  # eagle-tree's expansion per level
    tree_nodes: int = DEFAULT_TREE_NODES  # eagle-tree's verified nodes at most
    # our speculative methods verify through the target's packed twin (specdec.models.packed): "on", "off", or
    # "auto" (on where it can run: fp32 on a CPU with MKL, eager, room for the packs)
    pack_verify: str = "auto"

    def compiled_modes(self) -> tuple[bool, ...]:
        return COMPILE_MODES[self.compile]

    def block_rows(self) -> tuple[int, ...]:
        """The block shapes a compiled run compiles: the one-token decode, a drafter's 2-token
        catch-up, and N + 1 for every N of the grid (auto N picks among these)."""
        ns = {n for n in (*self.ns, self.fixed_n) if n != "auto"}
        return tuple(sorted({1, 2, *(n + 1 for n in ns)}))

    def fingerprint(self) -> dict:
        """JSON-safe form used to refuse resuming a CSV written by another configuration."""
        return json.loads(json.dumps(asdict(self)))

    def validate(self) -> None:
        """ValueError naming the first bad setting; checks that need no model."""
        for name in self.experiments:
            if name not in EXPERIMENTS:
                raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
        for name in self.methods:
            if name not in STUDY_EXTRAS:
                raise ValueError(f"unknown method {name!r}; choose from {', '.join(STUDY_EXTRAS)}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {self.compile!r}; choose from {', '.join(COMPILE_MODES)}")
        if self.pack_verify not in PACK_MODES:
            raise ValueError(f"unknown --pack-verify {self.pack_verify!r}; choose from {', '.join(PACK_MODES)}")
        if self.pack_verify == "on" and self.compile != "off":
            raise ValueError("--pack-verify on is for eager runs: compiled forwards pre-pack their weights already")
        if self.pack_verify == "on" and (self.dtype != "float32" or self.device != "cpu"):
            raise ValueError(f"--pack-verify on packs float32 weights on the CPU, not {self.dtype} on {self.device}")
        if "hf-static" in self.methods and not any(self.compiled_modes()):
            raise ValueError("method hf-static is the compiled baseline's reference: it needs --compile on or both")
        if self.prompt_set not in PROMPT_SETS:
            raise ValueError(f"unknown prompt set {self.prompt_set!r}; choose from {', '.join(PROMPT_SETS)}")
        if self.prompt_set != "study" and "prompt_length" in self.experiments:
            raise ValueError(f"the {self.prompt_set} prompts keep their natural length: the prompt_length "
                             "experiment applies to the study set only (use --experiments max_tokens,n)")
        if any(METHODS[m].draft == "head" for m in self.methods) and not self.head:
            raise ValueError(f"method eagle needs a feature head for {self.target!r} (--head DIR); none is bundled for it")
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
        if self.tree_width < 1:
            raise ValueError(f"--tree-width must be >= 1, got {self.tree_width}")
        if self.tree_nodes < 1:
            raise ValueError(f"--tree-nodes must be >= 1, got {self.tree_nodes}")

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
    compiled: bool = False  # baseline and candidate both run compiled (static caches)


def cells(cfg: StudyConfig) -> list[Cell]:
    """Every cell of the configured experiments, in run order (N cells per :data:`~specdec.methods.METHODS`);
    cells of a natural-length prompt set have prompt length ``NATURAL_LENGTH`` (0)."""
    out: list[Cell] = []
    for compiled in cfg.compiled_modes():
        out += _cells(cfg, compiled)
    return out


def _cells(cfg: StudyConfig, compiled: bool) -> list[Cell]:
    out: list[Cell] = []
    numeric_ns = [n for n in cfg.ns if n != "auto"]
    fixed_len = cfg.fixed_prompt_len if cfg.prompt_set == "study" else NATURAL_LENGTH
    mode = "compiled" if compiled else "eager"
    if "prompt_length" in cfg.experiments:
        out += [Cell("prompt_length", "speculative", L, cfg.fixed_max_tokens, cfg.fixed_n, compiled)
                for L in cfg.prompt_lengths]
    if "max_tokens" in cfg.experiments:
        out += [Cell("max_tokens", "speculative", fixed_len, m, cfg.fixed_n, compiled) for m in cfg.max_tokens]
    if "n" in cfg.experiments:
        methods = ["speculative", *(m for m in STUDY_EXTRAS if m in cfg.methods)]
        if "auto" in cfg.ns and "auto" not in methods:
            methods.insert(1, "auto")
        for method in methods:
            if METHODS[method].modes not in ("both", mode):
                continue
            kind = METHODS[method].study_n
            ns = {"grid": numeric_ns, "fixed": [cfg.fixed_n], "auto": ["auto"], "default": ["default"]}[kind]
            out += [Cell("n", method, fixed_len, cfg.fixed_max_tokens, n, compiled) for n in ns]
    return out

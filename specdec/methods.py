"""The one registry of generation methods: the study's candidates and ``specdec generate`` both
dispatch through :data:`METHODS`, so a new method is one entry here.

Every entry takes a :class:`Request` and returns a :class:`~specdec.engine.stats.GenerationResult`.
``draft`` says what the method drafts with: ``"model"`` (the pair's draft model), ``"head"`` (a
feature head reading the target's hidden states, :mod:`specdec.models.feature_head`), ``"random"``
(a randomly initialised model of the draft's shape, supplied by the study) or ``"none"``. ``study_n``
says which cells of the study's N experiment it gets: one per N of the grid, one at the fixed N,
one ``auto`` or one ``default`` (HF's own settings). ``modes`` says whether it runs eager, compiled
(static caches and compiled forwards, :mod:`specdec.engine.forward`) or both: a request's
``compiler`` (None: eager) applies to every model the method runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from .baselines.hf_assisted import hf_assisted_generate
from .baselines.hf_static import hf_static_generate
from .engine.drafters import LOOKUP_TOKENS, FeatureHeadDrafter, LookupBranchDrafter, ModelDrafter, PromptLookupDrafter
from .engine.loop import StepCallback, autoregressive_generate, speculative_generate
from .engine.stats import GenerationResult

# eagle-tree's expansion per level (EAGLE-2's top-k) and verified nodes at most: 6 and 32 led widths 3-8 and
# caps 12-36 at their best depth in and out of the study's domain (SmolLM2, Intel Xeon with AMX, bf16; exp_results)
DEFAULT_TREE_WIDTH, DEFAULT_TREE_NODES = 6, 32


@dataclass(frozen=True)
class Request:
    """One generation: models, prompt (1, L), N (an integer, ``"auto"`` or None) and sampling."""

    target: Any
    draft: Any | None
    input_ids: Any
    n: int | str | None
    max_new_tokens: int
    temperature: float = 0.0
    seed: int | None = None
    eos_token_id: int | Iterable[int] | None = None
    on_step: StepCallback | None = None
    compiler: Any | None = None  # a specdec.engine.forward.Compiler: run compiled
    tree_width: int = DEFAULT_TREE_WIDTH  # eagle-tree's expansion per level
    tree_nodes: int | None = DEFAULT_TREE_NODES  # eagle-tree's verified nodes at most (None: N levels × width)
    packed: Any | None = None  # the target's packed twin (specdec.models.packed): our speculative methods verify with it

    def common(self) -> dict:
        return dict(max_new_tokens=self.max_new_tokens, temperature=self.temperature, seed=self.seed,
                    eos_token_id=self.eos_token_id)


@dataclass(frozen=True)
class Method:
    """A named way of generating; see the module docstring for ``draft`` and ``study_n``."""

    name: str
    help: str
    generate: Callable[[Request], GenerationResult]
    draft: Literal["model", "head", "random", "none"] = "model"
    study_n: Literal["grid", "fixed", "auto", "default", "none"] = "none"
    streams: bool = True  # reports each step through ``on_step``
    modes: Literal["both", "eager", "compiled"] = "both"
    tree: bool = False  # drafts a token tree (Request.tree_width, tree_nodes)
    branch: bool = False  # its drafts carry a prompt-lookup branch (LOOKUP_TOKENS rows more)
    packs: bool = True  # runs the request's packed twin as its target when there is one (our speculative loop)

    def run(self, req: Request) -> GenerationResult:
        """Generate for ``req``; a method of our speculative loop verifies through ``req.packed`` when set."""
        if req.packed is not None and self.packs:
            req = replace(req, target=req.packed)
        return self.generate(req)

    def auto_shape(self, tree_width: int, tree_nodes: int | None) -> dict:
        """auto_policy's keywords for this method's drafts (a tree's width and nodes, a branch's rows), so
        costs calibrated ahead of a timed run cover every verify it may choose."""
        shape = dict(width=tree_width, max_nodes=tree_nodes) if self.tree else {}
        return {**shape, "extra_rows": LOOKUP_TOKENS} if self.branch else shape


def _fixed_n(req: Request, default: int = 4) -> int:
    return default if req.n in (None, "auto", "default") else int(req.n)


def _baseline(req: Request) -> GenerationResult:
    return autoregressive_generate(req.target, req.input_ids, compile=req.compiler, **req.common())


def _speculative(req: Request) -> GenerationResult:
    n = 4 if req.n is None else req.n  # an integer, or "auto"
    return speculative_generate(req.target, req.draft, req.input_ids, num_draft_tokens=n,
                                on_step=req.on_step, compile=req.compiler, **req.common())


def _auto(req: Request) -> GenerationResult:
    return speculative_generate(req.target, req.draft, req.input_ids, num_draft_tokens="auto",
                                on_step=req.on_step, compile=req.compiler, **req.common())


def _prompt_lookup(req: Request) -> GenerationResult:
    return speculative_generate(req.target, None, req.input_ids, num_draft_tokens=_fixed_n(req),
                                drafter=PromptLookupDrafter(), on_step=req.on_step, compile=req.compiler,
                                **req.common())


def _eagle(req: Request) -> GenerationResult:
    n = 4 if req.n is None else req.n  # an integer, or "auto"
    return speculative_generate(req.target, None, req.input_ids, num_draft_tokens=n,
                                drafter=FeatureHeadDrafter(req.draft), on_step=req.on_step,
                                compile=req.compiler, **req.common())


def _eagle_auto(req: Request) -> GenerationResult:
    return _eagle(replace(req, n="auto"))


def _eagle_tree(req: Request) -> GenerationResult:
    n = _fixed_n(req) if req.n != "auto" else "auto"
    return speculative_generate(req.target, None, req.input_ids, num_draft_tokens=n,
                                drafter=FeatureHeadDrafter(req.draft, req.tree_width, req.tree_nodes), on_step=req.on_step,
                                compile=req.compiler, **req.common())


def _eagle_tree_auto(req: Request) -> GenerationResult:
    return _eagle_tree(replace(req, n="auto"))


def _auto_lookup(req: Request) -> GenerationResult:
    return speculative_generate(req.target, None, req.input_ids, num_draft_tokens="auto",
                                drafter=LookupBranchDrafter(ModelDrafter(req.draft)), on_step=req.on_step,
                                compile=req.compiler, **req.common())


def _eagle_lookup_auto(req: Request, tree: bool = False) -> GenerationResult:
    head = FeatureHeadDrafter(req.draft, req.tree_width, req.tree_nodes) if tree else FeatureHeadDrafter(req.draft)
    return speculative_generate(req.target, None, req.input_ids, num_draft_tokens="auto",
                                drafter=LookupBranchDrafter(head), on_step=req.on_step, compile=req.compiler,
                                **req.common())


def _eagle_tree_lookup_auto(req: Request) -> GenerationResult:
    return _eagle_lookup_auto(req, tree=True)


def _hf_static(req: Request) -> GenerationResult:
    if req.compiler is None:
        raise ValueError("method hf-static runs compiled only (--compile)")
    return hf_static_generate(req.target, req.input_ids, compiler=req.compiler, **req.common())


def _hf_assisted(req: Request) -> GenerationResult:
    if req.compiler is not None:
        raise ValueError("HF assisted generation cannot run compiled: it forces a dynamic cache")
    n = None if req.n in (None, "auto", "default") else int(req.n)
    return hf_assisted_generate(req.target, req.draft, req.input_ids, n, **req.common())


def _hf_default(req: Request) -> GenerationResult:
    if req.compiler is not None:
        raise ValueError("HF assisted generation cannot run compiled: it forces a dynamic cache")
    return hf_assisted_generate(req.target, req.draft, req.input_ids, None, **req.common())


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("baseline", "plain decoding: one target forward per token", _baseline, draft="none", streams=False,
           packs=False),
    Method("speculative", "our loop with the draft model at a fixed N", _speculative, study_n="grid"),
    Method("auto", "our loop, N chosen each step from measured costs and running acceptance", _auto,
           study_n="auto"),
    Method("auto-lookup", "auto N with a prompt-lookup branch grafted on (n-gram copies of the context, as many "
           "as the branch's running acceptance pays for, offered on plain steps too), verified with the "
           "draft's chain as one tree; eager", _auto_lookup, study_n="auto", modes="eager", branch=True),
    Method("auto-random", "auto N with an unrelated random draft: it must fall back to plain decoding",
           _auto, draft="random", study_n="auto"),
    Method("eagle", "our loop drafting with a feature head over the target's own hidden states (EAGLE)",
           _eagle, draft="head", study_n="grid"),
    Method("eagle-auto", "the feature head's chain, each draft sized by the head's confidence at measured costs (auto N)",
           _eagle_auto, draft="head", study_n="auto"),
    Method("eagle-tree", "the feature head drafting a token tree (EAGLE-2: N levels, each expanding the "
           "--tree-width likeliest nodes, the --tree-nodes likeliest verified in one target pass); eager",
           _eagle_tree, draft="head", study_n="grid", modes="eager", tree=True),
    Method("eagle-tree-auto", "the feature head's token tree grown each step by the head's confidence, priced at "
           "measured costs (the likeliest nodes that maximise expected tokens per cost; auto N); eager",
           _eagle_tree_auto, draft="head", study_n="auto", modes="eager", tree=True),
    Method("eagle-lookup-auto", "eagle-auto with a prompt-lookup branch grafted on (n-gram copies of the context, "
           "as many as the branch's running acceptance pays for), verified with the chain as one tree; eager",
           _eagle_lookup_auto, draft="head", study_n="auto", modes="eager", branch=True),
    Method("eagle-tree-lookup-auto", "eagle-tree-auto with a prompt-lookup branch grafted on (priced as in "
           "eagle-lookup-auto); eager", _eagle_tree_lookup_auto, draft="head", study_n="auto", modes="eager", tree=True,
           branch=True),
    Method("prompt-lookup", "our loop drafting by n-gram lookup in the context (no draft model)",
           _prompt_lookup, draft="none", study_n="fixed"),
    Method("hf-assisted", "HF assisted generation pinned to a fixed N", _hf_assisted, study_n="grid",
           streams=False, modes="eager", packs=False),
    Method("hf-default", "HF assisted generation with HF's default settings", _hf_default,
           study_n="default", streams=False, modes="eager", packs=False),
    Method("hf-static", "HF generate over a static cache with its compiled forward (the compiled baseline's peer)",
           _hf_static, draft="none", study_n="fixed", streams=False, modes="compiled", packs=False),
)}

# Methods the study can add to its N experiment beside our fixed-N rows (the baseline is always run).
STUDY_EXTRAS = tuple(name for name in METHODS if name not in ("baseline", "speculative"))
# Methods ``specdec generate`` offers: those that need no study-made draft.
GENERATE_METHODS = tuple(name for name, m in METHODS.items() if m.draft != "random")


def default_method(head: bool, compiled: bool, fixed_n: bool, dtype: str) -> str:
    """What ``specdec generate`` runs when no method is named: the fastest lossless drafter the study
    measured for the default pair (exp_results/README.md). With a feature head: its token tree where a
    tree can run (eager) and its extra rows are cheap (a half-precision verify, memory-bound: v 1.1 at
    10 rows; in fp32 v reaches 1.5 by 4 rows and the tree lost to the chain on both CPUs measured),
    else its chain; without one, the draft model. N is chosen each step (the auto variant) unless fixed;
    eager with auto N, the draft (the head's or the draft model's) carries a prompt-lookup branch (ahead
    on quoting prompts, level elsewhere, in bf16 and in fp32)."""
    tree = not compiled and dtype in ("bfloat16", "float16")
    name = "speculative" if not head else "eagle-tree" if tree else "eagle"
    if fixed_n:
        return name
    if not compiled:
        return "auto-lookup" if not head else "eagle-tree-lookup-auto" if tree else "eagle-lookup-auto"
    return {"speculative": "auto", "eagle": "eagle-auto"}[name]

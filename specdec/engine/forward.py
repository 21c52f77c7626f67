"""A model's forward over its own KV cache: eager (dynamic cache) or compiled (static cache).

Eager: a ``DynamicCache`` that grows with the sequence; any block shape. Compiled: a
``StaticCache`` of a bucketed length and one ``torch.compile``d graph per block shape, made once
per process (:class:`Compiler`): inductor with weight freezing on CPU (weights pre-packed for the
CPU's matrix library), CUDA graphs (``mode="reduce-overhead"``) on CUDA. A block shorter than a
compiled shape is padded up to it with copies of its last token; the padded rows land after the
real ones and the static rule of :mod:`.cache` rewinds past them. A block longer than every
compiled shape (the prompt) runs eagerly over the same static cache, as HF ``generate`` does.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import shutil
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel, StaticCache

from .cache import KVCache, set_write_position
from .timing import sync

# Verify blocks of N + 1 rows for N = 1, 2, 3, 4, 6, 8 and the one-token decode; a drafter's
# catch-up feed is 1 or 2 rows. Other sizes pad up to the next one.
DEFAULT_BLOCK_ROWS = (1, 2, 3, 4, 5, 7, 9)
MIN_CACHE_LEN = 256  # static caches come in powers of two from here, so prompts share graphs
RECOMPILE_LIMIT = 64  # graphs per function: block shapes x cache lengths x output options


class CompileUnavailable(ValueError):
    """torch.compile cannot run here; the message is one line saying why."""


def check_compile(device: torch.device | str) -> None:
    """Raise :class:`CompileUnavailable` when ``torch.compile`` cannot build code for ``device``."""
    device = torch.device(device)
    if not torch._dynamo.is_dynamo_supported():
        raise CompileUnavailable("--compile: torch.compile does not support this Python/torch build")
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise CompileUnavailable("--compile on CPU needs a C++ compiler (g++ or clang++) for inductor; none is on PATH")
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        raise CompileUnavailable("--compile on CUDA needs triton, which is not installed")
    if device.type not in ("cpu", "cuda"):
        raise CompileUnavailable(f"--compile supports cpu and cuda devices, not {device.type}")


@dataclass
class CompileRecord:
    """Seconds the first call of one graph took (compiling it, plus one run)."""

    model: str
    rows: int
    cache_len: int
    variant: str
    seconds: float


def module_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def _name(module: torch.nn.Module) -> str:
    return getattr(module, "name_or_path", "") or getattr(getattr(module, "config", None), "_name_or_path", "") \
        or type(module).__name__


@dataclass
class Compiler:
    """Compiled forwards and static caches, made once per process and reused by every generation.

    ``block_rows``: the block shapes that get a graph. ``records`` keeps each graph's compile time,
    so a study reports it apart from generation times.
    """

    block_rows: tuple[int, ...] = DEFAULT_BLOCK_ROWS
    min_cache_len: int = MIN_CACHE_LEN
    records: list[CompileRecord] = field(default_factory=list)
    _fns: weakref.WeakKeyDictionary = field(default_factory=weakref.WeakKeyDictionary, repr=False)
    _caches: weakref.WeakKeyDictionary = field(default_factory=weakref.WeakKeyDictionary, repr=False)
    _seen: weakref.WeakKeyDictionary = field(default_factory=weakref.WeakKeyDictionary, repr=False)

    def __post_init__(self) -> None:
        self.block_rows = tuple(sorted(set(int(r) for r in self.block_rows)))
        if not self.block_rows or self.block_rows[0] < 1:
            raise ValueError(f"block_rows must be integers >= 1, got {self.block_rows}")

    def cache_len(self, needed: int) -> int:
        """The static cache length for ``needed`` positions: a power of two >= ``min_cache_len``."""
        n = self.min_cache_len
        while n < needed:
            n *= 2
        return n

    def shape_for(self, rows: int) -> int | None:
        """The smallest compiled block shape that holds ``rows`` (None: run eagerly)."""
        return next((r for r in self.block_rows if r >= rows), None)

    @property
    def max_draft(self) -> int:
        """The largest N whose verify block has a graph."""
        return self.block_rows[-1] - 1

    def static_cache(self, module: torch.nn.Module, config: Any, max_len: int) -> KVCache:
        """This module's static cache of ``max_len`` (one per module and length, reused), rewound to 0."""
        per_module = self._caches.setdefault(module, {})
        cache = per_module.get(max_len)
        if cache is None:
            cache = per_module[max_len] = StaticCache(config=config, max_cache_len=max_len)
        if cache.layers and cache.layers[0].is_initialized:
            set_write_position(cache, 0)
        return KVCache(cache, max_len)

    def compiled(self, module: torch.nn.Module, fn: Callable, variant: str) -> Callable:
        """``fn`` (a method of ``module``) compiled for this device, once per module and variant."""
        per_module = self._fns.setdefault(module, {})
        if variant not in per_module:
            if module_device(module).type == "cuda":
                per_module[variant] = torch.compile(fn, fullgraph=True, dynamic=False, mode="reduce-overhead")
            else:
                per_module[variant] = torch.compile(
                    fn, fullgraph=True, dynamic=False,
                    options={"guard_filter_fn": torch.compiler.skip_guard_on_inbuilt_nn_modules_unsafe})
        return per_module[variant]

    def call(self, module: torch.nn.Module, fn: Callable, variant: str, rows: int, cache_len: int,
             *args: Any, **kwargs: Any) -> Any:
        """Run the compiled ``fn``; the first call of each graph is timed into :attr:`records`."""
        compiled = self.compiled(module, fn, variant)
        device = module_device(module)
        with compile_settings():
            out = self.first_call_timed(module, variant, rows, cache_len, lambda: compiled(*args, **kwargs))
        return self.call_cuda_safe(out, device)

    def first_call_timed(self, module: torch.nn.Module, variant: str, rows: int, cache_len: int,
                         run: Callable[[], Any]) -> Any:
        """``run()``; timed into :attr:`records` the first time this (module, variant, rows, cache_len) runs."""
        key = (variant, rows, cache_len)
        seen = self._seen.setdefault(module, set())
        if key in seen:
            return run()
        device = module_device(module)
        sync(device)
        t0 = time.perf_counter()
        out = run()
        sync(device)
        self.records.append(CompileRecord(_name(module), rows, cache_len, variant, time.perf_counter() - t0))
        seen.add(key)
        return out

    def call_cuda_safe(self, out: Any, device: torch.device) -> Any:
        """CUDA graphs reuse their output buffers: copy what the caller keeps past the next replay."""
        if device.type != "cuda":
            return out
        if isinstance(out, torch.Tensor):
            return out.clone()
        out.logits = out.logits.clone()
        if getattr(out, "hidden_states", None) is not None:
            out.hidden_states = tuple(h.clone() for h in out.hidden_states)
        return out

    def seconds(self) -> float:
        """Total compile seconds so far."""
        return sum(r.seconds for r in self.records)


@contextlib.contextmanager
def compile_settings():
    """Inductor's weight freezing (CPU) and room for one graph per block shape, for this call only."""
    with torch._inductor.config.patch(freezing=True), \
            torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT, accumulated_recompile_limit=4 * RECOMPILE_LIMIT):
        yield


def compiled_attention_name(device: torch.device) -> str | None:
    """The attention compiled forwards use: on CPU the plain matmul-softmax ("eager"), which
    inductor fuses over a static cache (SmolLM2-135M bf16, Zen 5: 15.2 ms per compiled step against
    24.9 with SDPA's CPU kernel); elsewhere the model's own (None)."""
    return "eager" if device.type == "cpu" else None


@contextlib.contextmanager
def compiled_attention(compiler: Compiler | None, *models: torch.nn.Module | None):
    """For one compiled generation, switch the transformers models inside ``models`` to
    :func:`compiled_attention_name` and restore their own afterwards, so eager runs keep theirs."""
    present = [m for m in models if m is not None]
    name = compiled_attention_name(module_device(present[0])) if compiler is not None and present else None
    if name is None:
        yield
        return
    inner = [m for model in present for m in model.modules() if isinstance(m, PreTrainedModel)]
    before = [m.config._attn_implementation for m in inner]
    for m in inner:
        m.set_attn_implementation(name)
    try:
        yield
    finally:
        for m, old in zip(inner, before):
            m.set_attn_implementation(old)


@functools.cache
def default_compiler() -> Compiler:
    """The process's compiler: graphs compiled once are reused by every later generation."""
    return Compiler()


def resolve_compiler(compile: bool | Compiler | None) -> Compiler | None:
    """``compile=True`` → the process's :func:`default_compiler`; False/None → eager."""
    if compile is None or compile is False:
        return None
    return default_compiler() if compile is True else compile


def _given(value: Any) -> bool:
    """False, 0 and None are every option's default: leave them out of the call (and the graph's key)."""
    return isinstance(value, torch.Tensor) or bool(value)


def _pad(x: torch.Tensor, rows: int) -> torch.Tensor:
    """Repeat the last row (dim 1) until there are ``rows``."""
    extra = rows - x.shape[1]
    return x if extra == 0 else torch.cat([x, x[:, -1:].expand(x.shape[0], extra, *x.shape[2:])], dim=1)


def _trim(out: Any, rows: int, keep: int) -> Any:
    """Drop padded rows from a model output (logits, hidden states) or a tensor; keep the last ``keep``."""
    lo = rows - keep if keep else 0
    if isinstance(out, torch.Tensor):
        return out[:, lo:rows]
    out.logits = out.logits[:, lo:rows]
    if getattr(out, "hidden_states", None) is not None:
        out.hidden_states = tuple(h[:, :rows] for h in out.hidden_states)
    return out


class Forward:
    """One model's cached forward for one generation: call it with a block, roll it back.

    ``fn(*inputs, past_key_values=..., attention_mask=..., **kwargs)`` is the call (a causal LM's
    ``__call__``, or a feature head's ``step``); inputs are (1, rows, ...) tensors.
    """

    def __init__(self, module: torch.nn.Module, compiler: Compiler | None, needed_len: int,
                 fn: Callable | None = None, config: Any = None, **fixed: Any) -> None:
        self.module, self.compiler, self.fixed = module, compiler, fixed
        self.fn = module.__call__ if fn is None else fn
        config = module.config if config is None else config
        if compiler is None:
            self.kv = KVCache.dynamic(config)
        else:
            self.kv = compiler.static_cache(module, config, compiler.cache_len(needed_len + compiler.block_rows[-1]))
        self.cache = self.kv.cache

    @classmethod
    def for_lm(cls, model: torch.nn.Module, compiler: Compiler | None, needed_len: int) -> Forward:
        """A causal LM's forward (``use_cache=True``)."""
        return cls(model, compiler, needed_len, use_cache=True)

    @property
    def length(self) -> int:
        return self.kv.length

    def rollback(self, length: int) -> None:
        self.kv.rollback(length)

    def __call__(self, *inputs: torch.Tensor, logits_to_keep: int | None = None, **kwargs: Any) -> Any:
        rows = inputs[0].shape[1]
        kwargs = {**{k: v for k, v in kwargs.items() if _given(v)}, **self.fixed}
        if logits_to_keep:
            kwargs["logits_to_keep"] = logits_to_keep
        shape = None if self.compiler is None else self.compiler.shape_for(rows)
        if shape is None:  # eager: any cache, any shape
            mask = self.kv.attention_mask(rows, inputs[0].device)
            extra = {} if mask is None else {"attention_mask": mask}
            out = self.fn(*inputs, past_key_values=self.cache, **extra, **kwargs)
            self.kv.wrote(rows)
            return out
        keep = kwargs.get("logits_to_keep", 0)
        if shape != rows and keep:
            kwargs["logits_to_keep"] = 0  # padded: the real last rows are not the block's last
        padded = [_pad(x, shape) for x in inputs]
        mask = self.kv.attention_mask(shape, inputs[0].device)
        # one graph per function of the module (a head's step and its LM-style call) and output options
        variant = getattr(self.fn, "__name__", "fn") + ":" + ",".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
        out = self.compiler.call(self.module, self.fn, variant, shape, self.kv.max_len, *padded,
                                 past_key_values=self.cache, attention_mask=mask, **kwargs)
        self.kv.wrote(rows, shape)
        return _trim(out, rows, keep) if shape != rows else out

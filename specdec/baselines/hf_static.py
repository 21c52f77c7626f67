"""HF ``generate`` with a static cache and its own compiled forward: the reference for our compiled path.

The same settings as ours, so the comparison is of loops, not of settings: the static cache has
the length our compiled baseline would use (:meth:`~specdec.engine.forward.Compiler.cache_len`),
the forward is compiled by HF's ``generate`` itself (``CompileConfig``, full graph, static shapes;
CUDA graphs on CUDA) under the same inductor settings (weight freezing on CPU). HF compiles only
its one-token decode; the prompt runs eagerly, as in our loop. The first call of each cache
length is timed into the compiler's records as compile time.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from transformers import CompileConfig, PreTrainedModel

from ..engine.forward import Compiler, compile_settings, compiled_attention, module_device
from ..engine.loop import validate_request
from ..engine.stats import GenerationResult, GenerationStats
from ..engine.timing import timed
from .hf_assisted import hf_generate_kwargs


def hf_compile_config(device: torch.device) -> CompileConfig:
    """HF's compile config matching ours: inductor with static shapes (CUDA graphs on CUDA)."""
    if device.type == "cuda":
        config = CompileConfig(fullgraph=True, dynamic=False, mode="reduce-overhead")
    else:
        config = CompileConfig(fullgraph=True, dynamic=False, mode=None,
                               options={"guard_filter_fn": torch.compiler.skip_guard_on_inbuilt_nn_modules_unsafe})
    config._compile_all_devices = True  # HF compiles automatically on CUDA only; this is its switch for CPU
    return config


def hf_static_generate(
    target: PreTrainedModel,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    compiler: Compiler,
    eos_token_id: int | Iterable[int] | None = None,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    tokenizer=None,
) -> GenerationResult:
    """``target.generate`` over a static cache with a compiled forward; EOS ignored when None."""
    validate_request(target, input_ids, max_new_tokens)
    kwargs = hf_generate_kwargs(target, eos_token_id, temperature, top_k, top_p, seed)
    device = module_device(target)
    cache_len = compiler.cache_len(input_ids.shape[1] + max_new_tokens + compiler.block_rows[-1])
    kv = compiler.static_cache(target, target.config, cache_len)
    config = hf_compile_config(device)

    @torch.inference_mode()  # as our loops run (the shared static cache holds inference tensors)
    def run():
        return target.generate(input_ids, attention_mask=torch.ones_like(input_ids), past_key_values=kv.cache,
                               compile_config=config, max_new_tokens=max_new_tokens, **kwargs)

    stats = GenerationStats(phases_timed=False)
    with compile_settings(), compiled_attention(compiler, target):
        out, stats.decode_s = timed(lambda: compiler.first_call_timed(target, "hf-generate", 1, cache_len, run), device)
    tokens = out[0, input_ids.shape[1]:].tolist()
    stats.target_forwards = len(tokens)
    return GenerationResult.finish(tokens, stats, tokenizer)

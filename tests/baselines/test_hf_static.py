"""HF generate over a static cache with its own compiled forward: the compiled baseline's reference."""

import pytest
import torch

from specdec.baselines.hf_static import hf_static_generate
from specdec.engine.forward import Compiler
from specdec.engine.loop import autoregressive_generate
from specdec.methods import METHODS, Request
from specdec.testing import FixtureSpec, random_model


def test_same_tokens_as_our_plain_decoding_and_first_call_recorded():
    target = random_model(FixtureSpec(num_layers=2), seed=5)
    ids = torch.randint(0, 256, (1, 9), generator=torch.Generator().manual_seed(2))
    compiler = Compiler(block_rows=(1,))
    ours = autoregressive_generate(target, ids, 16).tokens
    res = hf_static_generate(target, ids, 16, compiler)
    assert res.tokens == ours and res.stats.target_forwards == 16
    assert [(r.variant, r.cache_len) for r in compiler.records] == [("hf-generate", 256)]
    assert hf_static_generate(target, ids, 16, compiler).tokens == ours
    assert len(compiler.records) == 1


def test_compile_only_and_assisted_eager_only(pair, prompt):
    target, draft = pair
    with pytest.raises(ValueError, match="compiled only"):
        METHODS["hf-static"].run(Request(target, None, prompt, None, 4))
    with pytest.raises(ValueError, match="cannot run compiled"):
        METHODS["hf-assisted"].run(Request(target, draft, prompt, 2, 4, compiler=Compiler()))

"""Compiled forwards over static caches: greedy identity with eager decoding, padding, records, errors."""

import pytest
import torch

from specdec.engine import forward as fwd
from specdec.engine.forward import Compiler, CompileUnavailable, Forward, check_compile
from specdec.engine.loop import autoregressive_generate, speculative_generate
from specdec.testing import FixtureSpec, fixture_pair


@pytest.fixture(scope="module")
def small_pair():
    """A 2-layer target and a 1-layer draft: compiling them takes seconds, not minutes."""
    return fixture_pair(FixtureSpec(num_layers=2, draft_layers=1, eps=0.2))


@pytest.fixture(scope="module")
def compiler():
    return Compiler(block_rows=(1, 2, 4))


def test_padded_eager_forward_matches_unpadded(small_pair):
    """A 3-row block padded to 4 (eagerly, no compile) keeps the 3 real rows' logits and the length."""
    target, _ = small_pair
    ids = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = target(ids).logits[:, -3:]
        kv_fwd = Forward.for_lm(target, None, 10)
        kv_fwd(ids[:, :7])
        padded = fwd._pad(ids[:, 7:], 4)
        static = Forward(target, None, 10, use_cache=True)
        static.kv = fwd.KVCache.static(target.config, 32)
        static.cache = static.kv.cache
        static(ids[:, :7])
        out = target(padded, past_key_values=static.cache, use_cache=True,
                     attention_mask=static.kv.attention_mask(4, "cpu")).logits
        static.kv.wrote(3, 4)
    assert static.length == 10 and int(static.cache.get_seq_length()) == 10
    torch.testing.assert_close(out[:, :3], ref, rtol=1e-4, atol=1e-4)


def test_compiled_greedy_identical_to_eager(small_pair, compiler):
    """fp32: compiled plain and speculative decoding (N = 1, 2, 3, 5: exact, padded and eager-verified
    blocks) produce exactly the eager plain tokens; each graph is compiled once and recorded."""
    target, draft = small_pair
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(3))
    eager = autoregressive_generate(target, ids, 24).tokens
    assert autoregressive_generate(target, ids, 24, compile=compiler).tokens == eager
    for n in (1, 2, 3, 5):
        out = speculative_generate(target, draft, ids, num_draft_tokens=n, max_new_tokens=24, compile=compiler)
        assert out.tokens == eager, n
        assert 0 < out.stats.accepted < out.stats.drafted  # the fixture's draft is partly right
    keys = [(r.model, r.rows, r.cache_len, r.variant) for r in compiler.records]
    assert len(keys) == len(set(keys)) and {r.rows for r in compiler.records} == {1, 2, 4}
    n_graphs = len(compiler.records)
    speculative_generate(target, draft, ids, num_draft_tokens=3, max_new_tokens=24, compile=compiler)
    assert len(compiler.records) == n_graphs  # reused, not compiled again


def test_cache_len_buckets_and_shapes():
    c = Compiler(block_rows=(5, 1, 3))
    assert c.block_rows == (1, 3, 5) and c.max_draft == 4
    assert [c.shape_for(r) for r in (1, 2, 3, 4, 5, 6)] == [1, 3, 3, 5, 5, None]
    assert [c.cache_len(n) for n in (1, 256, 257, 600)] == [256, 256, 512, 1024]
    with pytest.raises(ValueError):
        Compiler(block_rows=(0, 2))


def test_compile_unavailable_is_one_line(monkeypatch):
    monkeypatch.setattr(fwd.shutil, "which", lambda name: None)
    with pytest.raises(CompileUnavailable) as err:
        check_compile("cpu")
    assert "\n" not in str(err.value) and "C++ compiler" in str(err.value)
    with pytest.raises(CompileUnavailable, match="cpu and cuda"):
        check_compile("meta")


def test_compiled_feature_head_and_auto_n_greedy_identical(small_pair, compiler):
    """The feature head (EAGLE) and auto N, compiled: still exactly the eager plain tokens; auto N
    never asks for more drafts than the largest compiled verify block."""
    from specdec.auto.autotune import auto_policy
    from specdec.auto.calibration import CalibrationCache
    from specdec.engine.drafters import FeatureHeadDrafter
    from specdec.models.feature_head import FeatureHead, FeatureHeadConfig

    target, draft = small_pair
    torch.manual_seed(0)
    head = FeatureHead(FeatureHeadConfig.for_target(target, "tiny", feature_layers=[1, 2]), target).eval()
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(4))
    eager = autoregressive_generate(target, ids, 24).tokens
    for n in (1, 3):
        out = speculative_generate(target, None, ids, num_draft_tokens=n, max_new_tokens=24,
                                   drafter=FeatureHeadDrafter(head), compile=compiler)
        assert out.tokens == eager and out.stats.drafted > 0
    policy = auto_policy(target, draft, ids, calibration_cache=CalibrationCache(), compiler=compiler)
    assert policy.n_max == compiler.max_draft and sorted(policy.costs.verify_cost) == [0, 1, 2, 3]
    assert policy.costs.verify_cost[2] == policy.costs.verify_cost[3]  # N = 2 pads to the 4-row block
    out = speculative_generate(target, draft, ids, num_draft_tokens=policy, max_new_tokens=24, compile=compiler)
    assert out.tokens == eager and max(policy.trace) <= compiler.max_draft


def test_compiled_generation_switches_attention_only_for_its_duration(small_pair, compiler):
    """On CPU a compiled generation runs the matmul-softmax attention; eager runs keep the model's own."""
    target, draft = small_pair
    target.set_attn_implementation("sdpa")
    draft.set_attn_implementation("sdpa")
    seen = []
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(5))
    speculative_generate(target, draft, ids, num_draft_tokens=1, max_new_tokens=6, compile=compiler,
                         on_step=lambda acc, tok: seen.append((target.config._attn_implementation,
                                                               draft.config._attn_implementation)))
    assert set(seen) == {("eager", "eager")}
    assert (target.config._attn_implementation, draft.config._attn_implementation) == ("sdpa", "sdpa")
    seen.clear()
    speculative_generate(target, draft, ids, num_draft_tokens=1, max_new_tokens=6,
                         on_step=lambda acc, tok: seen.append(target.config._attn_implementation))
    assert set(seen) == {"sdpa"}

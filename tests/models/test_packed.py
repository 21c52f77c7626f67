import pytest
import torch
import torch.nn.functional as F

from specdec.engine.loop import autoregressive_generate
from specdec.methods import METHODS, Request
from specdec.models.packed import PackedLinear, PackUnavailable, check_packable, packed_twin
from specdec.testing import fixture_pair, random_head

pytestmark = pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="packed verify needs torch with MKL")


def test_packed_linear_equals_linear_at_packed_and_other_row_counts():
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 80, bias=True)
    packed = PackedLinear.from_linear(linear, (3,))
    with torch.no_grad():
        strided = torch.randn(1, 48, 3).transpose(1, 2)  # (1, 3, 48), not contiguous
        for x in (*(torch.randn(shape) for shape in ((3, 48), (1, 3, 48), (1, 1, 48), (2, 48), (1, 5, 48))), strided):
            shape = tuple(x.shape)
            out = packed(x)
            assert out.shape == (*shape[:-1], 80)
            torch.testing.assert_close(out, F.linear(x, linear.weight, linear.bias), rtol=1e-5, atol=1e-5)


def test_twin_shares_the_weights_and_leaves_the_model_unchanged():
    target, _ = fixture_pair()
    twin, choices = packed_twin(target, (1, 3, 5), calibrate=False)
    assert [c.rows for c in choices] == [3, 5]  # one row is never packed: the baseline's own kernel
    assert all(isinstance(m, torch.nn.Linear) for m in (target.lm_head, target.model.layers[0].mlp.up_proj))
    assert isinstance(twin.lm_head, PackedLinear) and set(twin.lm_head.packs) == {3, 5}
    shared = {p.data_ptr() for p in target.parameters()}
    assert {p.data_ptr() for p in twin.parameters()} == shared
    assert twin.name_or_path != (target.name_or_path or target.config._name_or_path)  # its own calibration key
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        block = ids[:, :5]
        torch.testing.assert_close(twin(block).logits, target(block).logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("method", ["speculative", "eagle"])
def test_greedy_through_the_twin_equals_plain_decoding(method, n):
    """fp32: every verify of N + 1 rows runs packed, and the output is the target's own greedy output."""
    target, draft = fixture_pair()
    twin, _ = packed_twin(target, (n + 1,), calibrate=False)
    prompt = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(n))
    reference = autoregressive_generate(target, prompt, max_new_tokens=24).tokens
    helper = random_head(target) if method == "eagle" else draft
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        result = METHODS[method].run(Request(target, helper, prompt, n, 24, packed=twin))
    assert result.tokens == reference
    assert any("_mkl_linear" in e.key for e in prof.key_averages())  # the verifies ran MKL's packed product
    assert result.stats.drafted > 0  # N + 1-row verifies ran
    assert method == "eagle" or result.stats.accepted > 0  # the fixture's draft agrees; a random head rarely


class _Refuses(torch.nn.Module):
    def forward(self, *args, **kwargs):
        raise AssertionError("the baseline must run the target itself, not the packed twin")


def test_baseline_and_hf_methods_ignore_the_twin():
    target, draft = fixture_pair()
    prompt = torch.randint(0, 256, (1, 8), generator=torch.Generator().manual_seed(0))
    plain = autoregressive_generate(target, prompt, max_new_tokens=6).tokens
    assert METHODS["baseline"].run(Request(target, None, prompt, None, 6, packed=_Refuses())).tokens == plain
    assert METHODS["hf-assisted"].run(Request(target, draft, prompt, 2, 6, packed=_Refuses())).tokens == plain
    assert not METHODS["hf-default"].packs and not METHODS["hf-static"].packs
    with pytest.raises((AssertionError, AttributeError)):  # our loop takes the twin as its target
        METHODS["speculative"].run(Request(target, draft, prompt, 2, 6, packed=_Refuses()))


def test_calibration_reports_each_row_count_and_keeps_only_the_faster():
    target, _ = fixture_pair()
    twin, choices = packed_twin(target, (2, 3, 9), repeats=2)
    assert [c.rows for c in choices] == [1, 2, 3, 9]  # one row measured, as the baseline's check, never packed
    assert not choices[0].kept
    for c in choices:
        assert c.unpacked_ms > 0 and c.packed_ms > 0
        assert c.kept == (c.rows > 1 and c.packed_ms < 0.95 * c.unpacked_ms)
    assert set(twin.lm_head.packs) == {c.rows for c in choices if c.kept}


def test_refuses_half_precision_in_one_line():
    target, _ = fixture_pair()
    with pytest.raises(PackUnavailable, match="packed verify needs float32 weights") as err:
        check_packable(target.to(torch.bfloat16), (5,))
    assert "\n" not in str(err.value)

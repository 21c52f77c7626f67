"""measure_costs on tiny models; CalibrationCache measures once and round-trips through JSON."""

import pytest

from specdec.auto.calibration import CalibrationCache, Costs, default_cache_path, measure_costs
from specdec.testing import FixtureSpec, random_model


def test_costs_are_ratios_of_medians_over_the_measured_rounds(pair, prompt):
    """A scripted clock: each round times target(1 token), v(1), v(3), draft; the warm-up round is dropped."""
    target, draft = pair
    rounds = [(1.0, 1.0, 1.0, 1.0),  # warm-up: far off, must not count
              (0.010, 0.0150, 0.022, 0.0012),
              (0.012, 0.0165, 0.022, 0.0010),
              (0.011, 0.0180, 0.025, 0.0011)]
    script = iter(t for r in rounds for t in r)

    def scripted(fn, device):
        return fn(), next(script)

    costs = measure_costs(target, draft, prompt, ns=(1, 3), repeats=3, warmup=1, timer=scripted)
    assert costs.target_step_s == pytest.approx(0.011) and costs.draft_step_s == pytest.approx(0.0011)
    assert costs.c == pytest.approx(0.1)
    assert costs.verify_cost == pytest.approx({0: 1.0, 1: 1.5, 3: 2.0})


def test_measure_costs_without_draft_model(pair, prompt):
    costs = measure_costs(pair[0], None, prompt, ns=(1,), repeats=1, warmup=0)
    assert costs.c == 0.0 and costs.draft_step_s == 0.0


def test_cache_measures_once(pair, prompt):
    target, draft = pair
    cache = CalibrationCache()
    kw = dict(ns=(1, 2), repeats=1, warmup=0)
    first = cache.get_or_measure(target, draft, prompt, **kw)
    assert cache.get_or_measure(target, draft, prompt, **kw) is first
    assert cache.get(target, None) is None


def test_cache_persists_named_models_only(tmp_path, prompt):
    spec = FixtureSpec(num_layers=1)
    named, anonymous = random_model(spec), random_model(spec, seed=1)
    named.config._name_or_path = "fixture/one-layer"
    path = default_cache_path(tmp_path)
    cache = CalibrationCache(path)
    costs = Costs(0.01, 0.001, 0.1, {0: 1.0, 1: 1.5})
    cache.put(named, named, costs)
    cache.put(anonymous, anonymous, costs)
    reloaded = CalibrationCache(path)
    assert reloaded.get(named, named) == costs
    assert reloaded.get(anonymous, anonymous) is None
    assert "float32" in next(iter(reloaded.entries))


def test_measure_costs_interleaves_shapes(pair, prompt):
    """Every round times 1 token, then each N + 1, so a drift of the machine hits all shapes alike."""
    target, draft = pair
    widths = []
    handle = target.register_forward_hook(lambda m, args, kwargs, out: widths.append(
        (args[0] if args else kwargs["input_ids"]).shape[1]), with_kwargs=True)
    try:
        measure_costs(target, draft, prompt, ns=(1, 3), repeats=2, warmup=1)
    finally:
        handle.remove()
    assert widths == [prompt.shape[1]] + [1, 2, 4] * 3

"""Auto N: large N for a perfect draft, plain steps for a useless one, output always lossless."""

import pytest

from specdec import autoregressive_generate, speculative_generate
from specdec.autotune import AutoPolicy, auto_policy
from specdec.calibration import CalibrationCache, Costs
from specdec.decoding import GenerationStats

NEW = 40
# Fixed costs so decisions do not depend on timing noise: c = 0.3, v(N) = 1 + 0.05 N.
COSTS = Costs(0.01, 0.003, 0.3, {n: 1.0 + 0.05 * n for n in range(17)})


@pytest.fixture
def greedy_ref(pair, prompt):
    return autoregressive_generate(pair[0], prompt, max_new_tokens=NEW).tokens


def test_draft_equal_to_target_picks_large_n(pair, prompt, greedy_ref):
    target, _ = pair
    policy = auto_policy(target, target, prompt, costs=COSTS)
    res = speculative_generate(target, target, prompt, num_draft_tokens=policy, max_new_tokens=NEW)
    assert res.tokens == greedy_ref
    # α̂ climbs from the prior with every fully accepted step, and N with it.
    assert policy.trace == sorted(policy.trace) and max(policy.trace) >= 8
    assert res.stats.acceptance_rate == 1.0 and res.stats.target_forwards <= 10


def test_unrelated_draft_falls_back_to_plain_steps(pair, unrelated_draft, prompt, greedy_ref):
    target, _ = pair
    policy = auto_policy(target, unrelated_draft, prompt, costs=COSTS, probe_every=8)
    res = speculative_generate(target, unrelated_draft, prompt, num_draft_tokens=policy,
                               max_new_tokens=NEW)
    assert res.tokens == greedy_ref
    s = res.stats
    assert s.target_forwards <= s.new_tokens  # never more target passes than plain decoding
    assert len(policy.trace) == len(s.drafted_per_step)
    later = s.drafted_per_step[3:]
    assert sum(k == 0 for k in later) > len(later) / 2
    assert any(k == 1 for k in later)  # periodic probes keep the estimate alive


def test_policy_recovers_after_probes():
    policy = AutoPolicy(COSTS, probe_every=4)
    stats = GenerationStats()
    choices = []
    for _ in range(12):  # every draft rejected
        n = policy(stats)
        choices.append(n)
        stats.drafted_per_step.append(n)
        stats.accepted_per_step.append(0)
    assert choices[0] >= 1 and choices[-4:].count(0) == 3 and 1 in choices[-4:]
    for _ in range(12):  # every draft accepted from now on
        n = policy(stats)
        stats.drafted_per_step.append(n)
        stats.accepted_per_step.append(n)
    assert policy(stats) >= 4 and policy.alpha > 0.8


def test_auto_string_calibrates_once(pair, prompt, greedy_ref):
    target, draft = pair
    cache = CalibrationCache()
    policy = auto_policy(target, draft, prompt, calibration_cache=cache, n_max=4)
    assert set(policy.costs.verify_cost) == {0, 1, 2, 3, 4}
    assert auto_policy(target, draft, prompt, calibration_cache=cache).costs is policy.costs
    res = speculative_generate(target, draft, prompt, num_draft_tokens="auto", max_new_tokens=NEW)
    assert res.tokens == greedy_ref

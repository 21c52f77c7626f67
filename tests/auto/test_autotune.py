"""Auto N: large N for a perfect draft, plain steps for a useless one, output always lossless."""

import pytest

from specdec import autoregressive_generate, speculative_generate
from specdec.auto.autotune import AutoPolicy, auto_policy
from specdec.auto.calibration import CalibrationCache, Costs
from specdec.engine.loop import GenerationStats

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


def _drive(policy, stats, steps, accept_all):
    """Feed the policy ``steps`` outcomes (every draft accepted or every draft rejected)."""
    for _ in range(steps):
        n = policy(stats)
        stats.drafted_per_step.append(n)
        stats.accepted_per_step.append(n if accept_all else 0)


def test_policy_backs_off_probes_then_recovers():
    policy = AutoPolicy(COSTS, probe_every=4, probe_max=16)
    stats = GenerationStats()
    _drive(policy, stats, 60, accept_all=False)
    trace = policy.trace
    assert trace[0] >= 1 and 0 in trace
    plain = trace.index(0)
    assert set(trace[plain:]) == {0, 1}
    probes = [i for i in range(plain, len(trace)) if trace[i] == 1]
    # The first probe is the 4th decision after falling back; each failed probe doubles the
    # wait, up to probe_max: gaps 8, 16, 16, ...
    assert probes[0] == plain + 3
    assert [b - a for a, b in zip(probes, probes[1:])] == [8, 16, 16]
    _drive(policy, stats, 60, accept_all=True)  # every draft accepted from now on
    assert policy(stats) >= 4 and policy.alpha > 0.8
    assert policy._probe_wait == 0  # drafting pays again: the next fallback starts at probe_every


def test_policy_carries_alpha_to_next_generation(pair, unrelated_draft, prompt):
    target, _ = pair
    cache = CalibrationCache()
    cache.put(target, unrelated_draft, COSTS)
    first = auto_policy(target, unrelated_draft, prompt, calibration_cache=cache, probe_every=4)
    speculative_generate(target, unrelated_draft, prompt, num_draft_tokens=first, max_new_tokens=NEW)
    alpha, first_trace = first.alpha, list(first.trace)
    again = auto_policy(target, unrelated_draft, prompt, calibration_cache=cache, probe_every=4)
    assert again is first and again.alpha == alpha
    res = speculative_generate(target, unrelated_draft, prompt, num_draft_tokens=again, max_new_tokens=NEW)
    assert len(again.trace) == len(res.stats.drafted_per_step)  # the trace is per generation
    # The second generation starts where the first left off: plain from its first step, and with
    # fewer probes than the first one needed to learn that the draft is useless.
    assert again.trace[0] == 0 and sum(again.trace) < sum(first_trace)
    other = auto_policy(target, unrelated_draft, prompt, calibration_cache=cache, probe_every=8)
    assert other is not first  # other settings: a fresh policy


def test_auto_string_calibrates_once(pair, prompt, greedy_ref):
    target, draft = pair
    cache = CalibrationCache()
    policy = auto_policy(target, draft, prompt, calibration_cache=cache, n_max=4)
    assert set(policy.costs.verify_cost) == {0, 1, 2, 3, 4}
    assert auto_policy(target, draft, prompt, calibration_cache=cache, n_max=3).costs is policy.costs
    wider = auto_policy(target, draft, prompt, calibration_cache=cache).costs  # v(N) must reach N = 16: measured again
    assert max(wider.verify_cost) == 16 and auto_policy(target, draft, prompt, calibration_cache=cache, n_max=4).costs is wider
    tree = auto_policy(target, draft, prompt, calibration_cache=cache, width=4, max_nodes=20).costs  # 16 levels, 20 nodes
    assert max(tree.verify_cost) == 24 and auto_policy(target, draft, prompt, calibration_cache=cache).costs is tree
    res = speculative_generate(target, draft, prompt, num_draft_tokens="auto", max_new_tokens=NEW)
    assert res.tokens == greedy_ref


def test_hopeless_pair_never_runs_the_draft(pair, prompt, greedy_ref):
    # c = 0.5 and v(N) = 2 + N: even a draft right 90% of the time cannot beat plain decoding.
    slow = Costs(0.01, 0.005, 0.5, {n: 2.0 + n for n in range(17)})
    target, draft = pair
    policy = auto_policy(target, draft, prompt, costs=slow, probe_every=2)
    assert policy.hopeless and not AutoPolicy(COSTS).hopeless
    res = speculative_generate(target, draft, prompt, num_draft_tokens=policy, max_new_tokens=NEW)
    assert res.tokens == greedy_ref
    assert set(policy.trace) == {0} and res.stats.draft_forwards == 0
    assert res.stats.target_forwards == NEW  # exactly plain decoding


def test_padded_costs_price_each_n_at_the_block_it_pads_to():
    from specdec.auto.autotune import padded_costs
    from specdec.auto.calibration import Costs

    costs = Costs(0.02, 0.002, 0.1, {0: 1.0, 1: 1.1, 3: 1.3, 5: 1.6})
    padded = padded_costs(costs, 6)
    assert padded.verify_cost == {0: 1.0, 1: 1.1, 2: 1.3, 3: 1.3, 4: 1.6, 5: 1.6, 6: 1.6}
    assert (padded.c, padded.target_step_s) == (costs.c, costs.target_step_s)


def test_a_grown_draft_is_offered_every_level_whatever_alpha_and_a_chain_is_gated(pair, prompt):
    from specdec.auto.theory import best_n

    # c = 0.1, v(N) = 1 + 0.1 N. A chain's N comes from α̂; a tree or a priced chain is offered every level
    # each step and its drafter's price sizes the draft (to none when no draft beats a plain step).
    costs = Costs(0.01, 0.001, 0.1, {n: 1.0 + 0.1 * n for n in range(17)})
    chain, tree, priced = AutoPolicy(costs, n_max=5), AutoPolicy(costs, n_max=5, width=3), AutoPolicy(costs, priced=True)
    stats = GenerationStats()
    for policy in (chain, tree, priced):
        policy.successes, policy.failures = 0.0, 8.0  # α̂ = 1.2 / 10 = 0.12
    assert best_n(chain.alpha, 0.1, lambda n: 1.0 + 0.1 * n, 5)[0] == 0
    assert (chain(stats), tree(stats), priced(stats)) == (0, 5, 16)
    for policy in (chain, tree, priced):
        policy.successes, policy.failures = 1.0, 5.0  # α̂ = (1 + 1.2) / 8 = 0.275: one draft pays
    assert best_n(chain.alpha, 0.1, lambda n: 1.0 + 0.1 * n, 5)[0] == 1
    assert (chain(stats), tree(stats), priced(stats)) == (1, 5, 16)
    hopeless = Costs(0.01, 0.001, 0.1, {n: 1.0 + 3.0 * n for n in range(17)})  # no draft pays even at α 0.9
    assert AutoPolicy(hopeless, width=3).hopeless and AutoPolicy(hopeless, width=3)(stats) == 0
    assert AutoPolicy(hopeless, priced=True)(stats) == 0  # the head is then never run
    price = tree.tree_price()
    assert price.level == pytest.approx(0.1)
    assert price.verify == pytest.approx(tuple(1.0 + 0.1 * n for n in range(16)))  # v(0 .. 5 levels of 3 nodes)
    wide = AutoPolicy(Costs(0.01, 0.001, 0.1, {16: 2.6, 32: 4.2}), priced=True, extra_rows=12)
    assert wide.tree_price().verify[16:] == pytest.approx(tuple(2.6 + 0.1 * i for i in range(13)))  # a branch's rows
    target, draft = pair
    assert auto_policy(target, draft, prompt, costs=COSTS, width=3).n_max == 5  # 5 levels of 3 stay within 16 drafts
    cache = CalibrationCache()
    cache.put(target, draft, COSTS)
    kept = auto_policy(target, draft, prompt, calibration_cache=cache, width=3)
    assert kept is auto_policy(target, draft, prompt, calibration_cache=cache, width=3)
    assert kept is not auto_policy(target, draft, prompt, calibration_cache=cache)  # the chain's α̂ is its own
    with pytest.raises(ValueError, match="width"):
        auto_policy(target, draft, prompt, costs=COSTS, width=0)
    with pytest.raises(ValueError, match="extra_rows"):
        auto_policy(target, draft, prompt, costs=COSTS, extra_rows=-1)


def test_a_grown_draft_counts_its_first_level_only():
    """Priced drafts end where the head turns unsure, so their last level fails often; α̂ must not read that
    as a poor draft (it would gate drafting off)."""
    costs = Costs(0.01, 0.001, 0.1, {n: 1.0 + 0.1 * n for n in range(17)})
    chain, priced, tree = AutoPolicy(costs), AutoPolicy(costs, priced=True), AutoPolicy(costs, width=3)
    for policy in (chain, priced, tree):
        for _ in range(10):
            policy.observe(2, 3)  # two levels kept, the third rejected
        policy.observe(0, 4)
    assert chain.alpha < 0.75  # a chain: 2 of 3 drafts a step, the geometric α
    assert priced.alpha == tree.alpha > max(0.75, chain.alpha + 0.1)  # grown: the first level held in 10 of 11 steps
    assert (chain.grows, priced.grows, tree.grows) == (False, True, True)

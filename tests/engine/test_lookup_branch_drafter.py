"""A prompt-lookup branch grafted onto another drafter's proposal: lossless, priced, and it pays on copies."""

import pytest
import torch

from specdec import autoregressive_generate, speculative_generate
from specdec.auto.calibration import default_calibration_cache
from specdec.engine.drafters import FeatureHeadDrafter, LookupBranchDrafter, ModelDrafter, PromptLookupDrafter
from specdec.engine.sampling import SamplingParams
from specdec.engine.tree import TreePrice, graft
from specdec.testing import CHI2_CRITICAL_P001, FixtureSpec, chi_square, fixture_pair, random_head, second_token_marginal

NEW = 30


@pytest.fixture(scope="module")
def copying(pair):
    """A prompt that holds the target's own continuation, then its start again: lookup can copy it."""
    target, _ = pair
    start = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(2))
    ref = autoregressive_generate(target, start, max_new_tokens=NEW).tokens
    return torch.cat([start, torch.tensor([ref]), start], 1)


@pytest.mark.parametrize("n", [1, 2, 4, 8])
@pytest.mark.parametrize("width", [1, 3])
def test_greedy_output_equals_plain_decoding_and_the_branch_is_kept_on_copies(pair, copying, n, width):
    target, _ = pair
    ref = autoregressive_generate(target, copying, max_new_tokens=NEW).tokens
    plain = speculative_generate(target, None, copying, num_draft_tokens=n, max_new_tokens=NEW,
                                 drafter=FeatureHeadDrafter(random_head(target), tree_width=width))
    drafter = LookupBranchDrafter(FeatureHeadDrafter(random_head(target), tree_width=width), lookup_tokens=8)
    res = speculative_generate(target, None, copying, num_draft_tokens=n, max_new_tokens=NEW, drafter=drafter)
    assert res.tokens == ref
    assert drafter.grafted > 0
    assert res.stats.target_forwards < plain.stats.target_forwards  # copies of up to 8 beat a random head


def test_any_drafter_takes_a_branch_and_the_random_prompt_still_decodes_exactly(pair, prompt):
    target, draft = pair
    ref = autoregressive_generate(target, prompt, max_new_tokens=NEW).tokens
    res = speculative_generate(target, None, prompt, num_draft_tokens=3, max_new_tokens=NEW,
                               drafter=LookupBranchDrafter(ModelDrafter(draft), PromptLookupDrafter(2, 1), 4))
    assert res.tokens == ref


def _started(drafter, prompt, price=None, max_len=0):
    drafter.start(prompt, SamplingParams(), 256, None, max_len=max_len, tree_price=price)
    return drafter


def test_the_branch_leads_the_tree_and_stays_within_the_generations_length(pair):
    target, draft = pair
    seq = torch.tensor([[5, 6, 7, 8, 9, 1, 2, 3, 5, 6]])  # "5 6" recurs: lookup drafts 7 8 9 1 2 3 5 6
    d = _started(LookupBranchDrafter(ModelDrafter(draft), lookup_tokens=6), seq)
    out = d.propose(seq, 2)
    assert out.tokens[:6].tolist() == [7, 8, 9, 1, 2, 3] and out.parents[:6].tolist() == [-1, 0, 1, 2, 3, 4]
    assert out.q is None and len(out) in (6, 7, 8)  # the model's two drafts, less what the branch holds
    d = _started(LookupBranchDrafter(ModelDrafter(draft), lookup_tokens=6), seq, max_len=seq.shape[1] + 3)
    out = d.propose(seq, 2)  # 3 tokens left: 2 drafts and the target's own
    assert out.tokens[:2].tolist() == [7, 8] and (out.parents[2:] != 1).all()


def test_a_priced_branch_is_cut_where_its_rows_cost_more_than_its_chance_earns(pair):
    target, draft = pair
    seq = torch.tensor([[5, 6, 7, 8, 9, 1, 2, 3, 5, 6]])
    flat = TreePrice(level=0.1, verify=(1.0,) * 20)
    steep = TreePrice(level=0.1, verify=tuple(1.0 + 0.5 * i for i in range(20)))
    lengths = {}
    for name, price in (("flat", flat), ("steep", steep)):
        d = _started(LookupBranchDrafter(PromptLookupDrafter(), lookup_tokens=8), seq, price)
        lengths[name] = len(d.propose(seq, 1))
    # prior chance 1/2 per copy; the inner draft (1 token, no history) yields 1 token at cost c + v(1): flat rows cost
    # nothing, so all 8 copies are verified; at v(n) = 1 + n/2, 1 copy gives (1 + 0.5) / 2.1 = 0.71 tokens per cost,
    # above the inner draft's 1 / 1.6, and 2 copies (1 + 0.75) / 2.6 = 0.67 less
    assert lengths == {"flat": 8, "steep": 1}


def test_a_run_of_copies_is_priced_whole_where_v_jumps_at_the_first_row(pair):
    _, draft = pair
    seq = torch.tensor([[5, 6, 7, 8, 9, 1, 2, 3, 5, 6]])
    jump = TreePrice(level=0.3, verify=(1.0,) + (1.8,) * 20)  # fp32 without AVX-512: v(1) is most of v(8)
    lengths = [len(_started(LookupBranchDrafter(ModelDrafter(draft), lookup_tokens=t), seq, jump).propose(seq, 0))
               for t in (1, 8)]
    # a plain step (N = 0) yields 1 token at cost 1: one copy ((1 + 0.5) / 1.8) cannot earn the jump, 8 ((1 + 0.996) / 1.8) can
    assert lengths == [0, 8]


def test_auto_n_calibrates_and_prices_the_branchs_rows_beyond_the_heads_own(pair, copying):
    target, _ = pair
    drafter = LookupBranchDrafter(FeatureHeadDrafter(random_head(target)), lookup_tokens=8)
    speculative_generate(target, None, copying, num_draft_tokens="auto", max_new_tokens=NEW, drafter=drafter)
    (key, policy), = default_calibration_cache().policies.items()
    assert key.endswith(";priced;extra=8") and policy.n_max == 16
    assert len(policy.tree_price().verify) == 16 + 8 + 1  # v(0 .. the head's 16 levels and the branch's 8)
    assert max(policy.costs.verify_cost) >= 24  # measured that far, not held flat from v(16)


def test_the_branch_is_offered_on_plain_steps_and_the_stats_count_the_drafters_own_drafts(pair, copying):
    target, draft = pair
    ref = autoregressive_generate(target, copying, max_new_tokens=NEW).tokens
    res = speculative_generate(target, None, copying, num_draft_tokens=lambda stats: 0, max_new_tokens=NEW,
                               drafter=LookupBranchDrafter(ModelDrafter(draft), lookup_tokens=8))
    assert res.tokens == ref
    assert res.stats.target_forwards < NEW / 2  # copies kept on steps where the model drafts nothing
    assert res.stats.drafted == res.stats.draft_forwards == 0  # and none of them counted as its drafts
    res = speculative_generate(target, None, copying, num_draft_tokens=3, max_new_tokens=NEW,
                               drafter=LookupBranchDrafter(ModelDrafter(draft), lookup_tokens=8))
    alone = speculative_generate(target, draft, copying, num_draft_tokens=3, max_new_tokens=NEW)
    assert res.tokens == ref and res.stats.target_forwards < alone.stats.target_forwards
    assert max(res.stats.drafted_per_step) == 3  # the model's chain, not the branch's 8
    # the first step starts where the model alone starts: it keeps what the model alone would have kept
    assert res.stats.accepted_per_step[0] == alone.stats.accepted_per_step[0]


def test_auto_n_prices_a_branch_on_a_draft_models_chain(pair, copying):
    target, draft = pair
    ref = autoregressive_generate(target, copying, max_new_tokens=NEW).tokens
    drafter = LookupBranchDrafter(ModelDrafter(draft), lookup_tokens=8)
    res = speculative_generate(target, None, copying, num_draft_tokens="auto", max_new_tokens=NEW, drafter=drafter)
    assert res.tokens == ref and drafter.price is not None and drafter.grafted > 0
    (key, policy), = default_calibration_cache().policies.items()
    assert key.endswith(";extra=8") and not policy.grows  # the model's N gated by its own α̂, the branch priced
    assert len(drafter.price.verify) == 16 + 8 + 1


def test_the_branch_learns_how_often_its_copies_are_kept(pair):
    target, draft = pair
    seq = torch.tensor([[5, 6, 7, 8, 9, 1, 2, 3, 5, 6]])
    d = _started(LookupBranchDrafter(PromptLookupDrafter(), lookup_tokens=4), seq)
    d.propose(seq, 1)  # branch 7 8 9 1 from a 2-gram match
    d.propose(torch.cat([seq, torch.tensor([[7, 8, 4]])], 1), 1)  # the target kept 7 8, then said 4
    assert d.kept[2] == [1 + 2, 1 + 1]
    assert (d.inner_kept, d.inner_drafts) == (1, 1)  # the inner lookup's one draft, 7, kept too


@pytest.mark.parametrize("inner", ["head tree", "head chain", "draft model"])
def test_sampled_output_keeps_the_target_distribution_through_a_branch(inner):
    spec = FixtureSpec(vocab_size=16, hidden_size=16, num_layers=3, draft_layers=1, num_heads=2,
                       eps=0.3, head_scale=3.0, seed=5)
    target, draft = fixture_pair(spec)
    head = random_head(target, seed=1)
    prompt = torch.tensor([[3, 4, 5, 3, 4, 5, 3, 4]])  # "3 4" recurs: the branch drafts "5 3 4 ..."
    expected = second_token_marginal(target, prompt)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(16)
    accepted = grafted = 0
    make = {"head tree": lambda: FeatureHeadDrafter(head, tree_width=2),  # chosen nodes: point masses
            "head chain": lambda: FeatureHeadDrafter(head),  # a sampled chain with its q, beside the branch
            "draft model": lambda: ModelDrafter(draft)}[inner]
    for _ in range(1500):
        drafter = LookupBranchDrafter(make(), lookup_tokens=3)
        res = speculative_generate(target, None, prompt, num_draft_tokens=2, max_new_tokens=3,
                                   temperature=1.0, generator=g, drafter=drafter)
        counts[res.tokens[1]] += 1
        accepted, grafted = accepted + res.stats.accepted, grafted + drafter.grafted
    assert chi_square(counts, expected) < CHI2_CRITICAL_P001[15]
    assert accepted > 0 and grafted > 0


def test_a_sampled_chain_keeps_its_q_in_the_tree_and_the_branch_is_one_hot(pair):
    target, draft = pair
    seq = torch.tensor([[5, 6, 7, 8, 9, 1, 2, 3, 5, 6]])
    d = LookupBranchDrafter(ModelDrafter(draft), lookup_tokens=4)
    d.start(seq, SamplingParams(temperature=1.0), 256, torch.Generator().manual_seed(0))
    out = d.propose(seq, 2)
    own = out.own
    assert out.parents is not None and d.grafted == 1 and own.q is not None and len(own) == 2
    assert out.tokens[:4].tolist() == [7, 8, 9, 1] and out.q.shape == (len(out), own.q.shape[-1])
    _, _, where = graft(out.tokens[:4], own.tokens, None)  # the chain's nodes in the tree
    assert torch.equal(out.q[where], own.q)  # the chain's rows, also where the branch holds its token
    for node in set(range(len(out))) - set(where):
        assert out.q[node, out.tokens[node]] == 1.0 and out.q[node].sum() == 1.0  # the branch: point masses
    d = _started(LookupBranchDrafter(ModelDrafter(draft), lookup_tokens=4), seq)  # greedy: no q at all
    assert d.propose(seq, 2).q is None and d.grafted == 1


def test_refuses_compiling_and_an_empty_branch_in_one_line(pair, prompt):
    _, draft = pair
    with pytest.raises(ValueError, match="eager only"):
        LookupBranchDrafter(ModelDrafter(draft)).start(prompt, SamplingParams(), 256, None, compiler=object())
    with pytest.raises(ValueError, match="lookup_tokens"):
        LookupBranchDrafter(ModelDrafter(draft), lookup_tokens=0)


JUMP = TreePrice(level=0.3, verify=(1.0,) + (1.8,) * 20)  # v(1) is most of v(8): a poor β prices a branch out


def _offers(drafter, seq, count):
    """Branch lengths over ``count`` plain steps that all see the same match (nothing new committed)."""
    return [len(drafter.propose(seq, 0)) for _ in range(count)]


def test_a_match_size_priced_out_is_probed_and_each_probe_that_fails_doubles_the_wait(pair):
    seq = torch.tensor([[5, 6, 7, 8, 9, 1, 2, 3, 5, 6]])  # a 2-token match: lookup drafts 7 8 9 1 2 3 5 6
    d = _started(LookupBranchDrafter(PromptLookupDrafter(), lookup_tokens=8, probe_every=4, probe_max=8), seq, JUMP)
    d.kept[2] = [1, 9]  # β 0.1: (1 + Σ 0.1^i) / 1.8 < 1, no length beats a plain step
    lengths = _offers(d, seq, 24)
    probes = [i for i, n in enumerate(lengths) if n]
    assert probes == [3, 11, 19] and lengths[3] == 8 and d.probes == 3  # waits 4, then 8, held at probe_max
    d = _started(LookupBranchDrafter(PromptLookupDrafter(), lookup_tokens=8, probe_every=0), seq, JUMP)
    d.kept[2] = [1, 9]
    assert _offers(d, seq, 24) == [0] * 24  # probe_every=0: never


def test_the_wait_resets_once_the_price_takes_the_size_again_and_one_token_matches_are_not_probed(pair):
    seq = torch.tensor([[5, 6, 7, 8, 9, 1, 2, 3, 5, 6]])
    d = _started(LookupBranchDrafter(PromptLookupDrafter(), lookup_tokens=8, probe_every=2, probe_max=16), seq, JUMP)
    d.kept[2] = [1, 9]
    assert _offers(d, seq, 6) == [0, 8, 0, 0, 0, 8]  # waits 2, then 4
    d.kept[2] = [9, 1]  # β 0.9: the price takes the size again
    assert _offers(d, seq, 1) == [8] and d.waits[2] == [0, 2]
    d.kept[2] = [1, 9]
    assert _offers(d, seq, 2) == [0, 8]  # the wait back at probe_every
    single = torch.tensor([[5, 6, 7, 8, 9, 1, 2, 3, 4, 6]])  # only "6" recurs: a 1-token match
    d = _started(LookupBranchDrafter(PromptLookupDrafter(), lookup_tokens=8, probe_every=2, probe_max=16), single, JUMP)
    d.kept[1] = [1, 9]
    assert _offers(d, single, 12) == [0] * 12 and d.lookup.matched == 1


def test_probe_settings_are_checked(pair):
    _, draft = pair
    with pytest.raises(ValueError, match="probe_every"):
        LookupBranchDrafter(ModelDrafter(draft), probe_every=8, probe_max=4)

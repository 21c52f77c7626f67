"""Speculative decoding with a feature head: lossless in fp32 and in distribution, cache rolled back."""

import pytest
import torch

from specdec import autoregressive_generate, speculative_generate
from specdec.engine.drafters import FeatureHeadDrafter
from specdec.engine.sampling import SamplingParams
from specdec.engine.tree import TreePrice, greedy_tree_accept, tree_depths, tree_inputs, tree_size
from specdec.testing import CHI2_CRITICAL_P001, FixtureSpec, chi_square, fixture_pair, random_head, second_token_marginal

NEW = 40


@pytest.mark.parametrize("n", [1, 2, 4, 8])
@pytest.mark.parametrize("kw", [{}, {"feature_layers": [2, 4, 6]}, {"num_layers": 2}])
def test_greedy_output_equals_plain_decoding(pair, prompt, n, kw):
    target, _ = pair
    ref = autoregressive_generate(target, prompt, max_new_tokens=NEW).tokens
    res = speculative_generate(target, None, prompt, num_draft_tokens=n, max_new_tokens=NEW,
                               drafter=FeatureHeadDrafter(random_head(target, **kw)))
    assert res.tokens == ref
    assert res.stats.drafted > 0 and res.stats.target_forwards == len(res.stats.drafted_per_step) + 1


def test_reduced_head_never_proposes_ids_it_does_not_score(pair, prompt):
    target, _ = pair
    head = random_head(target, draft_vocab=list(range(0, 256, 2)))
    ref = autoregressive_generate(target, prompt, max_new_tokens=NEW).tokens
    proposed = []
    drafter = FeatureHeadDrafter(head)
    original = drafter.propose

    def spy(committed, n):
        draft = original(committed, n)
        proposed.extend(draft.tokens.tolist())
        return draft

    drafter.propose = spy
    res = speculative_generate(target, None, prompt, num_draft_tokens=3, max_new_tokens=NEW, drafter=drafter)
    assert res.tokens == ref
    assert proposed and all(t % 2 == 0 for t in proposed)


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("width", [1, 3])
def test_head_cache_after_a_rejection_equals_a_fresh_prefill(pair, prompt, width, num_layers):
    """Step the loop by hand (a chain, or a tree whose kept path's hidden rows are gathered); after a
    partly rejected draft the head must state what a fresh head would."""
    target, _ = pair
    head = random_head(target, num_layers=num_layers)
    params = SamplingParams()

    def fresh_drafter(committed):
        d = FeatureHeadDrafter(head, tree_width=width)
        d.start(committed[:, :-1], params, 256, None)
        hs = target(committed[:, :-1], output_hidden_states=True).hidden_states
        d.commit(committed.shape[1], hs, 0)
        return d

    with torch.inference_mode():
        committed = torch.cat([prompt, target(prompt).logits[:, -1:].argmax(-1)], 1)
        live = fresh_drafter(committed)
        draft = live.propose(committed, 4)
        rejections = 0
        for _ in range(6):
            start = committed.shape[1] - 1
            parents = draft.parents if draft.parents is not None else torch.arange(-1, len(draft) - 1)
            mask, positions = tree_inputs(parents, 0, committed.shape[1], target.dtype)
            out = target(torch.cat([committed, draft.tokens.view(1, -1)], 1), attention_mask=mask,
                         position_ids=positions, output_hidden_states=True)
            path, nxt = greedy_tree_accept(draft.tokens, parents, out.logits[0, start:].argmax(-1))
            rejections += len(path) < int(tree_depths(parents).max())
            committed = torch.cat([committed, draft.tokens[path].view(1, -1), torch.tensor([[nxt]])], 1)
            rows = torch.tensor([start] + [start + 1 + i for i in path])
            live.commit(committed.shape[1], tuple(h[:, rows] for h in out.hidden_states), start)
            assert live.forward.cache.get_seq_length() == start  # the drafted entries are gone
            fresh = fresh_drafter(committed)
            draft, reference = live.propose(committed, 4), fresh.propose(committed, 4)
            assert draft.tokens.tolist() == reference.tokens.tolist()
            assert live.forward.cache.get_seq_length() == fresh.forward.cache.get_seq_length()
            for la, lb in zip(live.forward.cache.layers, fresh.forward.cache.layers):
                torch.testing.assert_close(la.keys, lb.keys, rtol=1e-4, atol=1e-5)
                torch.testing.assert_close(la.values, lb.values, rtol=1e-4, atol=1e-5)
        assert rejections > 0  # a random head: rejections happened, so rollback was exercised


def test_sampled_output_keeps_the_target_distribution_through_the_head():
    spec = FixtureSpec(vocab_size=16, hidden_size=16, num_layers=3, draft_layers=1, num_heads=2,
                       eps=0.3, head_scale=3.0, seed=5)
    target, _ = fixture_pair(spec)
    head = random_head(target, seed=1, draft_vocab=list(range(12)))  # q = 0 on four ids
    prompt = torch.tensor([[1, 2, 3, 4]])
    expected = second_token_marginal(target, prompt)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(16)
    accepted = drafted = 0
    for _ in range(1500):
        res = speculative_generate(target, None, prompt, num_draft_tokens=3, max_new_tokens=3,
                                   temperature=1.0, generator=g, drafter=FeatureHeadDrafter(head))
        counts[res.tokens[1]] += 1
        accepted, drafted = accepted + res.stats.accepted, drafted + res.stats.drafted
    assert chi_square(counts, expected) < CHI2_CRITICAL_P001[15]
    assert 0 < accepted < drafted


SMALL = FixtureSpec(vocab_size=16, hidden_size=16, num_layers=3, draft_layers=1, num_heads=2, eps=0.3,
                    head_scale=3.0, seed=8)  # 16 ids: a random head's tree often holds the target's token


@pytest.mark.parametrize("width,nodes", [(2, None), (4, None), (4, 10), (8, 24)])
def test_tree_greedy_output_equals_plain_decoding(width, nodes):
    target, _ = fixture_pair(SMALL)
    head = random_head(target, seed=2, feature_layers=[1, 2, 3])
    prompt = torch.tensor([[4, 9, 12, 0, 3, 8, 1]])
    ref = autoregressive_generate(target, prompt, max_new_tokens=NEW).tokens
    accepted = 0
    for n in (1, 2, 4, 8):
        res = speculative_generate(target, None, prompt, num_draft_tokens=n, max_new_tokens=NEW,
                                   drafter=FeatureHeadDrafter(head, tree_width=width, tree_nodes=nodes))
        assert res.tokens == ref
        assert max(res.stats.drafted_per_step) <= n
        accepted += res.stats.accepted
    assert accepted >= 4 * width  # paths were kept (off the front too), so the head got their hidden states


@pytest.mark.parametrize("width", [1, 4])
def test_auto_n_equals_plain_decoding_and_sizes_each_draft_by_the_heads_confidence(width):
    """A tree (EAGLE-2) or a chain (a tree one wide): every level offered, the price cuts drafts short."""
    from specdec.auto.calibration import default_calibration_cache

    target, _ = fixture_pair(SMALL)
    head = random_head(target, seed=2, feature_layers=[1, 2, 3])
    prompt = torch.tensor([[4, 9, 12, 0, 3, 8, 1]])
    ref = autoregressive_generate(target, prompt, max_new_tokens=NEW).tokens
    default_calibration_cache.cache_clear()
    nodes = 12 if width > 1 else None
    res = speculative_generate(target, None, prompt, num_draft_tokens="auto", max_new_tokens=NEW,
                               drafter=FeatureHeadDrafter(head, tree_width=width, tree_nodes=nodes))
    assert res.tokens == ref
    (key, policy), = default_calibration_cache().policies.items()
    assert key.endswith(";tree=4;nodes=12" if width > 1 else ";priced") and policy.grows
    assert policy.width == width and policy.n_max == 16  # a tree capped by nodes: depth is free
    assert len(policy.tree_price().verify) == (13 if width > 1 else 17)  # v(0 .. the most nodes it may verify)
    steps = res.stats.drafted_per_step
    assert len(policy.trace) == len(steps) and all(d <= n for n, d in zip(policy.trace, steps))  # levels offered
    assert set(policy.trace) <= {0, 1, 16} and min(steps) < 16  # all 16 offered; the price drafted fewer
    default_calibration_cache.cache_clear()


def _proposal(head, target, prompt, committed, n, price=None, **kw):
    d = FeatureHeadDrafter(head, **kw)
    d.start(prompt, SamplingParams(), 256, None, tree_price=price)
    d.commit(prompt.shape[1] + 1, target(prompt, output_hidden_states=True).hidden_states, 0)
    return d, d.propose(committed, n)


def test_tree_holds_the_heads_likeliest_continuations_with_the_best_chain_first(pair, prompt):
    target, _ = pair
    head = random_head(target)
    committed = torch.cat([prompt, torch.tensor([[9]])], 1)
    with torch.inference_mode():
        d, tree = _proposal(head, target, prompt, committed, 4, tree_width=3)  # 12 of 3 + 3 levels of 3 × 3 candidates
        assert len(tree) == tree_size(4, 3) == 12 and d.forwards == 4  # catch-up + one head forward per level after the first
        parents = tree.parents.tolist()
        assert all(p < i for i, p in enumerate(parents)) and int(tree_depths(tree.parents).max()) <= 4
        first = {tree.tokens[i].item() for i, p in enumerate(parents) if p == -1}
        _, chain = _proposal(head, target, prompt, committed, 2)
        fresh = FeatureHeadDrafter(head)
        fresh.start(prompt, SamplingParams(), 256, None)
        fresh.commit(prompt.shape[1] + 1, target(prompt, output_hidden_states=True).hidden_states, 0)
        logits = head.logits(fresh._catch_up(committed))[0, -1]
        assert first <= set(logits.topk(3).indices.tolist())  # the first level: the head's likeliest ids
        assert parents[:2] == [-1, 0]  # the best chain at the front:
        assert tree.tokens[:2].tolist() == chain.tokens.tolist()  # the head's argmax, then its argmax after it
        d.commit(committed.shape[1], None)
        assert d.forward.cache.get_seq_length() == prompt.shape[1]  # the tree's entries are rolled back
        _, small = _proposal(head, target, prompt, committed, 4, tree_width=3, tree_nodes=7)
        assert len(small) == 7 and small.tokens[0] == logits.argmax()  # capped at 7 nodes
        assert all(p < i for i, p in enumerate(small.parents.tolist()))


def test_a_priced_tree_drafts_only_the_levels_and_nodes_its_confidence_pays_for(pair, prompt):
    target, _ = pair
    head = random_head(target)
    committed = torch.cat([prompt, torch.tensor([[9]])], 1)
    with torch.inference_mode():
        free, full = _proposal(head, target, prompt, committed, 4, TreePrice(0.0, (1.0, 1.0)), tree_width=3)
        _, unpriced = _proposal(head, target, prompt, committed, 4, tree_width=3)
        assert full.tokens.tolist() == unpriced.tokens.tolist() and free.forwards == 4  # free: EAGLE-2's fixed tree
        shallow, one_level = _proposal(head, target, prompt, committed, 4, TreePrice(100.0, (1.0, 1.0)), tree_width=3)
        assert shallow.forwards == 1 and tree_depths(one_level.parents).tolist() == [1, 1, 1]  # no level worth a head step
        _, single = _proposal(head, target, prompt, committed, 4, TreePrice(0.0, (1.0, 1.0, 100.0)), tree_width=3)
        assert single.tokens.tolist() == full.tokens[:1].tolist()  # no second node worth its row: the likeliest alone
        mid_price = TreePrice(0.0, tuple(1.0 + 0.002 * n for n in range(13)))
        _, mid = _proposal(head, target, prompt, committed, 4, mid_price, tree_width=3)
        assert _paths(mid) <= _paths(full) and 1 <= len(mid) <= len(full)  # the likeliest of the same candidates


def test_a_priced_chain_drafts_the_prefix_its_confidence_pays_for(pair, prompt):
    target, _ = pair
    head = random_head(target)
    committed = torch.cat([prompt, torch.tensor([[9]])], 1)
    with torch.inference_mode():
        free, full = _proposal(head, target, prompt, committed, 5, TreePrice(0.0, (1.0, 1.0)))
        _, unpriced = _proposal(head, target, prompt, committed, 5)
        assert full.tokens.tolist() == unpriced.tokens.tolist() and len(full) == 5 and free.forwards == 5
        dear, one = _proposal(head, target, prompt, committed, 5, TreePrice(100.0, (1.0, 1.0)))
        assert one.tokens.tolist() == full.tokens[:1].tolist() and dear.forwards == 1  # no second head step pays
        _, row = _proposal(head, target, prompt, committed, 5, TreePrice(0.0, (1.0, 1.0, 100.0)))
        assert row.tokens.tolist() == full.tokens[:1].tolist()  # drafted on, but no second verify row pays
        d, mid = _proposal(head, target, prompt, committed, 5, TreePrice(0.3, tuple(1.0 + 0.05 * n for n in range(6))))
        assert mid.tokens.tolist() == full.tokens[:len(mid)].tolist() and d.forwards >= len(mid)
        assert mid.parents is None  # still a chain


@pytest.mark.parametrize("width", [1, 3])
def test_a_draft_that_does_not_beat_a_plain_step_is_not_verified(pair, prompt, width):
    """Where v jumps at the first drafted row, an unsure head drafts, finds no draft worth its verify, and
    the step is a plain one: the output is still plain decoding's."""
    target, _ = pair
    head = random_head(target)
    committed = torch.cat([prompt, torch.tensor([[9]])], 1)
    with torch.inference_mode():
        d, none = _proposal(head, target, prompt, committed, 4, TreePrice(0.0, (1.0, 50.0)), tree_width=width)
        assert len(none) == 0 and none.parents is None and d.forwards >= 1  # the head ran, nothing kept
    from specdec.auto.autotune import AutoPolicy
    from specdec.auto.calibration import Costs

    # v 3 from one drafted row on: at α 0.9, 4 drafts would pay (4.1 tokens for 3.04); a random head's q does not
    policy = AutoPolicy(Costs(1.0, 0.01, 0.01, {0: 1.0, 1: 3.0}), priced=width == 1, width=width, n_max=4)
    ref = autoregressive_generate(target, prompt, max_new_tokens=NEW).tokens
    res = speculative_generate(target, None, prompt, num_draft_tokens=policy, max_new_tokens=NEW,
                               drafter=FeatureHeadDrafter(head, tree_width=width))
    assert res.tokens == ref and not policy.hopeless and set(policy.trace) == {4}  # every level offered ...
    assert 0 in res.stats.drafted_per_step and res.stats.draft_forwards > 0  # ... and some steps drafted none


def test_a_policy_that_leaves_sizes_to_the_drafter_refuses_one_that_cannot(pair, prompt):
    from specdec.auto.autotune import AutoPolicy
    from specdec.auto.calibration import Costs

    target, draft = pair
    policy = AutoPolicy(Costs(1.0, 0.1, 0.1, {0: 1.0, 1: 1.0}), priced=True)
    with pytest.raises(ValueError, match="cannot"):
        speculative_generate(target, draft, prompt, num_draft_tokens=policy, max_new_tokens=4)


def _paths(draft) -> set[tuple[int, ...]]:
    """Each node of a tree as the tokens from the root to it."""
    paths: list[tuple[int, ...]] = []
    for t, p in zip(draft.tokens.tolist(), draft.parents.tolist()):
        paths.append((paths[p] if p >= 0 else ()) + (t,))
    return set(paths)


@pytest.mark.parametrize("priced", [False, True])
@pytest.mark.parametrize("width", [1, 3])
def test_sampled_output_keeps_the_target_distribution_through_a_tree(priced, width):
    from specdec.auto.autotune import AutoPolicy
    from specdec.auto.calibration import Costs

    target, _ = fixture_pair(SMALL)
    head = random_head(target, seed=2, feature_layers=[1, 2, 3])
    prompt = torch.tensor([[4, 9, 12, 0]])
    expected = second_token_marginal(target, prompt)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(16)
    accepted = 0
    # priced: auto N's policy (fixed costs, no timing) offers 2 levels and the draft is sized by confidence
    n = AutoPolicy(Costs(1.0, 0.1, 0.1, {0: 1.0, 1: 1.0, 7: 1.3}), n_max=2, width=width, max_nodes=7 if width > 1 else None,
                   priced=width == 1, prior_alpha=0.9, alpha_ceiling=0.9, probe_every=0) if priced else 2
    for _ in range(1500):
        res = speculative_generate(target, None, prompt, num_draft_tokens=n, max_new_tokens=3, temperature=1.0,
                                   generator=g, drafter=FeatureHeadDrafter(head, tree_width=width,
                                                                           tree_nodes=7 if width > 1 else None))
        counts[res.tokens[1]] += 1
        accepted += res.stats.accepted
    assert chi_square(counts, expected) < CHI2_CRITICAL_P001[15]
    assert accepted > 0


def test_tree_drafting_refuses_compiling_in_one_line(pair, prompt):
    target, _ = pair
    drafter = FeatureHeadDrafter(random_head(target), tree_width=2)
    with pytest.raises(ValueError, match="eager only"):
        drafter.start(prompt, SamplingParams(), 256, None, compiler=object())
    with pytest.raises(ValueError, match="tree_width"):
        FeatureHeadDrafter(random_head(target), tree_width=0)
    with pytest.raises(ValueError, match="tree_nodes"):
        FeatureHeadDrafter(random_head(target), tree_width=2, tree_nodes=0)


def _context_head(target, scale, bias, **kw):
    head = random_head(target, draft_vocab=list(range(0, target.config.vocab_size, 2)), **kw)
    head.head_config.context_scale, head.head_config.context_bias = scale, bias
    return head


@pytest.mark.parametrize("width", [1, 3])
def test_a_head_with_context_columns_proposes_the_contexts_ids_and_stays_lossless(pair, prompt, width):
    target, _ = pair
    head = _context_head(target, 1.0, 5.0)  # the context's odd ids score high: drafted often
    ref = autoregressive_generate(target, prompt, max_new_tokens=NEW).tokens
    seen = set(prompt[0].tolist())
    odd = []
    drafter = FeatureHeadDrafter(head, tree_width=width)
    original = drafter.propose

    def spy(committed, n):
        draft = original(committed, n)
        held = set(committed[0].tolist())
        odd.extend(t for t in draft.tokens.tolist() if t % 2)
        assert all(t in held for t in draft.tokens.tolist() if t % 2)  # an odd id only once the context holds it
        return draft

    drafter.propose = spy
    for n in (1, 2, 4):
        res = speculative_generate(target, None, prompt, num_draft_tokens=n, max_new_tokens=NEW, drafter=drafter)
        assert res.tokens == ref
    assert odd and seen & set(odd)


def test_sampled_output_keeps_the_target_distribution_through_context_columns():
    spec = FixtureSpec(vocab_size=16, hidden_size=16, num_layers=3, draft_layers=1, num_heads=2,
                       eps=0.3, head_scale=3.0, seed=5)
    target, _ = fixture_pair(spec)
    head = _context_head(target, 1.0, 1.0, seed=1)  # q > 0 on the prompt's odd ids, 0 on the others
    prompt = torch.tensor([[1, 2, 3, 4]])
    expected = second_token_marginal(target, prompt)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(16)
    drafted_odd = accepted = 0
    drafter = FeatureHeadDrafter(head)
    original = drafter.propose

    def spy(committed, n):
        nonlocal drafted_odd
        draft = original(committed, n)
        drafted_odd += sum(t % 2 for t in draft.tokens.tolist())
        absent = [t for t in range(1, 16, 2) if t not in committed[0].tolist()]
        assert (draft.q[:, absent] == 0).all()  # an odd id the context lacks keeps q = 0
        return draft

    drafter.propose = spy
    for _ in range(1500):
        res = speculative_generate(target, None, prompt, num_draft_tokens=3, max_new_tokens=3,
                                   temperature=1.0, generator=g, drafter=drafter)
        counts[res.tokens[1]] += 1
        accepted += res.stats.accepted
    assert chi_square(counts, expected) < CHI2_CRITICAL_P001[15]
    assert accepted > 0 and drafted_odd > 100  # ids 1 and 3, from the prompt, were drafted with q > 0

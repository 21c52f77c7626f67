"""Token trees: depths, the tree attention mask and positions, greedy and sampled acceptance (no model),
and one tiny target scoring a tree's nodes exactly as it scores each root-to-node path on its own."""

import pytest
import torch

from specdec.engine.tree import (
    TreePrice,
    ancestors,
    contiguous_prefix,
    graft,
    greedy_tree_accept,
    reached,
    rerank,
    sampled_tree_accept,
    tree_depths,
    tree_inputs,
    tree_size,
)
from specdec.testing import CHI2_CRITICAL_P001, chi_square

# root ─┬─ 0 (a) ─┬─ 2 (c) ── 5 (f)
#       │         └─ 3 (d)
#       └─ 1 (b) ──── 4 (e)
PARENTS = torch.tensor([-1, -1, 0, 0, 1, 2])
TOKENS = torch.tensor([10, 11, 12, 13, 14, 15])


def test_depths_and_ancestors():
    assert tree_depths(PARENTS).tolist() == [1, 1, 2, 2, 2, 3]
    anc = ancestors(PARENTS)
    assert anc[5].nonzero().flatten().tolist() == [0, 2, 5]
    assert anc[4].nonzero().flatten().tolist() == [1, 4]
    with pytest.raises(ValueError, match="earlier node"):
        tree_depths(torch.tensor([-1, 2, 0]))


def test_mask_shows_each_node_the_cache_the_prefix_and_its_ancestors_only():
    mask, positions = tree_inputs(PARENTS, past=4, prefix=2, dtype=torch.float32)
    assert mask.shape == (1, 1, 8, 12)
    see = mask[0, 0] == 0
    assert see[:, :4].all()  # the cache
    assert see[0, 4] and not see[0, 5] and see[1, 4:6].all()  # the prefix is causal
    assert see[2:, 4:6].all()  # every node sees the prefix
    assert see[2 + 5, 6:].tolist() == [True, False, True, False, False, True]  # node 5: 0, 2 and itself
    assert see[2 + 4, 6:].tolist() == [False, True, False, False, True, False]
    assert positions.tolist() == [[4, 5, 6, 6, 7, 7, 7, 8]]
    assert mask[0, 0, 2, 7] == torch.finfo(torch.float32).min


@pytest.mark.parametrize("argmax, path, nxt", [
    ([11, 0, 14, 0, 0, 99, 0], [1, 4], 99),  # down the second branch, then the target's own token
    ([10, 12, 0, 15, 0, 0, 7], [0, 2, 5], 7),  # the whole deepest path, then the bonus token
    ([10, 13, 0, 0, 5, 0, 0], [0, 3], 5),  # an off-front child of the first node
    ([42, 0, 0, 0, 0, 0, 0], [], 42),  # no depth-1 node matches
])
def test_greedy_tree_accept_follows_the_targets_argmax(argmax, path, nxt):
    assert greedy_tree_accept(TOKENS, PARENTS, torch.tensor(argmax)) == (path, nxt)


def test_sampled_tree_accept_emits_tokens_distributed_as_the_target():
    # V = 10 ids; the tree: root -> nodes 0 (id 1), 1 (id 2); node 0 -> nodes 2 (id 3), 3 (id 4).
    parents, tokens = torch.tensor([-1, -1, 0, 0]), torch.tensor([1, 2, 3, 4])
    g = torch.Generator().manual_seed(0)
    p = torch.rand(5, 10, generator=g) + 0.2
    p = p / p.sum(-1, keepdim=True)  # target rows: the root, then each node; no id so rare that χ² misjudges it
    first, second = torch.zeros(10), torch.zeros(10)  # second: the token after id 1 (node 0)
    kept = 0
    for _ in range(6000):
        path, nxt = sampled_tree_accept(tokens, parents, p, g)
        out = tokens[path].tolist() + [nxt]
        first[out[0]] += 1
        if out[0] == 1:
            second[out[1]] += 1
        kept += len(path)
        assert all(parents[b] == a for a, b in zip([-1, *path], path))  # a root-to-leaf walk
    assert chi_square(first, p[0]) < CHI2_CRITICAL_P001[9]
    assert chi_square(second, p[1]) < CHI2_CRITICAL_P001[9]  # node 0's row, whichever way id 1 came out
    assert kept > 0


def test_a_drawn_draft_beside_a_chosen_one_keeps_the_target_distribution_whether_or_not_they_merge():
    # a chosen (point-mass) branch token 1 and a draft x drawn from q at the same node, grafted as the
    # lookup branch does it: merged into one node (with x's q) when x is 1. Tried in the other order (the
    # chosen one first) the output would be 1 three times in four, not half the time
    g = torch.Generator().manual_seed(1)
    p = torch.tensor([[0.0625, 0.5, 0.1875, 0.25]] * 3)
    q = torch.tensor([0.5 / 3, 0.5, 0.5 / 3, 0.5 / 3])
    first, kept, merged = torch.zeros(4), 0, 0
    for _ in range(4000):
        x = torch.multinomial(q, 1, generator=g)
        tokens, parents, where = graft(torch.tensor([1]), x, None)
        rows = torch.nn.functional.one_hot(tokens, 4).float()
        rows[torch.tensor(where)] = q
        path, nxt = sampled_tree_accept(tokens, parents, p[: len(tokens) + 1], g, rows)
        first[(tokens[path].tolist() + [nxt])[0]] += 1
        kept, merged = kept + bool(path), merged + (len(tokens) == 1)
    assert chi_square(first, p[0]) < CHI2_CRITICAL_P001[3]
    assert kept > 1000 and merged > 1500  # both drafts are kept at times, and half the trials merge them


def test_one_hot_rows_are_the_point_masses_of_no_q():
    parents, tokens = torch.tensor([-1, -1, 0]), torch.tensor([1, 2, 3])
    p = torch.softmax(torch.randn(4, 6, generator=torch.Generator().manual_seed(3)), -1)
    rows = torch.nn.functional.one_hot(tokens, 6).float()
    for seed in range(20):
        a = sampled_tree_accept(tokens, parents, p, torch.Generator().manual_seed(seed))
        assert sampled_tree_accept(tokens, parents, p, torch.Generator().manual_seed(seed), rows) == a


def test_sampled_tree_accept_keeps_a_certain_child_and_never_emits_a_rejected_one():
    parents, tokens = torch.tensor([-1, -1, 0]), torch.tensor([1, 2, 3])
    p = torch.zeros(4, 5)
    p[0, 2] = 1.0  # the root's target is certain of id 2 (node 1), a leaf
    p[2, 0] = 1.0  # after node 1 it is certain of id 0
    assert sampled_tree_accept(tokens, parents, p) == ([1], 0)
    p = torch.zeros(4, 5)
    p[0, 0], p[0, 4] = 0.5, 0.5  # neither child's id: both are tried and rejected
    for _ in range(50):
        path, nxt = sampled_tree_accept(tokens, parents, p)
        assert path == [] and nxt in (0, 4)


def test_tree_size_counts_the_verified_nodes():
    assert tree_size(4, 1) == 4 and tree_size(4, 3) == 12  # a chain; levels × width
    assert tree_size(1, 8, 16) == 8 and tree_size(3, 8, 16) == 16 and tree_size(3, 4, 100) == 12  # capped
    assert tree_size(0, 3, 16) == 0


def _candidates():
    # root children a (-0.1), b (-1.0); a's children c (-0.3), d (-2.0); b's child e (-1.2); c's child f (-0.35)
    tokens = torch.tensor([10, 11, 12, 13, 14, 15])
    parents = torch.tensor([-1, -1, 0, 0, 1, 2])
    scores = torch.tensor([-0.1, -1.0, -0.3, -2.0, -1.2, -0.35])
    return tokens, parents, scores


@pytest.mark.parametrize("budget,kept", [(1, [10]), (3, [10, 12, 15]), (4, [10, 12, 15, 11]),
                                         (5, [10, 12, 15, 11, 14]), (9, [10, 12, 15, 11, 14, 13])])
def test_rerank_keeps_the_likeliest_candidates_parents_first_best_chain_in_front(budget, kept):
    tokens, parents, scores = _candidates()
    out, out_parents = rerank(tokens, parents, scores, budget)
    assert out.tolist() == kept
    par = out_parents.tolist()
    assert all(p < i for i, p in enumerate(par))  # parents precede children: the kept set is a tree
    old = {int(t): int(parents[i]) for i, t in enumerate(tokens)}  # each kept node keeps its parent
    assert all((old[t] < 0 and p < 0) or (p >= 0 and int(tokens[old[t]]) == out[p]) for t, p in zip(out.tolist(), par))
    assert par[:3] == [-1, 0, 1][:budget]  # the chain a -> c -> f at the front


def test_rerank_breaks_ties_towards_the_ancestor():
    tokens = torch.tensor([5, 6, 7])
    parents = torch.tensor([-1, 0, 1])
    scores = torch.tensor([-0.5, -0.5, -0.5])  # children certain under the head (log q 0): equal joint scores
    out, par = rerank(tokens, parents, scores, 2)
    assert out.tolist() == [5, 6] and par.tolist() == [-1, 0]


def test_contiguous_prefix():
    assert contiguous_prefix([0, 1, 2]) == 3
    assert contiguous_prefix([0, 2, 5]) == 1
    assert contiguous_prefix([1, 4]) == 0
    assert contiguous_prefix([]) == 0


def test_a_tree_pass_scores_each_node_as_its_own_path_would(pair):
    """The property tree verification rests on: a node's logits equal a causal pass over its path."""
    target, _ = pair
    cached, prefix = torch.arange(3, 11).view(1, -1), torch.tensor([[20, 21]])
    with torch.inference_mode():
        past = target(cached, use_cache=True).past_key_values
        mask, positions = tree_inputs(PARENTS, cached.shape[1], prefix.shape[1], target.dtype)
        block = torch.cat([prefix, TOKENS.view(1, -1)], 1)
        tree_logits = target(block, past_key_values=past, attention_mask=mask, position_ids=positions).logits[0]
        for node in range(len(TOKENS)):
            path = ancestors(PARENTS)[node].nonzero().flatten()
            seq = torch.cat([cached, prefix, TOKENS[path].view(1, -1)], 1)
            causal = target(seq).logits[0, -1]
            torch.testing.assert_close(tree_logits[prefix.shape[1] + node], causal, rtol=1e-4, atol=1e-4)


def test_tree_price_keeps_the_budget_of_most_tokens_per_cost_and_expands_when_a_level_can_earn_it():
    import math

    price = TreePrice(level=0.1, verify=(1.0, 1.05, 1.1, 1.15, 1.2))  # v held at 1.2 beyond 4 nodes
    scores = torch.tensor([0.9, 0.3, 0.06, 0.05]).log()
    # (1 + Σq) / (c + v(n)): n = 1: 1.9 / 1.15, n = 2: 2.2 / 1.2 (best), n = 3: 2.26 / 1.25, n = 4: 2.31 / 1.3
    n, rate = price.rate(scores, cap=32, levels=1)
    assert n == 2 and rate == pytest.approx(2.2 / 1.2) and price.budget(scores, cap=32, levels=1) == 2
    assert price.budget(scores, cap=1, levels=1) == 1
    assert price.rate(scores, cap=32, levels=3)[1] == pytest.approx(2.2 / 1.4)  # each level adds c
    # another level pays when its best child could earn c + v(3) - v(2) = 0.15 at that rate: q >= 0.275
    assert price.worth_expanding(torch.tensor([math.log(0.3)]), scores, 32, 1)
    assert not price.worth_expanding(torch.tensor([math.log(0.25), math.log(0.1)]), scores, 32, 1)
    steep = TreePrice(0.1, (1.0, 1.05, 5.0))
    assert steep.budget(scores, 32, 1) == 1 and steep.cost(100) == 5.0  # no second node pays its row
    # v jumps at the first drafted row (fp32 without AVX-512): a draft must beat a plain step after the same
    # head steps, 1 / (c + 1) = 0.909 here, or none is verified
    jump = TreePrice(0.1, (1.0, 1.7, 1.72, 1.74))
    assert jump.budget(torch.tensor([0.4, 0.1]).log(), 32, 1) == 0  # best: n = 2, 1.5 / 1.82 = 0.82
    assert jump.budget(torch.tensor([0.5, 0.2]).log(), 32, 1) == 2  # 1.7 / 1.82 = 0.934
    free = TreePrice(0.0, (1.0, 1.0))
    assert free.budget(scores, cap=3, levels=1) == 3 and free.worth_expanding(scores.min().view(1), scores, 3, 1)
    for level, verify in ((-0.1, (1.0, 1.0)), (0.1, (1.0,)), (0.1, (1.0, 0.0))):
        with pytest.raises(ValueError, match="tree prices"):
            TreePrice(level, verify)


def test_graft_puts_the_chain_first_and_verifies_shared_nodes_once():
    chain = torch.tensor([10, 12, 15, 30])  # follows the tree's nodes 0, 2, 5, then leaves it
    tokens, parents, where = graft(chain, TOKENS, PARENTS)
    assert tokens.tolist() == [10, 12, 15, 30, 11, 13, 14]
    assert parents.tolist() == [-1, 0, 1, 2, -1, 0, 4]
    assert where == [0, 4, 1, 5, 6, 2]  # the tree's nodes in the merged one
    argmax = torch.tensor([10, 12, 15, 30, 7, 0, 0, 0])  # the target agrees all down the chain
    assert greedy_tree_accept(tokens, parents, argmax) == ([0, 1, 2, 3], 7)
    argmax = torch.tensor([11, 0, 0, 0, 0, 14, 0, 99])  # a tree path survives the graft
    path, nxt = greedy_tree_accept(tokens, parents, argmax)
    assert tokens[path].tolist() == [11, 14] and nxt == 99


def test_graft_of_two_chains_and_of_nothing():
    tokens, parents, where = graft(torch.tensor([5, 6, 7]), torch.tensor([5, 8]), None)  # a chain as the tree
    assert tokens.tolist() == [5, 6, 7, 8] and parents.tolist() == [-1, 0, 1, 0] and where == [0, 3]
    tokens, parents, where = graft(torch.tensor([5, 6]), None, None)
    assert tokens.tolist() == [5, 6] and parents.tolist() == [-1, 0] and where == []


def test_reached_follows_a_steps_committed_tokens_down_a_chain_or_a_tree():
    assert reached(TOKENS, PARENTS, [10, 12, 15, 7]) == 3
    assert reached(TOKENS, PARENTS, [11, 14]) == 2
    assert reached(TOKENS, PARENTS, [11, 13]) == 1  # 13 continues 10, not 11
    assert reached(TOKENS, PARENTS, [99, 10]) == 0
    assert reached(torch.tensor([5, 6, 7]), None, [5, 6, 8]) == 2
    assert reached(torch.tensor([5, 6]), None, [5, 6, 7]) == 2

"""Token trees: several candidate continuations verified in one target pass (EAGLE, SpecInfer).

A tree is its nodes' tokens and parents (``-1``: a child of the last committed token), parents
before children. The target scores every node in one forward: each node attends to the cached
sequence, the block's committed rows and its own ancestors only, at the position its depth gives.
Greedy acceptance walks down from the last committed token, at each node taking the child equal
to the target's argmax there: the kept path is exactly what greedy decoding would have produced.
Sampled acceptance walks down the same way, trying each node's children in turn against the
target's distribution p with the tried tokens removed (SpecInfer's rule for several drafts; a
tree's nodes are chosen, not sampled, so each is a draft with q a point mass): the emitted tokens are
distributed exactly as samples from p. Pure tensor functions; no models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .sampling import sample
from .verify import residual


def tree_size(depth: int, width: int, max_nodes: int | None = None) -> int:
    """Nodes verified for a tree of ``depth`` levels drafted with ``width`` (EAGLE-2's top-k): the
    ``depth·width`` likeliest of its ``width + (depth - 1)·width²`` candidates, at most ``max_nodes``
    (a chain: ``depth``). Growing with depth, the verify's cost follows the N a step chooses."""
    return max(0, depth * width if max_nodes is None else min(depth * width, max_nodes))


@dataclass(frozen=True)
class TreePrice:
    """A dynamic tree priced at the measured costs (EAGLE-2 grown by confidence): a head level costs
    ``level`` (c) and a verify of n nodes ``verify[n]`` (v(n) in target steps, held beyond the table).
    A candidate's joint q is the head's estimate of the chance it is accepted, so nodes of joint q
    q_1 ≥ q_2 ≥ … yield 1 + Σ q tokens a step: the budget keeps the n likeliest that maximise tokens
    per cost, and a level is drafted while its best candidate could earn its head step and verify row
    at that rate. A draft whose best budget does not beat a plain step is not verified: the target
    decodes one token instead (where v jumps at the first drafted row, e.g. fp32 without AVX-512)."""

    level: float
    verify: tuple[float, ...]

    def __post_init__(self) -> None:
        if not (self.level >= 0.0 and len(self.verify) >= 2 and all(x > 0.0 for x in self.verify)):
            raise ValueError(f"tree prices need level >= 0 and v(0), v(1), ... > 0, got level {self.level}, "
                             f"v {self.verify[:4]}")

    def cost(self, nodes: int) -> float:
        """v of a verify over ``nodes`` nodes."""
        return self.verify[min(nodes, len(self.verify) - 1)]

    def rate(self, scores: torch.Tensor, cap: int, levels: int) -> tuple[int, float]:
        """(n, expected tokens per target step) of the best budget of a tree of ``levels`` levels: the
        n ≤ ``cap`` likeliest candidates (joint log q ``scores``) maximising (1 + Σ q) / (levels·c + v(n))."""
        q = scores.topk(max(1, min(cap, scores.numel()))).values.double().exp()
        costs = torch.tensor([levels * self.level + self.cost(n) for n in range(1, q.numel() + 1)],
                             dtype=q.dtype, device=q.device)
        per_cost = (1.0 + q.cumsum(0)) / costs
        best = int(per_cost.argmax())
        return best + 1, float(per_cost[best])

    def budget(self, scores: torch.Tensor, cap: int, levels: int) -> int:
        """How many of the candidates (joint log q ``scores``) to verify: :meth:`rate`'s n, or 0 (a plain
        step) when that rate does not beat a plain step's 1 token after the same head steps, 1 / (levels·c + 1)."""
        n, per_cost = self.rate(scores, cap, levels)
        return n if per_cost > 1.0 / (levels * self.level + self.cost(0)) else 0

    def worth_expanding(self, frontier_scores: torch.Tensor, scores: torch.Tensor, cap: int, levels: int) -> bool:
        """Whether to draft one more level below the frontier: its likeliest child (joint q at most the
        frontier's best) must earn, at the current tree's rate, a head step and one more verify row."""
        n, per_cost = self.rate(scores, cap, levels)
        return math.exp(float(frontier_scores.max())) >= per_cost * (self.level + self.cost(n + 1) - self.cost(n))


def rerank(tokens: torch.Tensor, parents: torch.Tensor, scores: torch.Tensor, budget: int
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, parents) of the ``budget`` candidates of highest joint log q (EAGLE-2's re-ranking),
    parents first, the chain of each kept node's likeliest kept child at the front (its rows are the
    ones the target's cache keeps without refeeding).

    tokens, parents, scores: (P,) candidates (parents precede children). A child's joint log q never
    exceeds its parent's, and ties go to the shallower node, so the kept set holds every ancestor.
    """
    depths = tree_depths(parents)
    order = likeliest(depths, scores, budget)
    par, dep = parents.tolist(), depths.tolist()
    children: dict[int, list[int]] = {}
    for i in order:  # each parent's kept children, likeliest first
        children.setdefault(par[i], []).append(i)
    chain, node = [], -1
    while children.get(node):
        node = children[node][0]
        chain.append(node)
    in_chain = set(chain)
    rest = sorted((i for i in order if i not in in_chain), key=lambda i: dep[i])  # stable: likeliest first
    kept = chain + rest
    new_index = {old: new for new, old in enumerate(kept)}
    new_parents = torch.tensor([-1 if par[i] < 0 else new_index[par[i]] for i in kept], dtype=torch.long,
                               device=tokens.device)
    return tokens[kept], new_parents


def likeliest(depths: torch.Tensor, scores: torch.Tensor, budget: int) -> list[int]:
    """Indices of the ``budget`` candidates of highest joint log q, likeliest first, ties to the shallower
    (``depths``: :func:`tree_depths`; so the set holds every kept node's ancestors, a child's joint log q
    never exceeding its parent's)."""
    by_depth = torch.sort(depths, stable=True).indices
    return by_depth[torch.sort(scores[by_depth], descending=True, stable=True).indices][:budget].tolist()


def tree_depths(parents: torch.Tensor) -> torch.Tensor:
    """Depth of each node (1 for children of the last committed token); parents precede children."""
    depths: list[int] = []
    for p in parents.tolist():
        if not -1 <= p < len(depths):
            raise ValueError(f"a node's parent must be -1 or an earlier node, got {p} at node {len(depths)}")
        depths.append(1 if p < 0 else depths[p] + 1)
    return torch.tensor(depths, dtype=torch.long, device=parents.device)


def ancestors(parents: torch.Tensor) -> torch.Tensor:
    """(M, M) bool: ``[i, j]`` is True when node j is node i or one of its ancestors."""
    m = parents.shape[0]
    out = torch.eye(m, dtype=torch.bool, device=parents.device)
    for i, p in enumerate(parents.tolist()):
        if p >= 0:
            out[i] |= out[p]
    return out


def tree_inputs(parents: torch.Tensor, past: int, prefix: int, dtype: torch.dtype
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention mask (1, 1, prefix + M, past + prefix + M), additive (0 or the dtype's minimum),
    and position ids (1, prefix + M) for a block of ``prefix`` committed rows then the M nodes,
    over a cache of ``past`` positions. The prefix is causal; a node sees the prefix and its ancestors."""
    rows = prefix + parents.shape[0]
    device = parents.device
    see = torch.zeros(rows, past + rows, dtype=torch.bool, device=device)
    see[:, :past] = True
    see[:prefix, past:past + prefix] = torch.ones(prefix, prefix, dtype=torch.bool, device=device).tril()
    see[prefix:, past:past + prefix] = True
    see[prefix:, past + prefix:] = ancestors(parents)
    mask = torch.zeros(see.shape, dtype=dtype, device=device).masked_fill_(~see, torch.finfo(dtype).min)
    positions = torch.cat([torch.arange(past, past + prefix, device=device),
                           past + prefix - 1 + tree_depths(parents)])
    return mask[None, None], positions[None]


def _children(parents: torch.Tensor) -> dict[int, list[int]]:
    """Each node's children in order (-1: the last committed token's)."""
    children: dict[int, list[int]] = {}
    for i, p in enumerate(parents.tolist()):
        children.setdefault(p, []).append(i)
    return children


def reached(tokens: torch.Tensor, parents: torch.Tensor | None, committed: list[int]) -> int:
    """How many of a step's ``committed`` tokens a draft (tokens, parents; None: a chain) holds as a path
    from its root: the drafts of it a greedy target kept, had it been verified alone."""
    children = _children(torch.arange(-1, tokens.shape[0] - 1) if parents is None else parents)
    toks, node, depth = tokens.tolist(), -1, 0
    for t in committed:
        node = next((c for c in children.get(node, ()) if toks[c] == t), None)
        if node is None:
            break
        depth += 1
    return depth


def greedy_tree_accept(tokens: torch.Tensor, parents: torch.Tensor, target_argmax: torch.Tensor
                       ) -> tuple[list[int], int]:
    """(path, next_token): the nodes kept, root to leaf, and the target's token after them.

    tokens, parents: (M,); target_argmax: (M + 1,), the target's argmax at the last committed
    token (row 0) and at each node (row i + 1).
    """
    children = _children(parents)
    toks, best = tokens.tolist(), target_argmax.tolist()
    path, node = [], -1
    while True:
        want = best[node + 1]
        nxt = next((c for c in children.get(node, ()) if toks[c] == want), None)
        if nxt is None:
            return path, want
        path.append(nxt)
        node = nxt


def sampled_tree_accept(tokens: torch.Tensor, parents: torch.Tensor, p: torch.Tensor,
                        generator: torch.Generator | None = None, q: torch.Tensor | None = None
                        ) -> tuple[list[int], int]:
    """(path, next_token) distributed exactly as tokens sampled one by one from p.

    tokens, parents: (M,); p: (M + 1, V), the target's probabilities at the last committed token
    (row 0) and at each node (row i + 1); q: (M, V), each node's draft distribution, one-hot for a node
    chosen rather than sampled (None: every node is). At a node, r starts as its row of p; each child x
    in turn is kept with probability min(1, r(x) / q(x)), else r becomes norm(max(0, r - q)) (for a
    point mass: r(x) = 0, renormalised): SpecInfer's rule for several drafts. Children drawn from a q
    are tried before chosen ones: a chosen node that equals a drawn sibling is that one node (``graft``),
    and, tried first, the drawn draft's rejection leaves r(x) = 0, so the chosen duplicate's trial, which
    could only fail, changes nothing. When no child is kept, the next token is drawn from r.
    """
    children = _children(parents)
    toks = tokens.tolist()
    q_x = [1.0] * len(toks) if q is None else q.gather(-1, tokens.view(-1, 1)).view(-1).tolist()
    path, node = [], -1
    while True:
        r = p[node + 1]
        kept = None
        for child in sorted(children.get(node, ()), key=lambda c: q_x[c] >= 1.0):  # drawn first, stable
            x = toks[child]
            if float(torch.rand((), generator=generator, device=p.device)) * q_x[child] < float(r[x]):
                kept = child
                break
            point = torch.zeros_like(r).index_fill_(0, tokens[child: child + 1].to(r.device), 1.0)
            r = residual(r, point if q is None else q[child].to(r.dtype))
        if kept is None:
            return path, int(sample(r, generator))
        path.append(kept)
        node = kept


def graft(chain: torch.Tensor, tokens: torch.Tensor | None, parents: torch.Tensor | None
          ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(tokens, parents, where) of one tree holding the ``chain`` (K,) first, as nodes 0..K-1, then the
    nodes of the tree ``tokens``, ``parents`` (M,) (None for ``parents``: a chain; None for both: no tree)
    that it does not already hold: a node equal in token and parent to one already kept is that node.
    ``where``: each of the tree's M nodes' index in the merged one.

    The chain leads so that, when it is accepted, its rows are the ones the target's cache keeps.
    """
    out_tokens = chain.tolist()
    out_parents = list(range(-1, len(out_tokens) - 1))
    where: list[int] = []  # each grafted node's index in the merged tree
    child = {(p, t): i for i, (p, t) in enumerate(zip(out_parents, out_tokens))}
    if tokens is not None:
        if parents is None:
            parents = torch.arange(-1, tokens.shape[0] - 1, device=tokens.device)
        for t, p in zip(tokens.tolist(), parents.tolist()):
            key = (where[p] if p >= 0 else -1, t)
            if key not in child:
                child[key] = len(out_tokens)
                out_tokens.append(t)
                out_parents.append(key[0])
            where.append(child[key])
    device = chain.device
    return (torch.tensor(out_tokens, dtype=chain.dtype, device=device),
            torch.tensor(out_parents, dtype=torch.long, device=device), where)


def contiguous_prefix(path: list[int]) -> int:
    """How many of the path's nodes sit at the front of the block in order (nodes 0, 1, ...):
    their rows in the verify pass are already the committed sequence's, so the cache keeps them."""
    n = 0
    while n < len(path) and path[n] == n:
        n += 1
    return n

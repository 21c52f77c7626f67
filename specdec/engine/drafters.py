"""Proposers of draft tokens behind one small interface.

A drafter sees the committed sequence and proposes up to ``n`` tokens (with their draft
probabilities ``q`` when sampling). The verification loop in :mod:`specdec.engine.loop` is the
same for every drafter; a new way of drafting is a new class here, not a new loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from .forward import Compiler, Forward
from .sampling import SamplingParams, greedy_token, probs_from_logits, sample
from .tree import TreePrice, graft, reached, rerank, tree_depths, tree_inputs, tree_size


@dataclass
class Draft:
    """Proposed tokens (k,) and, when sampling, the draft distributions q (k, V) they came from.

    ``parents`` (k,) makes it a token tree (:mod:`.tree`): node i continues node ``parents[i]``
    (-1: the last committed token); None is a chain, each token continuing the one before. A tree's q is
    None when every node was chosen (a point mass), else one row a node, one-hot for chosen ones. ``own``: the
    drafter's own proposal, when this one carries more (a grafted lookup branch); the loop's counts
    (α, auto N's α̂) are of ``own``, so they stay the drafter's.
    """

    tokens: torch.Tensor
    q: torch.Tensor | None = None
    parents: torch.Tensor | None = None
    own: Draft | None = None

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def levels(self) -> int:
        """Positions it reaches: a chain's length, a tree's depth."""
        return int(tree_depths(self.parents).max()) if self.parents is not None and len(self) else len(self)


class Drafter(ABC):
    """Something that proposes candidate tokens for the target to verify."""

    forwards: int = 0  # forward passes of a draft model, if any
    model: torch.nn.Module | None = None  # what the cost model times as the draft (None: nothing to time)
    wants_hidden_states: bool = False  # commit() then receives the target's hidden states
    tree_width: int = 1  # a token tree's expansion per level (:func:`.tree.tree_size`), 1 for a chain
    tree_nodes: int | None = None  # a token tree's verified nodes at most (None: levels × tree_width)
    priced: bool = False  # sizes each draft by its own confidence when given a TreePrice (auto N)
    extra_rows: int = 0  # nodes it may verify beyond its own levels' (a lookup branch), which a price must cover

    def start(self, prompt_ids: torch.Tensor, params: SamplingParams, vocab_size: int,
              generator: torch.Generator | None, compiler: Compiler | None = None, max_len: int = 0,
              tree_price: TreePrice | None = None) -> None:
        """Reset for a new prompt (1, L) of a generation reaching ``max_len`` tokens; a drafter with
        a model runs it through ``compiler`` when given (static cache, compiled forward). A ``priced``
        drafter sizes its drafts by confidence when given ``tree_price`` (auto N), for this generation."""
        self.params, self.vocab_size, self.generator = params, vocab_size, generator
        self.forwards = 0

    @abstractmethod
    def propose(self, committed: torch.Tensor, n: int) -> Draft:
        """Up to ``n`` tokens that should follow ``committed`` (1, T); fewer (even 0) is allowed."""

    def commit(self, committed_len: int, hidden_states: tuple[torch.Tensor, ...] | None = None,  # noqa: B027
               first_position: int = 0) -> None:
        """The target kept ``committed_len`` tokens; drop any state beyond them.

        ``hidden_states`` (when ``wants_hidden_states``): the target's hidden states, per layer
        (1, rows, H), of the forward that just ran (prefill or verify), whose first row is the
        token at ``first_position``.
        """

    def choose(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(token, q): the argmax when greedy, else a sample and the distribution q it came from."""
        if self.params.greedy:
            return greedy_token(logits), None
        q = probs_from_logits(logits, self.params)
        return sample(q, self.generator), q


class ModelDrafter(Drafter):
    """A small causal LM drafting autoregressively from its own KV cache.

    ``min_confidence`` > 0 stops a draft early once the draft's own top probability falls
    below it (off by default); the number of such stops is counted in ``early_stops``. The
    prompt is prefilled lazily by the first ``propose``, so steps that draft nothing (auto N
    decoding plainly) never run the draft.
    """

    def __init__(self, model: PreTrainedModel, min_confidence: float = 0.0) -> None:
        self.model = model
        self.min_confidence = min_confidence
        self.early_stops = 0

    def start(self, prompt_ids, params, vocab_size, generator, compiler=None, max_len=0, tree_price=None) -> None:
        super().start(prompt_ids, params, vocab_size, generator, compiler, max_len)
        self.early_stops = 0
        self.forward = Forward.for_lm(self.model, compiler, max(max_len, prompt_ids.shape[1]))

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        return self.forward(ids, logits_to_keep=1).logits[0, -1, : self.vocab_size]

    def propose(self, committed: torch.Tensor, n: int) -> Draft:
        # The cache lags by whatever was committed since the last draft (the whole prompt on the
        # first call, plain steps, the last draft after a fully accepted step): feed it all.
        feed = committed[:, self.forward.length:]
        tokens, qs = [], []
        for _ in range(n):
            logits = self._forward(feed)
            token, q = self.choose(logits)
            if self.min_confidence > 0:
                top = float((q if q is not None else logits.softmax(-1)).max())
                if top < self.min_confidence:
                    self.early_stops += 1
                    break
            tokens.append(token)
            if q is not None:
                qs.append(q)
            feed = token.view(1, 1)
        draft_tokens = torch.stack(tokens) if tokens else committed.new_empty(0)
        return Draft(draft_tokens, torch.stack(qs) if qs else None)

    def commit(self, committed_len, hidden_states=None, first_position=0) -> None:
        self.forward.rollback(committed_len - 1)


class FeatureHeadDrafter(Drafter):
    """Drafts with a :class:`~specdec.models.feature_head.FeatureHead` from the target's own features.

    The head's cache holds one entry per position t < T whose feature the target computed (T: the
    last committed position); drafting appends entries fed with the head's own predictions, and
    ``commit`` rolls them back (the cache rules of :mod:`.cache`) before adding the verify pass's real features.
    The target's hidden states come from the prefill and verify forwards: no extra target pass.

    ``tree_width`` > 1 drafts a token tree instead of a chain (eager only): N levels of EAGLE-2's
    expansion (the ``tree_width`` likeliest candidates of a level grow ``tree_width`` children each),
    then its re-ranking: the ``tree_nodes`` candidates of highest joint probability are verified
    (None: N·``tree_width``). Given a :class:`~.tree.TreePrice` (auto N), N is a ceiling: levels stop
    once the deepest one's likeliest candidate cannot pay for a head step and a verify row at the tree's
    expected tokens per cost, and the candidates kept are the likeliest ones that maximise it. A chain
    is priced the same way, as a tree one candidate wide: its joint q is the product of the head's
    probabilities of the tokens it drafted. A head over a reduced vocabulary with fitted context columns
    (:mod:`specdec.models.context_vocab`) also proposes the ids the committed tokens hold outside it.
    """

    wants_hidden_states = True
    priced = True

    def __init__(self, head: torch.nn.Module, tree_width: int = 1, tree_nodes: int | None = None) -> None:
        if tree_width < 1:
            raise ValueError(f"tree_width must be >= 1, got {tree_width}")
        if tree_nodes is not None and tree_nodes < 1:
            raise ValueError(f"tree_nodes must be >= 1, got {tree_nodes}")
        self.model = head
        self.tree_width, self.tree_nodes = tree_width, tree_nodes

    @property
    def makes_trees(self) -> bool:
        return self.tree_width > 1

    def start(self, prompt_ids, params, vocab_size, generator, compiler=None, max_len=0, tree_price=None) -> None:
        if self.makes_trees and compiler is not None:
            raise ValueError("tree drafting runs eager only (its verify pass needs a tree attention mask)")
        super().start(prompt_ids, params, vocab_size, generator, compiler, max_len)
        self.price = tree_price
        self.candidates: tuple[torch.Tensor, ...] = ()  # the last tree's candidates: tokens, parents, joint log q
        self.forward = Forward(self.model, compiler, max(max_len, prompt_ids.shape[1]), fn=self.model.step)
        self.real = 0  # head cache entries fed with the target's features
        self.pending = []  # fused features of positions real.. not yet fed, (1, rows, H) each
        self.context = self.model.context_vocab()  # ids of the context the head's own columns lack, if fitted

    def commit(self, committed_len, hidden_states=None, first_position=0) -> None:
        self.forward.rollback(self.real)
        if hidden_states is not None:
            have = self.real + sum(f.shape[1] for f in self.pending)
            rows = committed_len - 1 - first_position  # rows of tokens now committed, the last one excepted
            feats = self.model.features(hidden_states)[:, have - first_position: rows]
            self.pending.append(feats)

    def _catch_up(self, committed: torch.Tensor) -> torch.Tensor:
        """Feed the pending real features; the head's output at the last committed token (1, 1, H)."""
        last = committed.shape[1] - 1
        feats = torch.cat(self.pending, dim=1)  # features of positions real .. last - 1
        hidden = self.forward(feats, committed[:, self.real + 1: last + 1])[:, -1:]
        self.forwards += 1
        self.real, self.pending = last, []
        return hidden

    def propose(self, committed: torch.Tensor, n: int) -> Draft:
        hidden = self._catch_up(committed)
        if self.context is not None:
            self.context.add(committed[0, self.context.fed:])
        if self.makes_trees:
            return self._tree(hidden, n)
        tokens, qs, joint = [], [], []  # joint: each draft's joint log q, for a price
        for i in range(n):
            if self.params.greedy:  # the argmax of the head's own columns: no full-vocabulary row
                top_logq, top_id = self.model.top_tokens(hidden[0, -1], 1, self.vocab_size, self.context)
                token, logq = top_id[0], top_logq[0]
            else:
                token, q = self.choose(self.model.logits(hidden, self.context)[0, -1, : self.vocab_size])
                qs.append(q)
                logq = q[token].log()
            tokens.append(token)
            if self.price is not None:
                joint.append((joint[-1] if joint else 0.0) + float(logq))
                if not self.price.worth_expanding(torch.tensor(joint[-1:]), torch.tensor(joint), i + 1, i + 1):
                    break
            if i + 1 < n:  # the head's output stands in for the feature the target has not computed
                hidden = self.forward(hidden, token.view(1, 1))
                self.forwards += 1
        keep = self.price.budget(torch.tensor(joint), len(tokens), len(tokens)) if joint else len(tokens)
        if keep == 0:  # no draft beats a plain step at the price
            return Draft(committed.new_empty(0))
        return Draft(torch.stack(tokens[:keep]), torch.stack(qs[:keep]) if qs else None)

    def _tree(self, hidden: torch.Tensor, depth: int) -> Draft:
        """EAGLE-2's dynamic tree: ``depth`` levels, each expanding the ``tree_width`` candidates of
        highest joint q by their ``tree_width`` likeliest children (one head forward per level), then
        the :func:`~.tree.tree_size` likeliest candidates of all kept (:func:`~.tree.rerank`); with a
        price, fewer levels and nodes (:class:`~.tree.TreePrice`)."""
        width, base = self.tree_width, self.real  # the head's cache: base real entries, then the rows fed
        score, tok = self.model.top_tokens(hidden[0, -1], width, self.vocab_size, self.context)
        tokens, parents, scores = [tok], [torch.full_like(tok, -1)], [score]
        frontier = torch.arange(width, device=hidden.device)  # candidates to expand next (indices into the concatenated lists)
        front_tok, front_parent, front_score = tok, parents[0], score  # the frontier's tokens, parents, joint log q
        fed_parents: list[int] = []  # each fed row's parent among the fed rows (-1: the last committed token)
        row_of: dict[int, int] = {}  # candidate -> its row among the fed rows
        front_hidden = hidden.expand(1, width, -1)  # each frontier node's input feature: its parent's output
        size, levels = width, 1
        for _ in range(1, depth):
            if self.price is not None and not self.price.worth_expanding(
                    front_score, torch.cat(scores), tree_size(levels, width, self.tree_nodes), levels):
                break
            for c, p in zip(frontier.tolist(), front_parent.tolist()):  # one transfer a level
                row_of[c] = len(fed_parents)
                fed_parents.append(row_of.get(p, -1))
            # the head's cache holds every row fed so far; this level's rows are the last, each seeing its ancestors
            mask, positions = tree_inputs(torch.tensor(fed_parents, device=hidden.device), base, 0, hidden.dtype)
            out = self.forward(front_hidden, front_tok.view(1, width),
                               attention_mask=mask[:, :, -width:], position_ids=positions[:, -width:])
            self.forwards += 1
            logq, ids = self.model.top_tokens(out[0], width, self.vocab_size, self.context)  # (width, width): per node
            joint = (front_score[:, None] + logq).flatten()
            tokens.append(ids.flatten())
            parents.append(frontier.repeat_interleave(width))
            scores.append(joint)
            front_score, best = joint.topk(width)
            front_tok, front_parent = tokens[-1][best], parents[-1][best]
            frontier, front_hidden, size = size + best, out[:, best // width], size + width * width
            levels += 1
        budget, all_scores = tree_size(levels, width, self.tree_nodes), torch.cat(scores)
        if self.price is not None:
            budget = self.price.budget(all_scores, budget, levels)
        self.candidates = (torch.cat(tokens), torch.cat(parents), all_scores)  # for analysis (benchmarks/replay_tree.py)
        if budget == 0:  # no tree beats a plain step at the price
            return Draft(tok.new_empty(0))
        kept, kept_parents = rerank(*self.candidates, budget)
        return Draft(kept, None, kept_parents)


class PromptLookupDrafter(Drafter):
    """Drafts by copying what followed the most recent earlier occurrence of the last n-gram.

    No draft model: n-gram sizes from ``max_ngram`` down to ``min_ngram`` are tried over the
    prompt and the generated text (Saxena 2023, "prompt lookup decoding"). Its proposals are
    deterministic, so when sampling ``q`` is one-hot at each proposed token.
    """

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(f"need 1 <= min_ngram <= max_ngram, got {min_ngram}, {max_ngram}")
        self.max_ngram, self.min_ngram = max_ngram, min_ngram

    def propose(self, committed: torch.Tensor, n: int) -> Draft:
        seq = committed[0]
        length = seq.shape[0]
        self.matched = 0  # the n-gram size of the match drafted from (0: none)
        for size in range(min(self.max_ngram, length - 1), self.min_ngram - 1, -1):
            pattern = seq[length - size:]
            windows = seq[: length - 1].unfold(0, size, 1)  # every earlier n-gram, (T-size, size)
            hits = (windows == pattern).all(dim=1).nonzero().flatten()
            if hits.numel():
                start = int(hits[-1]) + size  # token right after the most recent match
                tokens = seq[start: start + n]
                if tokens.numel():
                    self.matched = size
                    return self._draft(tokens.clone())
        return self._draft(seq.new_empty(0))

    def _draft(self, tokens: torch.Tensor) -> Draft:
        if self.params.greedy or tokens.numel() == 0:
            return Draft(tokens)
        q = torch.nn.functional.one_hot(tokens, self.vocab_size).float()
        return Draft(tokens, q)


LOOKUP_TOKENS = 12  # a lookup branch's tokens at most (LookupBranchDrafter's default)


class LookupBranchDrafter(Drafter):
    """Another drafter's proposal with a prompt-lookup branch grafted on, verified as one token tree.

    Where an answer copies its context (a quoted passage explained, a paragraph summarised, a sentence
    translated), n-gram lookup proposes runs a learned drafter seldom reaches; elsewhere it finds
    nothing and the inner drafter's proposal is verified as it is. The branch (at most ``lookup_tokens``,
    within the generation's length) leads the tree (:func:`~.tree.graft`); a node both propose is verified
    once. Lossless like any tree: the branch is a point-mass draft. Eager only (a tree's attention mask).
    When sampling, a draft the inner drafter sampled keeps its q in the tree: ``tree.sampled_tree_accept``
    tries its nodes before the branch's (one-hot q) with min(1, p/q), so copies pay at any temperature.

    Given a :class:`~.tree.TreePrice` (auto N), the branch is priced like a tree's budget: its length L
    maximises the step's expected tokens per cost, (E + Σ_{i≤L} β^i) / (C + v(k + L) − v(k)), with β the
    running share of branch tokens kept (per n-gram size of the match), E = 1 + the inner draft's running
    tokens kept per draft (1 on a plain step), C its levels·c + v(k), k its nodes; L = 0 when no length beats
    E / C. So a likely run of copies is tried even where v jumps at the first drafted row (fp32 without
    AVX-512), and one copy alone is not. A match size of at least ``probe_ngram`` tokens that the price has
    turned off is probed, as auto N probes a plain run: after ``probe_every`` such matches priced out, one
    branch of full length is verified anyway, so β can recover where an answer starts to quote its context
    (one early miss would otherwise end a size for the whole generation); each probe that leaves it priced
    out doubles the wait (up to ``probe_max``), and the wait resets once the price takes it again
    (``probe_every=0``: never probe). Single-token matches, common and seldom followed, are not probed
    (``benchmarks/replay_branch.py`` compares schedules). The branch is offered on steps the inner drafter
    sits out too (N = 0, a plain step). The proposal's ``own`` is the inner draft, so α and auto N's α̂ stay
    the inner drafter's.
    """

    def __init__(self, inner: Drafter, lookup: PromptLookupDrafter | None = None,
                 lookup_tokens: int = LOOKUP_TOKENS, probe_every: int = 4, probe_max: int = 32,
                 probe_ngram: int = 2) -> None:
        if lookup_tokens < 1:
            raise ValueError(f"lookup_tokens must be >= 1, got {lookup_tokens}")
        if probe_every < 0 or probe_max < probe_every:
            raise ValueError(f"need 0 <= probe_every <= probe_max, got {probe_every}, {probe_max}")
        self.inner, self.lookup, self.lookup_tokens = inner, lookup or PromptLookupDrafter(), lookup_tokens
        self.probe_every, self.probe_max, self.probe_ngram = probe_every, probe_max, probe_ngram
        self.model, self.wants_hidden_states, self.priced = inner.model, inner.wants_hidden_states, inner.priced
        self.tree_width, self.tree_nodes = inner.tree_width, inner.tree_nodes
        self.extra_rows = inner.extra_rows + lookup_tokens

    def start(self, prompt_ids, params, vocab_size, generator, compiler=None, max_len=0, tree_price=None) -> None:
        if compiler is not None:
            raise ValueError("a lookup branch makes token trees, which run eager only (a tree attention mask)")
        super().start(prompt_ids, params, vocab_size, generator, compiler, max_len)
        self.inner.start(prompt_ids, params, vocab_size, generator, compiler, max_len, tree_price)
        self.lookup.start(prompt_ids, params, vocab_size, generator)
        self.max_len, self.price = max_len, tree_price
        self.kept: dict[int, list[int]] = {}  # per n-gram size: _counts
        self.waits: dict[int, list[int]] = {}  # per n-gram size: [matches priced out since the last branch, wait]
        self.last: tuple[int, int, torch.Tensor] | None = None  # the last branch: (n-gram size, first position, tokens)
        self.last_inner: tuple[int, Draft] | None = None  # the last inner draft and its first position
        self.inner_kept = self.inner_drafts = 0  # the inner drafts' tokens the target kept, and their number
        self.grafted = self.probes = 0  # drafts that carried a branch; branches verified as probes

    def _settle(self, committed: torch.Tensor) -> None:
        """Count how much of the last inner draft and of the last branch the target kept (greedy or sampled,
        the committed tokens say)."""
        if self.last_inner is not None:
            at, inner = self.last_inner
            self.inner_kept += reached(inner.tokens, inner.parents, committed[0, at:].tolist())
            self.inner_drafts += 1
            self.last_inner = None
        if self.last is None:
            return
        size, at, branch = self.last
        got = committed[0, at: at + len(branch)].tolist()
        kept = reached(branch, None, got)
        counts = self._counts(size)
        counts[0] += kept
        counts[1] += kept < len(got)
        self.last = None

    def _counts(self, size: int) -> list[int]:
        """[branch tokens kept, branches cut short] for matches of ``size`` tokens, from a prior of one each."""
        return self.kept.setdefault(size, [1, 1])

    def _priced_length(self, size: int, inner: Draft, room: int) -> int:
        kept, cut = self._counts(size)
        beta, k = kept / (kept + cut), len(inner)
        tokens = 1.0 + (self.inner_kept / self.inner_drafts if k and self.inner_drafts else 0.0)
        cost = inner.levels * self.price.level + self.price.cost(k)
        best, best_rate, gain, chance = 0, tokens / cost, 0.0, 1.0
        for length in range(1, room + 1):
            chance *= beta
            gain += chance
            rate = (tokens + gain) / (cost + self.price.cost(k + length) - self.price.cost(k))
            if rate > best_rate:
                best, best_rate = length, rate
        return best

    def _probed_length(self, size: int, length: int, room: int) -> int:
        """``length`` as priced, or ``room`` (a probe) when matches of ``size`` were priced out for the wait."""
        if self.probe_every == 0 or size < self.probe_ngram:
            return length
        waits = self.waits.setdefault(size, [0, self.probe_every])
        if length > 0:
            waits[:] = [0, self.probe_every]
            return length
        waits[0] += 1
        if waits[0] < waits[1]:
            return 0
        waits[:] = [0, min(2 * waits[1], self.probe_max)]
        self.probes += 1
        return room

    def propose(self, committed: torch.Tensor, n: int) -> Draft:
        self._settle(committed)
        draft = self.inner.propose(committed, n) if n > 0 else Draft(committed.new_empty(0))
        if len(draft):
            self.last_inner = (committed.shape[1], draft)
        self.forwards = self.inner.forwards
        room = self.lookup_tokens if self.max_len <= 0 else min(self.lookup_tokens, self.max_len - committed.shape[1] - 1)
        branch = self.lookup.propose(committed, room).tokens if room > 0 else committed.new_empty(0)
        if branch.numel() and self.price is not None:
            size = self.lookup.matched
            branch = branch[: self._probed_length(size, self._priced_length(size, draft, branch.numel()), branch.numel())]
        if branch.numel() == 0:
            return draft
        self.grafted += 1
        self.last = (self.lookup.matched, committed.shape[1], branch)
        tokens, parents, where = graft(branch, draft.tokens if len(draft) else None, draft.parents)
        q = None
        if draft.q is not None:  # the branch's rows point masses; a sampled draft's its own q (also where the
            q = draft.q.new_zeros(len(tokens), draft.q.shape[-1]).scatter_(1, tokens.view(-1, 1), 1.0)  # branch
            q[torch.tensor(where, device=q.device)] = draft.q                       # holds the same token)
        return Draft(tokens, q, parents, own=draft)

    def commit(self, committed_len, hidden_states=None, first_position=0) -> None:
        self.inner.commit(committed_len, hidden_states, first_position)

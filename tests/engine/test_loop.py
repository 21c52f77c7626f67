"""The contract: greedy speculative == greedy baseline == model.generate; sampling keeps p."""

import pytest
import torch

from specdec import autoregressive_generate, speculative_generate
from specdec.engine.drafters import Draft, Drafter
from specdec.engine.stats import alpha_from_counts
from specdec.testing import (
    CHI2_CRITICAL_P001,
    FixtureSpec,
    chi_square,
    fixture_pair,
    random_model,
    second_token_marginal,
)

NEW = 40


def hf_greedy(model, prompt, n=NEW):
    out = model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                         pad_token_id=0, eos_token_id=None)
    return out[0, prompt.shape[1]:].tolist()


@pytest.fixture(scope="module")
def reference(pair):
    target, _ = pair
    prompt = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(7))
    return prompt, hf_greedy(target, prompt)


def test_baseline_equals_model_generate(pair, reference):
    target, _ = pair
    prompt, ref = reference
    res = autoregressive_generate(target, prompt, max_new_tokens=NEW)
    assert res.tokens == ref
    assert res.stats.target_forwards == NEW and res.stats.tokens_per_step == 1.0
    assert res.stats.drafted == 0 and res.stats.phases_timed


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16])
def test_draft_equal_to_target_accepts_everything(pair, reference, n):
    target, _ = pair
    prompt, ref = reference
    res = speculative_generate(target, target, prompt, num_draft_tokens=n, max_new_tokens=NEW)
    assert res.tokens == ref
    s = res.stats
    assert s.accepted == s.drafted > 0 and s.acceptance_rate == 1.0
    assert sum(s.accepted_per_step) == s.accepted
    # All accepted: each step yields N + 1 tokens (except the budget-limited last one).
    assert s.target_forwards <= 1 + -(-(NEW - 1) // (n + 1)) + 1


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16])
def test_unrelated_draft_accepts_almost_nothing(pair, unrelated_draft, reference, n):
    target, _ = pair
    prompt, ref = reference
    res = speculative_generate(target, unrelated_draft, prompt, num_draft_tokens=n, max_new_tokens=NEW)
    assert res.tokens == ref
    assert res.stats.acceptance_rate < 0.2
    assert res.stats.target_forwards >= 0.8 * NEW


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16])
def test_partially_agreeing_draft(pair, reference, n):
    target, draft = pair
    prompt, ref = reference
    res = speculative_generate(target, draft, prompt, num_draft_tokens=n, max_new_tokens=NEW)
    assert res.tokens == ref
    s = res.stats
    assert 0 < s.accepted < s.drafted
    assert s.new_tokens == NEW == len(res.tokens)
    assert s.tokens_per_step == pytest.approx(NEW / s.target_forwards)
    assert s.new_tokens == 1 + s.accepted + len(s.accepted_per_step)  # prefill + kept + one per step
    assert s.draft_forwards >= s.drafted  # the drafter's prefill counts too
    # per-token α is the geometric MLE over the steps; α̂ counts untested drafts as failures
    assert s.alpha_geometric == pytest.approx(alpha_from_counts(s.accepted_per_step, s.drafted_per_step))
    if n > 1:
        assert s.alpha_geometric > s.acceptance_rate


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.5])
def test_agreement_falls_with_eps(eps):
    target, draft = fixture_pair(FixtureSpec(eps=eps, seed=3))
    prompt = torch.randint(0, 256, (1, 8), generator=torch.Generator().manual_seed(1))
    res = speculative_generate(target, draft, prompt, num_draft_tokens=4, max_new_tokens=32)
    assert res.tokens == hf_greedy(target, prompt, 32)
    expected_range = {0.0: (1.0, 1.0), 0.05: (0.5, 1.0), 0.5: (0.0, 0.5)}[eps]
    assert expected_range[0] <= res.stats.acceptance_rate <= expected_range[1]


def test_eos_inside_accepted_block_stops_there(pair, reference):
    target, _ = pair
    prompt, ref = reference
    eos = ref[6]
    stop = ref.index(eos)
    res = speculative_generate(target, target, prompt, num_draft_tokens=8, max_new_tokens=NEW, eos_token_id=eos)
    assert res.tokens == ref[: stop + 1]
    assert res.stats.accepted_per_step[-1] > 0  # the EOS came out of an accepted block
    base = autoregressive_generate(target, prompt, max_new_tokens=NEW, eos_token_id=[eos, 9999])
    assert base.tokens == ref[: stop + 1]


@pytest.mark.parametrize("max_new,n", [(1, 4), (3, 8), (10, 16)])
def test_budget_smaller_than_n(pair, reference, max_new, n):
    target, draft = pair
    prompt, ref = reference
    res = speculative_generate(target, draft, prompt, num_draft_tokens=n, max_new_tokens=max_new)
    assert res.tokens == ref[:max_new]
    assert all(k <= max_new - 1 for k in res.stats.drafted_per_step)


@pytest.mark.parametrize("bad_n", [0, -1, "x", 2.5])
def test_bad_n_raises(pair, prompt, bad_n):
    target, draft = pair
    with pytest.raises(ValueError, match="num_draft_tokens"):
        speculative_generate(target, draft, prompt, num_draft_tokens=bad_n)


def test_empty_prompt_raises(pair):
    target, draft = pair
    with pytest.raises(ValueError, match="empty"):
        speculative_generate(target, draft, torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        autoregressive_generate(target, torch.zeros(1, 0, dtype=torch.long))


def test_context_overflow_raises(pair):
    target, draft = pair
    long_prompt = torch.zeros(1, 500, dtype=torch.long)
    with pytest.raises(ValueError, match="context of 512"):
        speculative_generate(target, draft, long_prompt, max_new_tokens=20)


def test_vocabulary_mismatch_raises(pair, prompt):
    target, _ = pair
    other = random_model(FixtureSpec(vocab_size=1000), layers=2)
    with pytest.raises(ValueError, match="vocabulary"):
        speculative_generate(target, other, prompt)


def test_padded_draft_vocabulary_is_masked(pair, reference):
    """A draft whose head has a few padding rows still gives the target's output."""
    target, draft = pair
    prompt, ref = reference
    padded = random_model(FixtureSpec(vocab_size=256 + 64), layers=2)
    with torch.no_grad():
        padded.lm_head.weight[256:] = 100.0  # padding rows would win the argmax if not masked
    res = speculative_generate(target, padded, prompt, num_draft_tokens=4, max_new_tokens=NEW)
    assert res.tokens == ref
    assert all(t < 256 for t in res.tokens)


def test_step_callback_sees_every_token(pair, reference):
    target, draft = pair
    prompt, ref = reference
    seen = []
    res = speculative_generate(target, draft, prompt, num_draft_tokens=4, max_new_tokens=NEW,
                               on_step=lambda acc, tok: seen.extend(acc + ([tok] if tok is not None else [])))
    assert seen == res.tokens == ref


@pytest.mark.parametrize("method", ["speculative", "baseline"])
def test_sampled_output_keeps_target_distribution(method):
    spec = FixtureSpec(vocab_size=16, hidden_size=16, num_layers=3, draft_layers=1, num_heads=2,
                       eps=0.3, head_scale=3.0, seed=5)
    target, draft = fixture_pair(spec)
    prompt = torch.tensor([[1, 2, 3, 4]])
    expected = second_token_marginal(target, prompt)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(16)
    accepted = drafted = 0
    draws = 1500
    for _ in range(draws):
        if method == "speculative":
            res = speculative_generate(target, draft, prompt, num_draft_tokens=3, max_new_tokens=3,
                                       temperature=1.0, generator=g)
            accepted += res.stats.accepted
            drafted += res.stats.drafted
        else:
            res = autoregressive_generate(target, prompt, max_new_tokens=2, temperature=1.0, generator=g)
        counts[res.tokens[1]] += 1
    assert chi_square(counts, expected) < CHI2_CRITICAL_P001[15]
    if method == "speculative":
        assert 0 < accepted < drafted


def test_seed_makes_sampling_reproducible(pair, prompt):
    target, draft = pair
    a = speculative_generate(target, draft, prompt, max_new_tokens=20, temperature=0.8, top_k=20, seed=3)
    b = speculative_generate(target, draft, prompt, max_new_tokens=20, temperature=0.8, top_k=20, seed=3)
    assert a.tokens == b.tokens


class OracleTreeDrafter(Drafter):
    """Trees of ``width`` nodes per level that hold the target's next token at a random node of each
    level (under the previous level's true node) with probability ``hit``: accepted paths leave the
    block's front, so the loop must feed their tokens to the target again."""

    def __init__(self, continuation: list[int], prompt_len: int, width: int = 3, hit: float = 0.8) -> None:
        self.continuation, self.prompt_len, self.width, self.hit = continuation, prompt_len, width, hit
        self.rng = torch.Generator().manual_seed(3)
        self.sizes: list[int] = []  # nodes of each tree proposed

    def propose(self, committed, n):
        truth = self.continuation[committed.shape[1] - self.prompt_len:]
        tokens, parents, true_node = [], [], -1
        for level in range(min(n, len(truth))):
            slot = int(torch.randint(self.width, (1,), generator=self.rng))
            keep = true_node != -1 or level == 0
            keep = keep and float(torch.rand(1, generator=self.rng)) < self.hit
            first = len(tokens)
            for j in range(self.width):
                if keep and j == slot:
                    tokens.append(truth[level])
                    parents.append(true_node)
                else:
                    tokens.append((truth[level] + 1 + j) % 256)
                    parents.append(-1 if level == 0 else first - self.width + int(torch.randint(self.width, (1,),
                                                                                                generator=self.rng)))
            true_node = first + slot if keep else -1
            if not keep:
                break
        self.sizes.append(len(tokens))
        return Draft(torch.tensor(tokens, dtype=torch.long), None, torch.tensor(parents, dtype=torch.long))


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_tree_drafts_off_the_blocks_front_keep_greedy_output_identical(pair, reference, n):
    target, _ = pair
    prompt, ref = reference
    drafter = OracleTreeDrafter(ref, prompt.shape[1])
    rows = []
    hook = target.register_forward_pre_hook(
        lambda m, args, kw: rows.append((args[0] if args else kw["input_ids"]).shape[1]), with_kwargs=True)
    try:
        res = speculative_generate(target, None, prompt, num_draft_tokens=n, max_new_tokens=NEW, drafter=drafter)
    finally:
        hook.remove()
    assert res.tokens == ref
    refed = [r - k for r, k in zip(rows[1:], drafter.sizes)]  # committed rows each verify pass fed
    assert min(refed) == 1 and max(refed) > 1  # some kept paths left the front and were fed again
    assert res.stats.accepted > 0 and res.stats.tokens_per_step > 1.2
    assert max(res.stats.drafted_per_step) <= n  # a tree's drafts count its levels

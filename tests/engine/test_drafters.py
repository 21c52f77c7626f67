import torch

from specdec import PromptLookupDrafter, SamplingParams, autoregressive_generate, speculative_generate
from specdec.testing import CHI2_CRITICAL_P001, FixtureSpec, chi_square, fixture_pair, second_token_marginal


def _started(drafter, vocab=256):
    drafter.start(torch.zeros(1, 1, dtype=torch.long), SamplingParams(), vocab, None)
    return drafter


def test_prompt_lookup_copies_what_followed_the_last_ngram():
    d = _started(PromptLookupDrafter(max_ngram=2))
    seq = torch.tensor([[5, 6, 7, 8, 9, 1, 5, 6]])
    assert d.propose(seq, 3).tokens.tolist() == [7, 8, 9]
    assert d.propose(seq, 10).tokens.tolist() == [7, 8, 9, 1, 5, 6]


def test_prompt_lookup_prefers_most_recent_and_longest():
    d = _started(PromptLookupDrafter(max_ngram=3))
    seq = torch.tensor([[1, 2, 3, 1, 2, 4, 9, 2, 4, 1, 2]])
    # "1 2" occurs at 0 and 3; the most recent is followed by 4.
    assert d.propose(seq, 2).tokens.tolist() == [4, 9]


def test_prompt_lookup_without_repetition_proposes_nothing():
    d = _started(PromptLookupDrafter())
    assert len(d.propose(torch.tensor([[1, 2, 3, 4]]), 4)) == 0


def test_prompt_lookup_is_lossless_and_accepts_on_repetition(pair):
    target, _ = pair
    base_prompt = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(2))
    ref = autoregressive_generate(target, base_prompt, max_new_tokens=30).tokens
    # A prompt that already contains the continuation: lookup can copy it.
    prompt = torch.cat([base_prompt, torch.tensor([ref]), base_prompt], 1)
    expected = autoregressive_generate(target, prompt, max_new_tokens=30).tokens
    res = speculative_generate(target, None, prompt, drafter=PromptLookupDrafter(), max_new_tokens=30)
    assert res.tokens == expected
    assert res.stats.accepted > 0 and res.stats.draft_forwards == 0


def test_sampled_prompt_lookup_keeps_the_target_distribution():
    """q is one-hot at each looked-up token, so a draft x is kept with probability p(x)."""
    spec = FixtureSpec(vocab_size=16, hidden_size=16, num_layers=3, draft_layers=1, num_heads=2,
                       eps=0.3, head_scale=3.0, seed=5)
    target, _ = fixture_pair(spec)
    prompt = torch.tensor([[3, 4, 5, 3, 4, 5, 3, 4]])  # "3 4" recurs: lookup drafts "5 3 4 ..."
    expected = second_token_marginal(target, prompt)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(16)
    accepted = drafted = 0
    for _ in range(1500):
        res = speculative_generate(target, None, prompt, drafter=PromptLookupDrafter(), num_draft_tokens=3,
                                   max_new_tokens=3, temperature=1.0, generator=g)
        counts[res.tokens[1]] += 1
        accepted, drafted = accepted + res.stats.accepted, drafted + res.stats.drafted
    assert chi_square(counts, expected) < CHI2_CRITICAL_P001[15]
    assert 0 < accepted < drafted  # both branches of the acceptance rule were taken

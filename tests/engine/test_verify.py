"""Acceptance rules on hand-made tensors: no models."""

import torch

from specdec.engine.verify import greedy_accept, rejection_accept
from specdec.testing import CHI2_CRITICAL_P001, chi_square

V = 10
CHI2_DF9_P001 = CHI2_CRITICAL_P001[9]


def test_greedy_accepts_matching_prefix_then_corrects():
    drafts = torch.tensor([3, 4, 5, 6])
    assert greedy_accept(drafts, torch.tensor([3, 4, 9, 6, 1])) == (2, 9)
    assert greedy_accept(drafts, torch.tensor([3, 4, 5, 6, 1])) == (4, 1)  # bonus token
    assert greedy_accept(drafts, torch.tensor([0, 4, 5, 6, 1])) == (0, 0)


def test_equal_distributions_accept_everything():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(5, V, generator=g), -1)
    for _ in range(200):
        drafts = torch.multinomial(p[:4], 1, generator=g).squeeze(-1)
        n, _ = rejection_accept(drafts, p[:4], p, g)
        assert n == 4


def test_disjoint_supports_accept_nothing_and_correct_from_p():
    g = torch.Generator().manual_seed(0)
    q = torch.zeros(3, V)
    q[:, :5] = 0.2
    p = torch.zeros(4, V)
    p[:, 5:] = 0.2
    for _ in range(200):
        drafts = torch.multinomial(q, 1, generator=g).squeeze(-1)
        n, token = rejection_accept(drafts, q, p, g)
        assert n == 0 and token >= 5


def _emitted_counts(p, q, n_draws, seed, position):
    """Histogram of the token emitted at ``position`` of each verified block."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(V)
    for _ in range(n_draws):
        drafts = torch.multinomial(q, 1, generator=g).squeeze(-1)
        n, token = rejection_accept(drafts, q, p, g)
        emitted = drafts[:n].tolist() + [token]
        if len(emitted) > position:
            counts[emitted[position]] += 1
    return counts


def test_emitted_token_is_distributed_as_p():
    g = torch.Generator().manual_seed(1)
    p_row = torch.softmax(2 * torch.randn(V, generator=g), -1)
    q_row = torch.softmax(2 * torch.randn(V, generator=g), -1)
    p, q = p_row.expand(4, V), q_row.expand(3, V)
    counts = _emitted_counts(p, q, 20_000, seed=2, position=0)
    assert chi_square(counts, p_row) < CHI2_DF9_P001
    # The second emitted token (present whenever the first draft was kept) is also ~ p.
    counts2 = _emitted_counts(p, q, 20_000, seed=3, position=1)
    assert chi_square(counts2, p_row) < CHI2_DF9_P001
    # The test has power: the draft's own distribution is rejected by the same statistic.
    assert chi_square(counts, q_row) > 10 * CHI2_DF9_P001

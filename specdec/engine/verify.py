"""Acceptance of drafted tokens: pure tensor functions, no models.

Names follow Leviathan et al. (2023): ``p`` is the target's distribution, ``q`` the draft's.
Both functions take the N drafted tokens and the target's scores at the N+1 positions
``[last committed, d1 .. dN]`` and return ``(n_accepted, next_token)``: the first
``n_accepted`` drafts are kept and ``next_token`` follows them (the target's correction at
the first rejection, or the bonus token when all N are accepted).
"""

from __future__ import annotations

import torch

from .sampling import sample


def accepted_prefix_length(accept: torch.Tensor) -> int:
    """Length of the leading run of True in a 1-D bool tensor."""
    return int(accept.to(torch.int64).cumprod(dim=0).sum())


def greedy_accept(draft_tokens: torch.Tensor, target_argmax: torch.Tensor) -> tuple[int, int]:
    """Keep the longest prefix of drafts equal to the target's argmax.

    draft_tokens: (N,) ids; target_argmax: (N+1,) argmax of the target at each position.
    """
    n_draft = draft_tokens.shape[0]
    n = accepted_prefix_length(draft_tokens == target_argmax[:n_draft])
    return n, int(target_argmax[n])


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)): what a draft drawn from q leaves of p once it is rejected (p itself when
    nothing is left: p == q cannot reject, but rounding can)."""
    rest = (p - q).clamp_min(0.0)
    total = rest.sum()
    return rest / total if total > 0 else p


def rejection_accept(
    draft_tokens: torch.Tensor,
    q: torch.Tensor,
    p: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[int, int]:
    """Speculative sampling: the emitted tokens are distributed exactly as samples from ``p``.

    draft_tokens: (N,) ids sampled from q; q: (N, V) draft probabilities; p: (N+1, V) target
    probabilities. Draft i is kept with probability min(1, p_i(x_i) / q_i(x_i)); at the first
    rejection the next token is drawn from norm(max(0, p_i - q_i)); if all N are kept the
    bonus token is drawn from p_N.
    """
    n_draft = draft_tokens.shape[0]
    idx = draft_tokens.unsqueeze(-1)
    p_x = p[:n_draft].gather(-1, idx).squeeze(-1)  # p_i(x_i) for each drafted x_i
    q_x = q.gather(-1, idx).squeeze(-1)  # q_i(x_i)
    r = torch.rand(n_draft, generator=generator, device=p.device)
    n = accepted_prefix_length(r * q_x < p_x)  # r < p/q without dividing by q
    if n == n_draft:
        return n, int(sample(p[n_draft], generator))
    return n, int(sample(residual(p[n], q[n]), generator))

"""Context columns for a head over a reduced vocabulary: ids of the prompt and answer it cannot score.

A reduced head (EAGLE-3's draft vocabulary) keeps the ids the target's answers use most, so the rare
words a request names (a "cotton shirt", a "landlord", a function called ``is_palindrome``) lie outside
it, and they are exactly what answers copy. Each such id joins the head as soon as the context holds it,
scored through the target's own LM-head row: ``scale · w_id · h + bias``, with ``scale`` and ``bias``
fitted on held-out answers (``specdec distill context-vocab``). An id no context holds keeps q = 0.
"""

from __future__ import annotations

import torch


class ContextVocab:
    """The ids one generation's context holds outside a head's own vocabulary, with their scoring rows.

    ``add`` feeds the context as it grows (prompt, then committed tokens); ``columns`` is the head's own
    ids followed by the added ones, each score's id; ``first`` records where in the fed stream each added
    id first appeared, so a teacher-forced evaluation can hide it from the positions before (:meth:`seen_by`).
    """

    def __init__(self, rows: torch.Tensor, head_ids: torch.Tensor, scale: float, bias: float) -> None:
        self.rows, self.scale, self.bias = rows, scale, bias  # rows: the target's LM head (V, H)
        self.known = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device).index_fill_(0, head_ids, True)
        self.columns = head_ids
        self.ids = torch.empty(0, dtype=torch.long, device=rows.device)
        self.first = torch.empty(0, dtype=torch.long, device=rows.device)
        self.weight = rows.new_empty(0, rows.shape[1])
        self.fed = 0

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def add(self, tokens: torch.Tensor) -> None:
        """Feed the next tokens of the context (1-D); ids new to the head become columns."""
        tokens = tokens.to(self.known.device, torch.long)
        fresh = ~self.known[tokens]
        if bool(fresh.any()):
            ids, where = tokens[fresh], fresh.nonzero()[:, 0]
            new, inverse = ids.unique(return_inverse=True)
            first = torch.full_like(new, len(tokens)).scatter_reduce_(0, inverse, where, "amin")
            self.known[new] = True
            self.ids = torch.cat([self.ids, new])
            self.columns = torch.cat([self.columns, new])
            self.first = torch.cat([self.first, first + self.fed])
            self.weight = torch.cat([self.weight, self.rows[new] * self.scale])
        self.fed += len(tokens)

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., len(self)): the context columns' scores for the head's outputs ``hidden`` (..., H)."""
        weight = self.weight if self.weight.dtype == hidden.dtype else self.weight.to(hidden.dtype)
        return torch.nn.functional.linear(hidden, weight) + self.bias

    def seen_by(self, last: torch.Tensor) -> torch.Tensor:
        """(P, len(self)) bool: which columns a position whose context ends at stream index ``last`` (P,) holds."""
        return self.first[None, :] <= last[:, None]

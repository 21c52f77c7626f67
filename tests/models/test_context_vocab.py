"""Context columns of a reduced head: which ids join, when, and how they are scored."""

import torch

from specdec.models.context_vocab import ContextVocab


def _vocab(scale=1.0, bias=0.0):
    torch.manual_seed(0)
    rows = torch.randn(10, 4)
    return rows, ContextVocab(rows, torch.tensor([0, 1, 2]), scale, bias)


def test_only_ids_new_to_the_head_join_once_each_with_where_they_first_appeared():
    _, context = _vocab()
    context.add(torch.tensor([1, 7, 5, 7, 0]))
    context.add(torch.tensor([5, 9, 2, 9]))
    assert context.ids.tolist() == [5, 7, 9] and context.first.tolist() == [2, 1, 6]
    assert context.columns.tolist() == [0, 1, 2, 5, 7, 9] and context.fed == 9 and len(context) == 3
    context.add(torch.tensor([], dtype=torch.long))
    assert len(context) == 3 and context.fed == 9


def test_a_context_column_scores_scale_times_the_targets_row_plus_bias():
    rows, context = _vocab(scale=0.5, bias=-2.0)
    context.add(torch.tensor([8, 3]))
    hidden = torch.randn(2, 4)
    torch.testing.assert_close(context.scores(hidden), 0.5 * hidden @ rows[[3, 8]].T - 2.0)


def test_a_position_sees_only_the_columns_its_context_holds():
    _, context = _vocab()
    context.add(torch.tensor([4, 1, 6, 4]))
    assert context.seen_by(torch.tensor([-1, 0, 1, 2])).tolist() == [
        [False, False], [True, False], [True, False], [True, True]]

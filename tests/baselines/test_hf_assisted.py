"""HF assisted generation wrapper: lossless greedy, draft config untouched, exact lengths."""

import pytest

from specdec import autoregressive_generate
from specdec.baselines.hf_assisted import hf_assisted_generate
from specdec.testing import FixtureSpec, fixture_pair

NEW = 16


@pytest.mark.parametrize("n", [1, 4, None])
def test_greedy_equals_baseline_and_draft_config_unchanged(pair, prompt, n):
    target, draft = pair
    ref = autoregressive_generate(target, prompt, max_new_tokens=NEW).tokens
    config = draft.generation_config
    before = config.to_dict()
    res = hf_assisted_generate(target, draft, prompt, n, NEW)
    assert res.tokens == ref
    assert draft.generation_config is config and config.to_dict() == before
    s = res.stats
    assert s.new_tokens == NEW and 1 <= s.target_forwards <= NEW and s.draft_forwards > 0
    assert s.drafted == s.accepted == 0 and s.prefill_s == 0 and not s.phases_timed
    assert not s.phases_timed


def test_eos_none_overrides_the_targets_eos(prompt):
    target, draft = fixture_pair(FixtureSpec(eps=0.2, num_layers=3))
    ref = autoregressive_generate(target, prompt, max_new_tokens=NEW).tokens
    target.generation_config.eos_token_id = ref[3]  # as a real model's config would carry one
    target.generation_config.pad_token_id = 0
    res = hf_assisted_generate(target, draft, prompt, 2, NEW, eos_token_id=None)
    assert res.tokens == ref and len(res.tokens) == NEW
    stopped = hf_assisted_generate(target, draft, prompt, 2, NEW, eos_token_id=ref[3])
    assert stopped.tokens == ref[:4]


def test_rejects_bad_n(pair, prompt):
    with pytest.raises(ValueError):
        hf_assisted_generate(pair[0], pair[1], prompt, 0, NEW)

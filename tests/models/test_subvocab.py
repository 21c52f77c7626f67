"""Sub-vocabulary draft head: -inf outside its ids, lossless in the engine and in HF assisted generation."""

import pytest
import torch

from specdec import autoregressive_generate, speculative_generate
from specdec.baselines.hf_assisted import hf_assisted_generate
from specdec.engine.vocab import logits_width
from specdec.models import check_pair, load_model
from specdec.models.subvocab import SubVocabLlamaForCausalLM, make_subvocab_config, restrict_head
from specdec.testing import (
    CHI2_CRITICAL_P001,
    FixtureSpec,
    byte_tokenizer,
    chi_square,
    fixture_pair,
    second_token_marginal,
)

NEW = 32


@pytest.fixture(scope="module")
def sub_pair(pair):
    """The fixture target and its draft cut to the even token ids (half the vocabulary)."""
    target, draft = pair
    return target, restrict_head(draft, range(0, 256, 2))


def test_logits_match_the_full_head_on_its_ids_and_are_minus_inf_elsewhere(pair, sub_pair, prompt):
    _, draft = pair
    _, sub = sub_pair
    with torch.no_grad():
        full, cut = draft(prompt).logits, sub(prompt).logits
    assert cut.shape == full.shape and logits_width(sub) == 256
    assert sub.lm_head.weight.shape[0] == 128
    torch.testing.assert_close(cut[..., ::2], full[..., ::2])
    assert torch.isneginf(cut[..., 1::2]).all()
    with torch.no_grad():
        last = sub(prompt, logits_to_keep=1).logits
    torch.testing.assert_close(last, cut[:, -1:])


@pytest.mark.parametrize("n", [1, 3, 6])
def test_greedy_speculative_with_sub_vocabulary_draft_equals_target(sub_pair, prompt, n):
    target, sub = sub_pair
    ref = autoregressive_generate(target, prompt, max_new_tokens=NEW).tokens
    res = speculative_generate(target, sub, prompt, num_draft_tokens=n, max_new_tokens=NEW)
    assert res.tokens == ref
    assert any(t % 2 for t in ref)  # the target emits ids the draft can never propose...
    assert 0 < res.stats.accepted < res.stats.drafted  # ...yet the draft still gets some right


def test_hf_assisted_generation_accepts_the_sub_vocabulary_draft(sub_pair, prompt):
    target, sub = sub_pair
    ref = autoregressive_generate(target, prompt, max_new_tokens=NEW).tokens
    assert hf_assisted_generate(target, sub, prompt, 3, NEW).tokens == ref


def test_sampling_keeps_the_target_distribution_when_q_is_zero_on_some_ids():
    spec = FixtureSpec(vocab_size=16, hidden_size=16, num_layers=3, draft_layers=1, num_heads=2,
                       eps=0.3, head_scale=3.0, seed=5)
    target, draft = fixture_pair(spec)
    sub = restrict_head(draft, range(8))
    prompt = torch.tensor([[1, 2, 3, 4]])
    expected = second_token_marginal(target, prompt)  # the first token drafted for
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(16)
    draws, accepted = 1500, 0
    for _ in range(draws):
        res = speculative_generate(target, sub, prompt, num_draft_tokens=2, max_new_tokens=3,
                                   temperature=1.0, generator=g)
        counts[res.tokens[1]] += 1
        accepted += res.stats.accepted
    assert counts[8:].sum() > 0 and accepted > 0  # ids the draft cannot propose still come out
    assert chi_square(counts, expected) < CHI2_CRITICAL_P001[15]


def test_saved_sub_vocabulary_draft_loads_as_its_own_class(sub_pair, tmp_path, prompt):
    target, sub = sub_pair
    sub.save_pretrained(tmp_path / "draft")
    byte_tokenizer().save_pretrained(tmp_path / "draft")
    loaded = load_model(str(tmp_path / "draft"), dtype="float32")
    assert isinstance(loaded.model, SubVocabLlamaForCausalLM)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(prompt).logits, sub(prompt).logits)
    target.save_pretrained(tmp_path / "target")
    byte_tokenizer().save_pretrained(tmp_path / "target")
    assert check_pair(load_model(str(tmp_path / "target"), dtype="float32"), loaded) == 256


def test_config_rejects_ids_outside_the_vocabulary(pair):
    with pytest.raises(ValueError):
        make_subvocab_config(pair[1].config, [0, 256])
    with pytest.raises(ValueError):
        make_subvocab_config(pair[1].config, [])

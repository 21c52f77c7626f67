"""The one vocabulary rule, on configs alone (no weights needed)."""

from types import SimpleNamespace

import pytest

from specdec.engine.vocab import logits_width, shared_vocab_size
from specdec.testing import byte_tokenizer


def _model(rows: int):
    return SimpleNamespace(config=SimpleNamespace(vocab_size=rows))


def test_without_tokenizers_widths_may_differ_by_padding_only():
    assert shared_vocab_size(_model(128), _model(128)) == 128
    assert shared_vocab_size(_model(256), _model(300)) == 256
    assert shared_vocab_size(_model(151936), _model(151665)) == 151665  # 271 rows: under 1%
    with pytest.raises(ValueError, match="differ by more than padding"):
        shared_vocab_size(_model(128), _model(512))


def test_a_drafter_without_a_model_shares_the_targets_width():
    assert shared_vocab_size(_model(300)) == 300


def test_the_tokenizer_narrows_the_shared_ids_and_must_be_covered():
    tok = byte_tokenizer()  # 256 tokens
    assert shared_vocab_size(_model(320), _model(384), tok) == 256
    with pytest.raises(ValueError, match="do not cover"):
        shared_vocab_size(_model(320), _model(200), tok)


def test_two_tokenizers_must_map_tokens_to_the_same_ids():
    a, b = byte_tokenizer(), byte_tokenizer()
    assert shared_vocab_size(_model(256), _model(256), a, b) == 256
    b.add_tokens(["<extra>"])
    with pytest.raises(ValueError, match="257"):
        shared_vocab_size(_model(300), _model(300), a, b)


def test_logits_width_is_the_configured_vocabulary():
    assert logits_width(_model(49152)) == 49152

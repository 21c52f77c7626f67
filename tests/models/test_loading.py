"""Tests for specdec.models with tiny models built in code (no hub, no real weights by default)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from specdec.models import ModelLoadError, check_pair, load_model, load_pair, loading, resolve_pair


def _tiny_tokenizer(words: list[str]):
    """A word-level fast tokenizer over ``words`` (ids in list order)."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(tok_models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[0]))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=words[0], eos_token=words[1])


def _words(n: int, prefix: str = "w") -> list[str]:
    return ["<unk>", "</s>"] + [f"{prefix}{i}" for i in range(n - 2)]


def _tiny_dir(path: Path, *, rows: int = 128, words: list[str] | None = None, seed: int = 0) -> Path:
    """Save a tiny random Llama (``rows`` logits) and optionally a tokenizer to ``path``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=rows, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )
    LlamaForCausalLM(config).eval().save_pretrained(path)
    if words is not None:
        _tiny_tokenizer(words).save_pretrained(path)
    return path


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def test_local_directory_roundtrip(tmp_path):
    from transformers import AutoModelForCausalLM

    path = _tiny_dir(tmp_path / "tiny", words=_words(128))
    loaded = load_model(str(path))
    assert loaded.source == str(path.resolve()) and not loaded.model.training
    ids = loaded.tokenizer("w1 w2 w3", return_tensors="pt").input_ids
    assert ids.tolist() == [[3, 4, 5]]
    reference = AutoModelForCausalLM.from_pretrained(path).eval()
    assert torch.equal(_logits(loaded.model, ids), _logits(reference, ids))


def test_local_directory_bfloat16_model_only(tmp_path):
    path = _tiny_dir(tmp_path / "tiny")
    loaded = load_model(str(path), dtype="bfloat16")
    assert loaded.tokenizer is None and loaded.model.dtype == torch.bfloat16


def test_missing_path_is_one_line_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file") as info:
        load_model(str(tmp_path / "nothing.gguf"))
    assert "\n" not in str(info.value)


def test_hub_id_unreachable_fails_fast(monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # never touch the network in tests
    with pytest.raises(ModelLoadError) as info:
        load_model("unsloth/Llama-3.2-3B-Instruct")
    message = str(info.value)
    assert "\n" not in message and "unreachable" in message and "smollm2-135m-instruct" in message


def test_hub_probe_reports_unreachable(monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "ENDPOINT", "http://127.0.0.1:9")
    assert loading.hub_reachable(timeout=2.0) is False


def test_draft_not_trained_is_clear(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "draft_dir", lambda: tmp_path / "smollm2-draft")
    with pytest.raises(ModelLoadError, match="not available"):
        load_model("smollm2-draft")


def test_pair_sharing_vocab_with_padding(tmp_path):
    words = _words(120)
    target = _tiny_dir(tmp_path / "target", rows=128, words=words, seed=1)
    draft = _tiny_dir(tmp_path / "draft", rows=160, words=words, seed=2)
    t, d = load_pair(str(target), str(draft))
    assert check_pair(t, d) == 120


def test_pair_with_different_vocab_sizes_refused(tmp_path):
    target = _tiny_dir(tmp_path / "target", rows=128, words=_words(128))
    draft = _tiny_dir(tmp_path / "draft", rows=96, words=_words(96))
    with pytest.raises(ValueError, match="refusing pair") as info:
        load_pair(str(target), str(draft))
    message = str(info.value)
    assert str(target) in message and str(draft) in message and "128" in message and "96" in message


def test_pair_with_different_tokenizers_refused(tmp_path):
    target = _tiny_dir(tmp_path / "target", words=_words(128, "a"))
    draft = _tiny_dir(tmp_path / "draft", words=_words(128, "b"))
    with pytest.raises(ValueError, match="different tokenizers"):
        load_pair(str(target), str(draft))


def test_unknown_pair_name():
    with pytest.raises(ValueError, match="unknown pair"):
        load_pair("no-such-pair")
    assert resolve_pair("qwen-coder") == ("qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct")


@pytest.mark.slow
def test_smollm2_preset_generates():
    loaded = load_model("smollm2-135m-instruct")
    ids = loaded.tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = loaded.model.generate(ids, max_new_tokens=4, do_sample=False)
    assert "Paris" in loaded.tokenizer.decode(out[0, ids.shape[1]:])


@pytest.mark.slow
def test_smollm2_gguf_path_matches_preset():
    from specdec.models.assets import fetch_asset

    gguf = fetch_asset("smollm2-135m-instruct")
    direct, preset = load_model(str(gguf)), load_model("smollm2-135m-instruct")
    ids = preset.tokenizer("def add(a, b):", return_tensors="pt").input_ids
    assert torch.equal(_logits(direct.model, ids), _logits(preset.model, ids))


@pytest.mark.slow
def test_qwen_coder_pair_shares_vocab():
    target, draft = load_pair("qwen-coder", dtype="bfloat16")
    assert check_pair(target, draft) >= 151643

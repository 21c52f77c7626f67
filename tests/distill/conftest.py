"""Tiny targets and teacher records for the distillation tests (built in code, no downloads)."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from specdec.distill.records import make_record, topk_rows
from specdec.testing import one_thread, tiny_pair


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models on a shared CPU run fastest on one thread."""
    with one_thread():
        yield


@pytest.fixture
def target64() -> LlamaForCausalLM:
    """A random 2-layer Llama over 64 ids with bos 1, eos 2, pad 2."""
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    return LlamaForCausalLM(cfg).eval()


def records_of(target, n=6, length=12, k=5, start=4, kind="shk-g"):
    """Records of random sequences with ``target``'s top-k, rows from ``start``, keys 0..n-1."""
    g = torch.Generator().manual_seed(1)
    recs = []
    with torch.no_grad():
        for i in range(n):
            ids = torch.randint(3, target.config.vocab_size, (length,), generator=g)
            vals, tids = topk_rows(target(ids[None]).logits[0, :-1], k)
            recs.append(make_record(ids.tolist(), start, vals[start - 1:], tids[start - 1:], i, kind,
                                    gen_start=start if kind.endswith(("-g", "-t")) else None))
    return recs


@pytest.fixture
def records64(target64):
    """Six greedy-answer records of ``target64`` (answers from position 4)."""
    return records_of(target64)


@pytest.fixture
def byte_pair():
    """(target, same-shape draft) LoadedModels over the byte tokenizer, with id 0 as the pad token."""
    target, draft = tiny_pair(eps=0.05)
    target.tokenizer.pad_token = target.tokenizer.convert_ids_to_tokens(0)
    return target, draft


@pytest.fixture
def saved_target(tmp_path, byte_pair):
    """``byte_pair``'s target saved with its tokenizer: a directory ``load_model`` accepts."""
    path = tmp_path / "target"
    byte_pair[0].model.save_pretrained(path)
    byte_pair[0].tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def shakespeare_dir(tmp_path):
    """Two allowed files, one excluded play and a metadata file, of short paragraphs."""
    root = tmp_path / "texts"
    root.mkdir()
    para = lambda tag, i: f"{tag} line {i}: " + "words " * 12
    (root / "hamlet_gut.txt").write_text("\n\n".join(para("HAMLET", i) for i in range(40)))
    (root / "sonnets.txt").write_text("\n\n".join(para("SONNET", i) for i in range(30)))
    (root / "macbeth_gut.txt").write_text("\n\n".join(para("MACBETH", i) for i in range(12)))
    (root / "metadata.txt").write_text("\n\n".join(para("META", i) for i in range(12)))
    return root


@pytest.fixture
def make_records():
    """The record builder behind ``records64``, for other shapes and kinds."""
    return records_of

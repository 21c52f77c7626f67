import pytest
import torch

from specdec.distill import draft as dr
from specdec.distill.records import make_record
from specdec.models import load_model
from specdec.models.subvocab import SubVocabLlamaForCausalLM, restrict_head

SMALL = dr.DraftConfig(layers=1, hidden=16, intermediate=32, heads=2, kv_heads=1)


def test_make_draft_shares_the_targets_vocabulary_and_special_ids(target64):
    d = dr.make_draft(target64.config, SMALL)
    assert d.config.vocab_size == 64 and d.config.hidden_size == 16 and d.config.num_hidden_layers == 1
    assert (d.config.bos_token_id, d.config.eos_token_id, d.config.pad_token_id) == (1, 2, 2)
    assert d.get_input_embeddings().weight.data_ptr() == d.get_output_embeddings().weight.data_ptr()


def test_draft_config_validate():
    with pytest.raises(ValueError, match="draft-heads"):
        dr.DraftConfig(hidden=30, heads=4).validate()
    with pytest.raises(ValueError, match="draft-layers"):
        dr.DraftConfig(layers=0).validate()


def test_pca_embeddings_keep_the_leading_directions_at_the_requested_scale(target64):
    emb = target64.get_input_embeddings().weight.detach()
    proj = dr.pca_embeddings(emb, 16)
    assert proj.shape == (64, 16) and abs(proj.std().item() - 0.02) < 1e-4
    var = proj.var(0)
    assert (var[:-1] >= var[1:] - 1e-9).all()  # principal directions in decreasing order
    assert torch.allclose(proj.T @ proj, torch.diag((proj.T @ proj).diag()), atol=1e-5)  # uncorrelated


def test_choose_vocab_ranks_the_teachers_first_choices_and_keeps_specials():
    def rec(top):  # rows of (top-1, runner-up)
        return make_record([0] * (len(top) + 1), 1, torch.zeros(len(top), 2), torch.tensor(top), 0, "shk-g")
    recs = [rec([[5, 9], [5, 9], [7, 9], [8, 9]]), rec([[7, 9], [5, 11]])]
    # top-1 counts: 5 x3, 7 x2, 8 x1; 9 is only a runner-up (x5) so it ranks after every top-1 id
    assert dr.choose_vocab(recs, 3, 64) == [5, 7, 8]
    assert dr.choose_vocab(recs, 4, 64) == [5, 7, 8, 9]
    assert dr.choose_vocab(recs, 4, 64, always=(2,)) == [2, 5, 7, 8]


def test_head_columns_and_coverage(target64, records64):
    vocab = dr.choose_vocab(records64, 24, 64, always=(2,))
    top1 = torch.cat([r.tids[:, 0] for r in records64]).tolist()
    assert dr.head_coverage(records64, vocab, pad_id=2) == sum(t in vocab for t in top1) / len(top1)
    assert dr.head_coverage(records64, [], pad_id=2) == 0.0
    full = dr.make_draft(target64.config, SMALL)
    assert dr.head_columns(full) is None
    cols = dr.head_columns(restrict_head(full, vocab))
    assert cols[vocab].tolist() == list(range(len(vocab))) and (cols >= 0).sum() == len(vocab)


def test_save_draft_writes_bf16_and_leaves_the_trained_weights_alone(tmp_path, target64, records64):
    d = restrict_head(dr.make_draft(target64.config, SMALL), dr.choose_vocab(records64, 24, 64, always=(2,)))
    before = {k: v.clone() for k, v in d.state_dict().items()}
    (tmp_path / "model-00009-of-00009.safetensors").write_bytes(b"stale")
    dr.save_draft(d, tmp_path)
    assert not (tmp_path / "model-00009-of-00009.safetensors").exists()
    assert all(v.dtype == torch.float32 and torch.equal(v, before[k]) for k, v in d.state_dict().items())
    back = load_model(str(tmp_path), dtype="bfloat16").model
    assert isinstance(back, SubVocabLlamaForCausalLM) and back.config.draft_vocab == d.config.draft_vocab
    assert torch.equal(back.lm_head.weight, d.lm_head.weight.to(torch.bfloat16))

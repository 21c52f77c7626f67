"""The feature head: shape, save/load round trip, and refusal of a head made for another target."""

import json

import pytest
import torch
from transformers import DynamicCache

from specdec.models.feature_head import load_feature_head
from specdec.testing import FixtureSpec, fixture_pair, random_head, random_model


@pytest.fixture(scope="module")
def target():
    return fixture_pair(FixtureSpec(eps=0.2))[0]


def test_step_predicts_one_feature_per_position_and_logits_span_the_vocabulary(target):
    head = random_head(target)
    ids = torch.randint(0, 256, (1, 7))
    hs = target(ids, output_hidden_states=True).hidden_states
    with torch.no_grad():
        out = head.step(head.features(hs)[:, :-1], ids[:, 1:])
    assert out.shape == (1, 6, 64)
    assert head.logits(out).shape == (1, 6, 256)


@pytest.mark.parametrize("kw", [{}, {"feature_layers": [1, 2]}, {"num_layers": 2}])
def test_one_row_steps_over_a_dynamic_cache_match_the_bodys_own_forward(target, kw):
    head = random_head(target, **kw)
    feats, ids = torch.randn(1, 9, 64), torch.randint(0, 256, (1, 9))
    mine, body = DynamicCache(), DynamicCache()

    def check(t):  # row t, one step over each cache: the head's own against the body's full forward
        out = head.step(feats[:, t:t + 1], ids[:, t:t + 1], mine)
        x = head.fc(torch.cat([head.target_embed[0](ids[:, t:t + 1]), feats[:, t:t + 1]], dim=-1))
        ref = head.body(inputs_embeds=x, past_key_values=body, use_cache=True).last_hidden_state
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)

    with torch.no_grad():
        head.step(feats[:, :5], ids[:, :5], mine)
        head.step(feats[:, :5], ids[:, :5], body)
        for t in range(5, 9):
            check(t)
        mine.crop(-2)  # a rejection, then a step from the rolled-back cache
        body.crop(-2)
        check(7)
    assert mine.get_seq_length() == body.get_seq_length() == 8


def test_a_grown_head_computes_what_it_did_until_trained(target):
    """New layers start as no-ops (zero output projections): same features, rows and cached steps."""
    head = random_head(target, draft_vocab=list(range(0, 256, 2)))
    with torch.no_grad():
        for p in head.body.norm.parameters():
            p.add_(0.1)  # an untrained norm is all ones: make sure the grown head keeps the trained one
    big = head.grown(3, target)
    assert big.head_config.num_layers == 3 and len(big.body.layers) == 3
    assert big.config.num_hidden_layers == 3  # what a cache made for it from its config spans
    feats, ids = torch.randn(1, 6, 64), torch.randint(0, 256, (1, 6))
    small_cache, big_cache = DynamicCache(), DynamicCache()
    with torch.no_grad():
        torch.testing.assert_close(big.logits(big.step(feats, ids)), head.logits(head.step(feats, ids)))
        head.step(feats[:, :5], ids[:, :5], small_cache)
        big.step(feats[:, :5], ids[:, :5], big_cache)
        torch.testing.assert_close(big.step(feats[:, 5:], ids[:, 5:], big_cache),
                                   head.step(feats[:, 5:], ids[:, 5:], small_cache))
    big.logits(big.step(feats, ids)).logsumexp(-1).sum().backward()  # any loss: the new layers train from zero
    assert big.body.layers[2].self_attn.o_proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="cannot shrink"):
        big.grown(2, target)


def test_a_config_saved_before_num_layers_loads_as_one_layer(target, tmp_path):
    head = random_head(target)
    head.save(tmp_path / "head")
    cfg = json.loads((tmp_path / "head" / "head_config.json").read_text())
    assert cfg.pop("num_layers") == 1
    (tmp_path / "head" / "head_config.json").write_text(json.dumps(cfg))
    assert load_feature_head(tmp_path / "head", target).head_config.num_layers == 1


def test_reduced_vocabulary_scores_only_its_ids(target):
    head = random_head(target, draft_vocab=list(range(0, 256, 4)))
    with torch.no_grad():
        logits = head.logits(torch.randn(1, 3, 64))
    assert torch.isfinite(logits[..., ::4]).all() and torch.isinf(logits[..., 1::4]).all()


@pytest.mark.parametrize("draft_vocab", [None, list(range(0, 256, 2))])
def test_a_cut_vocabulary_keeps_each_kept_ids_score(target, draft_vocab):
    head = random_head(target, draft_vocab=draft_vocab)
    keep = list(range(0, 256, 6))
    cut = head.restricted(keep, target)
    hidden = torch.randn(1, 3, 64)
    with torch.no_grad():
        full, small = head.logits(hidden), cut.logits(hidden)
    torch.testing.assert_close(small[..., keep], full[..., keep])
    assert torch.isinf(small[..., 1::6]).all() and cut.head_config.draft_vocab == keep
    with pytest.raises(ValueError, match="does not score"):
        cut.restricted([1], target)  # 1 is not among the cut head's ids


def test_multi_layer_fusion_reads_each_named_layer(target):
    head = random_head(target, feature_layers=[2, 3, 6])
    ids = torch.randint(0, 256, (1, 5))
    hs = list(target(ids, output_hidden_states=True).hidden_states)
    with torch.no_grad():
        base = head.features(tuple(hs))
        hs[3] = hs[3] + 1.0
        assert not torch.allclose(head.features(tuple(hs)), base)
        hs[4] = hs[4] + 1.0  # not a feature layer
        moved = head.features(tuple(hs))
        hs[4] = hs[4] - 1.0
        assert torch.allclose(head.features(tuple(hs)), moved)


def test_save_load_round_trip(target, tmp_path):
    head = random_head(target, feature_layers=[2, 6], draft_vocab=list(range(128)), num_layers=2)
    head.save(tmp_path / "head")
    loaded = load_feature_head(tmp_path / "head", target)
    feats, toks = torch.randn(1, 4, 64), torch.randint(0, 256, (1, 4))
    with torch.no_grad():
        assert torch.equal(loaded.logits(loaded.step(feats, toks)), head.logits(head.step(feats, toks)))
    saved = head.state_dict()
    assert {k.split(".")[0] for k in saved} == {"fuse", "fc", "body", "lm_head"}  # the target's weights stay out
    assert saved["body.embed_tokens.weight"].shape == (1, 64)  # the body is fed embeddings, never ids


@pytest.mark.parametrize("other, reason", [
    (FixtureSpec(hidden_size=32), "hidden size 64"),
    (FixtureSpec(vocab_size=300), "vocabulary 256"),
    (FixtureSpec(num_layers=4), "layer count 6"),
    (FixtureSpec(seed=9), "embeddings differ"),
])
def test_a_head_for_another_target_is_refused_in_one_line(target, tmp_path, other, reason):
    random_head(target).save(tmp_path / "head")
    with pytest.raises(ValueError, match=reason) as info:
        load_feature_head(tmp_path / "head", random_model(other))
    assert "\n" not in str(info.value)


def test_layer_ids_beyond_the_target_are_refused(target, tmp_path):
    random_head(target, feature_layers=[2, 6]).save(tmp_path / "head")
    path = tmp_path / "head" / "head_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "feature_layers": [2, 9]}))
    with pytest.raises(ValueError, match="reads hidden states"):
        load_feature_head(tmp_path / "head", target)


def test_a_fitted_head_scores_the_contexts_other_ids_through_the_targets_rows(target, tmp_path):
    head = random_head(target, draft_vocab=list(range(0, 256, 2)))
    assert head.context_vocab() is None  # not fitted: q stays 0 outside its ids
    head.head_config.context_scale, head.head_config.context_bias = 2.0, -1.0
    context = head.context_vocab()
    context.add(torch.tensor([4, 7, 9, 7]))
    hidden = torch.randn(1, 3, 64)
    with torch.no_grad():
        logits = head.logits(hidden, context)
        rows = target.get_output_embeddings().weight[[7, 9]]
        torch.testing.assert_close(logits[..., [7, 9]], 2.0 * hidden @ rows.T - 1.0)
        torch.testing.assert_close(logits[..., ::2], head.logits(hidden)[..., ::2])  # its own columns unchanged
        assert torch.isinf(logits[..., [1, 3, 5, 11]]).all()  # odd ids no context holds: q = 0
        head.head_config.context_bias = 1e4  # the context's ids outscore every own column
        context = head.context_vocab()
        context.add(torch.tensor([7, 9]))
        _, top = head.top_tokens(hidden[0], 2, 256, context)
        assert set(top[0].tolist()) == {7, 9}
        _, top = head.top_tokens(hidden[0], 1, 8, context)  # below the shared vocabulary only
        assert top.flatten().tolist() == [7, 7, 7]
    head.head_config.context_bias = -1.0
    head.save(tmp_path / "head")
    loaded = load_feature_head(tmp_path / "head", target).head_config
    assert (loaded.context_scale, loaded.context_bias) == (2.0, -1.0)

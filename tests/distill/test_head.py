"""Feature-head data and training on a tiny target built in code."""

import csv
from pathlib import Path

import pytest
import torch

from specdec.distill.head_data import (
    CONTINUED_BASE,
    Sequence,
    answer_queue,
    load_sequences,
    pool_key_base,
    save_sequences,
    shifted_key,
)
from specdec.distill.head_train import (
    HeadTrainConfig,
    choose_head_vocab,
    head_columns,
    heldout_answers,
    pad_batch,
    teacher,
    train_head,
    unroll,
    unrolled_loss,
)
from specdec.distill.sources import ChatPrompt, is_heldout
from specdec.models.feature_head import FeatureHead, FeatureHeadConfig, load_feature_head
from specdec.testing import save_tiny_pair, tiny_pair


def _sequences(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(0, 256, (20,), generator=g).tolist()
        out.append(Sequence(ids, 8 if i % 3 else -1, i, "answer" if i % 3 else "text"))
    return out


def test_sequence_shards_round_trip(tmp_path):
    seqs = _sequences(5)
    save_sequences(tmp_path / "answer_00000.safetensors", seqs[:3])
    save_sequences(tmp_path / "self_00001.safetensors", seqs[3:])
    assert load_sequences(tmp_path) == seqs
    assert not list(tmp_path.glob(".*.tmp"))


def test_kept_head_data_loads_as_documented():
    """distill_data/smollm2-head: pool answers, self-written questions and templated requests, each with
    its answer after its prompt, ids in SmolLM2's vocabulary, keys unique per kind (so a later stage skips
    what is answered)."""
    root = Path(__file__).resolve().parents[2] / "distill_data" / "smollm2-head"
    seqs = load_sequences(root)
    kinds = {k: [s for s in seqs if s.kind == k] for k in ("answer", "self", "request")}
    assert len(seqs) == sum(map(len, kinds.values())) and kinds["answer"] and kinds["self"]
    assert all(0 < s.answer_start < len(s.ids) for s in seqs)
    assert max(max(s.ids) for s in seqs) < 49_152 and min(min(s.ids) for s in seqs) >= 0
    for group in kinds.values():
        assert len({s.key for s in group}) == len(group)


def test_answer_queue_skips_answered_prompts_and_other_kinds():
    pool = [ChatPrompt(f"p{i}", ("shk", "doc", "code")[i % 3], i) for i in range(9)]
    done = [Sequence([1, 2], 1, 0, "answer"), Sequence([1], -1, 3, "text"), Sequence([1, 2], 1, 6, "answer")]
    assert [p.key for p in answer_queue(pool, done, ("shk", "doc", "code"))] == [1, 2, 3, 4, 5, 7, 8]
    assert [p.key for p in answer_queue(pool, done, ("shk",))] == [3]  # 0 and 6 answered; a text row is not
    assert answer_queue(pool, [], ()) == []


def test_shifted_key_finds_answers_whose_pool_prompt_changed():
    """A pool rebuilt from other source versions puts other prompts under the answered keys."""
    def render(p):
        return [ord(c) for c in p.text]

    pool = [ChatPrompt(t, "shk", i) for i, t in enumerate(["ab", "cd", "ef"])]
    done = [Sequence([*render(pool[1]), 7, 8], 2, 1, "answer"), Sequence([1], -1, 0, "text")]
    assert shifted_key(pool, done, render) is None
    shuffled = [ChatPrompt(p.text, p.kind, 2 - p.key) for p in pool]
    assert shifted_key(shuffled[::-1], done, render) is None  # "cd" keeps key 1
    moved = [ChatPrompt(t, "shk", i) for i, t in enumerate(["cd", "ab", "ef"])]
    assert shifted_key(moved, done, render) == 1
    assert shifted_key(pool[:1], done, render) == 1  # the key is gone from the pool


def _render(p):
    return [ord(c) for c in p.text]


def test_answer_queue_skips_by_content_under_a_key_base():
    """Continued on other source versions, a prompt answered under another key is not answered again."""
    pool = [ChatPrompt(t, "shk", i) for i, t in enumerate(["cd", "ab", "ef", "gh"])]
    done = [Sequence([*_render(pool[1]), 9], 2, 0, "answer"),  # "ab" answered under the first pool's key 0
            Sequence([*_render(pool[3]), 9], 2, CONTINUED_BASE + 3, "answer")]
    assert [p.text for p in answer_queue(pool, done, ("shk",), CONTINUED_BASE, _render)] == ["cd", "ef"]
    assert [p.text for p in answer_queue(pool, done, ("shk",), CONTINUED_BASE)] == ["cd", "ab", "ef"]  # by key only
    assert [p.text for p in answer_queue(pool, done, ("shk",), 0, _render)] == ["ef"]  # key 0 ("cd") answered too


def test_pool_key_base_continues_a_second_version_and_refuses_a_third():
    first = [ChatPrompt(t, "shk", i) for i, t in enumerate(["ab", "cd", "ef"])]
    done = [Sequence([*_render(first[0]), 7], 2, 0, "answer"), Sequence([1], -1, 1, "text")]
    assert pool_key_base(first, done, _render) == 0  # the same sources
    assert pool_key_base(first, [], _render) == 0
    second = [ChatPrompt(t, "shk", i) for i, t in enumerate(["cd", "ab", "ef", "xy"])]
    assert pool_key_base(second, done, _render) == CONTINUED_BASE
    done.append(Sequence([*_render(second[3]), 7], 2, CONTINUED_BASE + 3, "answer"))
    assert pool_key_base(second, done, _render) == CONTINUED_BASE  # the second version, continued again
    third = [ChatPrompt(t, "shk", i) for i, t in enumerate(["ef", "cd", "ab", "zz"])]
    assert pool_key_base(third, done, _render) is None  # key 3 would now mean "zz"


def test_pad_batch_marks_answers_and_padding():
    seqs = [Sequence([5, 6, 7, 8], 2, 0, "answer"), Sequence([9, 10], -1, 1, "text")]
    ids, att, answer = pad_batch(seqs, 0, 16, "cpu")
    assert ids.tolist() == [[5, 6, 7, 8], [9, 10, 0, 0]]
    assert att.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert answer.tolist() == [[False, False, True, True], [False] * 4]


def test_head_vocabulary_keeps_special_ids_then_answer_tokens_then_text_tokens():
    seqs = [Sequence([3, 3, 3, 4, 9, 7], 4, 0, "answer"), Sequence([3, 5, 5, 6], -1, 1, "text")]
    assert choose_head_vocab(seqs, 3, {0}) == [0, 7, 9]  # the answer's ids first, though 3 is commoner
    assert choose_head_vocab(seqs, 4, {0}) == [0, 3, 7, 9]  # then the commonest text id


@pytest.mark.parametrize("layers, head_vocab", [((), None), ((2, 4, 6), list(range(0, 256, 2)))])
def test_unrolled_loss_falls_when_fitting_one_batch(layers, head_vocab):
    target = tiny_pair()[0].model
    head = FeatureHead(FeatureHeadConfig.for_target(target, "tiny", list(layers) or None, head_vocab), target,
                       dtype=torch.float32).train()
    cfg = HeadTrainConfig(topk=8, ttt_steps=3, noise=0.0)
    ids, att, _ = pad_batch(_sequences(8), 0, 64, "cpu")
    hidden, vals, tids = teacher(target, ids, att, cfg.topk)
    columns = head_columns(head, 256, "cpu")
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    first = float(unrolled_loss(head, hidden, vals, tids, ids, att, cfg, columns).detach())
    for _ in range(40):
        loss = unrolled_loss(head, hidden, vals, tids, ids, att, cfg, columns)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.7 * first


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_unrolled_steps_see_what_a_drafted_token_sees_at_inference(attention):
    """Step i of the batched training-time test at index t equals drafting i + 1 tokens one by one
    after a prefill of positions 0..t (real features), through the head's own KV cache."""
    from transformers import DynamicCache

    target = tiny_pair()[0].model
    head = FeatureHead(FeatureHeadConfig.for_target(target, "tiny", [2, 4]), target, dtype=torch.float32).eval()
    head.body.set_attn_implementation(attention)
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        feats = head.features(target(input_ids=ids, output_hidden_states=True).hidden_states)
        outs = unroll(head, feats, ids, 3)
        for t in (0, 4, 8):
            cache = DynamicCache(config=head.body.config)
            out = head.step(feats[:, :t + 1], ids[:, 1:t + 2], past_key_values=cache)[:, -1:]
            torch.testing.assert_close(out[:, 0], outs[0][:, t], atol=1e-5, rtol=1e-4)
            for i in (1, 2):  # the previous output stands in for the feature; token t + i + 1 is fed
                out = head.step(out, ids[:, t + i + 1:t + i + 2], past_key_values=cache)
                torch.testing.assert_close(out[:, 0], outs[i][:, t], atol=1e-5, rtol=1e-4)
        drafted = unroll(head, feats, ids, 2, drafted=True)  # step 1 fed the head's own first draft
        for t in (0, 5):
            cache = DynamicCache(config=head.body.config)
            out = head.step(feats[:, :t + 1], ids[:, 1:t + 2], past_key_values=cache)[:, -1:]
            out = head.step(out, head.logits(out).argmax(-1), past_key_values=cache)
            torch.testing.assert_close(out[:, 0], drafted[1][:, t], atol=1e-5, rtol=1e-4)


def test_train_head_logs_saves_and_resumes(tmp_path):
    target_dir, _ = save_tiny_pair(tmp_path / "pair")
    data = tmp_path / "data"
    data.mkdir()
    save_sequences(data / "answer_00000.safetensors", _sequences(60))
    cfg = HeadTrainConfig(target=str(target_dir), data_dir=str(data), out_dir=str(tmp_path / "head"),
                          head_vocab=64, max_steps=4, minutes=5, batch_tokens=256, eval_every_s=0.0,
                          heldout_frac=0.2, warmup=2, target_dtype="float32")
    out = train_head(cfg)
    with (out / "training_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows][-1] == 4 and all(0 <= float(r["heldout_agreement"]) <= 1 for r in rows)
    target = tiny_pair()[0].model
    head = load_feature_head(out, target)
    assert len(head.head_config.draft_vocab) == 64
    again = train_head(HeadTrainConfig(**{**cfg.__dict__, "max_steps": 6}))  # resumes at step 4
    with (again / "training_log.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps[-1] == 6 and steps.count(0) == 1


def test_heldout_answers_take_each_kind_in_turn():
    from specdec.distill.sources import is_heldout

    seqs = [Sequence([1, 2, 3], 1, k, "answer") for k in range(400)]
    seqs += [Sequence([1, 2, 3], 1, 10_000_000 + k, "self") for k in range(400)]
    seqs += [Sequence([1, 2, 3], -1, 20_000_000 + k, "text") for k in range(400)]
    held = heldout_answers(seqs, 0.05, 10)
    assert [s.kind for s in held] == ["answer", "self"] * 5  # pool answers first in file order do not crowd out
    assert all(is_heldout(s.key, 0.05) for s in held)
    assert len(heldout_answers(seqs, 0.05, 10_000)) == sum(is_heldout(s.key, 0.05) for s in seqs[:800])


@pytest.mark.parametrize("layers", [1, 2])
def test_a_new_stage_starts_from_a_saved_head_with_its_vocabulary(tmp_path, layers):
    """With more layers the saved head grows; either way step 0 scores the saved head as it was."""
    target_dir, _ = save_tiny_pair(tmp_path / "pair")
    data = tmp_path / "data"
    data.mkdir()
    save_sequences(data / "answer_00000.safetensors", _sequences(60))
    base = dict(target=str(target_dir), data_dir=str(data), minutes=5, batch_tokens=256, eval_every_s=0.0,
                heldout_frac=0.2, warmup=2, target_dtype="float32")
    first = train_head(HeadTrainConfig(**base, out_dir=str(tmp_path / "s1"), head_vocab=64, max_steps=6))
    second = train_head(HeadTrainConfig(**base, out_dir=str(tmp_path / "s2"), head_vocab=64, max_steps=2,
                                        init_from=str(first), head_layers=layers))
    target = tiny_pair()[0].model
    head1, head2 = load_feature_head(first, target), load_feature_head(second, target)
    assert head2.head_config.draft_vocab == head1.head_config.draft_vocab  # its own vocabulary, not a new one
    assert (head1.head_config.num_layers, head2.head_config.num_layers) == (1, layers)
    with (first / "training_log.csv").open() as f:
        best1 = max(float(r["heldout_agreement"]) for r in csv.DictReader(f))
    with (second / "training_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [0, 1, 2]
    assert float(rows[0]["heldout_agreement"]) == pytest.approx(best1)  # step 0 scores the saved head as it was


def test_a_smaller_head_vocab_cuts_a_saved_heads_vocabulary_to_the_ids_the_data_uses_most(tmp_path):
    target_dir, _ = save_tiny_pair(tmp_path / "pair")
    data = tmp_path / "data"
    data.mkdir()
    seqs = _sequences(60)
    save_sequences(data / "answer_00000.safetensors", seqs)
    base = dict(target=str(target_dir), data_dir=str(data), minutes=5, batch_tokens=256, eval_every_s=0.0,
                heldout_frac=0.2, warmup=2, target_dtype="float32")
    first = train_head(HeadTrainConfig(**base, out_dir=str(tmp_path / "s1"), head_vocab=64, max_steps=4))
    cut = train_head(HeadTrainConfig(**{**base, "minutes": 0.0}, out_dir=str(tmp_path / "cut"), head_vocab=24,
                                     init_from=str(first)))  # no training: the cut head, scored and saved
    target = tiny_pair()[0].model
    head1, head2 = load_feature_head(first, target), load_feature_head(cut, target)
    kept = head2.head_config.draft_vocab
    assert len(kept) == 24 and set(kept) < set(head1.head_config.draft_vocab)
    train = [s for s in seqs if not is_heldout(s.key, 0.2)]
    assert kept == choose_head_vocab(train, 24, set(), set(head1.head_config.draft_vocab))
    hidden = torch.randn(1, 2, 64)
    with torch.no_grad():
        torch.testing.assert_close(head2.logits(hidden)[..., kept], head1.logits(hidden)[..., kept])


def test_a_time_budget_sizes_the_schedule_from_measured_steps(tmp_path):
    import json

    target_dir, _ = save_tiny_pair(tmp_path / "pair")
    data = tmp_path / "data"
    data.mkdir()
    save_sequences(data / "answer_00000.safetensors", _sequences(60))
    cfg = HeadTrainConfig(target=str(target_dir), data_dir=str(data), out_dir=str(tmp_path / "head"), minutes=0.05,
                          batch_tokens=128, eval_every_s=600.0, heldout_frac=0.2, warmup=2, ttt_steps=1,
                          target_dtype="float32")
    out = train_head(cfg)
    progress = json.loads((out / "checkpoint" / "progress.json").read_text())
    assert progress["step"] > 10  # the budget, not a step count, ended the run
    # sized to the budget from the timed steps: within a factor of 4 of the steps run (a loose band,
    # since a shared CPU's step times drift within a 3-second run)
    assert progress["step"] / 4 <= progress["total_steps"] <= 4 * progress["step"]


def test_agreement_figure_from_a_head_log_and_draft_stage_logs(tmp_path):
    from specdec.distill.cli import main

    head = tmp_path / "head.csv"
    head.write_text("step,elapsed_s,positions,train_loss,heldout_agreement,heldout_agreement_2,lr\n"
                    "0,0,0,0,0.0,0.0,0\n10,240,40960,3.1,0.31,0.2,1e-3\n20,480,81920,2.5,0.45,0.3,5e-4\n")
    draft = tmp_path / "draft"
    draft.mkdir()
    for name, top in (("training_log_stage1.csv", 0.3), ("training_log.csv", 0.5)):
        (draft / name).write_text("step,epoch,elapsed_s,train_loss,heldout_agreement,lr\n"
                                  f"0,0,0,0,0.1,1e-3\n9,1,600,2.0,{top},1e-4\n")
    out = tmp_path / "agreement.png"
    assert main(["curve", "--head-log", str(head), "--draft-dir", str(draft), "--out", str(out)]) == 0
    assert out.stat().st_size > 20_000


def test_a_head_trained_in_stages_is_drawn_end_to_end(tmp_path, capsys):
    from specdec.distill.cli import main
    from specdec.distill.curves import head_curve

    head = tmp_path / "head"
    head.mkdir()
    columns = "step,elapsed_s,positions,train_loss,heldout_agreement,heldout_agreement_2,lr\n"
    (head / "training_log_stage1.csv").write_text(columns + "0,0,0,0,0.0,0.0,0\n10,600,40000,3.1,0.31,0.2,1e-3\n")
    (head / "training_log.csv").write_text(columns + "0,0,0,0,0.30,0.2,0\n10,300,50000,2.5,0.45,0.3,5e-4\n")
    curve = head_curve([head / "training_log_stage1.csv", head / "training_log.csv"])
    assert curve.minutes.tolist() == [0, 10, 10, 15] and curve.positions.tolist() == [0, 40000, 40000, 90000]
    assert curve.stage.tolist() == [1, 1, 2, 2]
    draft = tmp_path / "draft"
    draft.mkdir()
    (draft / "training_log.csv").write_text("step,epoch,elapsed_s,train_loss,heldout_agreement,lr\n0,0,0,0,0.1,1e-3\n")
    out = tmp_path / "agreement.png"
    assert main(["curve", "--head-dir", str(head), "--draft-dir", str(draft), "--out", str(out)]) == 0
    assert out.stat().st_size > 20_000
    assert main(["curve", "--head-dir", str(tmp_path / "none"), "--draft-dir", str(draft), "--out", str(out)]) == 2
    assert "no training log" in capsys.readouterr().err

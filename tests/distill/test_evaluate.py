import dataclasses

import pytest
import torch

from specdec.distill import evaluate as ev
from specdec.distill.records import save_records, split_records
from specdec.testing import tiny_pair


def test_agreement_hand_case(target64, records64):
    assert ev.agreement(target64, records64, pad_id=2) == 1.0  # the target agrees with itself
    wrong = [dataclasses.replace(r, tids=(r.tids + 1) % 64) for r in records64]
    assert ev.agreement(target64, wrong, pad_id=2) == 0.0
    half = records64[:3] + wrong[3:]
    assert ev.agreement(target64, half, pad_id=2, batch_size=2) == 0.5


def test_evaluate_uses_the_heldout_greedy_answers_only(tmp_path, target64, make_records):
    recs = make_records(target64, n=60, length=10, start=4)
    wrong_sampled = [dataclasses.replace(r, kind="shk-t", tids=(r.tids + 1) % 64) for r in recs]
    save_records(tmp_path / "a.safetensors", recs)
    save_records(tmp_path / "b.safetensors", wrong_sampled)  # held-out sampled answers are not scored
    acc, positions = ev.evaluate(target64, str(tmp_path), 0.2)
    held = split_records(recs, 0.2)[1]
    assert acc == 1.0 and positions == sum(r.answer_tokens for r in held) > 0
    save_records(tmp_path / "sampled_only" / "c.safetensors", wrong_sampled)
    with pytest.raises(ValueError, match="no held-out"):
        ev.evaluate(target64, str(tmp_path / "sampled_only"), 0.2)


def test_study_agreement_counts_the_targets_own_answers():
    target, same = tiny_pair(eps=0.0)
    acc, n = ev.study_agreement(target.model, same.model, target.tokenizer, 96, 2, 12)
    assert acc == 1.0 and n == 24  # eps 0: the draft is the target's argmax everywhere
    target, far = tiny_pair(eps=1.0)
    acc_far, _ = ev.study_agreement(target.model, far.model, target.tokenizer, 96, 2, 12)
    assert acc_far < 1.0


def test_run_eval_loads_a_saved_draft(tmp_path, saved_target, byte_pair, make_records):
    save_records(tmp_path / "data" / "gen_00000.safetensors", make_records(byte_pair[0].model, n=30, length=16))
    cfg = ev.EvalConfig(draft_dir=str(saved_target), data_dir=str(tmp_path / "data"), heldout_frac=0.2,
                        target=str(saved_target), study_prompts=1, study_len=96, study_new_tokens=8, threads=1)
    res = ev.run_eval(cfg)
    assert res["heldout"] == 1.0 and res["study"] == 1.0 and res["study_positions"] == 8  # the target as its own draft
    with pytest.raises(ValueError, match="nothing to evaluate"):
        ev.run_eval(dataclasses.replace(cfg, data_dir="", study_prompts=0))
    assert torch.get_num_threads() == 1


def test_answer_agreement_scores_a_perfect_and_a_random_predictor():
    from specdec.distill.evaluate import answer_agreement, draft_predictor, head_predictor
    from specdec.models.feature_head import FeatureHead, FeatureHeadConfig
    from specdec.testing import tiny_pair

    target, draft = tiny_pair(eps=0.0)  # eps 0: the draft is the target's own first layers, agreeing everywhere
    head = FeatureHead(FeatureHeadConfig.for_target(target.model, "tiny"), target.model).eval()
    res = answer_agreement(target.model, target.tokenizer,
                           {"self": draft_predictor(target.model), "draft": draft_predictor(draft.model),
                            "head": head_predictor(target.model, head)},
                           prompt_set="everyday", count=2, new_tokens=10)
    assert res["self"] == (1.0, 18)  # the target predicts its own greedy answer; 9 scored tokens per answer
    assert res["draft"][0] > 0.9 and res["head"][0] < 0.5  # a random head rarely agrees


def test_the_vocabulary_ceiling_is_the_share_of_answer_tokens_a_reduced_head_can_propose():
    from specdec.distill.evaluate import answer_agreement, vocabulary_ceiling
    from specdec.testing import random_head, tiny_pair

    target, _ = tiny_pair(eps=0.0)
    assert vocabulary_ceiling(random_head(target.model)) is None  # a head over every id: no ceiling
    full = torch.tensor([[3, 7, 3, 9, 8]])
    head = random_head(target.model, draft_vocab=[3, 8])
    assert vocabulary_ceiling(head)(full).tolist() == [3, -1, 3, -1, 8]
    everything = random_head(target.model, draft_vocab=list(range(target.model.config.vocab_size)))
    ceilings = {"none": vocabulary_ceiling(random_head(target.model, draft_vocab=[0])),
                "all": vocabulary_ceiling(everything)}
    res = answer_agreement(target.model, target.tokenizer, ceilings, prompt_set="everyday", count=2, new_tokens=10)
    assert res["all"] == (1.0, 18) and res["none"][0] < 0.5


def test_context_columns_let_a_head_guess_and_reach_ids_the_tokens_before_hold():
    from specdec.distill.evaluate import head_predictor, vocabulary_ceiling
    from specdec.testing import random_head, tiny_pair

    target, _ = tiny_pair(eps=0.0)
    head = random_head(target.model, draft_vocab=[3, 8])
    head.head_config.context_scale, head.head_config.context_bias = 1.0, 0.0
    full = torch.tensor([[3, 7, 3, 9, 7, 9]])
    assert vocabulary_ceiling(head)(full).tolist() == [3, -1, 3, -1, 7, 9]  # 7 and 9 once seen before
    head.head_config.context_bias = 1e4  # a context column, once held, always wins
    guesses = head_predictor(target.model, head)(full).tolist()
    assert guesses[:2] == [-1, -1] and guesses[2] == 7 and set(guesses[3:]) <= {7, 9} and 9 in guesses[4:]

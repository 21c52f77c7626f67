import csv
import math

import pytest
import torch

from specdec.distill import train as tr
from specdec.distill.draft import DraftConfig, choose_vocab, head_columns, make_draft, pca_embeddings
from specdec.distill.evaluate import agreement
from specdec.distill.records import collate, save_records
from specdec.models import load_model
from specdec.models.subvocab import SubVocabLlamaForCausalLM, restrict_head

SMALL = DraftConfig(layers=1, hidden=16, intermediate=32, heads=2, kv_heads=1)


def fit(draft, batch, columns=None, steps=15):
    opt = torch.optim.AdamW(draft.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = tr.distill_loss(tr.train_logits(draft, batch), batch, 0.5, columns=columns)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_loss_hand_case_full_and_sub_vocabulary_head():
    # one sequence of 3 tokens; rows: teacher top-2 ids (0, 1) with equal logits, then ids (3, 2)
    batch = {"mask": torch.tensor([[True, True, False]]), "vals": torch.zeros(1, 3, 2),
             "tids": torch.tensor([[[0, 1], [3, 2], [0, 0]]])}
    uniform = torch.zeros(1, 3, 4)  # draft q = 1/4 everywhere
    # KL = log 2 (p = 1/2 on two ids of q 1/4), CE = log 4
    assert tr.distill_loss(uniform, batch, 0.5).item() == pytest.approx(math.log(2) + 0.5 * math.log(4))
    # a head over ids {0, 2}: row 1's argmax (3) is not scored, so only row 0 counts; its id 1 is
    # dropped, p = (1, 0), and q over two columns is 1/2: KL = CE = log 2
    cols = torch.tensor([0, -1, 1, -1])
    assert tr.distill_loss(torch.zeros(1, 3, 2), batch, 0.5, columns=cols).item() == pytest.approx(1.5 * math.log(2))


def test_loss_decreases_for_a_pca_initialised_draft(target64, records64):
    b = collate(records64, pad_id=2)
    draft = make_draft(target64.config, SMALL)
    with torch.no_grad():
        draft.get_input_embeddings().weight.copy_(pca_embeddings(target64.get_input_embeddings().weight, 16))
    losses = fit(draft, b)
    assert losses[-1] < losses[0] * 0.8


def test_sub_vocabulary_head_trains_on_its_own_columns(target64, records64):
    vocab = choose_vocab(records64, 24, 64, always=(2,))
    draft = restrict_head(make_draft(target64.config, SMALL), vocab)
    cols = head_columns(draft)
    b = collate(records64, pad_id=2)
    assert tr.train_logits(draft, b).shape[-1] == len(vocab)
    losses = fit(draft, b, cols)
    assert losses[-1] < losses[0] * 0.8
    assert agreement(draft, records64, pad_id=2) > 0.3


def test_schedule_warms_up_then_decays_to_the_floor_and_stays():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=2.0)
    sched = tr.lr_schedule(opt, tr.TrainConfig(lr=2.0, warmup=10, min_lr_frac=0.1), total_steps=100)
    lrs = []
    for _ in range(160):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and all(a < b for a, b in zip(lrs[:10], lrs[1:11])) and lrs[10] == pytest.approx(2.0)
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:101]))
    assert lrs[55] == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))  # half way down the cosine
    assert lrs[100] == pytest.approx(0.2) and lrs[159] == pytest.approx(0.2)  # min_lr_frac x lr, then held


def test_train_config_validate():
    with pytest.raises(ValueError, match="init-embeddings"):
        tr.TrainConfig(init_embeddings="zeros").validate()
    with pytest.raises(ValueError, match="heldout-frac"):
        tr.TrainConfig(heldout_frac=0.0).validate()
    with pytest.raises(ValueError, match="draft-heads"):
        tr.TrainConfig(draft=DraftConfig(hidden=30, heads=4)).validate()


def read_log(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_train_logs_keeps_the_best_checkpoint_and_continues(tmp_path, saved_target, byte_pair, make_records):
    target = byte_pair[0].model
    recs = make_records(target, n=40, length=24, k=4)
    save_records(tmp_path / "data" / "gen_00000.safetensors", recs)
    cfg = tr.TrainConfig(target=str(saved_target), data_dir=str(tmp_path / "data"), out_dir=str(tmp_path / "d1"),
                         draft=SMALL, head_vocab=48, max_steps=6, warmup=2, lr=1e-2, min_lr_frac=0.1,
                         batch_tokens=256, heldout_frac=0.2, eval_every_s=0, threads=1)
    best = tr.train(cfg)
    log = read_log(tmp_path / "d1" / "training_log.csv")
    assert list(log[0]) == tr.LOG_COLUMNS
    assert [int(r["step"]) for r in log] == list(range(7))  # eval_every_s 0: before every step and at the end
    assert float(log[0]["lr"]) == 0.0 and float(log[-1]["lr"]) == pytest.approx(1e-3)
    assert best == pytest.approx(max(float(r["heldout_agreement"]) for r in log), abs=1e-4) and best > 0
    saved = load_model(str(tmp_path / "d1")).model
    assert isinstance(saved, SubVocabLlamaForCausalLM) and len(saved.config.draft_vocab) == 48
    assert next(saved.parameters()).dtype == torch.float32  # loaded as asked; stored in bf16

    cont = tr.TrainConfig(**{**vars(cfg), "init_from": str(tmp_path / "d1"), "out_dir": str(tmp_path / "d2"),
                             "head_vocab": 0, "max_steps": 2})
    tr.train(cont)
    again = load_model(str(tmp_path / "d2")).model
    assert again.config.draft_vocab == saved.config.draft_vocab  # continued with the same head
    assert float(read_log(tmp_path / "d2" / "training_log.csv")[0]["heldout_agreement"]) == pytest.approx(best, abs=0.05)


def test_train_needs_records_outside_the_heldout_split(tmp_path):
    with pytest.raises(ValueError, match="no \\*.safetensors"):
        tr.train(tr.TrainConfig(data_dir=str(tmp_path), threads=1))

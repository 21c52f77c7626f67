"""Fitting a reduced head's context columns on held-out answers (tiny target built in code)."""

import csv
import json

import pytest
import torch

from specdec.distill.cli import main
from specdec.distill.context_fit import context_grid
from specdec.distill.evaluate import head_guesses
from specdec.distill.head_data import Sequence, save_sequences
from specdec.engine.loop import autoregressive_generate
from specdec.models import load_model
from specdec.testing import random_head, save_tiny_pair


@pytest.fixture
def fitted_setup(tmp_path):
    """A saved tiny target, a head over 8 of its ids, and held-out greedy answers of the target."""
    target_dir, _ = save_tiny_pair(tmp_path / "pair")
    target = load_model(str(target_dir), dtype="float32")
    head = random_head(target.model, seed=3, draft_vocab=list(range(40, 48)))
    head.save(tmp_path / "head")
    g = torch.Generator().manual_seed(0)
    seqs = []
    for key in range(6):
        prompt = torch.randint(3, 256, (1, 6), generator=g)
        answer = autoregressive_generate(target.model, prompt, max_new_tokens=14).tokens
        seqs.append(Sequence(prompt[0].tolist() + answer, 6, key, "answer"))
    data = tmp_path / "data"
    data.mkdir()
    save_sequences(data / "answer_00000.safetensors", seqs)
    return target_dir, target, head, seqs, data


def test_the_grid_counts_what_each_scale_and_bias_would_guess(fitted_setup):
    _, target, head, seqs, _ = fitted_setup
    scales, biases = (0.5, 1.0, 2.0), (-1.0, 0.0, 3.0)
    hits, base, positions = context_grid(target.model, head, seqs, scales, biases)
    want = torch.zeros(3, 3, dtype=torch.long)
    own = total = 0
    with torch.no_grad():
        for seq in seqs:
            full = torch.tensor([seq.ids])
            res = target.model(full[:, :-1], output_hidden_states=True)
            out = head.step(head.features(res.hidden_states)[:, :-1], full[:, 1:-1])[0]
            greedy, rows = res.logits[0, 1:].argmax(-1), slice(seq.answer_start - 1, None)
            own += int((head_guesses(head, out, None)[rows] == greedy[rows]).sum())
            total += len(greedy[rows])
            for i, s in enumerate(scales):
                for j, b in enumerate(biases):
                    head.head_config.context_scale, head.head_config.context_bias = s, b
                    context = head.context_vocab()
                    context.add(full[0])
                    want[i, j] += int((head_guesses(head, out, context)[rows] == greedy[rows]).sum())
    assert torch.equal(hits, want) and (base, positions) == (own, total)
    assert hits.max() > base  # the answers repeat ids outside the head's 8: context columns pay


def test_the_command_writes_the_best_cell_into_a_copy_of_the_head(fitted_setup, tmp_path, capsys):
    target_dir, _, _, _, data = fitted_setup
    out = tmp_path / "fitted"
    rc = main(["context-vocab", "--target", str(target_dir), "--head", str(tmp_path / "head"), "--data-dir", str(data),
               "--out-dir", str(out), "--heldout-frac", "1", "--scales", "0.5,1,2", "--biases=-1,0,3"])
    assert rc == 0 and "with (scale" in capsys.readouterr().out
    with (out / "context_grid.csv").open() as f:
        grid = list(csv.DictReader(f))
    best = max(grid, key=lambda r: float(r["agreement"]))
    cfg = json.loads((out / "head_config.json").read_text())
    assert len(grid) == 9 and (cfg["context_scale"], cfg["context_bias"]) == (float(best["scale"]), float(best["bias"]))
    assert (out / "head.safetensors").read_bytes() == (tmp_path / "head" / "head.safetensors").read_bytes()


def test_a_head_over_every_id_is_refused_in_one_line(fitted_setup, tmp_path, capsys):
    target_dir, target, _, _, data = fitted_setup
    random_head(target.model).save(tmp_path / "full")
    rc = main(["context-vocab", "--target", str(target_dir), "--head", str(tmp_path / "full"), "--data-dir", str(data),
               "--out-dir", str(tmp_path / "x"), "--heldout-frac", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "scores every id already" in err and "\n" not in err and not (tmp_path / "x").exists()


def test_columns_that_never_win_are_refused_and_nothing_is_written(fitted_setup, tmp_path, capsys):
    target_dir, _, _, _, data = fitted_setup
    rc = main(["context-vocab", "--target", str(target_dir), "--head", str(tmp_path / "head"), "--data-dir", str(data),
               "--out-dir", str(tmp_path / "x"), "--heldout-frac", "1", "--scales", "1", "--biases=-1000"])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert rc == 2 and last.startswith("specdec distill context-vocab: error: context columns do not pay")
    assert not (tmp_path / "x").exists()

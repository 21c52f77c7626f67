import runpy
import sys

import pytest
from safetensors import safe_open
from transformers import AutoTokenizer

from specdec import cli as project_cli
from specdec.distill import cli
from specdec.distill.head_data import load_sequences


def test_help_lists_the_three_stages(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and all(s in out for s in ("gen-data", "train", "eval")) and "cost" not in out
    with pytest.raises(SystemExit) as exc:
        cli.main(["cost"])
    assert exc.value.code == 2  # the old cost stage is gone


def test_python_dash_m_runs_the_cli(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["specdec.distill", "train", "--help"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("specdec.distill", run_name="__main__")
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "--max-steps" in out and "--min-lr-frac" in out


@pytest.mark.parametrize("argv, message", [
    (["gen-data"], "no prompt source"),
    (["gen-data", "--shakespeare-dir", "/nonexistent/texts"], "no such directory"),
    (["train", "--data-dir", "{tmp}"], "no *.safetensors record shards"),
    (["train", "--heldout-frac", "0"], "--heldout-frac"),
    (["eval", "--data-dir", ""], "nothing to evaluate"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"specdec distill {argv[0]}: error:") and message in err and "\n" not in err
    assert project_cli.main(["distill", *argv]) == 2  # the same through `specdec distill`


def test_stages_end_to_end(tmp_path, saved_target, shakespeare_dir, capsys):
    data, draft = str(tmp_path / "data"), str(tmp_path / "draft")
    assert cli.main(["gen-data", "--target", str(saved_target), "--shakespeare-dir", str(shakespeare_dir),
                     "--out-dir", data, "--batch-size", "8", "--max-new-tokens", "4", "--max-prompt-tokens", "48",
                     "--topk", "3", "--heldout-frac", "0.3", "--threads", "1"]) == 0
    assert cli.main(["train", "--target", str(saved_target), "--data-dir", data, "--out-dir", draft,
                     "--draft-layers", "1", "--draft-hidden", "16", "--draft-intermediate", "32", "--draft-heads", "2",
                     "--draft-kv-heads", "1", "--max-steps", "2", "--warmup", "1", "--heldout-frac", "0.3",
                     "--threads", "1"]) == 0
    assert (tmp_path / "draft" / "config.json").is_file() and (tmp_path / "draft" / "training_log.csv").is_file()
    capsys.readouterr()
    assert cli.main(["eval", "--draft-dir", draft, "--data-dir", data, "--heldout-frac", "0.3", "--threads", "1"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("held-out agreement ") and "target positions" in out


def test_head_data_only_answers_the_chosen_kinds_and_trains_nothing(tmp_path, saved_target, shakespeare_dir, capsys):
    data, out = tmp_path / "data", tmp_path / "head"
    common = ["head", "--target", str(saved_target), "--shakespeare-dir", str(shakespeare_dir), "--data-dir", str(data),
              "--out-dir", str(out), "--self-minutes", "0", "--answer-minutes", "0.01", "--batch-size", "4",
              "--max-new-tokens", "3", "--train-minutes", "0", "--threads", "1"]
    assert cli.main([*common, "--answer-kinds", "doc"]) == 0  # the pool holds no doc prompt: nothing to answer
    assert not list(data.glob("answer_*")) and list(data.glob("text_*")) and not out.exists()
    assert cli.main([*common, "--answer-kinds", "shk", "--answer-minutes", "1"]) == 0  # the whole (tiny) pool
    first = sorted(data.glob("answer_*"))
    texts = [s.key for s in load_sequences(data) if s.kind == "text"]
    assert first and not out.exists()
    assert cli.main([*common, "--answer-kinds", "shk"]) == 0  # a second run finds every prompt answered
    keys = [s.key for s in load_sequences(data) if s.kind == "answer"]
    assert sorted(data.glob("answer_*")) == first and sorted(keys) == sorted(texts)
    capsys.readouterr()
    assert cli.main([*common, "--answer-kinds", "shk,poems"]) == 2
    err = capsys.readouterr().err.strip()
    assert "answer kinds must be among shk, doc, code" in err and "\n" not in err


def test_head_data_answers_templated_requests_and_a_second_run_continues(tmp_path, saved_target, shakespeare_dir):
    data = tmp_path / "data"
    argv = ["head", "--target", str(saved_target), "--shakespeare-dir", str(shakespeare_dir), "--data-dir", str(data),
            "--self-minutes", "0", "--answer-minutes", "0", "--request-minutes", "0.001", "--batch-size", "8",
            "--max-new-tokens", "3", "--train-minutes", "0", "--threads", "1",
            "--seed", "2"]  # seed 2: the first batch of either run holds a summary request, however few batches fit
    assert cli.main(argv) == 0
    first = sorted(p.name for p in data.glob("request_*"))
    assert cli.main([*argv, "--request-templates", "1"]) == 0  # at least one batch: the budget is checked from the second
    names = sorted(p.name for p in data.glob("request_*"))
    sets = [safe_open(str(data / n), framework="pt").metadata()["templates"] for n in names]
    assert sets == ["2"] * len(first) + ["1"] * (len(names) - len(first))
    assert first and names[:len(first)] == first and names == [f"request_{i:05d}.safetensors" for i in range(len(names))]
    seqs = load_sequences(data, "request")
    assert len(names) > len(first) and {s.kind for s in seqs} == {"request"}
    assert [s.key for s in seqs] == list(range(20_000_000, 20_000_000 + 8 * len(names)))
    tok = AutoTokenizer.from_pretrained(saved_target)
    prompts = [tok.decode(s.ids[:s.answer_start]) for s in seqs if 0 < s.answer_start <= len(s.ids)]
    assert len(prompts) == len(seqs) and not any("{paragraph}" in p for p in prompts)
    asks = ("Summar", "main idea", "bullet points", "main point", "mostly about", "Shorten", "key facts")
    assert any(a in p for p in prompts for a in asks)  # a paragraph was written

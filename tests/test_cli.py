import csv

import pytest

from specdec import cli
from specdec.study.plots import PLOT_FILES
from specdec.study.store import COLUMNS
from specdec.testing import save_tiny_pair


@pytest.fixture(scope="module")
def pair_dirs(tmp_path_factory):
    return save_tiny_pair(tmp_path_factory.mktemp("tiny"))


def _args(pair_dirs, out, *extra):
    target, draft = pair_dirs
    return ["run", "--big_model", str(target), "--small_model", str(draft), "--output", str(out),
            "--device", "cpu", "--dtype", "float32", "--prompt-lengths", "96", "--max-tokens", "4",
            "--n", "1,2", "--fixed-prompt-length", "96", "--fixed-max-tokens", "4", "--fixed-n", "2",
            "--repeats", "1", "--warmup", "0", "--prompts-per-cell", "1", "--methods", "prompt-lookup",
            "--no-progress", *extra]


def test_run_then_plot(tmp_path, pair_dirs, capsys):
    out = tmp_path / "res" / "experiment_results.csv"
    assert cli.main(_args(pair_dirs, out)) == 0
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 5
    assert all(r["outputs_match"] == "True" for r in rows)
    assert all((out.parent / name).stat().st_size > 0 for name in PLOT_FILES)
    assert "greedy outputs of 5 pairs: identical 100%" in capsys.readouterr().out
    for name in PLOT_FILES:
        (out.parent / name).unlink()
    assert cli.main(["plot", str(out)]) == 0
    assert all((out.parent / name).is_file() for name in PLOT_FILES)
    # resuming a finished run adds nothing
    assert cli.main(_args(pair_dirs, out, "--resume")) == 0
    with out.open(newline="") as f:
        assert len(list(csv.DictReader(f))) == 5
    # resuming with another configuration is refused and leaves the CSV as it was
    capsys.readouterr()
    before = out.read_bytes()
    assert cli.main(_args(pair_dirs, out, "--resume", "--repeats", "2")) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before


@pytest.mark.parametrize("extra, message", [
    (["--experiments", "speed"], "unknown name 'speed'"),
    (["--methods", "magic"], "unknown name 'magic'"),
    (["--n", ""], "--n is empty"),
    (["--max-tokens", "4,x"], "not an integer"),
    (["--n", "0"], ">= 1"),
    (["--prompt-lengths", "600"], "context"),
    (["--pair", "nope"], "unknown pair"),
    (["--tree-width", "0"], "--tree-width must be >= 1"),
    (["--pack-verify", "on", "--dtype", "bfloat16"], "--pack-verify on packs float32 weights on the CPU, not bfloat16"),
    (["--pack-verify", "on", "--compile", "on"], "--pack-verify on is for eager runs"),
    (["--pack-verify", "yes"], "invalid choice"),
])
def test_bad_input_one_line_exit_2(tmp_path, pair_dirs, capsys, extra, message):
    out = tmp_path / "r.csv"
    assert cli.main(_args(pair_dirs, out, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_run_with_packed_verify_records_the_packs_and_both_costs(tmp_path, pair_dirs):
    import json

    import torch

    if not torch.backends.mkl.is_available():
        pytest.skip("packed verify needs torch with MKL")
    out = tmp_path / "experiment_results.csv"
    assert cli.main(_args(pair_dirs, out, "--experiments", "n", "--pack-verify", "on")) == 0
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["outputs_match"] == "True" for r in rows)
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    assert meta["config"]["pack_verify"] == "on" and meta["pack_verify"]["packed"]
    assert [c["rows"] for c in meta["pack_verify"]["rows"]] == [1, 2, 3]  # N + 1 for N = 1, 2; one row: the check
    assert set(meta["costs_unpacked"]["verify_cost"]) == set(meta["costs"]["verify_cost"])
    # auto where packs cannot run (bf16): the run goes on unpacked and says why
    out = tmp_path / "bf16" / "experiment_results.csv"
    assert cli.main(_args(pair_dirs, out, "--experiments", "n", "--dtype", "bfloat16")) == 0
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    assert meta["pack_verify"] == {"packed": False, "why_not": "packed verify needs float32 weights (MKL's packed "
                                   "sgemm); the model is bfloat16"} and "costs_unpacked" not in meta


def test_unwritable_output(tmp_path, pair_dirs, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(_args(pair_dirs, blocker / "r.csv")) == 2
    err = capsys.readouterr().err
    assert "cannot create output directory" in err and len(err.strip().splitlines()) == 1


def test_missing_model_is_one_line(tmp_path, capsys):
    assert cli.main(["run", "--big_model", str(tmp_path / "none"), "--output", str(tmp_path / "r.csv")]) == 2
    err = capsys.readouterr().err
    assert "no such file or directory" in err and len(err.strip().splitlines()) == 1


def test_plot_missing_csv(tmp_path, capsys):
    assert cli.main(["plot", str(tmp_path / "none.csv")]) == 2
    assert "no such results CSV" in capsys.readouterr().err


def test_unknown_command(capsys):
    assert cli.main(["fly"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_compile_without_a_cpp_compiler_is_one_line(tmp_path, pair_dirs, capsys, monkeypatch):
    """--compile where inductor cannot build code: one line, exit 2, nothing written, no model loaded."""
    from specdec.engine import forward

    monkeypatch.setattr(forward.shutil, "which", lambda name: None)
    out = tmp_path / "r.csv"
    assert cli.main(_args(pair_dirs, out, "--compile", "on")) == 2
    err = capsys.readouterr().err
    assert "needs a C++ compiler" in err and len(err.strip().splitlines()) == 1 and not out.exists()
    target, _ = pair_dirs
    assert cli.main(["generate", "--big_model", str(target), "--method", "baseline", "--prompt", "hi",
                     "--device", "cpu", "--compile"]) == 2
    assert "needs a C++ compiler" in capsys.readouterr().err

import csv
import json
import math
import threading

import pytest
import torch

from specdec.auto.calibration import CalibrationCache
from specdec.study.config import StudyConfig, cells
from specdec.study.plots import COMPILED_PLOT, make_plots
from specdec.study.runner import Study, run_study
from specdec.study.store import COLUMNS, StudyLock, check_resume
from specdec.testing import tiny_pair

CFG = StudyConfig(target="tiny-target", draft="tiny-draft", prompt_lengths=(96,), max_tokens=(6,),
                  ns=(2,), repeats=2, warmup=0, prompts_per_cell=1, fixed_prompt_len=96,
                  fixed_max_tokens=6, fixed_n=2, methods=("prompt-lookup", "hf-assisted"))



@pytest.fixture(scope="module")
def models():
    return tiny_pair(eps=0.05)


def _rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_cells_cover_grid():
    kinds = [(c.experiment, c.method, c.n_draft) for c in cells(CFG)]
    assert kinds == [("prompt_length", "speculative", 2), ("max_tokens", "speculative", 2),
                     ("n", "speculative", 2), ("n", "prompt-lookup", 2), ("n", "hf-assisted", 2)]


def test_run_writes_rows_greedy_match_and_resume(tmp_path, models):
    out = tmp_path / "r.csv"
    seen = []

    def interrupt(row):
        seen.append(row)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(CFG, *models, out, on_row=interrupt, show_progress=False)
    assert len(_rows(out)) == 3  # every finished row was flushed
    summary = run_study(CFG, *models, out, resume=True, show_progress=False)
    rows = _rows(out)
    assert len(rows) == len(cells(CFG)) * CFG.repeats
    keys = [(r["experiment"], r["method"], r["n_draft"], r["prompt_len"], r["max_new_tokens"], r["repeat"]) for r in rows]
    assert len(set(keys)) == len(keys)
    assert tuple(rows[0]) == COLUMNS
    assert all(r["outputs_match"] == "True" and r["new_tokens"] == "6" for r in rows)
    assert all(r["match_class"] == "identical" and r["first_diff_position"] == "" for r in rows)
    hf = [r for r in rows if r["method"] == "hf-assisted"]
    assert hf and all(r["decode_speedup"] == "nan" for r in hf)  # HF's prefill is not separable
    assert not any(math.isnan(float(r["decode_speedup"])) for r in rows if r["method"] != "hf-assisted")
    assert summary["greedy_match_rate"] == 1.0 and summary["greedy_classes"]["identical"] == 1.0
    for name in ("r.meta.json", "r.summary.json", "r.summary.md"):
        assert (tmp_path / name).is_file()


def test_resume_refuses_other_config(tmp_path, models):
    out = tmp_path / "r.csv"
    small = StudyConfig(**{**CFG.__dict__, "experiments": ("max_tokens",), "repeats": 1})
    run_study(small, *models, out, show_progress=False)
    other = StudyConfig(**{**small.__dict__, "repeats": 2})
    with pytest.raises(ValueError, match="different configuration"):
        check_resume(other, out)


def test_bad_config_rejected():
    with pytest.raises(ValueError, match="unknown experiment"):
        StudyConfig(target="t", draft="d", experiments=("speed",)).validate()
    with pytest.raises(ValueError, match="N must be"):
        StudyConfig(target="t", draft="d", ns=(0,)).validate()


def test_context_overflow_rejected(tmp_path, models):
    cfg = StudyConfig(**{**CFG.__dict__, "prompt_lengths": (600,)})
    with pytest.raises(ValueError, match="context"):
        run_study(cfg, *models, tmp_path / "r.csv", show_progress=False)
    assert not (tmp_path / "r.csv").exists()


def test_adversarial_auto_cell_uses_random_draft(tmp_path, models):
    cfg = StudyConfig(**{**CFG.__dict__, "experiments": ("n",), "methods": ("auto-random",), "repeats": 1})
    assert [(c.method, c.n_draft) for c in cells(cfg)] == [("speculative", 2), ("auto-random", "auto")]
    run_study(cfg, *models, tmp_path / "r.csv", show_progress=False)
    row = [r for r in _rows(tmp_path / "r.csv") if r["method"] == "auto-random"][0]
    assert row["outputs_match"] == "True" and row["n_draft"] == "auto"
    meta = json.loads((tmp_path / "r.meta.json").read_text())
    assert set(meta["auto_calibration"]) == {"auto-random"}  # calibrated once, before timing
    auto = meta["auto_calibration"]["auto-random"]
    assert auto["verify_cost"]["0"] == 1.0 and set(auto["verify_cost"]) >= {"1", "2"}
    study = Study(cfg, *models)
    rand, draft = study.random_draft(), models[1].model
    assert rand is study.random_draft() and type(rand) is type(draft)
    assert rand.config.vocab_size == draft.config.vocab_size
    assert not all(torch.equal(a, b) for a, b in zip(rand.parameters(), draft.parameters()))
    # Keyed by a name of its own, never by the real draft's name (auto N's cached costs and α̂).
    assert "draft=random-init:" in CalibrationCache().key(models[0].model, rand)[0]


def test_a_second_study_on_the_same_output_is_refused_while_the_first_runs(tmp_path, models):
    out = tmp_path / "r.csv"
    first_row, release = threading.Event(), threading.Event()
    errors = []

    def hold(row):
        first_row.set()
        release.wait(timeout=60)

    def first():
        try:
            run_study(CFG, *models, out, on_row=hold, show_progress=False)
        except Exception as exc:
            errors.append(exc)

    runner = threading.Thread(target=first)
    runner.start()
    try:
        assert first_row.wait(timeout=120)
        rows_before = out.read_text()
        with pytest.raises(ValueError, match="another study is writing") as info:
            run_study(CFG, *models, out, show_progress=False)
        assert "\n" not in str(info.value)
        assert out.read_text() == rows_before  # the second study truncated nothing
    finally:
        release.set()
        runner.join()
    assert not errors
    assert len(_rows(out)) == len(cells(CFG)) * CFG.repeats
    with StudyLock(out):  # released once the first study finished
        pass


def test_eagle_cells_draft_with_the_feature_head(tmp_path, models):
    from specdec.models import LoadedModel
    from specdec.models.feature_head import FeatureHead, FeatureHeadConfig

    target = models[0]
    head = LoadedModel(FeatureHead(FeatureHeadConfig.for_target(target.model, "tiny"), target.model).eval(),
                       target.tokenizer, "tiny-head", "memory")
    cfg = StudyConfig(**{**CFG.__dict__, "experiments": ("n",), "ns": (1, 3),
                         "methods": ("eagle", "eagle-auto", "eagle-tree", "eagle-tree-auto"), "head": "tiny-head",
                         "repeats": 1})
    assert [(c.method, c.n_draft) for c in cells(cfg)] == [
        ("speculative", 1), ("speculative", 3), ("eagle", 1), ("eagle", 3), ("eagle-auto", "auto"),
        ("eagle-tree", 1), ("eagle-tree", 3), ("eagle-tree-auto", "auto")]
    run_study(cfg, *models, tmp_path / "r.csv", show_progress=False, head=head)
    eagle = [r for r in _rows(tmp_path / "r.csv") if r["method"].startswith("eagle")]
    assert len(eagle) == 6 and all(r["draft_model"] == "tiny-head" and r["match_class"] == "identical" for r in eagle)
    StudyConfig(**{**cfg.__dict__, "temperature": 0.8}).validate()  # trees sample too
    meta = json.loads((tmp_path / "r.meta.json").read_text())
    assert set(meta["auto_calibration"]) == {"eagle-auto", "eagle-tree-auto"}  # auto N timed the head as the draft
    assert all(int(r["draft_forwards"]) > 0 for r in eagle if r["method"] == "eagle")
    with pytest.raises(ValueError, match="needs a feature head"):
        StudyConfig(**{**cfg.__dict__, "head": ""}).validate()


def test_compiled_and_eager_cells_with_hf_static_and_compile_report(tmp_path, models):
    """--compile both: each cell runs eager and compiled (pairs never mix modes), greedy tokens stay
    identical, HF's static+compile generate is measured beside our compiled baseline, and the meta
    JSON holds the memory floor and every graph's compile seconds."""
    from dataclasses import replace

    cfg = replace(CFG, experiments=("n",), methods=("hf-static", "hf-assisted"), compile="both", repeats=1)
    assert [(c.method, c.compiled) for c in cells(cfg)] == [
        ("speculative", False), ("hf-assisted", False), ("speculative", True), ("hf-static", True)]
    assert cfg.block_rows() == (1, 2, 3)
    out = tmp_path / "c.csv"
    summary = run_study(cfg, *models, out, show_progress=False)
    rows = _rows(out)
    assert [(r["method"], r["compiled"]) for r in rows] == [
        ("speculative", "False"), ("hf-assisted", "False"), ("speculative", "True"), ("hf-static", "True")]
    assert all(r["outputs_match"] == "True" for r in rows)
    meta = json.loads((tmp_path / "c.meta.json").read_text())
    assert meta["memory_floor"]["weight_bytes"] > 0 and meta["memory_floor"]["floor_ms"] > 0
    assert meta["compile"]["graphs"] and all(g["seconds"] > 0 for g in meta["compile"]["graphs"])
    assert {"costs", "costs_compiled"} <= set(meta) and meta["attention"]["compiled"] == "eager"
    report = summary["compile_report"]
    assert set(report["baseline_ms_per_token"]) == {"eager", "compiled"}
    assert report["ours_vs_hf_static"]["count"] == 1 and "kept" in report["methods"]["speculative N=2"]
    assert summary["compiled"]["mode"] == "compiled" and "Compiled against eager" in (tmp_path / "c.summary.md").read_text()
    paths = make_plots(out)
    assert paths[-1].name == COMPILED_PLOT and all(p.stat().st_size > 0 for p in paths)


def test_hf_static_needs_a_compiled_mode():
    from dataclasses import replace

    with pytest.raises(ValueError, match="hf-static"):
        replace(CFG, methods=("hf-static",)).validate()
    with pytest.raises(ValueError, match="compile mode"):
        replace(CFG, compile="maybe").validate()

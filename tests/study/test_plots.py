import json
from dataclasses import asdict
from pathlib import Path

import matplotlib.image
import pandas as pd

from specdec.auto.theory import predicted_speedup
from specdec.study.plots import PLOT_FILES, hardware_note, make_plots, predicted_curve
from specdec.study.store import COLUMNS, Row
from specdec.study.summary import frame, summarize, to_markdown

# Median speedup of our fixed-N rows by N: N = 2 is the best by construction.
SPEEDUP = {1: 1.10, 2: 1.40, 4: 1.20, "auto": 1.30, "default": 0.90}


def _row(experiment, method, n, L=128, M=64, r=0, match="identical"):
    base = 2.0 + M / 32
    spec = base / (SPEEDUP[n] + 0.01 * (r - 1))  # repeats spread ±0.01 around the median
    return Row(experiment, method, "tempest-00", L, M, n, r, 0.0, M, base, spec, base / spec, base / spec,
               M / base, M / spec, 0.6, 0.7, 2.0, 20, 60, 0.1, base - 0.1, 0.1, spec - 0.1, match == "identical",
               "tgt", "drf", "float32", "cpu", r, match)


def _csv(tmp_path: Path) -> Path:
    rows = [_row("prompt_length", "speculative", 4, L=L, r=r) for L in (64, 128, 512) for r in range(3)]
    rows += [_row("max_tokens", "speculative", 4, M=M, r=r) for M in (32, 64, 128) for r in range(3)]
    for n in (1, 2, 4):
        rows += [_row("n", m, n, r=r) for m in ("speculative", "eagle", "hf-assisted") for r in range(3)]
    rows += [_row("n", "auto", "auto"), _row("n", "auto-random", "auto", match="near-tie"),
             _row("n", "prompt-lookup", 4, match="unexplained"), _row("n", "hf-default", "default")]
    path = tmp_path / "experiment_results.csv"
    pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS).to_csv(path, index=False)
    meta = {"dtype": "float32", "device": "cpu",
            "costs": {"c": 0.1, "verify_cost": {"1": 1.3, "2": 1.5, "4": 1.6}}}
    (tmp_path / "experiment_results.meta.json").write_text(json.dumps(meta))
    return path


def test_make_plots_writes_five_pngs(tmp_path):
    paths = make_plots(_csv(tmp_path))
    assert [p.name for p in paths] == list(PLOT_FILES)
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_plots_go_to_a_new_directory_and_name_the_hardware(tmp_path):
    csv = _csv(tmp_path)
    out = tmp_path / "figures" / "run1"  # not there yet
    assert all(p.exists() for p in make_plots(csv, out))
    meta = {"cpu": "Intel(R) Xeon(R) Processor", "cpu_flags": "avx512_bf16 amx_bf16", "gpu": None, "threads": 2,
            "versions": {"torch": "2.13.0+cpu", "transformers": "5.18.0"}}
    assert hardware_note(meta) == ("Intel(R) Xeon(R) Processor, avx512_bf16 amx_bf16, 2 threads, torch 2.13.0+cpu, "
                                   "transformers 5.18.0")
    assert hardware_note({**meta, "gpu": "NVIDIA H200"}).startswith("NVIDIA H200, 2 threads")  # a GPU, not CPU flags
    capped = hardware_note({**meta, "isa_limits": {"ONEDNN_MAX_CPU_ISA": "AVX2"}})
    assert capped.startswith("Intel(R) Xeon(R) Processor, avx512_bf16 amx_bf16, capped by ONEDNN_MAX_CPU_ISA=AVX2, 2 threads")
    assert hardware_note({}) == ""  # a CSV without its meta JSON: no footer


def test_a_long_hardware_note_wraps_instead_of_widening_the_figure(tmp_path):
    plain = [_png_width(p) for p in make_plots(_csv(tmp_path), tmp_path / "plain")]
    meta_path = tmp_path / "experiment_results.meta.json"
    meta = json.loads(meta_path.read_text())
    meta.update(cpu="Intel(R) Xeon(R) Processor", cpu_flags=" ".join(f"flag_{i}" for i in range(40)), threads=2,
                isa_limits={"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    meta_path.write_text(json.dumps(meta))
    noted = [_png_width(p) for p in make_plots(tmp_path / "experiment_results.csv", tmp_path / "noted")]
    assert all(w <= 1.05 * p for w, p in zip(noted, plain)), (noted, plain)


def _png_width(path: Path) -> int:
    return matplotlib.image.imread(path).shape[1]


def test_summary_reports_best_n_and_others(tmp_path):
    path = _csv(tmp_path)
    meta = json.loads(path.with_name("experiment_results.meta.json").read_text())
    summary = summarize(pd.read_csv(path, dtype={"n_draft": str}), meta)
    assert summary["best_n"]["n_draft"] == "2"
    assert summary["best_n"]["speedup"]["median"] == 1.40
    assert summary["hf_assisted_at_best_n"]["n_draft"] == "2" and summary["eagle_best"]["n_draft"] == "2"
    assert set(summary["per_n"]) == {"speculative", "eagle", "hf-assisted", "prompt-lookup"}
    assert summary["per_n"]["eagle"]["4"]["pairs"] == 3
    rows = len(pd.read_csv(path))
    assert summary["greedy_rows"] == rows and summary["greedy_match_rate"] == (rows - 2) / rows
    assert summary["greedy_classes"]["near-tie"] == summary["greedy_classes"]["unexplained"] == 1 / rows
    text = to_markdown(summary)
    assert f"identical {(rows - 2) / rows:.0%}" in text and f"unexplained {1 / rows:.0%}" in text
    assert summary["auto-random"]["speedup"]["count"] == 1
    for phrase in ("best N", "auto N", "unrelated random draft", "prompt lookup", "HF assisted, HF defaults",
                   "c=0.100", "per-token alpha 0.70", "predicted"):
        assert phrase in text
    assert summary["best_n"]["predicted_speedup"] == predicted_speedup(0.7, 0.1, 2, 1.5)


def test_summary_of_a_csv_without_the_match_columns_says_not_classified(tmp_path):
    path = _csv(tmp_path)
    old = pd.read_csv(path).drop(columns=["match_class", "first_diff_position", "baseline_top2_margin"])
    summary = summarize(old, None)
    assert summary["greedy_classes"]["not recorded"] == 2 / len(old)
    assert "not classified" in to_markdown(summary)


def test_prediction_uses_per_token_alpha_not_accept_ratio(tmp_path):
    df = frame(pd.read_csv(_csv(tmp_path), dtype={"n_draft": str}))
    ours = df[(df.experiment == "n") & (df.method == "speculative")]
    costs = {"c": 0.1, "verify_cost": {"1": 1.3, "2": 1.5, "4": 1.6}}
    pred = predicted_curve(ours, costs)
    assert list(pred.index) == [1, 2, 4]
    assert pred[4] == predicted_speedup(0.7, 0.1, 4, 1.6) != predicted_speedup(0.6, 0.1, 4, 1.6)
    assert predicted_curve(ours.drop(columns="alpha_geometric"), costs) is None  # old CSV: no curve


def test_plot_command_redraws_without_loading_torch(tmp_path):
    import subprocess
    import sys

    path = _csv(tmp_path)
    code = ("import sys; from specdec.cli import main; rc = main(['plot', sys.argv[1]]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert all((tmp_path / name).is_file() for name in PLOT_FILES)

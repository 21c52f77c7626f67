"""Figures of the speed study from its CSV (and the provenance JSON beside it); no torch import."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from .summary import compiled_mask, frame, predicted_from_costs

FIGSIZE, DPI = (6.4, 4.0), 200
# Fixed-N methods drawn per N: (method, label, x offset, colour)
PER_N = (("speculative", "ours, draft model", -0.03, "tab:blue"), ("eagle", "ours, feature head", 0.0, "tab:cyan"),
         ("eagle-tree", "ours, feature head, token tree", 0.015, "tab:pink"),
         ("hf-assisted", "HF assisted", 0.03, "tab:orange"))
# methods measured once per prompt (auto N, prompt lookup, HF defaults), drawn as horizontal lines
ONE_CELL_LINES = (("auto", "ours, auto N", "-", "tab:green"),
                  ("auto-lookup", "ours + lookup branch, auto N", "-", "yellowgreen"),
                  ("eagle-auto", "feature head, auto N", "--", "tab:cyan"),
                  ("eagle-tree-auto", "feature head, tree, auto N", "--", "tab:pink"),
                  ("eagle-lookup-auto", "feature head + lookup branch, auto N", "-", "darkgoldenrod"),
                  ("eagle-tree-lookup-auto", "feature head, tree + lookup branch, auto N", "-", "tab:olive"),
                  ("auto-random", "auto N, random draft", (0, (1, 3)), "tab:brown"),
                  ("prompt-lookup", "prompt lookup", ":", "tab:purple"),
                  ("hf-default", "HF assisted, defaults", "-.", "tab:red"))
PLOT_FILES = ("prompt_length_effect.png", "max_tokens_effect.png", "n_effect.png",
              "acceptance_rate.png", "speedup.png")
COMPILED_PLOT = "compiled_vs_eager.png"  # drawn when the run had compiled cells
plt.rcParams.update({"font.size": 10, "axes.titlesize": 10, "legend.fontsize": 9,
                     "xtick.labelsize": 9, "ytick.labelsize": 9})


def _stats(df: pd.DataFrame, by: str, col: str) -> pd.DataFrame:
    """Median and quartiles of ``col`` per value of ``by`` (spread over prompts and repeats)."""
    g = df.groupby(by)[col]
    return pd.DataFrame({"med": g.median(), "q1": g.quantile(0.25), "q3": g.quantile(0.75)}).sort_index()


def _errbar(ax, s: pd.DataFrame, label: str, offset: float = 0.0, **kw) -> None:
    x = s.index.to_numpy(dtype=float) * (1 + offset)
    err = [(s.med - s.q1).clip(lower=0), (s.q3 - s.med).clip(lower=0)]
    ax.errorbar(x, s.med, yerr=err, marker="o", capsize=3, label=label, **kw)


def prompt_label(row: pd.Series) -> str:
    """``prompt 128 tokens``, or ``natural-length everyday prompts`` for a set that keeps its lengths."""
    if int(row.prompt_len) > 0:
        return f"prompt {int(row.prompt_len)} tokens"
    return f"natural-length {row.get('prompt_set', '')} prompts".replace("  ", " ")


def _title(df: pd.DataFrame, what: str) -> str:
    row = df.iloc[0]
    return f"{what}\ntarget {row['target_model']}, draft {row['draft_model']} ({row['dtype']}, {row['device']})"


def _empty(path: Path, what: str) -> None:
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.text(0.5, 0.5, f"{what}: no rows in the CSV", ha="center", va="center")
    ax.set_axis_off()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def hardware_note(meta: dict) -> str:
    """One line naming where a run was measured (CPU, its matrix flags, threads, versions), from its meta JSON."""
    versions = meta.get("versions") or {}
    limits = meta.get("isa_limits") or {}
    parts = [meta.get("gpu") or meta.get("cpu"), meta.get("cpu_flags") if not meta.get("gpu") else None,
             "capped by " + " ".join(f"{k}={v}" for k, v in limits.items()) if limits and not meta.get("gpu") else None,
             f"{meta['threads']} threads" if meta.get("threads") else None,
             f"torch {versions['torch']}" if versions.get("torch") else None,
             f"transformers {versions['transformers']}" if versions.get("transformers") else None]
    return ", ".join(str(x) for x in parts if x)


def _save(fig, path: Path, note: str = "") -> None:
    # each legend row (two entries) gets its own height, so a long legend below the axes does not squash them
    rows = max((math.ceil(len(ax.get_legend().get_texts()) / 2) for ax in fig.axes if ax.get_legend()), default=0)
    fig.set_figheight(fig.get_figheight() + 0.2 * rows)
    fig.tight_layout()
    if note:  # the hardware below the axes, so a figure taken alone still says where it was measured;
        # wrapped to the figure's width (about 17 characters an inch at 7 pt), or a long line widens the figure
        note = textwrap.fill(note, width=int(fig.get_figwidth() * 17), break_on_hyphens=False)
        fig.text(0.01, -0.01, note, fontsize=7, color="dimgray", ha="left", va="top")
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def plot_length_effect(df: pd.DataFrame, experiment: str, axis: str, xlabel: str, path: Path, note: str = "") -> None:
    """Wall time of baseline and speculative decoding against a length axis."""
    sel = df[df.experiment == experiment]
    if sel.empty:
        return _empty(path, experiment)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    _errbar(ax, _stats(sel, axis, "baseline_time_s"), "baseline (autoregressive)", color="tab:gray")
    n = sel.n_draft.iloc[0]
    _errbar(ax, _stats(sel, axis, "speculative_time_s"), f"speculative (N={n})", color="tab:blue")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(sel[axis].unique()), [str(int(v)) for v in sorted(sel[axis].unique())])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("generation time (s), median and IQR")
    ax.set_title(_title(sel, f"Effect of {xlabel.split(' (')[0].lower()}"))
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path, note)


def _hline(ax, sel: pd.DataFrame, col: str, label: str, style: str, color: str) -> None:
    if not sel.empty:
        ax.axhline(sel[col].median(), linestyle=style, color=color, label=f"{label}: {sel[col].median():.2f} s")


def plot_n_effect(df: pd.DataFrame, path: Path, note: str = "") -> None:
    """Time against N for ours and HF assisted side by side; other methods and baseline as lines."""
    sel = df[df.experiment == "n"]
    fixed = sel[sel.n_value.notna() & sel.method.isin([m for m, *_ in PER_N])]
    if fixed.empty:
        return _empty(path, "N")
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for method, label, offset, color in PER_N:
        part = fixed[fixed.method == method]
        if not part.empty:
            _errbar(ax, _stats(part, "n_value", "speculative_time_s"), f"{label} (fixed N)", offset, color=color)
    _hline(ax, sel, "baseline_time_s", "baseline", "-", "tab:gray")
    for method, label, style, color in ONE_CELL_LINES:
        _hline(ax, sel[sel.method == method], "speculative_time_s", label, style, color)
    ns = sorted(fixed.n_value.unique())
    ax.set_xticks(ns, [str(int(v)) for v in ns])
    ax.set_xlabel("draft tokens per step N")
    ax.set_ylabel("generation time (s), median and IQR")
    row = sel.iloc[0]
    ax.set_title(_title(sel, f"Effect of N ({prompt_label(row)}, {int(row.max_new_tokens)} new)"))
    ax.grid(alpha=0.3)
    ax.legend(ncol=2, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2))  # below: never over a line
    _save(fig, path, note)


def plot_acceptance(df: pd.DataFrame, path: Path, note: str = "") -> None:
    """Acceptance rate and tokens per target step against N (two panels)."""
    sel = df[(df.experiment == "n") & df.n_value.notna() & df.method.isin([m for m, *_ in PER_N])]
    if sel.empty:
        return _empty(path, "acceptance")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=FIGSIZE)
    for method, label, offset, color in PER_N:
        part = sel[sel.method == method]
        if part.empty:
            continue
        # HF's loop does not report its acceptances, only its target forwards (τ)
        for col, what, style in (("acceptance_rate", "α̂", "-"), ("alpha_geometric", "per-token α", "--")):
            if col in part and part[col].notna().any():
                _errbar(a1, _stats(part, "n_value", col), f"{label}, {what}", offset, color=color, linestyle=style)
        _errbar(a2, _stats(part, "n_value", "tokens_per_step"), label, offset, color=color)
    ns = sorted(sel.n_value.unique())
    for ax, ylabel in ((a1, "acceptance: α̂ = accepted / drafted,\nper-token α = geometric MLE"),
                       (a2, "τ (new tokens / target forward)")):
        ax.set_xticks(ns, [str(int(v)) for v in ns])
        ax.set_xlabel("draft tokens per step N")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.24))  # below: never over a curve
    a1.set_ylim(0, 1.05)
    row = sel.iloc[0]
    fig.suptitle(f"Acceptance vs N: target {row.target_model}, draft {row.draft_model}", fontsize=10, y=1.03)
    _save(fig, path, note)


def predicted_curve(ours: pd.DataFrame, costs: dict | None) -> pd.Series | None:
    """Predicted speedup per N of our fixed-N rows, from their median per-token α (geometric MLE,
    not α̂, which E(α, N) would read low), c and v(N) via :mod:`specdec.auto.theory`; None if unavailable
    (no calibrated costs, or a CSV from before the ``alpha_geometric`` column)."""
    if "alpha_geometric" not in ours:
        return None
    alphas = ours.groupby("n_value").alpha_geometric.median()
    out = pd.Series({n: predicted_from_costs(a, int(n), costs) for n, a in alphas.items()}, dtype=float).dropna()
    return out.sort_index() if not out.empty else None


def plot_speedup(df: pd.DataFrame, costs: dict | None, path: Path, note: str = "") -> None:
    """Measured speedup against N with spread, the predicted curve, and break-even at 1.0."""
    sel = df[(df.experiment == "n") & df.n_value.notna()]
    ours = sel[sel.method == "speculative"]
    if ours.empty:
        return _empty(path, "speedup")
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for method, label, offset, color in PER_N:
        part = sel[sel.method == method]
        if not part.empty:
            _errbar(ax, _stats(part, "n_value", "speedup"), f"{label}, measured", offset, color=color)
    pred = predicted_curve(ours, costs)
    if pred is not None:
        label = f"predicted for the draft model from per-token α, c={costs['c']:.2f}, v(N)"
        ax.plot(pred.index, pred.values, "s--", color="tab:green", label=label)
    ax.axhline(1.0, linestyle="--", color="black", linewidth=1, label="break-even (1.0)")
    every = df[df.experiment == "n"]
    for method, label, style, color in ONE_CELL_LINES:
        part = every[every.method == method]
        if not part.empty:
            ax.axhline(part.speedup.median(), linestyle=style, color=color, linewidth=1.2,
                       label=f"{label}: {part.speedup.median():.2f}×")
    ns = sorted(ours.n_value.unique())
    ax.set_xticks(ns, [str(int(v)) for v in ns])
    ax.set_xlabel("draft tokens per step N")
    ax.set_ylabel("speedup over plain decoding (×)")
    ax.set_title(_title(ours, "Speedup vs N"))
    ax.grid(alpha=0.3)
    ax.legend(ncol=2, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    _save(fig, path, note)


def plot_compiled(df: pd.DataFrame, meta: dict, path: Path, note: str = "") -> None:
    """ms per new token against N, eager and compiled, with both baselines, HF's static+compile
    generate and the memory floor as lines: where the compiled path sits against the machine."""
    df = df.assign(ms=1e3 * df.speculative_time_s / df.new_tokens, base_ms=1e3 * df.baseline_time_s / df.new_tokens)
    compiled = compiled_mask(df)
    sel = df[(df.experiment == "n")]
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for mode, mask, style in (("eager", ~compiled, "--"), ("compiled", compiled, "-")):
        part = sel[mask[sel.index]]
        for method, label, offset, color in PER_N:
            rows = part[(part.method == method) & part.n_value.notna()]
            if not rows.empty:
                _errbar(ax, _stats(rows, "n_value", "ms"), f"{label}, {mode}", offset, color=color, linestyle=style)
        if not part.empty:
            ax.axhline(part.base_ms.median(), color="tab:gray", linestyle=style,
                       label=f"baseline, {mode}: {part.base_ms.median():.1f} ms")
    hf = sel[(sel.method == "hf-static") & compiled[sel.index]]
    if not hf.empty:
        ax.axhline(hf.ms.median(), color="tab:red", linestyle="-.", label=f"HF generate, static+compile: {hf.ms.median():.1f} ms")
    floor = (meta.get("memory_floor") or {}).get("floor_ms")
    if floor:
        ax.axhline(floor, color="black", linestyle=":", label=f"memory floor (weights read once): {floor:.1f} ms")
    ax.set_ylim(bottom=0)
    ns = sorted(sel.n_value.dropna().unique())
    if ns:
        ax.set_xticks(ns, [str(int(v)) for v in ns])
    ax.set_xlabel("draft tokens per step N")
    ax.set_ylabel("ms per new token, median and IQR")
    ax.set_title(_title(sel if not sel.empty else df, "Compiled (static cache) against eager"))
    ax.grid(alpha=0.3)
    ax.legend(ncol=2, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    _save(fig, path, note)


def make_plots(csv_path: Path, out_dir: Path | None = None) -> list[Path]:
    """Draw all five figures beside the CSV (or in ``out_dir``); return their paths. A run with eager
    and compiled cells draws them from its eager rows and adds :data:`COMPILED_PLOT`."""
    csv_path = Path(csv_path)
    out_dir = Path(out_dir) if out_dir is not None else csv_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    df = frame(pd.read_csv(csv_path, dtype={"n_draft": str, "outputs_match": str, "compiled": str}))
    meta_file = csv_path.with_name(csv_path.stem + ".meta.json")
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    costs, note = meta.get("costs"), hardware_note(meta)
    paths = [out_dir / name for name in PLOT_FILES]
    if df.empty:
        for p in paths:
            _empty(p, p.stem)
        return paths
    compiled = compiled_mask(df)
    if compiled.any():
        plot_compiled(df, meta, out_dir / COMPILED_PLOT, note)
        paths.append(out_dir / COMPILED_PLOT)
        if not compiled.all():
            df = df[~compiled]
    plot_length_effect(df, "prompt_length", "prompt_len", "prompt length (tokens)", paths[0], note)
    plot_length_effect(df, "max_tokens", "max_new_tokens", "new tokens generated (tokens)", paths[1], note)
    plot_n_effect(df, paths[2], note)
    plot_acceptance(df, paths[3], note)
    plot_speedup(df, costs, paths[4], note)
    return paths

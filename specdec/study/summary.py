"""The study's headline numbers from its CSV rows (no torch): best N, speedups with spread, match rate."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..auto.theory import predicted_speedup
from ..files import atomic_write_json, atomic_write_text


def frame(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """Results as a DataFrame with numeric columns parsed; ``n_value`` is N as a number (NaN for auto/default)."""
    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    if df.empty:
        return df
    numeric = [c for c in df.columns
               if c.endswith(("_s", "_per_s", "speedup", "_rate", "_step", "_forwards")) or c == "alpha_geometric"]
    for col in numeric + ["prompt_len", "max_new_tokens", "repeat", "new_tokens", "temperature"]:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    df["n_draft"] = df["n_draft"].astype(str)
    df["n_value"] = pd.to_numeric(df["n_draft"], errors="coerce")
    return df


def spread(values: pd.Series) -> dict:
    """Median, quartiles, min, max and count of a series (NaNs dropped)."""
    v = values.dropna()
    if v.empty:
        return {"median": math.nan, "q1": math.nan, "q3": math.nan, "min": math.nan, "max": math.nan, "count": 0}
    return {"median": float(v.median()), "q1": float(v.quantile(0.25)), "q3": float(v.quantile(0.75)),
            "min": float(v.min()), "max": float(v.max()), "count": int(v.size)}


def _method(df: pd.DataFrame, method: str, n: str | None = None) -> dict | None:
    sel = df[(df.experiment == "n") & (df.method == method)]
    if n is not None:
        sel = sel[sel.n_draft == n]
    if sel.empty:
        return None
    alpha = spread(sel.alpha_geometric)["median"] if "alpha_geometric" in sel else math.nan
    return {"n_draft": n, "speedup": spread(sel.speedup), "acceptance_rate": spread(sel.acceptance_rate)["median"],
            "alpha_geometric": alpha, "tokens_per_step": spread(sel.tokens_per_step)["median"]}


def predicted_from_costs(alpha: float, n: int, costs: dict | None) -> float:
    """E(α, N) / (N·c + v(N)) with a run's measured costs (meta JSON ``costs``); NaN when c, v(N) or α is missing."""
    verify = {int(k): float(x) for k, x in (costs or {}).get("verify_cost", {}).items()}
    if not costs or "c" not in costs or n not in verify or math.isnan(alpha):
        return math.nan
    return predicted_speedup(float(alpha), float(costs["c"]), n, verify[n])


def compiled_mask(df: pd.DataFrame) -> pd.Series:
    """Which rows ran compiled (CSVs from before the column ran eager)."""
    if "compiled" not in df:
        return pd.Series(False, index=df.index)
    return df["compiled"].astype(str).str.lower() == "true"


def summarize(rows: list[dict] | pd.DataFrame, meta: dict | None = None) -> dict:
    """Headline numbers per mode (eager at the top level, compiled under ``"compiled"`` when a run had
    both; a compiled-only run's at the top), and ``compile_report`` comparing them."""
    df = frame(rows)
    meta = meta or {}
    if df.empty:
        return _summarize(df, meta)
    compiled = compiled_mask(df)
    if not compiled.any():
        return _summarize(df, meta)
    if compiled.all():
        out = _summarize(df, meta)
        out["mode"] = "compiled"
    else:
        out = _summarize(df[~compiled], meta)
        out["mode"] = "eager"
        out["compiled"] = {**_summarize(df[compiled], {**meta, "costs": meta.get("costs_compiled")}), "mode": "compiled"}
    out["compile_report"] = compile_report(df, meta)
    return out


def _ms_per_token(times: pd.Series, tokens: pd.Series) -> float:
    return spread(1e3 * times / tokens)["median"]


def compile_report(df: pd.DataFrame, meta: dict) -> dict:
    """Compiled against eager: ms/token of our baseline and of each method at each N, the speedup
    each keeps, our compiled baseline against HF's static+compile ``generate`` and against the
    memory floor, and the compile seconds per graph (never inside a generation's time)."""
    compiled = compiled_mask(df)
    out: dict = {"baseline_ms_per_token": {}, "methods": {}}
    for mode, part in (("eager", df[~compiled]), ("compiled", df[compiled])):
        if not part.empty:
            out["baseline_ms_per_token"][mode] = _ms_per_token(part.baseline_time_s, part.new_tokens)
    sel = df[(df.experiment == "n") & (df.method != "hf-static")]
    for (method, n), part in sel.groupby(["method", "n_draft"]):
        entry = {}
        for mode, rows in (("eager", part[~compiled[part.index]]), ("compiled", part[compiled[part.index]])):
            if not rows.empty:
                entry[f"{mode}_ms_per_token"] = _ms_per_token(rows.speculative_time_s, rows.new_tokens)
                entry[f"{mode}_speedup"] = spread(rows.speedup)["median"]
        if "eager_speedup" in entry and "compiled_speedup" in entry:
            entry["kept"] = entry["compiled_speedup"] / entry["eager_speedup"]
        out["methods"][f"{method} N={n}"] = entry
    hf = df[(df.method == "hf-static") & compiled]
    if not hf.empty:
        out["hf_static_ms_per_token"] = _ms_per_token(hf.speculative_time_s, hf.new_tokens)
        out["ours_vs_hf_static"] = spread(hf.speculative_time_s / hf.baseline_time_s)  # > 1: ours faster
    floor = meta.get("memory_floor") or {}
    if "floor_ms" in floor and "compiled" in out["baseline_ms_per_token"]:
        out["memory_floor_ms"] = floor["floor_ms"]
        out["compiled_baseline_over_floor"] = out["baseline_ms_per_token"]["compiled"] / floor["floor_ms"]
    if "eager" in out["baseline_ms_per_token"] and "compiled" in out["baseline_ms_per_token"]:
        out["compiled_baseline_speedup"] = out["baseline_ms_per_token"]["eager"] / out["baseline_ms_per_token"]["compiled"]
    graphs = (meta.get("compile") or {}).get("graphs", [])
    if graphs:
        out["compile_seconds"] = {"total": sum(g["seconds"] for g in graphs), "graphs": len(graphs),
                                  "per_graph": spread(pd.Series([g["seconds"] for g in graphs]))}
    return out


def _summarize(df: pd.DataFrame, meta: dict) -> dict:
    """Headline numbers of one mode: best fixed N of ours and the other methods' speedups, match rate, costs."""
    out: dict = {"rows": int(len(df)), "target_model": None, "draft_model": None,
                 "dtype": meta.get("dtype"), "device": meta.get("device"), "costs": meta.get("costs")}
    if (meta.get("pack_verify") or {}).get("packed"):
        choices = meta["pack_verify"]["rows"]
        one = next((r for r in choices if r["rows"] == 1), None)
        out["pack_verify"] = {"rows": [r["rows"] for r in choices if r["kept"]], "costs_unpacked": meta.get("costs_unpacked"),
                              "one_row_packed_ratio": one["packed_ms"] / one["unpacked_ms"] if one else None}
    if df.empty:
        return out
    out["target_model"], out["draft_model"] = str(df.target_model.iloc[0]), str(df.draft_model.iloc[0])
    out["prompt_set"] = ",".join(sorted(df.prompt_set.astype(str).unique())) if "prompt_set" in df else "study"
    ours = df[(df.experiment == "n") & (df.method == "speculative")]
    if not ours.empty:
        med = ours.groupby("n_draft").speedup.median()
        best = str(med.idxmax())
        out["best_n"] = {**_method(df, "speculative", best), "n_draft": best}
        out["best_n"]["predicted_speedup"] = predicted_from_costs(
            out["best_n"]["alpha_geometric"], int(best), meta.get("costs"))
        hf = _method(df, "hf-assisted", best)
        out["hf_assisted_at_best_n"] = hf
    for name in ("auto", "auto-lookup", "auto-random", "eagle-auto", "eagle-tree-auto", "eagle-lookup-auto",
                 "eagle-tree-lookup-auto", "prompt-lookup", "hf-default"):
        out[name] = _method(df, name)
    for method, key in (("hf-assisted", "hf_assisted_best"), ("eagle", "eagle_best"), ("eagle-tree", "eagle_tree_best")):
        part = df[(df.experiment == "n") & (df.method == method)]
        if not part.empty:
            out[key] = _method(df, method, str(part.groupby("n_draft").speedup.median().idxmax()))
    out["per_n"] = per_n(df)
    greedy = df[df.temperature == 0]
    if not greedy.empty:
        matched = greedy.outputs_match.astype(str).str.lower() == "true"
        out["greedy_match_rate"] = float(matched.mean())
        out["greedy_rows"] = int(len(greedy))
        out["greedy_classes"] = match_classes(greedy)
    return out


def per_n(df: pd.DataFrame) -> dict[str, dict[str, dict]]:
    """Median speedup, per-token α and τ of every fixed-N method at each N: {method: {N: {...}}}."""
    sel = df[(df.experiment == "n") & df.n_value.notna()]
    out: dict[str, dict[str, dict]] = {}
    for (method, n), part in sel.groupby(["method", "n_draft"]):
        out.setdefault(str(method), {})[str(n)] = {
            "speedup": spread(part.speedup)["median"], "alpha_geometric": spread(part.alpha_geometric)["median"],
            "tokens_per_step": spread(part.tokens_per_step)["median"], "pairs": int(len(part))}
    return out


def match_classes(greedy: pd.DataFrame) -> dict[str, float]:
    """Shares of greedy pairs that are identical, differ first at a near-tie, or differ unexplained
    (:mod:`specdec.study.divergence`); pairs from a CSV without that column count as ``not recorded``."""
    classes = (greedy["match_class"].astype("string").fillna("") if "match_class" in greedy
               else pd.Series("", index=greedy.index, dtype="string"))
    identical = greedy.outputs_match.astype(str).str.lower() == "true"
    classes = classes.where(classes != "", identical.map({True: "identical", False: "not recorded"}))
    shares = classes.value_counts(normalize=True)
    return {k: float(shares.get(k, 0.0)) for k in ("identical", "near-tie", "unexplained", "not recorded")}


def _fmt(entry: dict | None, label: str) -> str:
    if not entry:
        return f"- {label}: not measured"
    s = entry["speedup"]
    n = f" (N={entry['n_draft']})" if entry.get("n_draft") not in (None, "nan") else ""
    predicted = entry.get("predicted_speedup", math.nan)
    return (f"- {label}{n}: speedup {s['median']:.2f}x (IQR {s['q1']:.2f}-{s['q3']:.2f}, "
            f"min-max {s['min']:.2f}-{s['max']:.2f}, {s['count']} pairs); "
            f"acceptance {entry['acceptance_rate']:.2f}, per-token alpha {entry.get('alpha_geometric', math.nan):.2f}, "
            f"tau {entry['tokens_per_step']:.2f}"
            + (f"; predicted {predicted:.2f}x from per-token alpha, c, v(N)" if not math.isnan(predicted) else ""))


def to_markdown(summary: dict) -> str:
    """The summary as a short Markdown list (also printed at the end of a run)."""
    lines = [f"Study summary: target {summary.get('target_model')}, draft {summary.get('draft_model')}, "
             f"{summary.get('dtype')} on {summary.get('device')}, {summary.get('rows')} measured pairs, "
             f"prompts: {summary.get('prompt_set', 'study')}",
             _fmt(summary.get("best_n"), "best N, ours"),
             _fmt(summary.get("eagle_best"), "EAGLE feature head, its best N"),
             _fmt(summary.get("eagle-auto"), "EAGLE feature head, auto N"),
             _fmt(summary.get("eagle_tree_best"), "EAGLE feature head, token tree, its best N"),
             _fmt(summary.get("eagle-tree-auto"), "EAGLE feature head, token tree, auto N"),
             _fmt(summary.get("eagle-lookup-auto"), "EAGLE feature head + prompt-lookup branch, auto N"),
             _fmt(summary.get("eagle-tree-lookup-auto"), "EAGLE feature head, token tree + prompt-lookup branch, auto N"),
             _fmt(summary.get("auto"), "auto N, ours"),
             _fmt(summary.get("auto-lookup"), "auto N, ours + prompt-lookup branch"),
             _fmt(summary.get("auto-random"), "auto N, unrelated random draft"),
             _fmt(summary.get("prompt-lookup"), "prompt lookup"),
             _fmt(summary.get("hf_assisted_at_best_n"), "HF assisted at our best N"),
             _fmt(summary.get("hf_assisted_best"), "HF assisted, its best N"),
             _fmt(summary.get("hf-default"), "HF assisted, HF defaults")]
    table = summary.get("per_n") or {}
    if table:
        ns = sorted({int(n) for per in table.values() for n in per})
        lines.append("- speedup / per-token alpha / tau by N: " + "; ".join(
            f"{method} " + ", ".join(f"N={n} {v['speedup']:.2f}x/{v['alpha_geometric']:.2f}/{v['tokens_per_step']:.2f}"
                                     for n in ns if (v := per.get(str(n))))
            for method, per in table.items()))
    costs = summary.get("costs") or {}
    verify_costs = lambda c: ", ".join(f"v({k})={x:.2f}" for k, x in (c or {}).get("verify_cost", {}).items())
    if "c" in costs:
        lines.append(f"- measured cost ratio c={costs['c']:.3f}; verification cost {verify_costs(costs)}")
    if "pack_verify" in summary:
        pack = summary["pack_verify"]
        rows = ", ".join(map(str, pack["rows"])) or "none (no row count measured faster packed)"
        lines.append(f"- our methods verified through the target's packed twin (rows {rows}; baseline and HF methods "
                     f"unpacked); verification cost without packs {verify_costs(pack.get('costs_unpacked'))}"
                     + (f"; one row packed would take {pack['one_row_packed_ratio']:.2f}x the baseline's linear time"
                        if pack.get("one_row_packed_ratio") else ""))
    if "greedy_match_rate" in summary:
        cls = summary.get("greedy_classes") or {}
        line = (f"- greedy outputs of {summary['greedy_rows']} pairs: identical {cls.get('identical', 0):.0%}, "
                f"first difference at a near-tie (margin within the dtype's rounding) {cls.get('near-tie', 0):.0%}, "
                f"unexplained {cls.get('unexplained', 0):.0%}")
        if cls.get("not recorded"):
            line += f", not classified (CSV from an older version) {cls['not recorded']:.0%}"
        lines.append(line + " (unexplained must be 0%)")
    if summary.get("compiled"):
        lines.append("\nCompiled (static caches, torch.compile):")
        lines.append(to_markdown(summary["compiled"]).rstrip("\n"))
    if summary.get("compile_report"):
        lines.append(_compile_lines(summary["compile_report"]))
    return "\n".join(lines) + "\n"


def _compile_lines(r: dict) -> str:
    base = r.get("baseline_ms_per_token", {})
    lines = ["\nCompiled against eager (ms/token, medians):",
             "- our baseline: " + ", ".join(f"{k} {v:.1f}" for k, v in base.items())
             + (f" ({r['compiled_baseline_speedup']:.2f}x)" if "compiled_baseline_speedup" in r else "")]
    if "ours_vs_hf_static" in r:
        lines.append(f"- HF generate, static cache + compiled forward: {r['hf_static_ms_per_token']:.1f}; "
                     f"ours runs at {r['ours_vs_hf_static']['median']:.2f}x its speed")
    if "memory_floor_ms" in r:
        lines.append(f"- memory floor (reading the weights once): {r['memory_floor_ms']:.1f}; compiled baseline "
                     f"at {r['compiled_baseline_over_floor']:.2f}x the floor")
    for name, e in r.get("methods", {}).items():
        parts = [f"{m} {e[f'{m}_ms_per_token']:.1f} ({e[f'{m}_speedup']:.2f}x)" for m in ("eager", "compiled")
                 if f"{m}_ms_per_token" in e]
        lines.append(f"- {name}: " + ", ".join(parts) + (f"; compiled keeps {e['kept']:.2f} of the eager speedup"
                                                        if "kept" in e else ""))
    if "compile_seconds" in r:
        c = r["compile_seconds"]
        lines.append(f"- compiling: {c['graphs']} graphs, {c['total']:.0f} s in all (median {c['per_graph']['median']:.1f} s "
                     "per graph), outside every timed generation")
    return "\n".join(lines)


def write_summary(csv_path: Path, summary: dict) -> None:
    """``<stem>.summary.json`` and ``<stem>.summary.md`` beside the CSV."""
    base = csv_path.with_name(csv_path.stem)
    atomic_write_json(Path(f"{base}.summary.json"), summary)
    atomic_write_text(Path(f"{base}.summary.md"), to_markdown(summary))

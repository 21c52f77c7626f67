"""Agreement-over-training figure: a feature head's log beside the independent draft's stages.

Left: held-out agreement against minutes of training (each model's stages one after another).
Right: against positions, the head's trained-on positions (repeats counted) and, for the draft,
the teacher positions its data held at the end of each stage (from its model card).
No torch import.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd


def draft_curve(stage_logs: list[Path]) -> pd.DataFrame:
    """The stages' logs end to end: cumulative minutes and held-out agreement."""
    parts, offset = [], 0.0
    for i, path in enumerate(stage_logs):
        log = pd.read_csv(path)
        parts.append(pd.DataFrame({"minutes": offset + log.elapsed_s / 60, "agreement": log.heldout_agreement,
                                   "stage": i + 1}))
        offset += float(log.elapsed_s.max()) / 60
    return pd.concat(parts, ignore_index=True)


def head_curve(stage_logs: list[Path]) -> pd.DataFrame:
    """A head's stage logs end to end (each stage starts from the last one's head): cumulative
    minutes and positions trained on, first- and second-draft agreement, stage number."""
    parts, minutes, positions = [], 0.0, 0
    for i, path in enumerate(stage_logs):
        log = pd.read_csv(path)
        second = log.heldout_agreement_2 if "heldout_agreement_2" in log else float("nan")
        parts.append(pd.DataFrame({"minutes": minutes + log.elapsed_s / 60, "positions": positions + log.positions,
                                   "agreement": log.heldout_agreement, "agreement_2": second, "stage": i + 1}))
        minutes += float(log.elapsed_s.max()) / 60
        positions += int(log.positions.max())
    return pd.concat(parts, ignore_index=True)


def plot_agreement(head_logs: list[Path], stage_logs: list[Path], stage_positions: list[int], out: Path,
                   head_label: str = "feature head", draft_label: str = "independent draft") -> Path:
    """Write the two-panel figure to ``out`` and return it; a head trained in stages is drawn stage by
    stage (a dotted line where one ends: the next may score a different held-out set)."""
    head = head_curve(head_logs)
    draft = draft_curve(stage_logs)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.6, 3.8))
    for stage, part in head.groupby("stage"):
        first = stage == 1
        a1.plot(part.minutes, part.agreement, "o-", color="tab:blue", label=f"{head_label}, first draft" if first else None)
        if part.agreement_2.notna().any():
            a1.plot(part.minutes, part.agreement_2, "s--", color="tab:blue", alpha=0.6,
                    label=f"{head_label}, second draft (if first right)" if first else None)
        trained = part[part.positions > 0]  # a log axis: the untrained start has no place on it
        a2.plot(trained.positions, trained.agreement, "o-", color="tab:blue",
                label=f"{head_label}: positions trained on" if first else None)
        if not first:
            a1.axvline(part.minutes.iloc[0], color="tab:blue", ls=":", lw=0.8)
            a2.axvline(max(part.positions.iloc[0], 1), color="tab:blue", ls=":", lw=0.8)
    a1.plot(draft.minutes, draft.agreement, ".-", color="tab:orange", label=f"{draft_label} (5 stages)")
    a1.set_xlabel("minutes of training (2 CPU cores)")
    a1.set_ylabel("held-out agreement with the target's greedy token")
    ends = draft.groupby("stage").agreement.last().tolist()
    a2.plot(stage_positions[: len(ends)], ends, "D-", color="tab:orange", label=f"{draft_label}: teacher positions, stage ends")
    a2.set_xscale("log")
    a2.set_xlabel("positions")
    for ax in (a1, a2):
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Agreement over training: SmolLM2-135M-Instruct as the target", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=200, bbox_inches="tight")
    plt.close(fig)
    return out

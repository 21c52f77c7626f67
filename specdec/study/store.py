"""The results CSV: its row type, resume, and a lock so two studies never write one file.

Every row is flushed as it is written, so an interrupted run keeps its finished rows and
``--resume`` skips them. A lock file beside the CSV (``<csv>.lock``, an advisory ``flock``) is
held for the whole run; a second study on the same output is refused in one line.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .config import StudyConfig

KEY_COLUMNS = ("experiment", "method", "prompt_id", "prompt_len", "max_new_tokens", "n_draft", "repeat", "compiled")


@dataclass
class Row:
    """One measured baseline/candidate pair; the CSV's columns, in order."""

    experiment: str
    method: str
    prompt_id: str
    prompt_len: int
    max_new_tokens: int
    n_draft: int | str
    repeat: int
    temperature: float
    new_tokens: int
    baseline_time_s: float
    speculative_time_s: float
    speedup: float
    decode_speedup: float
    baseline_tokens_per_s: float
    speculative_tokens_per_s: float
    acceptance_rate: float
    alpha_geometric: float
    tokens_per_step: float
    target_forwards: int
    draft_forwards: int
    baseline_prefill_s: float
    baseline_decode_s: float
    speculative_prefill_s: float
    speculative_decode_s: float
    outputs_match: bool | str  # "" when sampling (outputs are not expected to match)
    target_model: str
    draft_model: str
    dtype: str
    device: str
    seed: int
    # Greedy pairs only: "identical", "near-tie" or "unexplained" (see specdec.study.divergence).
    match_class: str = ""
    first_diff_position: int | str = ""  # first new token where the outputs differ
    baseline_top2_margin: float | str = ""  # the target's top-1 minus top-2 logit there
    prompt_set: str = "study"  # specdec.study.prompts.PROMPT_SETS
    prompt_tokens: int = 0  # the prompt's real length (prompt_len is 0 for natural-length sets)
    compiled: bool = False  # both generations ran compiled (static caches, specdec.engine.forward)


COLUMNS = tuple(f.name for f in fields(Row))


def row_key(row: dict) -> tuple[str, ...]:
    """The identity of a finished row for ``--resume`` (all values as CSV strings)."""
    return tuple(str(row.get(k, False)) for k in KEY_COLUMNS)  # CSVs before "compiled" were eager


def meta_path(csv_path: Path) -> Path:
    """The provenance JSON beside a results CSV."""
    return csv_path.with_name(csv_path.stem + ".meta.json")


def read_rows(csv_path: Path) -> list[dict]:
    """Rows of an existing results CSV (empty when it does not exist)."""
    if not csv_path.exists():
        return []
    with csv_path.open(newline="") as f:
        return list(csv.DictReader(f))


def check_resume(cfg: StudyConfig, csv_path: Path) -> set[tuple[str, ...]]:
    """Keys of finished rows; ValueError when the CSV or its config does not match ``cfg``."""
    if not csv_path.exists():
        return set()
    with csv_path.open(newline="") as f:
        header = next(csv.reader(f), None)
    if header is None:
        return set()
    if tuple(header) != COLUMNS:
        raise ValueError(f"cannot resume: {csv_path} has different columns (not a results CSV of this version)")
    meta = meta_path(csv_path)
    try:
        saved = json.loads(meta.read_text())["config"]
    except (OSError, ValueError, KeyError):
        raise ValueError(f"cannot resume: {meta} is missing or unreadable, so {csv_path}'s configuration is unknown") from None
    if saved != cfg.fingerprint():
        diff = sorted(k for k in set(saved) | set(cfg.fingerprint()) if saved.get(k) != cfg.fingerprint().get(k))
        raise ValueError(f"cannot resume: {csv_path} was written with a different configuration ({', '.join(diff)} differ)")
    return {row_key(r) for r in read_rows(csv_path)}


def check_writable(csv_path: Path) -> None:
    """ValueError (never OSError) unless the CSV and its side files can be written."""
    parent = csv_path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create output directory {parent}: {exc.strerror or exc}") from None
    if csv_path.is_dir():
        raise ValueError(f"output path {csv_path} is a directory")
    if not os.access(parent, os.W_OK) or (csv_path.exists() and not os.access(csv_path, os.W_OK)):
        raise ValueError(f"output path {csv_path} is not writable")


class StudyLock:
    """Exclusive use of one results CSV while a study writes it (a context manager).

    The lock is an ``flock`` on ``<csv>.lock``: the kernel drops it when the process ends, so a
    crashed run never leaves a stale lock behind.
    """

    def __init__(self, csv_path: Path) -> None:
        self.path = csv_path.with_name(csv_path.name + ".lock")
        self._file = None

    def __enter__(self) -> StudyLock:
        self._file = self.path.open("a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            self._file = None
            raise ValueError(f"another study is writing {self.path.with_suffix('')} (pid {holder} holds "
                             f"{self.path.name}); wait for it to finish or choose another --output") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()  # releases the flock
            self._file = None


def check_unlocked(csv_path: Path) -> None:
    """ValueError now, before minutes of model loading, if another study holds ``csv_path``."""
    with StudyLock(csv_path):
        pass


class CsvSink:
    """Appends rows to the results CSV, flushing each so an interruption keeps finished rows."""

    def __init__(self, path: Path, resume: bool) -> None:
        fresh = not (resume and path.exists() and path.stat().st_size > 0)
        self.file = path.open("w" if fresh else "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=COLUMNS)
        if fresh:
            self.writer.writeheader()
            self.file.flush()

    def write(self, row: Row) -> None:
        self.writer.writerow(asdict(row))
        self.file.flush()

    def close(self) -> None:
        self.file.close()

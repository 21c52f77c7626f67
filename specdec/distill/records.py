"""Teacher records (token ids plus the target's top-k at each supervised position) and their shards.

A shard is one ``.safetensors`` file, so loading data can never run code. Its
tensors hold the shard's records end to end:

* ``ids`` int32 (all token ids), ``ids_offsets`` int64 (R + 1): record r is ``ids[o[r]:o[r+1]]``;
* ``vals`` float16 (P, k) and ``tids`` int32 (P, k), the top-k logits and ids, with
  ``row_offsets`` int64 (R + 1) in the same way;
* ``start``, ``gen_start`` (-1: no generated answer) and ``key``, int64 (R,).

The per-record ``kind`` strings are a JSON list in the metadata, beside ``format`` and ``version``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..files import atomic_path
from .sources import is_heldout

FORMAT = "specdec-distill-records"
VERSION = "1"
SHARD_SUFFIX = ".safetensors"


@dataclass
class Record:
    """One teacher sequence: row j of ``vals``/``tids`` is the target's top-k for token ``ids[start + j]``.

    ``gen_start`` is where the target's generated answer begins (None: teacher-forced text only);
    ``kind`` is the prompt source plus ``-g`` (greedy answer), ``-t`` (sampled) or ``-f`` (forced)."""

    ids: torch.Tensor  # int32 (n,)
    start: int
    vals: torch.Tensor  # float16 (n - start, k)
    tids: torch.Tensor  # int32 (n - start, k)
    key: int
    kind: str
    gen_start: int | None = None

    def __post_init__(self) -> None:
        rows = len(self.ids) - self.start
        if self.start < 1 or self.vals.shape[0] != rows or self.tids.shape != self.vals.shape:
            raise ValueError(f"record {self.key}: {len(self.ids)} ids from {self.start} need {rows} top-k rows, "
                             f"got vals {tuple(self.vals.shape)} and tids {tuple(self.tids.shape)}")

    @property
    def positions(self) -> int:
        """Supervised (teacher) positions."""
        return int(self.vals.shape[0])

    @property
    def answer_tokens(self) -> int:
        """Tokens of the target's generated answer (0 for teacher-forced records)."""
        return 0 if self.gen_start is None else len(self.ids) - self.gen_start


def topk_rows(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (values float16, ids int32) along the last dim: the stored form of a teacher row."""
    vals, ids = logits.float().topk(k, dim=-1)
    return vals.half(), ids.int()


def make_record(ids: list[int], start: int, vals: torch.Tensor, tids: torch.Tensor, key: int, kind: str,
                gen_start: int | None = None) -> Record:
    """A :class:`Record` from a list of token ids, in the stored dtypes."""
    return Record(torch.tensor(ids, dtype=torch.int32), start, vals.half(), tids.int(), key, kind, gen_start)


def _offsets(lengths: list[int]) -> torch.Tensor:
    return torch.tensor([0, *lengths], dtype=torch.int64).cumsum(0)


def save_records(path: str | Path, recs: list[Record]) -> None:
    """Write ``recs`` as one safetensors shard, atomically (a reader never sees half a shard)."""
    if not recs:
        raise ValueError(f"no records to write to {path}")
    path = Path(path)
    tensors = {
        "ids": torch.cat([r.ids.to(torch.int32) for r in recs]),
        "ids_offsets": _offsets([len(r.ids) for r in recs]),
        "vals": torch.cat([r.vals.to(torch.float16) for r in recs]),
        "tids": torch.cat([r.tids.to(torch.int32) for r in recs]),
        "row_offsets": _offsets([r.positions for r in recs]),
        "start": torch.tensor([r.start for r in recs], dtype=torch.int64),
        "gen_start": torch.tensor([-1 if r.gen_start is None else r.gen_start for r in recs], dtype=torch.int64),
        "key": torch.tensor([r.key for r in recs], dtype=torch.int64),
    }
    meta = {"format": FORMAT, "version": VERSION, "kind": json.dumps([r.kind for r in recs])}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)


def read_shard(path: str | Path) -> list[Record]:
    """The records of one shard written by :func:`save_records`; ValueError for anything else."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(f"{path}: not a specdec distill record shard (format {meta.get('format')!r}, "
                             f"version {meta.get('version')!r})")
        t = {name: f.get_tensor(name) for name in f.keys()}
    kinds = json.loads(meta["kind"])
    io, ro = t["ids_offsets"].tolist(), t["row_offsets"].tolist()
    if not len(kinds) == len(io) - 1 == len(ro) - 1 == len(t["start"]):
        raise ValueError(f"{path}: record counts disagree")
    recs = []
    for r, kind in enumerate(kinds):
        gen_start = int(t["gen_start"][r])
        recs.append(Record(t["ids"][io[r]:io[r + 1]], int(t["start"][r]), t["vals"][ro[r]:ro[r + 1]],
                           t["tids"][ro[r]:ro[r + 1]], int(t["key"][r]), kind, None if gen_start < 0 else gen_start))
    return recs


def load_records(data_dir: str | Path) -> list[Record]:
    """All records of the ``*.safetensors`` shards in ``data_dir``, shards in sorted name order."""
    shards = sorted(Path(data_dir).glob("*" + SHARD_SUFFIX))
    if not shards:
        raise ValueError(f"no *{SHARD_SUFFIX} record shards in {data_dir}")
    return [r for shard in shards for r in read_shard(shard)]


def split_records(recs: list[Record], frac: float) -> tuple[list[Record], list[Record]]:
    """(train, held-out) by prompt key; held-out keeps greedy generations only."""
    train = [r for r in recs if not is_heldout(r.key, frac)]
    held = [r for r in recs if is_heldout(r.key, frac) and r.kind.endswith("-g")]
    return train, held


def collate(recs: list[Record], pad_id: int, gen_only: bool = False) -> dict[str, torch.Tensor]:
    """Right-padded batch: ``ids``/``att`` (B, L); ``mask`` (B, L) and teacher ``vals``/``tids`` (B, L, k)
    aligned with the logits, i.e. at position p the teacher's row for token p + 1.

    ``gen_only``: supervise only the generated answer (all supervised rows for forced records)."""
    L = max(len(r.ids) for r in recs)
    k = recs[0].vals.shape[1]
    B = len(recs)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    att = torch.zeros(B, L, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.bool)
    vals = torch.zeros(B, L, k)
    tids = torch.zeros(B, L, k, dtype=torch.long)
    for b, r in enumerate(recs):
        n, s = len(r.ids), r.start
        first = r.gen_start if gen_only and r.gen_start is not None else s
        ids[b, :n] = r.ids.long()
        att[b, :n] = 1
        # the row for token j sits at logits position j - 1
        mask[b, first - 1:n - 1] = True
        vals[b, s - 1:n - 1] = r.vals.float()
        tids[b, s - 1:n - 1] = r.tids.long()
    return {"ids": ids, "att": att, "mask": mask, "vals": vals, "tids": tids}


def weight_generations(recs: list[Record], repeat: int) -> list[Record]:
    """``recs`` with each record that holds a target generation listed ``repeat`` times, so that
    answers (what the draft must predict when decoding) are not drowned by teacher-forced prompts."""
    return recs + [r for r in recs if r.gen_start is not None] * max(repeat - 1, 0)


def token_batches(recs: list[Record], batch_tokens: int, rng: random.Random) -> list[list[Record]]:
    """Length-bucketed batches of at most ``batch_tokens`` padded tokens (or one record), shuffled."""
    order = sorted(range(len(recs)), key=lambda i: len(recs[i].ids) + rng.random())
    batches: list[list[Record]] = []
    cur: list[Record] = []
    longest = 0
    for i in order:
        n = len(recs[i].ids)
        if cur and max(longest, n) * (len(cur) + 1) > batch_tokens:
            batches.append(cur)
            cur, longest = [], 0
        cur.append(recs[i])
        longest = max(longest, n)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches

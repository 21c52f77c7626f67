import json
import random
import struct

import pytest
import torch
from safetensors.torch import save_file

from specdec.distill import records
from specdec.distill.records import make_record


def test_topk_rows():
    vals, ids = records.topk_rows(torch.tensor([[0.1, 3.0, -1.0, 2.0]]), 2)
    assert ids.tolist() == [[1, 3]] and ids.dtype == torch.int32 and vals.dtype == torch.float16
    assert torch.allclose(vals.float(), torch.tensor([[3.0, 2.0]]), atol=1e-2)


def test_record_rejects_rows_that_do_not_match_its_ids():
    with pytest.raises(ValueError, match="top-k rows"):
        make_record([5, 6, 7, 8], 2, torch.zeros(3, 2), torch.zeros(3, 2), 0, "shk-f")
    with pytest.raises(ValueError, match="top-k rows"):
        make_record([5, 6, 7], 1, torch.zeros(2, 2), torch.zeros(2, 3), 0, "shk-f")


def test_collate_alignment():
    rec = make_record([5, 6, 7, 8], 2, torch.zeros(2, 3), torch.tensor([[7, 0, 1], [8, 0, 1]]), 0, "shk-g")
    b = records.collate([rec, make_record([5, 6, 9], 2, torch.zeros(1, 3), torch.tensor([[9, 0, 1]]), 1, "x")],
                        pad_id=2)
    assert b["mask"][0].tolist() == [False, True, True, False]
    assert b["mask"][1].tolist() == [False, True, False, False]
    assert b["ids"][1].tolist() == [5, 6, 9, 2] and b["att"][1].tolist() == [1, 1, 1, 0]
    # logits at position p predict ids[p+1]: the supervised label equals the next token here
    assert b["tids"][0, 1, 0] == 7 and b["tids"][0, 2, 0] == 8 and b["ids"][1, 2] == 9


def test_collate_gen_only_supervises_the_answer():
    rec = make_record([5, 6, 7, 8, 9], 1, torch.zeros(4, 2), torch.ones(4, 2), 0, "shk-g", gen_start=3)
    assert records.collate([rec], 0)["mask"][0].tolist() == [True, True, True, True, False]
    assert records.collate([rec], 0, gen_only=True)["mask"][0].tolist() == [False, False, True, True, False]
    forced = make_record([5, 6, 7], 1, torch.zeros(2, 2), torch.ones(2, 2), 0, "shk-f")
    assert records.collate([forced], 0, gen_only=True)["mask"][0].tolist() == [True, True, False]


def assert_same(a, b):
    assert a.ids.tolist() == b.ids.tolist() and a.ids.dtype == b.ids.dtype == torch.int32
    assert torch.equal(a.vals, b.vals) and b.vals.dtype == torch.float16
    assert torch.equal(a.tids, b.tids) and b.tids.dtype == torch.int32
    assert (a.start, a.key, a.kind, a.gen_start) == (b.start, b.key, b.kind, b.gen_start)


def test_safetensors_round_trip(tmp_path, records64, make_records, target64):
    forced = make_records(target64, n=3, length=7, start=1, kind="doc-f")
    forced[0].key = 10**12  # int64 keys survive
    forced[1].kind = "coda-ü"  # any kind string survives the JSON metadata
    records.save_records(tmp_path / "b_forced.safetensors", forced)
    records.save_records(tmp_path / "a_gen.safetensors", records64)
    (tmp_path / "old.pt").write_bytes(b"not loaded")  # only *.safetensors shards are read
    back = records.load_records(tmp_path)
    assert len(back) == len(records64) + len(forced)
    for a, b in zip(records64 + forced, back):  # shards in sorted name order
        assert_same(a, b)
    assert back[0].gen_start == 4 and back[-1].gen_start is None
    # the shard is plain safetensors: an 8-byte header length, a JSON header, raw tensor bytes
    raw = (tmp_path / "a_gen.safetensors").read_bytes()
    header = json.loads(raw[8: 8 + struct.unpack("<Q", raw[:8])[0]])
    assert header["__metadata__"]["format"] == records.FORMAT
    assert json.loads(header["__metadata__"]["kind"]) == ["shk-g"] * len(records64)
    assert header["vals"]["dtype"] == "F16" and header["tids"]["dtype"] == "I32"


def test_load_refuses_empty_dirs_and_foreign_files(tmp_path):
    with pytest.raises(ValueError, match="no \\*.safetensors"):
        records.load_records(tmp_path)
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="not a specdec distill record shard"):
        records.load_records(tmp_path)
    with pytest.raises(ValueError, match="no records"):
        records.save_records(tmp_path / "empty.safetensors", [])


def test_split_and_batches():
    recs = [make_record([1, 2, 3], 1, torch.zeros(2, 2), torch.zeros(2, 2), k, "shk-g" if k % 2 else "shk-t")
            for k in range(400)]
    train, held = records.split_records(recs, 0.05)
    assert 0 < len(held) < 30 and all(r.kind == "shk-g" for r in held)
    assert not {r.key for r in train} & {r.key for r in held}
    assert len(train) + len(held) < 400  # sampled held-out answers are in neither
    lengths = [3] * 10 + [5] * 5
    recs = [make_record(list(range(n)), 1, torch.zeros(n - 1, 2), torch.zeros(n - 1, 2), i, "x")
            for i, n in enumerate(lengths)]
    batches = records.token_batches(recs, 12, random.Random(0))
    assert sorted(r.key for b in batches for r in b) == list(range(len(recs)))
    assert all(max(len(r.ids) for r in b) * len(b) <= 12 for b in batches)


def test_weight_generations_repeats_only_records_with_answers():
    gen = make_record([1, 2, 3], 1, torch.zeros(2, 2), torch.zeros(2, 2), 0, "shk-g", gen_start=2)
    forced = make_record([1, 2, 3], 1, torch.zeros(2, 2), torch.zeros(2, 2), 1, "shk-f")
    out = records.weight_generations([gen, forced], 3)
    assert sum(r is gen for r in out) == 3 and sum(r is forced for r in out) == 1
    assert records.weight_generations([gen, forced], 1) == [gen, forced]

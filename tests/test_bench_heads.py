import json

from benchmarks import bench_heads
from specdec.models import load_model
from specdec.models.feature_head import FeatureHead, FeatureHeadConfig
from specdec.testing import save_tiny_pair


def test_main_times_each_head_and_writes_a_record(tmp_path):
    target_dir, _ = save_tiny_pair(tmp_path / "pair")
    target = load_model(str(target_dir), dtype="float32").model
    full = FeatureHead(FeatureHeadConfig.for_target(target, "tiny", draft_vocab=list(range(64))), target)
    full.save(tmp_path / "full")
    full.restricted(list(range(16)), target).save(tmp_path / "cut")
    out = tmp_path / "heads.json"
    heads = [str(tmp_path / "full"), str(tmp_path / "cut")]
    assert bench_heads.main(["--target", str(target_dir), "--heads", *heads, "--rounds", "2", "--repeats", "1",
                             "--prompt-len", "4", "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert [rec["heads"][h]["vocabulary"] for h in heads] == [64, 16]
    assert rec["heads"][heads[1]]["params_m"] < rec["heads"][heads[0]]["params_m"]
    assert all(0 < h["c_min"] <= h["c"] <= h["c_max"] for h in rec["heads"].values())
    assert rec["env"]["cpu"] and rec["dtype"] == "float32"


def test_too_few_rounds_is_refused_in_one_line(capsys):
    assert bench_heads.main(["--heads", "x", "--rounds", "1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1

import json
import math

import pytest

from benchmarks import replay_tree
from specdec.engine.tree import TreePrice

# Root children a (q .6) and b (.3); a's children c (.6·.5) and d (.6·.2); c's child e (.3·.9).
RECORD = {"tokens": [10, 11, 12, 13, 14], "parents": [-1, -1, 0, 0, 2],
          "scores": [math.log(x) for x in (0.6, 0.3, 0.3, 0.12, 0.27)]}


def _step(accepted, nxt):
    return replay_tree.Step.from_record({**RECORD, "accepted": accepted, "next": nxt})


def test_a_subset_accepts_the_recorded_path_up_to_its_first_missing_node():
    step = _step([10, 12, 14], 99)  # a -> c -> e accepted, then 99 (no such candidate)
    assert step.path == [0, 2, 4] and step.extra is None
    assert step.accepted({0, 1, 2, 3, 4}) == 3
    assert step.accepted({0, 2, 3}) == 2
    assert step.accepted({1}) == 0
    short = _step([10], 13)  # a accepted, then the target wanted d, which the recorded tree did not verify
    assert short.accepted({0}) == 1 and short.accepted({0, 3}) == 2  # a tree that kept d gets it too


def test_fixed_and_priced_trees_select_like_the_drafter():
    step = _step([10, 12, 14], 99)
    assert replay_tree.fixed_tree(step, 1, 2, None) == ({0, 1}, 1)
    assert replay_tree.fixed_tree(step, 2, 2, 3) == ({0, 1, 2}, 2)  # the likeliest 3 with depth <= 2, ties shallower
    # c per level, v(n) = 1 + .05 n up to 4 nodes: the budget maximising (1 + Σq) / (levels·c + v(n)), and a level
    # drafted while the deepest level's best q >= that rate × (c + one more row)
    v = (1.0, 1.05, 1.1, 1.15, 1.2)
    assert replay_tree.priced_tree(step, TreePrice(0.1, v), 3, 2, None) == ({0, 1, 2, 3, 4}, 3)
    assert replay_tree.priced_tree(step, TreePrice(0.25, v), 3, 2, None) == ({0, 1, 2, 3}, 2)  # .3 < 1.41 × .25
    assert replay_tree.priced_tree(step, TreePrice(0.5, v), 3, 2, None) == ({0, 1}, 1)  # .6 < 1.19 × .55
    assert replay_tree.priced_tree(step, TreePrice(0.1, (1.0, 1.05, 5.0)), 3, 2, None) == ({0}, 1)  # rows too dear


def test_replay_prices_steps_with_the_cost_model():
    step = _step([10, 12, 14], 99)
    res = replay_tree.replay([step], lambda s: ({0, 2}, 2), c=0.1, v=lambda n: 1.0 + 0.05 * n)
    assert res["tau"] == 3 and res["speedup"] == pytest.approx(3 / (0.2 + 1.1))


def test_replay_reads_a_record_and_writes_its_table(tmp_path, capsys):
    costs = {"target_step_s": 0.01, "draft_step_s": 0.001, "c": 0.1, "verify_cost": {"0": 1.0, "1": 1.05, "4": 1.2}}
    steps = [{**RECORD, "set": s, "prompt": "p", "accepted": [10, 12], "next": 14} for s in ("study", "everyday")]
    path = tmp_path / "steps.json"
    path.write_text(json.dumps({"env": {}, "width": 2, "nodes": 4, "depth": 3, "costs": costs, "steps": steps}))
    out = tmp_path / "replay.json"
    assert replay_tree.main(["replay", "--steps", str(path), "--ratios", "1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2 * 4 and {r["prompts"] for r in rows} == {"study", "everyday"}
    assert replay_tree.main(["replay", "--steps", str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.count("\n") == 1

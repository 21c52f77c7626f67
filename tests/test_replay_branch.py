"""The branch replay: tokens and costs of a recorded answer decoded with a lookup branch, no target."""

import json

import pytest

from benchmarks import replay_branch
from specdec.engine.drafters import LookupBranchDrafter
from specdec.engine.tree import TreePrice

PROMPT = [5, 6, 7, 8, 9, 1, 2, 3, 5, 6]


def test_an_answer_that_copies_its_prompt_is_decoded_in_few_steps_at_the_rows_cost():
    flat = TreePrice(level=0.1, verify=(1.0,) + (1.5,) * 20)
    drafter = LookupBranchDrafter(replay_branch.NoDraft(), lookup_tokens=8)
    tokens, cost, steps = replay_branch.replay_answer(PROMPT, [7, 8, 9, 1, 4], drafter, flat)
    # step 1: "5 6" matches, the branch 7 8 9 1 (4 tokens left, less the target's own) is kept, the target says 4
    assert (tokens, steps) == (5, 1) and cost == pytest.approx(1.5)
    tokens, cost, steps = replay_branch.replay_answer(PROMPT, [4, 4, 4], drafter, flat)
    assert tokens == 3 and steps >= 2  # nothing to copy at first: plain steps at cost 1 each
    assert cost >= steps


def test_replay_reads_answers_and_a_runs_costs_and_writes_a_row_per_set_and_schedule(tmp_path, capsys):
    answers = [{"set": s, "prompt": f"{s}-0", "ids": PROMPT, "answer": [7, 8, 9, 1, 2, 3, 4]}
               for s in ("study", "everyday")]
    (tmp_path / "answers.json").write_text(json.dumps({"env": {}, "answers": answers}))
    meta = {"auto_calibration": {"auto-lookup": {"c": 0.07, "verify_cost": {"1": 1.7, "4": 1.8, "16": 2.4}}}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "replay.json"
    args = ["--answers", str(tmp_path / "answers.json"), "--meta", str(tmp_path / "meta.json"),
            "--schedules", "4:32", "--out", str(out)]
    assert replay_branch.main(args) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["prompts"], r["schedule"]) for r in rows] == [
        ("study", "no probes"), ("study", "probe every 4, at most 32"),
        ("everyday", "no probes"), ("everyday", "probe every 4, at most 32")]
    assert all(r["median"] > 1.0 for r in rows)  # 7 tokens in one branch of 6 and a step: copies pay at v 1.8
    assert replay_branch.main(["--answers", str(tmp_path / "missing.json"), "--meta", "x"]) == 2
    assert capsys.readouterr().err.count("\n") == 1

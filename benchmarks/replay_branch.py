"""Replay of the lookup branch's price on recorded greedy answers: which probe schedule pays, no timing.

``--record`` saves the target's greedy answers (prompt and answer token ids) to the study's and the everyday
prompts. A replay then runs :class:`~specdec.engine.drafters.LookupBranchDrafter` over each answer on plain
steps (no inner draft: the draft model's auto N where no N pays, as on fp32 without AVX-512) at a study
run's measured costs (``auto_calibration`` in its ``meta.json``), once per probe schedule. Greedy acceptance
of a branch is how far the answer follows it, so each step's tokens are known without the target; the
modelled speedup is tokens / Σ v(branch length) (v(0) = 1: a plain step), the cost model of
``specdec.auto.theory``, which leaves out a tree step's own bookkeeping.

    python benchmarks/replay_branch.py --record --answers benchmarks/results/branch_answers.json
    python benchmarks/replay_branch.py --answers benchmarks/results/branch_answers.json \\
        --meta exp_results/intel-avx2cap/branch-fp32-study12/experiment_results.meta.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch

from specdec.auto.autotune import AutoPolicy
from specdec.auto.calibration import Costs
from specdec.engine.drafters import LOOKUP_TOKENS, Draft, Drafter, LookupBranchDrafter
from specdec.engine.sampling import SamplingParams
from specdec.engine.tree import reached


class NoDraft(Drafter):
    """An inner drafter that never drafts: every step is a plain step, with or without a branch."""

    def propose(self, committed: torch.Tensor, n: int) -> Draft:
        return Draft(committed.new_empty(0))


def replay_answer(prompt: list[int], answer: list[int], drafter: LookupBranchDrafter, price) -> tuple[int, float, int]:
    """(tokens, cost in target steps, steps) of decoding ``answer`` after ``prompt`` with ``drafter``'s branch."""
    committed = torch.tensor([prompt])
    drafter.start(committed, SamplingParams(), 1 << 20, None, max_len=len(prompt) + len(answer), tree_price=price)
    done = cost = steps = 0
    while done < len(answer):
        draft = drafter.propose(committed, 0)
        kept = reached(draft.tokens, draft.parents, answer[done:]) if len(draft) else 0
        cost += price.cost(len(draft))
        new = answer[done: done + kept + 1]
        committed = torch.cat([committed, torch.tensor([new])], dim=1)
        done += len(new)
        steps += 1
    return done, cost, steps


def _record(args) -> int:
    from tqdm import tqdm

    from specdec.engine.loop import autoregressive_generate
    from specdec.files import atomic_write_json
    from specdec.models.loading import load_model
    from specdec.study.prompts import prompts_for
    from specdec.study.provenance import machine

    torch.set_num_threads(args.threads)
    target = load_model(args.target, dtype=args.dtype)
    records = []
    for set_name, length in (("study", 128), ("everyday", 0)):
        for prompt in tqdm(prompts_for(target.tokenizer, set_name, length, args.count), desc=set_name):
            out = autoregressive_generate(target.model, torch.tensor([prompt.ids]), max_new_tokens=args.new_tokens)
            records.append({"set": set_name, "prompt": prompt.id, "ids": list(prompt.ids), "answer": out.tokens})
    atomic_write_json(args.answers, {"env": {**machine(), "dtype": args.dtype}, "target": args.target,
                                     "new_tokens": args.new_tokens, "answers": records})
    print(f"{len(records)} answers -> {args.answers}")
    return 0


def _replay(args) -> int:
    data = json.loads(open(args.answers).read())
    meta = json.loads(open(args.meta).read())
    calib = meta["auto_calibration"][args.method]
    costs = Costs(0.0, 0.0, float(calib["c"]), {int(k): float(x) for k, x in calib["verify_cost"].items()})
    price = AutoPolicy(costs, extra_rows=LOOKUP_TOKENS).tree_price()
    schedules = {"no probes": (0, 0), **{f"probe every {e}, at most {m}": (e, m) for e, m in args.schedules}}
    rows = []
    print(f"costs of {args.method} in {args.meta}: v(1) {price.cost(1):.3f}, v(4) {price.cost(4):.3f}, "
          f"v(12) {price.cost(12):.3f}")
    for set_name in ("study", "everyday"):
        answers = [r for r in data["answers"] if r["set"] == set_name][args.prompts[0]: args.prompts[1]]
        for name, (every, most) in schedules.items():
            per_prompt = []
            for r in answers:
                drafter = LookupBranchDrafter(NoDraft(), probe_every=every, probe_max=most)
                tokens, cost, steps = replay_answer(r["ids"], r["answer"], drafter, price)
                per_prompt.append({"prompt": r["prompt"], "speedup": tokens / cost, "tau": tokens / steps,
                                   "probes": drafter.probes})
            speedups = [p["speedup"] for p in per_prompt]
            row = {"prompts": set_name, "range": list(args.prompts), "schedule": name, "median": statistics.median(speedups),
                   "min": min(speedups), "max": max(speedups), "per_prompt": per_prompt}
            rows.append(row)
            print(f"{set_name:8s} {name:28s} median {row['median']:.3f} ({row['min']:.2f}-{row['max']:.2f})  "
                  + " ".join(f"{s:.2f}" for s in speedups))
    if args.out:
        from specdec.files import atomic_write_json
        atomic_write_json(args.out, {"env": data["env"], "answers_file": args.answers, "meta": args.meta,
                                     "method": args.method, "rows": rows})
    return 0


def _schedule(text: str) -> tuple[int, int]:
    every, most = (int(x) for x in text.split(":"))
    return every, most


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--answers", required=True, help="JSON of the target's answers: written with --record, else read")
    p.add_argument("--record", action="store_true", help="generate the answers (loads the target) instead of replaying")
    p.add_argument("--target", default="smollm2-135m-instruct", help="--record: the target")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="--record: its dtype")
    p.add_argument("--count", type=int, default=24, help="--record: prompts of each set (study, everyday)")
    p.add_argument("--new-tokens", type=int, default=64, help="--record: tokens of each answer")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--meta", help="a study run's meta.json, whose auto_calibration gives the costs")
    p.add_argument("--method", default="auto-lookup", help="whose calibration in --meta to use")
    p.add_argument("--schedules", type=lambda t: [_schedule(x) for x in t.split(",")],
                   default=[(4, 32), (8, 64), (16, 64)], help="probe_every:probe_max pairs, comma-separated")
    p.add_argument("--prompts", type=lambda t: tuple(int(x) for x in t.split(":")), default=(0, 12),
                   help="START:END, the answers of each set replayed (default 0:12, the study's 12-prompt runs')")
    p.add_argument("--out", default=None, help="the replay's table as JSON")
    args = p.parse_args(argv)
    if not args.record and args.meta is None:
        p.error("--meta is required to replay")
    try:
        return _record(args) if args.record else _replay(args)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

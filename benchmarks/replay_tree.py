"""Replay of token-tree policies over recorded steps: which depth, node budget or confidence price pays,
without timing every candidate.

``record`` drafts a deep tree (``--depth`` levels of ``--width``, at most ``--nodes`` verified) with the
feature head over the study's and the everyday prompts, and saves every step's candidates (tokens,
parents, joint log q), the tokens the target accepted and its next token, with the pair's measured
costs (c, v(N)). ``replay`` then prices each policy on those steps: any tree it would verify is a subset
of the recorded candidates, and greedy acceptance of a subset that keeps its ancestors is the recorded
path cut at its first missing node (one more node when the target's next token is a kept candidate).
Speedup = tokens / (levels·c + v(nodes)) summed over steps, the cost model of ``specdec.auto.theory``
(which matched the study's measured step times within 3%). The steps come from the deep tree's own
trajectory, so shallower policies are judged on the same contexts, not on their own.

    python benchmarks/replay_tree.py record --steps benchmarks/results/tree_steps_intel_bf16.json
    python benchmarks/replay_tree.py replay --steps benchmarks/results/tree_steps_intel_bf16.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import torch

from specdec.engine.tree import TreePrice, likeliest, tree_depths, tree_size


@dataclass
class Step:
    """One recorded tree step: candidates (parents precede children), the accepted path among them
    (candidate indices) and the candidate that the target's next token would have extended it with."""

    depths: torch.Tensor  # tree_depths of the candidates' parents
    scores: torch.Tensor
    path: list[int]
    extra: int | None

    @classmethod
    def from_record(cls, r: dict) -> Step:
        children: dict[tuple[int, int], int] = {}
        for i, (t, p) in enumerate(zip(r["tokens"], r["parents"])):
            children[(p, t)] = i
        path, node = [], -1
        for t in r["accepted"]:
            node = children[(node, t)]
            path.append(node)
        extra = children.get((node, r["next"])) if r["next"] is not None else None
        return cls(tree_depths(torch.tensor(r["parents"])), torch.tensor(r["scores"]), path, extra)

    def accepted(self, kept: set[int]) -> int:
        """Drafts greedy acceptance keeps when only ``kept`` (ancestor-closed) is verified."""
        n = 0
        for node in self.path:
            if node not in kept:
                return n
            n += 1
        return n + (self.extra is not None and self.extra in kept)


def fixed_tree(step: Step, depth: int, width: int, cap: int | None) -> tuple[set[int], int]:
    """(kept candidates, levels) of EAGLE-2's tree of ``depth`` levels: the likeliest tree_size nodes."""
    scores = step.scores.masked_fill(step.depths > depth, float("-inf"))
    return set(likeliest(step.depths, scores, tree_size(depth, width, cap))), depth


def priced_tree(step: Step, price: TreePrice, depth: int, width: int, cap: int | None) -> tuple[set[int], int]:
    """(kept candidates, levels) of the tree the drafter grows at ``price`` (FeatureHeadDrafter._tree)."""
    depths, levels = step.depths, 1
    while (levels < depth and bool((depths == levels).any())
           and price.worth_expanding(step.scores[depths == levels], step.scores[depths <= levels],
                                     tree_size(levels, width, cap), levels)):
        levels += 1
    budget = price.budget(step.scores[depths <= levels], tree_size(levels, width, cap), levels)
    scores = step.scores.masked_fill(depths > levels, float("-inf"))
    return set(likeliest(depths, scores, budget)), levels


def replay(steps: list[Step], policy, c: float, v) -> dict:
    """Tokens per cost unit (the modelled speedup), τ and mean levels and nodes of ``policy`` on ``steps``."""
    tokens = cost = levels_sum = nodes_sum = 0.0
    for step in steps:
        kept, levels = policy(step)
        tokens += step.accepted(kept) + 1
        cost += levels * c + v(len(kept))
        levels_sum += levels
        nodes_sum += len(kept)
    n = max(1, len(steps))
    return {"speedup": tokens / cost, "tau": tokens / n, "levels": levels_sum / n, "nodes": nodes_sum / n}


def _recorder(drafter, records: list[dict], tags: dict):
    """An ``on_step`` callback appending the drafter's last tree and the step's outcome to ``records``."""

    def on_step(accepted: list[int], nxt: int | None) -> None:
        if drafter.candidates:
            tokens, parents, scores = (t.tolist() for t in drafter.candidates)
            records.append({**tags, "tokens": tokens, "parents": parents, "scores": [round(x, 4) for x in scores],
                            "accepted": accepted, "next": nxt})
            drafter.candidates = ()

    return on_step


def _record(args) -> int:
    from tqdm import tqdm

    from specdec.auto.autotune import auto_policy
    from specdec.engine.drafters import FeatureHeadDrafter
    from specdec.engine.loop import speculative_generate
    from specdec.files import atomic_write_json
    from specdec.models.loading import load_head, load_model
    from specdec.study.prompts import prompts_for
    from specdec.study.provenance import machine

    torch.set_num_threads(args.threads)
    target = load_model(args.target, dtype=args.dtype)
    head = load_head(args.head, target).model
    tok = target.tokenizer
    sets = {"study": prompts_for(tok, "study", 128, args.prompts), "everyday": prompts_for(tok, "everyday", 0, args.prompts)}
    costs = auto_policy(target.model, head, torch.tensor([sets["study"][0].ids]), width=args.width,
                        max_nodes=args.nodes).costs
    records = []
    for set_name, prompts in sets.items():
        for prompt in tqdm(prompts, desc=set_name):
            drafter = FeatureHeadDrafter(head, tree_width=args.width, tree_nodes=args.nodes)
            on_step = _recorder(drafter, records, {"set": set_name, "prompt": prompt.id})
            speculative_generate(target.model, None, torch.tensor([prompt.ids]), num_draft_tokens=args.depth,
                                 max_new_tokens=args.new_tokens, drafter=drafter, on_step=on_step)
    env = {**machine(), "dtype": args.dtype}
    atomic_write_json(args.steps, {"env": env, "width": args.width, "nodes": args.nodes, "depth": args.depth,
                                   "new_tokens": args.new_tokens, "costs": costs.to_json(), "steps": records})
    print(f"{len(records)} steps -> {args.steps}")
    return 0


def _replay(args) -> int:
    from specdec.auto.autotune import AutoPolicy
    from specdec.auto.calibration import Costs
    from specdec.auto.theory import verify_cost_fn

    data = json.loads(open(args.steps).read())
    costs = Costs.from_json(data["costs"])
    width, cap, depth = data["width"], data["nodes"], data["depth"]
    v = verify_cost_fn(costs.verify_cost)
    base = AutoPolicy(costs, n_max=depth, width=width, max_nodes=cap).tree_price()
    rows = []
    for set_name in ("study", "everyday"):
        steps = [Step.from_record(r) for r in data["steps"] if r["set"] == set_name]
        policies = {f"fixed depth {d}": (lambda s, d=d: fixed_tree(s, d, width, cap)) for d in range(1, depth + 1)}
        for r in args.ratios:
            price = TreePrice(base.level * r, tuple(1.0 + r * (x - 1.0) for x in base.verify))
            policies[f"priced x{r:g} (level {price.level:.3f}, v(8) {price.cost(8):.3f})"] = (
                lambda s, price=price: priced_tree(s, price, depth, width, cap))
        for name, policy in policies.items():
            res = replay(steps, policy, costs.c, v)
            rows.append({"prompts": set_name, "policy": name, "steps": len(steps), **res})
            print(f"{set_name:8s} {name:44s} speedup {res['speedup']:.3f}  tau {res['tau']:.2f}  "
                  f"levels {res['levels']:.2f}  nodes {res['nodes']:.1f}")
    if args.out:
        from specdec.files import atomic_write_json

        atomic_write_json(args.out, {"env": data["env"], "steps_file": args.steps, "rows": rows})
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="draft deep trees and save every step's candidates and outcome")
    rec.add_argument("--target", default="smollm2-135m-instruct")
    rec.add_argument("--head", default="smollm2-head")
    rec.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    rec.add_argument("--prompts", type=int, default=6, help="prompts of each set (study, everyday)")
    rec.add_argument("--new-tokens", type=int, default=96)
    rec.add_argument("--width", type=int, default=6)
    rec.add_argument("--nodes", type=int, default=32)
    rec.add_argument("--depth", type=int, default=6)
    rec.add_argument("--threads", type=int, default=2)
    rec.add_argument("--steps", required=True, help="JSON written here")
    rep = sub.add_parser("replay", help="price fixed depths and confidence-priced trees on recorded steps")
    rep.add_argument("--steps", required=True, help="JSON from record")
    rep.add_argument("--ratios", type=lambda t: [float(x) for x in t.split(",")], default=[0.5, 1.0, 1.5, 2.0, 3.0],
                     help="multiples of the calibrated costs the tree is priced at: c and v(n) - 1 (1: as measured)")
    rep.add_argument("--out", default=None)
    args = p.parse_args(argv)
    try:
        return _record(args) if args.command == "record" else _replay(args)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

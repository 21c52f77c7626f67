"""Token-tree shape benchmark: the feature head's tree at several widths, node caps and depths, each
timed against plain decoding on the same prompt, in and out of the study's domain.

For each prompt: one warm-up, then for every shape a plain generation and a tree generation, in turn
(A B A B ...), ``--repeats`` times; a shape's speedup on a prompt is the median plain time over its
median tree time, and a row reports the median (and range) over prompts with the mean tokens per
target step (τ). Hardware, dtype and versions are printed and saved.

    python benchmarks/bench_tree.py --dtype bfloat16 --out benchmarks/results/tree_intel_bf16.json
    python benchmarks/bench_tree.py --shapes 3:0:2,6:32:6,6:32:auto --prompts 2

A shape is ``width:cap:depth`` (cap 0: N·width nodes; depth ``auto``: auto N, its costs calibrated
before any timing).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from specdec.auto.autotune import auto_policy
from specdec.engine.drafters import FeatureHeadDrafter
from specdec.engine.loop import autoregressive_generate, speculative_generate
from specdec.engine.tree import tree_size
from specdec.files import atomic_write_json
from specdec.models.loading import load_head, load_model
from specdec.study.prompts import prompts_for
from specdec.study.provenance import machine

DEFAULT_SHAPES = "3:0:2,6:0:2,6:0:3,6:0:4,6:32:6,8:0:4,4:0:4,4:0:6,6:32:auto"
Shape = tuple[int, "int | None", "int | str"]


def parse_shapes(text: str) -> list[Shape]:
    """``width:cap:depth`` items (cap 0: no cap; depth ``auto``) -> (width, cap or None, depth)."""
    shapes = []
    for item in text.split(","):
        parts = item.split(":")
        if len(parts) != 3:
            raise ValueError(f"bad shape {item!r}: want width:cap:depth")
        width, cap = int(parts[0]), int(parts[1])
        depth = "auto" if parts[2] == "auto" else int(parts[2])
        if width < 1 or cap < 0 or (depth != "auto" and depth < 1):
            raise ValueError(f"bad shape {item!r}: need width >= 1, cap >= 0, depth >= 1 or auto")
        shapes.append((width, cap or None, depth))
    return shapes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="smollm2-135m-instruct")
    p.add_argument("--head", default="smollm2-head")
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    p.add_argument("--shapes", default=DEFAULT_SHAPES, help="width:cap:depth,... (cap 0: levels × width nodes)")
    p.add_argument("--prompts", type=int, default=4, help="prompts of each set (study, everyday)")
    p.add_argument("--new-tokens", type=int, default=96)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    try:
        shapes = parse_shapes(args.shapes)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    target = load_model(args.target, dtype=args.dtype)
    head = load_head(args.head, target).model
    tok = target.tokenizer
    sets = {"study": prompts_for(tok, "study", 128, args.prompts), "everyday": prompts_for(tok, "everyday", 0, args.prompts)}

    for width, cap, depth in shapes:  # auto N's calibration, outside every timed call
        if depth == "auto":
            auto_policy(target.model, head, torch.tensor([sets["study"][0].ids]), width=width, max_nodes=cap)

    def tree(ids: torch.Tensor, shape: Shape):
        width, cap, depth = shape
        return speculative_generate(target.model, None, ids, num_draft_tokens=depth, max_new_tokens=args.new_tokens,
                                    drafter=FeatureHeadDrafter(head, tree_width=width, tree_nodes=cap))

    env = {**machine(), "dtype": args.dtype}
    print(env)
    rows = []
    for set_name, prompts in sets.items():
        speedups: dict[tuple, list[float]] = {s: [] for s in shapes}
        taus: dict[tuple, list[float]] = {s: [] for s in shapes}
        for prompt in prompts:
            ids = torch.tensor([prompt.ids])
            autoregressive_generate(target.model, ids, max_new_tokens=8)
            tree(ids, shapes[0])
            plain, times = [], {s: [] for s in shapes}
            for _ in range(args.repeats):
                for s in shapes:
                    t0 = time.perf_counter()
                    autoregressive_generate(target.model, ids, max_new_tokens=args.new_tokens)
                    plain.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    res = tree(ids, s)
                    times[s].append(time.perf_counter() - t0)
                    taus[s].append(args.new_tokens / res.stats.target_forwards)
            for s in shapes:
                speedups[s].append(statistics.median(plain) / statistics.median(times[s]))
        for s in shapes:
            width, cap, depth = s
            r = speedups[s]
            row = {"prompts": set_name, "width": width, "cap": cap, "depth": depth,
                   "nodes": tree_size(depth, width, cap) if depth != "auto" else None, "speedup_median": statistics.median(r),
                   "speedup_min": min(r), "speedup_max": max(r), "tau": statistics.mean(taus[s])}
            rows.append(row)
            print(f"{set_name:8s} width {width} cap {cap} depth {depth} ({row['nodes'] or 'auto'} nodes): speedup "
                  f"{row['speedup_median']:.3f} ({min(r):.2f}-{max(r):.2f}) tau {row['tau']:.2f}", flush=True)
    if args.out:
        atomic_write_json(args.out, {"env": env, "new_tokens": args.new_tokens, "repeats": args.repeats, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

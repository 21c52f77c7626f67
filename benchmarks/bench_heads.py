"""c of several feature heads on one target: what a smaller head vocabulary saves per draft step.

c is a draft step's time over the target's one-token step (``measure_costs``, as auto N calibrates
it). The heads are timed round by round, A B C A B C, each round a fresh ``measure_costs`` of every
head, so a drift of the machine's speed hits all of them alike; the first round is warm-up. Reported:
median c with min-max, the head's step in ms, its parameters and vocabulary.

    python benchmarks/bench_heads.py --heads distill_work/head-run13 specdec/weights/smollm2-head \\
        --dtype bfloat16 --out benchmarks/results/heads_intel_bf16.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from specdec.auto.calibration import measure_costs
from specdec.files import atomic_write_json
from specdec.models import load_head, load_model
from specdec.study.provenance import machine


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="smollm2-135m-instruct", help="target preset, directory or .gguf")
    ap.add_argument("--heads", nargs="+", required=True, help="feature-head directories (or bundled names)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--prompt-len", type=int, default=128, help="prefilled tokens before the timed steps")
    ap.add_argument("--rounds", type=int, default=6, help="rounds over all heads; the first is warm-up")
    ap.add_argument("--repeats", type=int, default=7, help="timed steps per head per round")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's choice)")
    ap.add_argument("--out", type=Path, default=None, help="write a JSON record here")
    args = ap.parse_args(argv)
    if args.rounds < 2 or args.repeats < 1 or args.prompt_len < 1:
        print("need --rounds >= 2, --repeats >= 1 and --prompt-len >= 1", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    target = load_model(args.target, dtype=args.dtype)
    heads = {h: load_head(h, target).model for h in args.heads}
    ids = torch.randint(0, target.model.config.vocab_size, (1, args.prompt_len),
                        generator=torch.Generator().manual_seed(0))
    cs: dict[str, list[float]] = {h: [] for h in heads}
    steps: dict[str, list[float]] = {h: [] for h in heads}
    for r in range(args.rounds):
        for name, head in heads.items():
            costs = measure_costs(target.model, head, ids, ns=[1], repeats=args.repeats, warmup=1)
            if r:
                cs[name].append(costs.c)
                steps[name].append(costs.draft_step_s * 1e3)
    rows = {}
    for name, head in heads.items():
        vocab = head.head_config.draft_vocab
        rows[name] = {"c": statistics.median(cs[name]), "c_min": min(cs[name]), "c_max": max(cs[name]),
                      "head_step_ms": statistics.median(steps[name]),
                      "params_m": sum(p.numel() for p in head.parameters()) / 1e6,
                      "vocabulary": len(vocab) if vocab is not None else head.head_config.target_vocab_size}
        r = rows[name]
        print(f"{name}: c {r['c']:.4f} ({r['c_min']:.4f}-{r['c_max']:.4f}), head step {r['head_step_ms']:.2f} ms, "
              f"{r['params_m']:.2f} M parameters, vocabulary {r['vocabulary']}")
    if args.out:
        atomic_write_json(args.out, {
            "env": machine(),
            "target": args.target, "dtype": args.dtype, "prompt_len": args.prompt_len, "rounds": args.rounds,
            "repeats": args.repeats, "heads": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Why verification costs what it costs here: a matrix product's time against its number of rows.

A target pass over N + 1 tokens multiplies every weight by N + 1 rows instead of one. On a GPU,
or a CPU whose BLAS picks a blocked kernel for a few rows, that costs about one weight read, so
v(N) stays near 1. This script times, for each distinct linear shape of a model, ``F.linear``
(what the model runs) and the same product written as ``(W @ xᵀ)ᵀ`` (a different BLAS path,
same arithmetic) at 1..R rows, interleaved round by round, and the whole cached forward (v(N),
``specdec.auto.calibration.measure_costs``). The row-summed linear time shows how the BLAS's kernels
alone grow with rows. Each shape is timed alone, its weight warm in cache: these are
kernel costs, not the memory traffic of a forward that streams every layer's weights. So the
script also profiles the real cached forward (``torch.profiler``) at each row count and splits
its CPU time into matrix-product kernels and everything else: that split, not the warm-cache one,
says where a forward's time goes.

    python benchmarks/bench_rows.py --model smollm2-135m-instruct --out benchmarks/results/rows.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from transformers import DynamicCache

from specdec.auto.calibration import measure_costs
from specdec.engine.cache import crop_to
from specdec.engine.timing import timed
from specdec.files import atomic_write_json
from specdec.models import load_model
from specdec.models.packed import pack_refusal, packed_twin
from specdec.study.provenance import machine


def linear_shapes(model: torch.nn.Module) -> Counter:
    """(out, in) of every ``nn.Linear`` weight, counted; the output head is one of them."""
    return Counter(tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Linear))


# Two ways to compute x Wᵀ for x of shape (1, rows, in): the model's, and one with W on the left.
FORMS = {
    "linear": lambda w, x: F.linear(x, w),
    "w_at_xt": lambda w, x: torch.matmul(w, x.transpose(1, 2)).transpose(1, 2),
}


def time_rows(weight: torch.Tensor, rows: list[int], repeats: int, warmup: int) -> dict[str, dict[int, float]]:
    """Median seconds of each of ``FORMS`` per row count, row counts and forms interleaved per round."""
    xs = {m: torch.randn(1, m, weight.shape[1], dtype=weight.dtype) for m in rows}
    times: dict[str, dict[int, list[float]]] = {k: {m: [] for m in rows} for k in FORMS}
    for r in range(warmup + repeats):
        for m in rows:
            for name, fn in FORMS.items():
                _, elapsed = timed(partial(fn, weight, xs[m]), weight.device)
                if r >= warmup:
                    times[name][m].append(elapsed)
    return {k: {m: statistics.median(v) for m, v in per.items()} for k, per in times.items()}


MATMUL_OPS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"})


@torch.inference_mode()
def forward_breakdown(model: torch.nn.Module, prompt: torch.Tensor, rows: list[int],
                      repeats: int) -> dict[int, dict[str, float]]:
    """Per row count: profiled self CPU seconds per cached forward in matrix kernels and in all ops.

    The forward is the engine's verify call (cache prefilled on ``prompt``, all logits kept, the
    cache cropped back after each pass); row counts are interleaved over ``repeats`` rounds.
    Profiling adds a little time to every op, so read the split, not the absolute times.
    """
    cache = DynamicCache(config=model.config)
    model(prompt, past_key_values=cache, use_cache=True, logits_to_keep=1)
    base = cache.get_seq_length()
    block = {m: prompt[:, -1:].repeat(1, m) for m in rows}
    acc = {m: {"matmul_s": 0.0, "all_s": 0.0} for m in rows}
    for _ in range(repeats):
        for m in rows:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                model(block[m], past_key_values=cache, use_cache=True, logits_to_keep=0)
            crop_to(cache, base)
            for ev in prof.key_averages():
                acc[m]["all_s"] += ev.self_cpu_time_total * 1e-6
                if ev.key in MATMUL_OPS:
                    acc[m]["matmul_s"] += ev.self_cpu_time_total * 1e-6
    return {m: {k: t / repeats for k, t in a.items()} for m, a in acc.items()}


@torch.inference_mode()
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="preset, directory, .gguf or hub id")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--rows", default="1,2,3,4,5,6,8,9", help="row counts (N + 1) to time")
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--prompt-len", type=int, default=128, help="cached prompt for the whole-forward v(N)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--out", type=Path, default=None, help="write a JSON record here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = sorted({int(r) for r in args.rows.split(",")} | {1})

    model = load_model(args.model, dtype=args.dtype).model
    shapes = linear_shapes(model)
    weights = {tuple(m.weight.shape): m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)}
    per_shape = {s: time_rows(weights[s].detach(), rows, args.repeats, args.warmup) for s in shapes}
    totals = {form: {m: sum(count * per_shape[s][form][m] for s, count in shapes.items()) for m in rows}
              for form in FORMS}
    prompt = torch.randint(0, model.config.vocab_size, (1, args.prompt_len), generator=torch.Generator().manual_seed(0))
    costs = measure_costs(model, None, prompt, ns=[m - 1 for m in rows if m > 1], repeats=args.repeats // 2 + 1)
    split = forward_breakdown(model, prompt, rows, repeats=max(1, args.repeats // 5))
    packed = None
    if pack_refusal(model, rows) is None:
        twin, _ = packed_twin(model, rows, calibrate=False)
        packed = measure_costs(twin, None, prompt, ns=[m - 1 for m in rows if m > 1], repeats=args.repeats // 2 + 1)

    env = {**machine(), "dtype": args.dtype, "model": args.model, "repeats": args.repeats}
    capped = "".join(f" {k}={v}" for k, v in env["isa_limits"].items())
    capped = f" capped by{capped}" if capped else ""
    print(f"# {env['cpu']}{capped}, {env['threads']} threads, {args.dtype}, torch {env['torch']}, "
          f"transformers {env['transformers']}; {args.model}; medians of {args.repeats} interleaved rounds")
    print("# time relative to one row (ms for one row in brackets)")
    header = "".join(f"{m:>7d}" for m in rows)
    print(f"{'shape (out x in) x count':34s} {'form':8s}{header}")
    for s, count in shapes.items():
        for form in FORMS:
            t = per_shape[s][form]
            cells = "".join(f"{t[m] / t[1]:7.2f}" for m in rows)
            print(f"{f'{s[0]}x{s[1]} x{count}':24s}[{t[1] * 1e3:6.3f}] {form:8s}{cells}")
    for form in FORMS:
        t = totals[form]
        print(f"{'all linears':24s}[{t[1] * 1e3:6.2f}] {form:8s}" + "".join(f"{t[m] / t[1]:7.2f}" for m in rows))
    v = {m: costs.verify_cost[m - 1] for m in rows}
    print(f"{'whole forward v(N)':24s}[{costs.target_step_s * 1e3:6.2f}] {'':8s}" + "".join(f"{v[m]:7.2f}" for m in rows))
    if packed is not None:  # relative to the unpacked one-row forward: the baseline's
        vp = {m: packed.target_step_s * packed.verify_cost[m - 1] / costs.target_step_s for m in rows}
        print(f"{'  packed twin':24s}[{packed.target_step_s * 1e3:6.2f}] {'':8s}" + "".join(f"{vp[m]:7.2f}" for m in rows))
    print("# profiled real forward, ms per forward: matrix kernels, all aten ops, and the unprofiled wall time")
    wall = {m: costs.target_step_s * v[m] for m in rows}
    for label, vals in (("forward: matrix kernels", {m: split[m]["matmul_s"] for m in rows}),
                        ("forward: all aten ops", {m: split[m]["all_s"] for m in rows}),
                        ("forward: wall (unprofiled)", wall)):
        print(f"{label:34s} " + "".join(f"{vals[m] * 1e3:7.1f}" for m in rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "env": env, "rows": rows,
            "shapes": [{"out": s[0], "in": s[1], "count": c,
                        **{form: {str(m): per_shape[s][form][m] for m in rows} for form in FORMS}}
                       for s, c in shapes.items()],
            "all_linears_s": {form: {str(m): t for m, t in totals[form].items()} for form in totals},
            "forward_step_s": costs.target_step_s, "verify_cost": {str(m - 1): v[m] for m in rows},
            "profiled_forward_s": {str(m): split[m] for m in rows},
            "packed_verify_cost": None if packed is None else {str(m - 1): vp[m] for m in rows},
        }
        atomic_write_json(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())

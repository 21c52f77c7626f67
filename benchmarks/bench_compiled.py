"""Plain decoding of a real target, eager against compiled, beside HF ``generate`` in both modes and
the machine's memory floor: round-robin over the four (A B C D A B C D ...) after a warm-up that
also compiles every graph, medians with min-max, hardware and versions saved.

    python benchmarks/bench_compiled.py --dtype bfloat16 --threads 2 --out benchmarks/results/compiled_bf16.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from specdec.auto.floor import measure_memory_floor
from specdec.baselines.hf_static import hf_static_generate
from specdec.engine.forward import Compiler
from specdec.engine.loop import autoregressive_generate
from specdec.engine.timing import timed
from specdec.files import atomic_write_json
from specdec.models import load_model
from specdec.study.prompts import prompts_for
from specdec.study.provenance import machine


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model, dtype=args.dtype)
    model, T = loaded.model, args.new_tokens
    ids = torch.tensor([prompts_for(loaded.tokenizer, "study", args.prompt_len, 1)[0].ids])
    compiler = Compiler(block_rows=(1,))

    def hf_eager() -> list[int]:
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=T, min_new_tokens=T,
                             do_sample=False, pad_token_id=0)
        return out[0, ids.shape[1]:].tolist()

    runs = {"ours eager": lambda: autoregressive_generate(model, ids, T).tokens,
            "ours compiled": lambda: autoregressive_generate(model, ids, T, compile=compiler).tokens,
            "HF generate eager": hf_eager,
            "HF generate static+compile": lambda: hf_static_generate(model, ids, T, compiler).tokens}
    outputs = {name: fn() for name, fn in runs.items()}  # warm-up: compiles every graph
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            _, t = timed(fn, model.device)
            times[name].append(t / T * 1e3)
    floor = measure_memory_floor(model)
    med = {name: statistics.median(v) for name, v in times.items()}
    env = {**machine(), "dtype": args.dtype, "model": args.model, "prompt_len": int(ids.shape[1]), "new_tokens": T,
           "repeats": args.repeats}
    print(f"# {env['cpu']} ({env['cpu_flags']}), {env['threads']} threads, {args.dtype}, torch {env['torch']}, "
          f"transformers {env['transformers']}; {args.model}, prompt {env['prompt_len']}, {T} new tokens")
    for name, v in times.items():
        print(f"{name:28s} {med[name]:6.1f} ms/token [{min(v):.1f}-{max(v):.1f}]"
              f"  same tokens as ours eager: {outputs[name] == outputs['ours eager']}")
    print(f"compiled / eager (ours): {med['ours eager'] / med['ours compiled']:.2f}x; ours compiled at "
          f"{med['HF generate static+compile'] / med['ours compiled']:.2f}x HF static+compile's speed")
    print(f"memory floor {floor.floor_s * 1e3:.1f} ms/token (read {floor.to_json()['read_GB_per_s']:.0f} GB/s); "
          f"ours compiled at {med['ours compiled'] / (floor.floor_s * 1e3):.2f}x the floor")
    if args.out:
        atomic_write_json(args.out, {"env": env, "ms_per_token": times, "median_ms_per_token": med,
                                     "memory_floor": floor.to_json(),
                                     "same_tokens": {k: v == outputs["ours eager"] for k, v in outputs.items()},
                                     "compile_records": [asdict(r) for r in compiler.records]})
    return 0


if __name__ == "__main__":
    sys.exit(main())

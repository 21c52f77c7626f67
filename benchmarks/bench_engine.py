"""Loop overhead benchmark: our baseline vs ``model.generate`` and our speculative decoding vs
HF assisted generation at the same N, on the tunable fixture pair (no downloads).

Both sides of each comparison do the same model work, so the ratio measures per-step Python
work, tensor copies, syncs and cache handling. Protocol: warm-up, then interleaved A B A B
repeats; medians with min-max spread; hardware, dtype and versions are printed and saved.

    python benchmarks/bench_engine.py --repeats 7 --out benchmarks/results/engine.json
    python benchmarks/bench_engine.py --compile --repeats 7 --out benchmarks/results/engine_compiled.json

``--compile`` adds: our compiled baseline vs HF ``generate`` with a static cache and its compiled
forward (same cache length, same inductor settings), and our speculative decoding compiled vs
eager. Compiling happens in the warm-up, outside every timed call; its seconds are recorded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from specdec import autoregressive_generate, speculative_generate
from specdec.baselines.hf_assisted import hf_assisted_generate
from specdec.baselines.hf_static import hf_static_generate
from specdec.engine.forward import Compiler
from specdec.engine.timing import timed
from specdec.files import atomic_write_json
from specdec.study.provenance import machine
from specdec.testing import FixtureSpec, fixture_pair


@dataclass
class Comparison:
    """Timings of one A-vs-B pair over interleaved repeats."""

    name: str
    a: str
    b: str
    a_times_s: list[float]
    b_times_s: list[float]
    outputs_match: bool

    @property
    def ratio(self) -> float:
        """Median speed of B relative to A (>1: B is faster)."""
        return statistics.median(self.a_times_s) / statistics.median(self.b_times_s)


def interleave(name: str, a: tuple[str, Callable], b: tuple[str, Callable], repeats: int, warmup: int) -> Comparison:
    """Run A and B alternately (A B A B ...) after ``warmup`` unmeasured pairs."""
    for _ in range(warmup):
        a[1](), b[1]()
    ta, tb, match = [], [], True
    for _ in range(repeats):
        out_a, t = timed(a[1], "cpu")
        ta.append(t)
        out_b, t = timed(b[1], "cpu")
        tb.append(t)
        match &= out_a == out_b
    return Comparison(name, a[0], b[0], ta, tb, match)


def outside_forwards(fn: Callable, models: tuple[torch.nn.Module, ...], repeats: int) -> dict:
    """Median wall time of ``fn`` and the part spent outside the models' forward calls (forward hooks):
    the loop's own per-step work, which is what differs between two loops doing the same model work."""
    inside = [0.0]

    def pre(module, args, kwargs):
        module.bench_t0 = time.perf_counter()

    def post(module, args, kwargs, output):
        inside[0] += time.perf_counter() - module.bench_t0

    handles = [h for m in models for h in (m.register_forward_pre_hook(pre, with_kwargs=True),
                                           m.register_forward_hook(post, with_kwargs=True))]
    totals, outside = [], []
    try:
        for _ in range(repeats):
            inside[0] = 0.0
            _, t = timed(fn, "cpu")
            totals.append(t)
            outside.append(t - inside[0])
    finally:
        for h in handles:
            h.remove()
    return {"total_s": statistics.median(totals), "outside_forwards_s": statistics.median(outside)}


def spread(times: list[float]) -> str:
    return f"{statistics.median(times) * 1e3:8.1f} ms [{min(times) * 1e3:.1f}-{max(times) * 1e3:.1f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4, help="draft tokens per step (N)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--eps", type=float, default=0.05, help="fixture agreement knob (0.05: ~0.74)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--compile", action="store_true", help="add the compiled comparisons")
    ap.add_argument("--out", type=Path, default=None, help="write a JSON record here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    spec = FixtureSpec(vocab_size=8192, hidden_size=768, num_layers=12, draft_layers=2, num_heads=12,
                       eps=args.eps, max_position_embeddings=2048)
    target, draft = fixture_pair(spec)
    prompt = torch.randint(0, spec.vocab_size, (1, args.prompt_len), generator=torch.Generator().manual_seed(0))
    T, N = args.new_tokens, args.n

    def hf_generate() -> list[int]:
        out = target.generate(prompt, max_new_tokens=T, do_sample=False, eos_token_id=None, pad_token_id=0)
        return out[0, prompt.shape[1]:].tolist()

    comparisons = [
        interleave("baseline vs model.generate",
                   ("model.generate", hf_generate),
                   ("ours autoregressive", lambda: autoregressive_generate(target, prompt, T).tokens),
                   args.repeats, args.warmup),
        interleave(f"speculative vs HF assisted (N={N})",
                   ("HF assisted", lambda: hf_assisted_generate(target, draft, prompt, N, T).tokens),
                   ("ours speculative", lambda: speculative_generate(target, draft, prompt, N, T).tokens),
                   args.repeats, args.warmup),
    ]
    overhead = {
        "ours speculative": outside_forwards(lambda: speculative_generate(target, draft, prompt, N, T), (target, draft),
                                             args.repeats),
        "HF assisted": outside_forwards(lambda: hf_assisted_generate(target, draft, prompt, N, T), (target, draft),
                                        args.repeats)}
    compile_s = None
    if args.compile:
        compiler = Compiler(block_rows=(1, 2, N + 1))
        comparisons += [
            interleave("compiled baseline vs HF static+compile",
                       ("HF static+compile", lambda: hf_static_generate(target, prompt, T, compiler).tokens),
                       ("ours compiled", lambda: autoregressive_generate(target, prompt, T, compile=compiler).tokens),
                       args.repeats, args.warmup),
            interleave(f"speculative compiled vs eager (N={N})",
                       ("ours eager", lambda: speculative_generate(target, draft, prompt, N, T).tokens),
                       ("ours compiled", lambda: speculative_generate(target, draft, prompt, N, T, compile=compiler).tokens),
                       args.repeats, args.warmup),
        ]
        compile_s = [asdict(r) for r in compiler.records]
    spec_res = speculative_generate(target, draft, prompt, N, T)
    env = {
        **machine(), "dtype": "float32", "fixture": asdict(spec),
        "prompt_len": args.prompt_len, "new_tokens": T, "n": N,
        "acceptance_rate": spec_res.stats.acceptance_rate, "tokens_per_step": spec_res.stats.tokens_per_step,
        "attention_eager": target.config._attn_implementation, "compile_records": compile_s,
    }
    print(f"# {env['cpu']} ({env['cpu_flags']}), {env['threads']} threads, fp32, torch {env['torch']}, "
          f"transformers {env['transformers']}")
    print(f"# fixture 12x768 target / first-2-layer draft, eps {args.eps}: alpha {env['acceptance_rate']:.2f}, "
          f"tau {env['tokens_per_step']:.2f}; {T} new tokens, prompt {args.prompt_len}, {args.repeats} repeats")
    for c in comparisons:
        print(f"{c.name:38s} {c.a:>20s} {spread(c.a_times_s)} | {c.b:>20s} {spread(c.b_times_s)} "
              f"| {c.b} / {c.a} speed {c.ratio:.3f}x | outputs match: {c.outputs_match}")
    for name, o in overhead.items():
        print(f"{name:20s} time outside model forwards {o['outside_forwards_s'] * 1e3:.0f} ms of "
              f"{o['total_s'] * 1e3:.0f} ms ({o['outside_forwards_s'] / o['total_s']:.1%})")
    if args.out:
        record = {"env": env, "comparisons": [dict(asdict(c), ratio=c.ratio) for c in comparisons],
                  "outside_forwards": overhead}
        atomic_write_json(args.out, record)
    return 0 if all(c.outputs_match for c in comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())

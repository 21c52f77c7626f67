"""Streaming text view: prints tokens as speculative decoding commits them, marking accepted drafts.

On a TTY accepted draft tokens are green and the target's own tokens are plain; elsewhere
each run of accepted drafts is wrapped in ``[`` ``]``. Text is decoded from the full
sequence each step and only the new suffix printed, so multi-token characters come out whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TextIO

GREEN, RESET = "\x1b[32m", "\x1b[0m"


@dataclass
class StreamPrinter:
    """An ``on_step`` callback for :func:`specdec.engine.loop.speculative_generate`."""

    tokenizer: Any
    out: TextIO
    color: bool = False
    tokens: list[int] = field(default_factory=list)
    shown: str = ""  # text already printed (decoded, without markers)

    def _emit(self, ids: list[int], accepted: bool) -> None:
        if not ids:
            return
        self.tokens.extend(ids)
        # A trailing U+FFFD may be an incomplete multi-byte character: hold it until the rest arrives.
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True).rstrip("\ufffd")
        if not text.startswith(self.shown):
            return  # the tokenizer re-segmented earlier text; print the difference at finish
        new = text[len(self.shown):]
        self.shown = text
        if not new:
            return
        if accepted:
            new = f"{GREEN}{new}{RESET}" if self.color else f"[{new}]"
        self.out.write(new)
        self.out.flush()

    def __call__(self, accepted: list[int], target_token: int | None) -> None:
        self._emit(list(accepted), accepted=True)
        if target_token is not None:
            self._emit([target_token], accepted=False)

    def finish(self) -> None:
        """Print whatever is left undecoded and end the line."""
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.startswith(self.shown) and len(text) > len(self.shown):
            self.out.write(text[len(self.shown):])
        self.out.write("\n")
        self.out.flush()


def summary_line(stats: Any, wall_s: float, method: str = "") -> str:
    """One line: tokens, tokens per second, what applies of acceptance and τ (tokens per target step), the method."""
    tps = stats.new_tokens / wall_s if wall_s > 0 else float("nan")
    parts = [f"{stats.new_tokens} tokens", f"{tps:.1f} tokens/s"]
    if stats.drafted:
        parts.append(f"acceptance {stats.acceptance_rate:.2f} ({stats.accepted}/{stats.drafted} drafts)")
    if stats.target_forwards:
        parts.append(f"tau {stats.tokens_per_step:.2f} tokens/target step")
    if not stats.drafted and stats.target_forwards == stats.new_tokens:
        parts.append("plain decoding: one target step per token")
    if method:
        parts.append(f"method {method}")
    return ", ".join(parts)


def generate_main(args: Any, out: TextIO | None = None) -> int:
    """The ``specdec generate`` command after parsing: load, generate (streaming if asked), summarize."""
    import sys
    import time

    import torch

    from .engine.forward import Compiler, check_compile
    from .methods import METHODS, Request, default_method
    from .models import check_pair, load_head, load_model
    from .models.device import dtype_name, resolve_device
    from .models.presets import default_head
    from .study.prompts import chat_prompt_ids

    out = out or sys.stdout
    head = args.head or default_head(args.big_model)
    device = resolve_device(args.device)
    if getattr(args, "compile", False):
        check_compile(device)
    dtype = dtype_name(args.dtype, device)
    if args.method is None:
        args.method = default_method(head is not None, getattr(args, "compile", False), args.n is not None, dtype)
    method = METHODS[args.method]
    if args.stream and not method.streams:
        raise ValueError(f"--stream needs a method that reports its steps, not {args.method}")
    if method.draft == "head" and head is None:
        raise ValueError(f"--method {args.method} needs --head DIR: no feature head is bundled for {args.big_model!r}")
    target = load_model(args.big_model, device=str(device), dtype=dtype)
    if target.tokenizer is None:
        raise ValueError(f"target {args.big_model!r} has no tokenizer; generate needs one")
    draft = None
    if method.draft == "model":
        draft = load_model(args.small_model, device=str(device), dtype=dtype)
        check_pair(target, draft)
    elif method.draft == "head":
        draft = load_head(head, target)
    ids = torch.tensor([chat_prompt_ids(target.tokenizer, args.prompt, args.raw)], device=device)
    packed, pack_s = None, 0.0
    if getattr(args, "pack_verify", False) and method.packs:
        from .engine.forward import DEFAULT_BLOCK_ROWS
        from .models.packed import packed_twin

        t0 = time.perf_counter()
        chain = isinstance(args.n, int) and not method.tree and not method.branch
        packed, choices = packed_twin(target.model, (args.n + 1,) if chain else DEFAULT_BLOCK_ROWS)
        pack_s = time.perf_counter() - t0
        kept = ", ".join(str(c.rows) for c in choices if c.kept) or "none (no row count was faster packed)"
    compiler, compile_s = None, 0.0
    if getattr(args, "compile", False):
        compiler = Compiler()
        compile_s = warm_up(method, target.model, draft.model if draft is not None else None, ids, args, compiler)
    calibrate_s = 0.0
    if method.study_n == "auto":  # measure c and v(N) once, before the clock starts (kept for the process)
        from .auto.autotune import auto_policy

        t0 = time.perf_counter()
        auto_policy(packed if packed is not None else target.model, draft.model if draft is not None else None, ids,
                    compiler=compiler,
                    **method.auto_shape(args.tree_width, args.tree_nodes))
        calibrate_s = time.perf_counter() - t0
    printer = StreamPrinter(target.tokenizer, out, color=out.isatty()) if args.stream else None
    req = Request(target.model, draft.model if draft is not None else None, ids, args.n, args.max_new_tokens,
                  temperature=args.temperature, seed=args.seed, eos_token_id=target.tokenizer.eos_token_id,
                  on_step=printer, compiler=compiler, tree_width=args.tree_width,
                  tree_nodes=args.tree_nodes, packed=packed)
    t0 = time.perf_counter()
    result = method.run(req)
    wall = time.perf_counter() - t0
    if printer is not None:
        printer.finish()
    else:
        out.write(target.tokenizer.decode(result.tokens, skip_special_tokens=True) + "\n")
    out.write(summary_line(result.stats, wall, args.method) + "\n")
    if compiler is not None:
        out.write(f"compiled: {len(compiler.records)} graphs in {compile_s:.1f} s before the timed run\n")
    if packed is not None:
        out.write(f"packed verify: rows {kept} packed in {pack_s:.1f} s before the timed run\n")
    if calibrate_s:
        out.write(f"auto N: c and v(N) measured in {calibrate_s:.1f} s before the timed run\n")
    return 0


def warm_up(method: Any, target: Any, draft: Any, ids: Any, args: Any, compiler: Any) -> float:
    """One untimed generation that compiles every graph the timed one will use; its seconds."""
    import time

    from .methods import Request

    t0 = time.perf_counter()
    method.run(Request(target, draft, ids, args.n, args.max_new_tokens, temperature=args.temperature,
                       seed=args.seed, eos_token_id=None, compiler=compiler))
    return time.perf_counter() - t0

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
    """An ``on_step`` callback for :func:`specdec.decoding.speculative_generate`."""

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


def summary_line(stats: Any, wall_s: float) -> str:
    """One line: tokens, acceptance rate, tokens per target step and tokens per second."""
    tps = stats.new_tokens / wall_s if wall_s > 0 else float("nan")
    return (f"{stats.new_tokens} tokens, acceptance {stats.acceptance_rate:.2f}, "
            f"tau {stats.tokens_per_step:.2f} tokens/target step, {tps:.1f} tokens/s")


def encode_prompt(tokenizer: Any, text: str, raw: bool) -> list[int]:
    """Prompt ids: one chat-templated user turn when the tokenizer has a template, else raw text."""
    if not raw and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": text}]
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                  return_dict=True)["input_ids"])
    return list(tokenizer(text)["input_ids"])


def _run_method(args: Any, target: Any, draft: Any, ids: Any, on_step: Any):
    """Call the generator the ``--method`` flag names (stopping at the tokenizer's EOS)."""
    from .decoding import autoregressive_generate, speculative_generate
    from .drafters import PromptLookupDrafter

    common = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
                  eos_token_id=target.tokenizer.eos_token_id)
    if args.method == "baseline":
        return autoregressive_generate(target.model, ids, **common)
    if args.method in ("hf-assisted", "hf-default"):
        from .hf_assisted import hf_assisted_generate

        n = None if args.method == "hf-default" or args.n == "auto" else args.n
        return hf_assisted_generate(target.model, draft.model, ids, n, **common)
    n = "auto" if args.method == "auto" else args.n
    if args.method == "prompt-lookup":
        n = 4 if n == "auto" else n
        return speculative_generate(target.model, None, ids, num_draft_tokens=n,
                                    drafter=PromptLookupDrafter(), on_step=on_step, **common)
    return speculative_generate(target.model, draft.model, ids, num_draft_tokens=n, on_step=on_step, **common)


def generate_main(args: Any, out: TextIO | None = None) -> int:
    """The ``specdec generate`` command after parsing: load, generate (streaming if asked), summarize."""
    import sys
    import time

    import torch

    from .experiments import study_dtype
    from .models import load_model, resolve_device, shared_vocab_size

    out = out or sys.stdout
    device = resolve_device(args.device)
    dtype = study_dtype(args.dtype, device.type)
    target = load_model(args.big_model, device=str(device), dtype=dtype)
    if target.tokenizer is None:
        raise ValueError(f"target {args.big_model!r} has no tokenizer; generate needs one")
    draft = None
    if args.method not in ("baseline", "prompt-lookup"):
        draft = load_model(args.small_model, device=str(device), dtype=dtype)
        shared_vocab_size(target, draft)
    ids = torch.tensor([encode_prompt(target.tokenizer, args.prompt, args.raw)], device=device)
    printer = StreamPrinter(target.tokenizer, out, color=out.isatty()) if args.stream else None
    if printer is not None and args.method in ("baseline", "hf-assisted", "hf-default"):
        raise ValueError(f"--stream needs a speculative method of ours, not {args.method}")
    t0 = time.perf_counter()
    result = _run_method(args, target, draft, ids, printer)
    wall = time.perf_counter() - t0
    if printer is not None:
        printer.finish()
    else:
        out.write(target.tokenizer.decode(result.tokens, skip_special_tokens=True) + "\n")
    out.write(summary_line(result.stats, wall) + "\n")
    return 0

"""Command line: ``specdec run|plot|generate|distill``; ``main(argv) -> int``; errors are one line, exit 2."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

EXIT_USAGE = 2
DEFAULT_OUTPUT = "exp_results/experiment_results.csv"
FULL_GRID = {"prompt_lengths": "64,128,512", "max_tokens": "32,64,128,256", "n": "1,2,3,4,6,8",
             "repeats": 3, "warmup": 1, "prompts_per_cell": 2, "fixed_max_tokens": 64}
QUICK_GRID = {"prompt_lengths": "64,128", "max_tokens": "16,32", "n": "1,4",
              "repeats": 1, "warmup": 1, "prompts_per_cell": 1, "fixed_max_tokens": 32}
PACK_HELP = ("fp32 on CPU: our speculative methods verify through a twin of the target whose linear layers are "
             "pre-packed (MKL) for the verify's row counts, each kept only where measured faster; the baseline "
             "and HF's methods run the target unchanged")


class UsageError(Exception):
    """Bad command-line input; printed as one line."""


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str):
        raise UsageError(message)


def parse_int_grid(text: str, name: str, allow_auto: bool = False) -> tuple:
    """``"1,2,auto"`` → ``(1, 2, "auto")``; UsageError for empty, non-numeric or < 1 values."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise UsageError(f"--{name} is empty; give comma-separated integers")
    out: list = []
    for item in items:
        if allow_auto and item == "auto":
            out.append("auto")
            continue
        try:
            value = int(item)
        except ValueError:
            raise UsageError(f"--{name}: {item!r} is not an integer" + (" or 'auto'" if allow_auto else "")) from None
        if value < 1:
            raise UsageError(f"--{name}: values must be >= 1, got {value}")
        out.append(value)
    return tuple(dict.fromkeys(out))


def _names(text: str, flag: str, known: tuple[str, ...]) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not items:
        raise UsageError(f"--{flag} is empty")
    for item in items:
        if item not in known:
            raise UsageError(f"--{flag}: unknown name {item!r}; choose from {', '.join(known)}")
    return items


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Flags choosing the pair, device and dtype (shared by run and generate)."""
    p.add_argument("--pair", default="default", help="pair preset: default, smollm2, qwen-coder, llama-3.2")
    p.add_argument("--big_model", "--big-model", dest="big_model", help="target: preset, .gguf, directory or hub id")
    p.add_argument("--small_model", "--small-model", dest="small_model", help="draft: preset, .gguf, directory or hub id")
    p.add_argument("--head", default=None, help="feature head for --method/--methods eagle: a directory "
                   "(specdec distill head); default: the one bundled for the target, if any")
    p.add_argument("--tree-width", dest="tree_width", type=int, default=None,
                   help="method eagle-tree: nodes expanded per level, and children per node "
                   "(default: specdec.methods.DEFAULT_TREE_WIDTH)")
    p.add_argument("--tree-nodes", dest="tree_nodes", type=int, default=None,
                   help="method eagle-tree: nodes verified per step at most, the likeliest by the head's joint "
                   "probability (default: specdec.methods.DEFAULT_TREE_NODES)")
    p.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
    p.add_argument("--dtype", default="auto", choices=["float32", "bfloat16", "float16", "auto"],
                   help="auto: bfloat16 where the CPU or GPU computes it natively, else float32 (CPU) "
                        "or float16 (CUDA)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def run_parser(prog: str = "specdec run") -> Parser:
    """Flags of the study (``main.py`` takes the same)."""
    from .methods import STUDY_EXTRAS

    p = Parser(prog=prog, description="Run the speed study and write CSV, provenance, summary and plots.")
    add_model_args(p)
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="results CSV; plots and JSON go beside it")
    p.add_argument("--experiments", default=None,
                   help="default: prompt_length,max_tokens,n (max_tokens,n for --prompt-set everyday)")
    p.add_argument("--prompt-set", dest="prompt_set", default="study", choices=["study", "everyday"],
                   help="study: Shakespeare passages cut to exact lengths; everyday: requests outside that "
                        "domain (how-to, code, arithmetic, email, summary, translation), natural lengths")
    p.add_argument("--methods", default=None, help="extras for the N experiment, comma-separated (default: all "
                   "that apply): " + ",".join(STUDY_EXTRAS))
    p.add_argument("--prompt-lengths", dest="prompt_lengths")
    p.add_argument("--max-tokens", dest="max_tokens")
    p.add_argument("--n", dest="n", help="N grid; may include auto")
    p.add_argument("--fixed-prompt-length", dest="fixed_prompt_len", type=int, default=128)
    p.add_argument("--fixed-max-tokens", dest="fixed_max_tokens", type=int)
    p.add_argument("--fixed-n", dest="fixed_n", type=int, default=4)
    p.add_argument("--repeats", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--prompts-per-cell", dest="prompts_per_cell", type=int)
    p.add_argument("--compile", default="off", choices=["off", "on", "both"],
                   help="on: static KV caches and compiled forwards for the baseline and every candidate; "
                        "both: each cell eager and compiled (compile time is reported apart)")
    p.add_argument("--pack-verify", dest="pack_verify", default="auto", choices=["auto", "on", "off"],
                   help=PACK_HELP + " (auto: on where it can run)")
    p.add_argument("--quick", action="store_true", help="small grid (a few minutes on CPU)")
    p.add_argument("--resume", action="store_true", help="skip cells already in --output")
    p.add_argument("--no-progress", action="store_true")
    return p


def pair_specs(args) -> tuple[str, str]:
    """(target, draft) specs from --pair, overridden by --big_model/--small_model."""
    from .models.presets import PAIRS

    if args.pair not in PAIRS:
        raise UsageError(f"--pair: unknown pair {args.pair!r}; choose from {', '.join(PAIRS)}")
    target, draft = PAIRS[args.pair]
    return args.big_model or target, args.small_model or draft


def study_config(args):
    """A validated StudyConfig from parsed ``run`` flags (loads no model)."""
    from .methods import DEFAULT_TREE_NODES, DEFAULT_TREE_WIDTH, METHODS, STUDY_EXTRAS
    from .models.device import dtype_name, resolve_device
    from .models.presets import default_head
    from .study.config import EXPERIMENTS, StudyConfig

    grid = {**FULL_GRID, **(QUICK_GRID if args.quick else {})}
    pick = lambda name: getattr(args, name) if getattr(args, name) is not None else grid[name]
    target, draft = pair_specs(args)
    head = args.head or default_head(target) or ""
    if args.methods is None:
        methods = tuple(m for m in STUDY_EXTRAS if (METHODS[m].draft != "head" or head)
                        and (METHODS[m].modes != "compiled" or args.compile != "off"))
    else:
        methods = _names(args.methods, "methods", STUDY_EXTRAS)
        if any(METHODS[m].draft == "head" for m in methods) and not head:
            raise UsageError(f"--methods {','.join(methods)} needs --head DIR: no feature head is bundled for {target!r}")
    device = resolve_device(args.device)
    cfg = StudyConfig(
        target=target, draft=draft, head=head if any(METHODS[m].draft == "head" for m in methods) else "",
        device=str(device),
        dtype=dtype_name(args.dtype, device),
        temperature=args.temperature, seed=args.seed, repeats=pick("repeats"), warmup=pick("warmup"),
        prompts_per_cell=pick("prompts_per_cell"),
        prompt_set=args.prompt_set,
        experiments=_names(args.experiments or ("prompt_length,max_tokens,n" if args.prompt_set == "study"
                                                else "max_tokens,n"), "experiments", EXPERIMENTS),
        prompt_lengths=parse_int_grid(pick("prompt_lengths"), "prompt-lengths"),
        max_tokens=parse_int_grid(pick("max_tokens"), "max-tokens"),
        ns=parse_int_grid(pick("n"), "n", allow_auto=True),
        fixed_prompt_len=args.fixed_prompt_len, fixed_max_tokens=pick("fixed_max_tokens"),
        fixed_n=args.fixed_n, methods=methods, compile=args.compile, pack_verify=args.pack_verify,
        tree_width=DEFAULT_TREE_WIDTH if args.tree_width is None else args.tree_width,
        tree_nodes=DEFAULT_TREE_NODES if args.tree_nodes is None else args.tree_nodes)
    cfg.validate()
    return cfg


def check_context(spec: str, longest: int) -> None:
    """Before loading: ValueError when a local model directory's context is shorter than ``longest``."""
    import json

    config = Path(spec).expanduser() / "config.json"
    if not config.is_file():
        return  # presets, .gguf files and hub ids are checked after loading
    try:
        context = json.loads(config.read_text()).get("max_position_embeddings")
    except (OSError, ValueError):
        return
    if context is not None and longest > context:
        raise ValueError(f"prompt length + max tokens up to {longest} exceeds the target's context of {context} tokens")


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` (recorded in the provenance JSON as ``threads``)."""
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def quiet_loading() -> None:
    """Hide transformers' per-load progress bars; the study has its own."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def cmd_run(argv: list[str]) -> int:
    """Parse, check everything that needs no model, load the pair, run, plot, summarize."""
    from .models import check_pair, load_head, load_model
    from .study.plots import make_plots
    from .study.runner import run_study
    from .study.store import check_resume, check_unlocked, check_writable
    from .study.summary import to_markdown

    args = run_parser().parse_args(argv)
    cfg = study_config(args)
    out = Path(args.output)
    check_writable(out)
    check_unlocked(out)
    if args.resume:
        check_resume(cfg, out)
    check_context(cfg.target, cfg.longest_request())
    if cfg.compile != "off":
        from .engine.forward import check_compile

        check_compile(cfg.device)
    set_threads(args.threads)
    quiet_loading()
    t0 = time.perf_counter()
    target = load_model(cfg.target, device=cfg.device, dtype=cfg.dtype)
    draft = load_model(cfg.draft, device=cfg.device, dtype=cfg.dtype)
    check_pair(target, draft)
    if target.tokenizer is None:
        raise ValueError(f"target {cfg.target!r} has no tokenizer; the study needs one to build prompts")
    head = load_head(cfg.head, target) if cfg.head else None
    summary = run_study(cfg, target, draft, out, resume=args.resume, show_progress=not args.no_progress, head=head)
    plots = make_plots(out)
    print(to_markdown(summary), end="")
    print(f"wrote {out}, {len(plots)} plots in {out.parent} ({time.perf_counter() - t0:.0f} s)")
    return 0


def cmd_plot(argv: list[str]) -> int:
    """Re-draw the five figures from a results CSV (no torch import)."""
    p = Parser(prog="specdec plot", description="Re-draw the study's plots from its CSV.")
    p.add_argument("csv")
    p.add_argument("--out-dir", default=None, help="default: beside the CSV")
    args = p.parse_args(argv)
    path = Path(args.csv)
    if not path.is_file():
        raise UsageError(f"no such results CSV: {path}")
    from .study.plots import make_plots

    for written in make_plots(path, Path(args.out_dir) if args.out_dir else None):
        print(written)
    return 0


def cmd_generate(argv: list[str]) -> int:
    """Generate from one prompt, optionally streaming with accepted drafts marked."""
    from .methods import DEFAULT_TREE_NODES, DEFAULT_TREE_WIDTH, GENERATE_METHODS, METHODS
    from .stream import generate_main

    p = Parser(prog="specdec generate", description="Generate text from one prompt.")
    add_model_args(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--n", default=None, help="draft tokens per step (a tree's levels), or auto "
                   "(default: auto without --method, else 4)")
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=64)
    p.add_argument("--method", default=None, choices=[*GENERATE_METHODS, "autoregressive"],
                   help="default: with a feature head for the target (bundled or --head), eagle-tree-lookup-auto when "
                   "eager and in bf16/fp16, eagle-lookup-auto when eager in fp32, else eagle-auto; without one, "
                   "auto-lookup when eager, else auto (eagle-tree, eagle or speculative when --n is given). "
                   + "; ".join(f"{m}: {METHODS[m].help}" for m in GENERATE_METHODS) + "; autoregressive: alias of baseline")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--raw", action="store_true", help="do not apply the chat template")
    p.add_argument("--compile", action="store_true",
                   help="static KV caches and compiled forwards (one untimed warm-up generation compiles them)")
    p.add_argument("--pack-verify", dest="pack_verify", action="store_true",
                   help=PACK_HELP + " (off by default here: packing takes seconds before the first token)")
    args = p.parse_args(argv)
    if args.pack_verify and args.compile:
        raise UsageError("--pack-verify is for eager runs: compiled forwards pre-pack their weights already")
    if args.method == "autoregressive":
        args.method = "baseline"
    if args.n is not None:
        args.n = parse_int_grid(args.n, "n", allow_auto=True)[0]
    elif args.method is not None:
        args.n = 4  # a named method at a fixed N; no method: the default one chooses N (methods.default_method)
    if args.tree_width is None:
        args.tree_width = DEFAULT_TREE_WIDTH
    elif args.tree_width < 1:
        raise UsageError(f"--tree-width must be >= 1, got {args.tree_width}")
    if args.tree_nodes is None:
        args.tree_nodes = DEFAULT_TREE_NODES
    elif args.tree_nodes < 1:
        raise UsageError(f"--tree-nodes must be >= 1, got {args.tree_nodes}")
    if args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    args.big_model, args.small_model = pair_specs(args)
    set_threads(args.threads)
    quiet_loading()
    return generate_main(args)


def cmd_distill(argv: list[str]) -> int:
    """``specdec distill ...``: build data and train a draft (:mod:`specdec.distill`)."""
    from .distill.cli import main as distill_main

    return distill_main(argv)


COMMANDS = {"run": cmd_run, "plot": cmd_plot, "generate": cmd_generate, "distill": cmd_distill}


def main(argv: list[str] | None = None) -> int:
    """``specdec <command> ...``; returns the exit status (2 and one line on stderr for bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: specdec {run,plot,generate,distill} ...  (specdec <command> --help for flags)")
        return 0 if argv else EXIT_USAGE
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"specdec: error: unknown command {command!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[command](rest)
    except UsageError as exc:
        print(f"specdec {command}: error: {exc}", file=sys.stderr)
    except (ValueError, OSError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"specdec: error: {text}", file=sys.stderr)
    except KeyboardInterrupt:
        print("specdec: interrupted; finished rows are kept (rerun with --resume)", file=sys.stderr)
        return 130
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

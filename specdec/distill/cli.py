"""``specdec distill`` / ``python -m specdec.distill``: ``gen-data``, ``train``, ``eval`` (an independent
draft model), ``head`` (a feature head over the target's hidden states), ``context-vocab`` (a reduced head's
context columns), ``compare`` and ``curve``; ``main(argv) -> int``.

Bad input gives one line on stderr and exit status 2 (argparse's own usage errors included).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm
from transformers.utils import logging as transformers_logging

from ..models import load_model
from .context_fit import ContextFitConfig, fit_context, parse_floats
from .draft import DraftConfig
from .evaluate import EvalConfig, run_eval
from .head_data import HeadDataConfig, build_head_data
from .head_train import HeadTrainConfig, train_head
from .requests import TEMPLATE_SETS
from .sources import Sources
from .teacher import DEFAULT_TARGET, GenConfig, gen_data
from .train import TrainConfig, train

EXIT_USAGE = 2


def add_target(p: argparse.ArgumentParser, default: str) -> None:
    """``--target``, as every stage spells it."""
    p.add_argument("--target", default=default, help="target: preset, .gguf path, local directory or hub id")


def add_gen_args(g: argparse.ArgumentParser) -> None:
    """Flags of ``gen-data`` (:class:`GenConfig` and its :class:`Sources`)."""
    d = GenConfig()
    add_target(g, d.target)
    g.add_argument("--out-dir", default=d.out_dir, help="shard directory")
    g.add_argument("--shakespeare-dir", default=d.sources.shakespeare_dir,
                   help="Shakespeare .txt files (the study's three plays are skipped)")
    g.add_argument("--docs-dir", default=d.sources.docs_dir, help="Python documentation .txt sources")
    g.add_argument("--code-dir", default=d.sources.code_dir, help="Python source files (*.py)")
    g.add_argument("--explain-frac", type=float, default=d.sources.explain_frac,
                   help="share of Shakespeare prompts using the study's instruction")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="prompts per generation batch (and shard)")
    g.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="answer length cap")
    g.add_argument("--max-prompt-tokens", type=int, default=d.max_prompt_tokens, help="prompts are truncated here")
    g.add_argument("--sample-frac", type=float, default=d.sample_frac, help="share of batches sampled, not greedy")
    g.add_argument("--temperature", type=float, default=d.temperature, help="for the sampled batches")
    g.add_argument("--topk", type=int, default=d.topk, help="teacher logits kept per position")
    g.add_argument("--heldout-frac", type=float, default=d.heldout_frac,
                   help="held-out share of prompt keys (teacher-forced prompts skip them)")
    g.add_argument("--minutes", type=float, default=d.minutes, help="generation budget (0: none)")
    g.add_argument("--first-batch", type=int, default=d.first_batch, help="continue the prompt pool at this batch")
    g.add_argument("--forced-minutes", type=float, default=d.forced_minutes, help="teacher-forced budget (0: none)")
    g.add_argument("--forced-from", type=int, default=d.forced_from, help="first prompt index for teacher forcing")
    g.add_argument("--forced-batch", type=int, default=d.forced_batch, help="prompts per teacher-forced forward")
    g.add_argument("--forced-shard", type=int, default=d.forced_shard, help="prompts per teacher-forced shard")
    g.add_argument("--seed", type=int, default=d.seed, help="prompt pool and sampling seed")
    g.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads")


def add_train_args(t: argparse.ArgumentParser) -> None:
    """Flags of ``train`` (:class:`TrainConfig`; ``--draft-*`` fill its :class:`DraftConfig`)."""
    d = TrainConfig()
    add_target(t, d.target)
    t.add_argument("--data-dir", default=d.data_dir, help="shard directory (*.safetensors)")
    t.add_argument("--out-dir", default=d.out_dir, help="where the best checkpoint and the log go")
    for name, value in vars(d.draft).items():
        t.add_argument("--draft-" + name.replace("_", "-"), type=int, default=value, help="draft shape (fresh draft)")
    t.add_argument("--init-embeddings", choices=("pca", "random"), default=d.init_embeddings,
                   help="fresh draft: PCA of the target's embeddings, or random")
    t.add_argument("--init-from", default=d.init_from, help="continue from this saved draft (directory or preset)")
    t.add_argument("--head-vocab", type=int, default=d.head_vocab,
                   help="K > 0: output head over the K ids the teacher ranks first most often")
    t.add_argument("--gen-repeat", type=int, default=d.gen_repeat, help="list records with answers this often per epoch")
    t.add_argument("--minutes", type=float, default=d.minutes, help="time budget")
    t.add_argument("--max-steps", type=int, default=d.max_steps, help="> 0: stop after this many steps")
    t.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    t.add_argument("--min-lr-frac", type=float, default=d.min_lr_frac, help="cosine floor as a share of --lr")
    t.add_argument("--warmup", type=int, default=d.warmup, help="linear warmup steps")
    t.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    t.add_argument("--batch-tokens", type=int, default=d.batch_tokens, help="padded tokens per batch")
    t.add_argument("--ce-weight", type=float, default=d.ce_weight, help="weight of CE on the target's argmax")
    t.add_argument("--heldout-frac", type=float, default=d.heldout_frac, help="held-out share of prompt keys")
    t.add_argument("--eval-every-s", type=float, default=d.eval_every_s, help="seconds between held-out evaluations")
    t.add_argument("--max-heldout", type=int, default=d.max_heldout, help="held-out records evaluated while training")
    t.add_argument("--seed", type=int, default=d.seed, help="init and batch-order seed")
    t.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads")


def add_eval_args(e: argparse.ArgumentParser) -> None:
    """Flags of ``eval`` (:class:`EvalConfig`)."""
    d = EvalConfig(draft_dir=TrainConfig.out_dir, data_dir=TrainConfig.data_dir)
    e.add_argument("--draft-dir", default=d.draft_dir, help="saved draft (directory or preset)")
    e.add_argument("--data-dir", default=d.data_dir, help="shard directory ('' to skip held-out records)")
    e.add_argument("--heldout-frac", type=float, default=d.heldout_frac, help="held-out share of prompt keys")
    add_target(e, d.target)
    e.add_argument("--study-prompts", type=int, default=d.study_prompts,
                   help="also measure agreement on the target's greedy answers to this many study prompts")
    e.add_argument("--study-len", type=int, default=d.study_len, help="study prompt length in tokens")
    e.add_argument("--study-new-tokens", type=int, default=d.study_new_tokens, help="target answer length")
    e.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads")


def add_head_args(h: argparse.ArgumentParser) -> None:
    """Flags of ``head`` (:class:`HeadDataConfig` then :class:`HeadTrainConfig`)."""
    d, t = HeadDataConfig(), HeadTrainConfig()
    add_target(h, d.target)
    h.add_argument("--data-dir", default=d.data_dir, help="token-sequence shards (written, or extended, here)")
    h.add_argument("--out-dir", default=t.out_dir, help="the best head, training_log.csv and checkpoint/ go here")
    h.add_argument("--shakespeare-dir", default="", help="Shakespeare .txt files (the study's three plays are skipped)")
    h.add_argument("--docs-dir", default="", help="Python documentation .txt sources")
    h.add_argument("--code-dir", default="", help="Python source files (*.py)")
    h.add_argument("--answer-minutes", type=float, default=d.answer_minutes, help="the target answers pool prompts")
    h.add_argument("--answer-kinds", default=",".join(d.answer_kinds),
                   help="which pool prompts the target answers: shk, doc, code (comma-separated)")
    h.add_argument("--self-minutes", type=float, default=d.self_minutes,
                   help="the target writes questions itself and answers them")
    h.add_argument("--request-minutes", type=float, default=d.request_minutes,
                   help="the target answers everyday requests built from templates (how-to, code, arithmetic, ...)")
    h.add_argument("--request-templates", type=int, default=d.request_templates, choices=TEMPLATE_SETS,
                   help="template set: 2 adds other phrasings to set 1, 3 a third way to both (set 1 made request_00000-00106)")
    h.add_argument("--batch-size", type=int, default=d.batch_size, help="prompts per generation batch")
    h.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="answer length cap")
    h.add_argument("--feature-layers", default="",
                   help="hidden states the head reads, e.g. 2,15,27 (EAGLE-3 fusion); default: the last (EAGLE-1)")
    h.add_argument("--head-vocab", type=int, default=t.head_vocab,
                   help="K > 0: the head's own output layer over the K ids the data uses most (0: the target's); "
                        "with --init-from, a K below the saved head's cuts its vocabulary to those K")
    h.add_argument("--head-layers", type=int, default=t.head_layers,
                   help="decoder layers in the head; with --init-from, more than the saved head's adds layers that "
                        "start as no-ops (the head computes what it did, then trains)")
    h.add_argument("--init-from", default=t.init_from,
                   help="start from this saved head (a new stage: its weights and vocabulary, a fresh schedule)")
    h.add_argument("--train-minutes", type=float, default=t.minutes, help="training budget (0: build the data only)")
    h.add_argument("--max-steps", type=int, default=t.max_steps, help="> 0: stop after this many steps")
    h.add_argument("--lr", type=float, default=t.lr, help="peak learning rate")
    h.add_argument("--warmup", type=int, default=t.warmup, help="linear warmup steps")
    h.add_argument("--batch-tokens", type=int, default=t.batch_tokens, help="padded tokens per batch")
    h.add_argument("--ttt-steps", type=int, default=t.ttt_steps, help="training-time test: unrolled steps")
    h.add_argument("--noise", type=float, default=t.noise, help="uniform feature noise, times the features' RMS")
    h.add_argument("--text-frac", type=float, default=t.text_frac, help="share of prompt-only sequences per batch")
    h.add_argument("--eval-every-s", type=float, default=t.eval_every_s, help="seconds between held-out evaluations")
    h.add_argument("--max-heldout", type=int, default=t.max_heldout, help="held-out answers scored while training")
    h.add_argument("--cache-gb", type=float, default=t.cache_gb,
                   help="memory for the target's outputs of the first epoch, reused by later epochs")
    h.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="the target's dtype while generating and teaching (the head trains in float32)")
    h.add_argument("--device", default="cpu", help="cpu or cuda")
    h.add_argument("--seed", type=int, default=t.seed, help="data and training seed")
    h.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's choice)")


def run_head(args: dict) -> None:
    """Build (or extend) the data when a source is given, then train the head (resuming a checkpoint)."""
    import torch

    if args["threads"]:
        torch.set_num_threads(args["threads"])
    src = Sources(shakespeare_dir=args["shakespeare_dir"], docs_dir=args["docs_dir"], code_dir=args["code_dir"])
    if src.shakespeare_dir or src.docs_dir or src.code_dir:
        build_head_data(HeadDataConfig(
            target=args["target"], data_dir=args["data_dir"], sources=src, answer_minutes=args["answer_minutes"],
            self_minutes=args["self_minutes"], request_minutes=args["request_minutes"], batch_size=args["batch_size"],
            max_new_tokens=args["max_new_tokens"], request_templates=args["request_templates"],
            dtype=args["dtype"], device=args["device"], seed=args["seed"],
            answer_kinds=tuple(k.strip() for k in args["answer_kinds"].split(",") if k.strip())))
    cut_only = bool(args["init_from"]) and args["head_vocab"] > 0  # with no minutes: cut, score and save
    if args["train_minutes"] <= 0 and args["max_steps"] <= 0 and not cut_only:
        return
    layers = tuple(int(x) for x in args["feature_layers"].split(",") if x.strip())
    train_head(HeadTrainConfig(
        target=args["target"], data_dir=args["data_dir"], out_dir=args["out_dir"], feature_layers=layers,
        head_vocab=args["head_vocab"], head_layers=args["head_layers"], minutes=args["train_minutes"],
        max_steps=args["max_steps"], lr=args["lr"],
        warmup=args["warmup"], batch_tokens=args["batch_tokens"], ttt_steps=args["ttt_steps"], noise=args["noise"],
        text_frac=args["text_frac"], eval_every_s=args["eval_every_s"], target_dtype=args["dtype"],
        device=args["device"], seed=args["seed"], init_from=args["init_from"], max_heldout=args["max_heldout"],
        cache_gb=args["cache_gb"]))


# The bundled draft's five stages (training_log_stage1..4.csv, then training_log.csv for stage 5) and
# the teacher positions its data held at each stage's end (MODEL_CARD.md).
DRAFT_STAGE_LOGS = ("training_log_stage1.csv", "training_log_stage2.csv", "training_log_stage3.csv",
                    "training_log_stage4.csv", "training_log.csv")
DRAFT_STAGE_POSITIONS = (94_178, 261_176, 1_433_278, 1_730_678, 2_117_777)


def add_curve_args(c: argparse.ArgumentParser) -> None:
    """Flags of ``curve``."""
    from ..models.presets import weights_dir

    c.add_argument("--head-dir", default=str(weights_dir("smollm2-head")),
                   help="a head's directory: its training_log_stage*.csv, then training_log.csv, are drawn in turn")
    c.add_argument("--head-log", nargs="+", default=None, help="the head's stage logs in order (instead of --head-dir)")
    c.add_argument("--draft-dir", default=str(weights_dir("smollm2-draft")), help="the draft's stage logs live here")
    c.add_argument("--out", default=str(weights_dir("smollm2-head") / "agreement.png"), help="the figure (PNG)")


def run_curve(args: dict) -> None:
    """Draw the agreement-over-training figure."""
    from .curves import plot_agreement

    draft, head = Path(args["draft_dir"]), Path(args["head_dir"])
    logs = [draft / name for name in DRAFT_STAGE_LOGS if (draft / name).is_file()]
    stages = sorted(head.glob("training_log_stage*.csv"), key=lambda f: int(f.stem.rsplit("stage", 1)[1]))
    head_logs = [Path(p) for p in args["head_log"]] if args["head_log"] else stages + [head / "training_log.csv"]
    missing = [str(p) for p in head_logs if not p.is_file()]
    if missing:
        raise ValueError(f"no training log at {', '.join(missing)}")
    print(plot_agreement(head_logs, logs, list(DRAFT_STAGE_POSITIONS), Path(args["out"])))


def add_compare_args(c: argparse.ArgumentParser) -> None:
    """Flags of ``compare``."""
    add_target(c, DEFAULT_TARGET)
    c.add_argument("--head", default="smollm2-head", help="a feature head (bundled name or directory)")
    c.add_argument("--draft", default="smollm2-draft", help="an independent draft (preset or directory)")
    c.add_argument("--prompt-set", default="study", choices=["study", "everyday"], help="the study's prompt set")
    c.add_argument("--count", type=int, default=12, help="prompts")
    c.add_argument("--prompt-len", type=int, default=128, help="study prompts' length in tokens")
    c.add_argument("--new-tokens", type=int, default=64, help="length of the target's greedy answers")
    c.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "auto"], help="models' dtype")


def run_compare(args: dict) -> None:
    """Print the head's and the draft's agreement with the target's answers to one prompt set."""
    from ..models import load_head
    from .evaluate import answer_agreement, draft_predictor, head_predictor, vocabulary_ceiling

    target = load_model(args["target"], dtype=args["dtype"])
    predictors = {}
    if args["head"]:
        head = load_head(args["head"], target).model
        predictors["head"] = head_predictor(target.model, head)
        ceiling = vocabulary_ceiling(head)
        if ceiling is not None:
            predictors["head's vocabulary (ceiling)"] = ceiling
    if args["draft"]:
        predictors["draft"] = draft_predictor(load_model(args["draft"], dtype=args["dtype"]).model)
    res = answer_agreement(target.model, target.tokenizer, predictors, args["prompt_set"], args["count"],
                           args["prompt_len"], args["new_tokens"])
    for name, (agree, positions) in res.items():
        print(f"{name}: agreement {agree:.4f} on {positions} answer positions ({args['count']} {args['prompt_set']} prompts)")


def add_context_args(c: argparse.ArgumentParser) -> None:
    """Flags of ``context-vocab`` (:class:`ContextFitConfig`)."""
    d = ContextFitConfig()
    add_target(c, d.target)
    c.add_argument("--head", default=d.head, help="a feature head over a reduced vocabulary (bundled name or directory)")
    c.add_argument("--data-dir", default=d.data_dir, help="the head's data (its held-out answers are scored)")
    c.add_argument("--out-dir", default=d.out_dir, help="the head, copied with the fitted columns (may be --head's own)")
    c.add_argument("--scales", type=parse_floats, default=d.scales, help="scales tried, comma-separated")
    c.add_argument("--biases", type=parse_floats, default=d.biases, help="biases tried, comma-separated")
    c.add_argument("--heldout-frac", type=float, default=d.heldout_frac, help="held-out share of prompt keys")
    c.add_argument("--max-heldout", type=int, default=d.max_heldout, help="held-out answers scored, each kind in turn")
    c.add_argument("--dtype", default=d.dtype, choices=["float32", "bfloat16", "auto"], help="models' dtype")
    c.add_argument("--threads", type=int, default=d.threads, help="CPU threads")


def run_context(args: dict) -> None:
    """Fit the context columns and print the agreements without and with them."""
    res = fit_context(ContextFitConfig(**args))
    print(f"held-out first-draft agreement {res['without']:.4f} without context columns, {res['with']:.4f} with "
          f"(scale {res['scale']:g}, bias {res['bias']:g}; {res['positions']:.0f} positions, {res['answers']:.0f} answers)")


def build_parser() -> argparse.ArgumentParser:
    """Argument parser with ``gen-data``, ``train`` and ``eval`` subcommands."""
    ap = argparse.ArgumentParser(prog="specdec distill",
                                 description="Distil a small draft model from a target LM.")
    sub = ap.add_subparsers(dest="stage", required=True)
    add_gen_args(sub.add_parser(
        "gen-data", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="target answers and top-k logits, as safetensors shards",
        description="Have the target answer chat prompts and save its top-k logits "
                    "(gen_*.safetensors; forced_*.safetensors with --forced-minutes)."))
    add_train_args(sub.add_parser(
        "train", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="train the draft on the shards",
        description="Train a draft on teacher shards; log held-out agreement to OUT_DIR/training_log.csv "
                    "and keep the best checkpoint in OUT_DIR."))
    add_eval_args(sub.add_parser(
        "eval", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="agreement of a saved draft with the target",
        description="Greedy agreement of a saved draft on held-out target answers and, optionally, "
                    "on the target's answers to the speed study's prompts."))
    add_head_args(sub.add_parser(
        "head", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="a feature head (EAGLE) for the target: data, then training",
        description="Build token sequences (prompts over the given text, the target's answers, questions the "
                    "target writes and answers itself, templated everyday requests it answers), then train a "
                    "feature head online against the target's "
                    "hidden states; resumable, logs held-out agreement to OUT_DIR/training_log.csv."))
    add_compare_args(sub.add_parser(
        "compare", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="agreement of a feature head and an independent draft with the target's answers to a prompt set"))
    add_context_args(sub.add_parser(
        "context-vocab", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="let a reduced head propose the context's other ids: fit their scale and bias on held-out answers",
        description="Score ids of the context outside a reduced head's vocabulary through the target's LM-head rows "
                    "(scale * w * h + bias); choose scale and bias on held-out answers of the head's data, teacher-"
                    "forced, and write the head with them to OUT_DIR (weights copied unchanged; the grid in "
                    "OUT_DIR/context_grid.csv)."))
    add_curve_args(sub.add_parser(
        "curve", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="figure: a head's agreement over training beside the bundled draft's stages"))
    return ap


def gen_config(args: dict) -> GenConfig:
    """GenConfig from parsed ``gen-data`` flags."""
    src = Sources(**{k: args.pop(k) for k in ("shakespeare_dir", "docs_dir", "code_dir", "explain_frac")})
    return GenConfig(sources=src, **args)


def train_config(args: dict) -> TrainConfig:
    """TrainConfig from parsed ``train`` flags."""
    dc = DraftConfig(**{k.removeprefix("draft_"): args.pop(k) for k in list(args) if k.startswith("draft_")})
    return TrainConfig(draft=dc, **args)


def report_eval(cfg: EvalConfig) -> None:
    """Print the agreements ``eval`` measured, one line each."""
    res = run_eval(cfg)
    if "heldout" in res:
        print(f"held-out agreement {res['heldout']:.4f} ({res['heldout_positions']:.0f} target positions)")
    if "study" in res:
        print(f"study-prompt agreement {res['study']:.4f} ({cfg.study_prompts} prompts of {cfg.study_len} tokens, "
              f"{res['study_positions']:.0f} target positions)")


def run(stage: str, args: dict) -> int:
    """Run one stage (each validates its config first), logging through the progress bars."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    transformers_logging.disable_progress_bar()  # per-load/save bars would break up ours
    with logging_redirect_tqdm():
        if stage == "gen-data":
            gen_data(gen_config(args))
        elif stage == "train":
            train(train_config(args))
        elif stage == "head":
            run_head(args)
        elif stage == "curve":
            run_curve(args)
        elif stage == "compare":
            run_compare(args)
        elif stage == "context-vocab":
            run_context(args)
        else:
            report_eval(EvalConfig(**args))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 and one line on stderr for bad input)."""
    args = vars(build_parser().parse_args(argv))
    stage = args.pop("stage")
    try:
        return run(stage, args)
    except (ValueError, OSError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"specdec distill {stage}: error: {text}", file=sys.stderr)
        return EXIT_USAGE

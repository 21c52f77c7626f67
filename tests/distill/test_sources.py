import random

import pytest

from specdec.distill import sources
from specdec.study.prompts import INSTRUCTION


def test_excluded_plays_are_the_studys():
    assert sources.is_excluded("/x/tempest_gut_f.txt") and sources.is_excluded("macbeth_gut.txt")
    assert sources.is_excluded("Romeo_and_Juliet_gut.txt") and not sources.is_excluded("hamlet_gut.txt")


def test_strip_gutenberg_keeps_only_the_body():
    text = "licence blah\n*** START OF THE BOOK ***\nbody line\n*** END OF THE BOOK ***\nfooter"
    assert sources.strip_gutenberg(text) == "body line\n"
    assert sources.strip_gutenberg("plain text") == "plain text"


def test_split_passages_joins_whole_paragraphs_to_the_drawn_size():
    paras = [f"para {i} " + "x" * 50 for i in range(20)]
    ps = sources.split_passages("\n\n".join(paras), 100, 200, random.Random(0))
    assert len(ps) >= 5
    assert all(100 <= len(p) <= 400 for p in ps)
    pieces = [q for p in ps for q in p.split("\n\n")]
    assert pieces == paras[: len(pieces)]  # whole paragraphs, in order; only a short tail is dropped


def test_build_prompts_skip_the_study_plays_and_key_the_pool(shakespeare_dir):
    prompts = sources.build_prompts(sources.Sources(shakespeare_dir=str(shakespeare_dir)), random.Random(0))
    texts = " ".join(p.text for p in prompts)
    assert "HAMLET" in texts and "SONNET" in texts
    assert "MACBETH" not in texts and "META" not in texts
    assert [p.key for p in prompts] == list(range(len(prompts))) and {p.kind for p in prompts} == {"shk"}
    lead = INSTRUCTION.split("{passage}")[0]
    explain = sources.Sources(shakespeare_dir=str(shakespeare_dir), explain_frac=1.0)
    assert all(p.text.startswith(lead) for p in sources.build_prompts(explain, random.Random(0)))
    other = sources.Sources(shakespeare_dir=str(shakespeare_dir), explain_frac=0.0)
    assert not any(p.text.startswith(lead) for p in sources.build_prompts(other, random.Random(0)))


def test_doc_and_code_sources(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "library.txt").write_text("\n\n".join("Doc paragraph " + "y" * 80 for _ in range(12)))
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "mod.py").write_text("\n\n".join(f"def f{i}():\n    return {i}" + " " * 60 for i in range(12)))
    src = sources.Sources(docs_dir=str(tmp_path / "docs"), code_dir=str(tmp_path / "code"))
    kinds = {p.kind for p in sources.build_prompts(src, random.Random(0))}
    assert kinds == {"doc", "code"}


def test_heldout_split_is_deterministic_and_near_the_fraction():
    held = [k for k in range(10000) if sources.is_heldout(k, 0.1)]
    assert 900 < len(held) < 1100
    assert held == [k for k in range(10000) if sources.is_heldout(k, 0.1)]
    assert not any(sources.is_heldout(k, 0.0) for k in range(1000))


def test_sources_validate(tmp_path):
    with pytest.raises(ValueError, match="no prompt source"):
        sources.Sources().validate()
    with pytest.raises(ValueError, match="no such directory"):
        sources.Sources(shakespeare_dir=str(tmp_path / "missing")).validate()
    with pytest.raises(ValueError, match="explain-frac"):
        sources.Sources(shakespeare_dir=str(tmp_path), explain_frac=1.5).validate()

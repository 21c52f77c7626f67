import pytest

from specdec.study.prompts import INSTRUCTION, load_passages, study_prompts
from specdec.testing import byte_tokenizer


def test_passages_bundled_and_interleaved():
    passages = load_passages()
    assert len(passages) == 24
    assert {p.play for p in passages[:3]} == {"The Tempest", "Macbeth", "Romeo and Juliet"}
    assert not any("gutenberg" in p.text.lower() for p in passages)


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("length", [80, 129, 512])
def test_prompt_has_exactly_l_tokens(chat, length):
    tok = byte_tokenizer(chat=chat)
    prompts = study_prompts(tok, length, 3)
    assert [len(p.ids) for p in prompts] == [length] * 3
    assert len({p.id for p in prompts}) == 3
    text = tok.decode(prompts[0].ids)
    if chat:
        assert text.startswith("<user>" + INSTRUCTION.split("{")[0]) and text.endswith("\n<assistant>")


def test_prompt_too_short_for_template():
    with pytest.raises(ValueError, match="too short"):
        study_prompts(byte_tokenizer(), 10, 1)


def test_everyday_prompts_are_chat_turns_of_their_own_length():
    from specdec.study.prompts import chat_prompt_ids, everyday_prompts, load_requests, prompts_for
    from specdec.testing import byte_tokenizer

    tok = byte_tokenizer()
    requests = load_requests()
    assert len(requests) >= 20 and len({r["id"] for r in requests}) == len(requests)
    kinds = {r["kind"] for r in requests}
    assert {"how-to", "code", "arithmetic", "email", "summary", "translation", "explanation"} <= kinds
    assert len({r["kind"] for r in requests[:7]}) == 7  # the first prompts of a cell span the kinds
    assert not any("thou" in r["text"].lower().split() for r in requests)
    prompts = everyday_prompts(tok, 3)
    assert [p.id for p in prompts] == [r["id"] for r in requests[:3]]
    assert prompts[0].ids == chat_prompt_ids(tok, requests[0]["text"])
    assert prompts_for(tok, "everyday", 128, 2) == everyday_prompts(tok, 2)  # the length does not apply


def test_unknown_prompt_set_and_length_experiment_on_everyday_are_refused():
    import pytest

    from specdec.study.config import StudyConfig, cells

    with pytest.raises(ValueError, match="unknown prompt set"):
        StudyConfig(target="t", draft="d", prompt_set="news").validate()
    with pytest.raises(ValueError, match="natural length"):
        StudyConfig(target="t", draft="d", prompt_set="everyday").validate()
    cfg = StudyConfig(target="t", draft="d", prompt_set="everyday", experiments=("n",), methods=())
    cfg.validate()
    assert {c.prompt_len for c in cells(cfg)} == {0}

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

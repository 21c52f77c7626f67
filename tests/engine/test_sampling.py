import pytest
import torch
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from specdec.engine.sampling import SamplingParams, greedy_token, probs_from_logits


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.8), (0.5, 20, 0.9)])
def test_filters_match_transformers_warpers(temperature, top_k, top_p):
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    scores = TemperatureLogitsWarper(temperature)(None, logits.clone())
    if top_k:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    expected = scores.softmax(-1)
    got = probs_from_logits(logits, SamplingParams(temperature, top_k, top_p))
    torch.testing.assert_close(got, expected)


def test_bad_params_raise():
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(temperature=1, top_p=0)
    with pytest.raises(ValueError, match="top_k"):
        SamplingParams(temperature=1, top_k=-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_greedy_token_is_the_argmax_first_maximum_on_ties(dtype):
    torch.manual_seed(0)
    logits = torch.randint(0, 3, (33, 4096)).to(dtype)  # many ties per row
    assert torch.equal(greedy_token(logits), logits.argmax(-1))
    row = torch.zeros(100, dtype=dtype)
    row[[70, 30, 90]] = 1.0
    assert int(greedy_token(row)) == 30

import torch
from transformers import DynamicCache

from specdec.engine.cache import crop_to


def test_crop_then_extend_equals_fresh_prefill(pair):
    target, _ = pair
    g = torch.Generator().manual_seed(0)
    prefix = torch.randint(0, 256, (1, 20), generator=g)
    rejected = torch.randint(0, 256, (1, 5), generator=g)
    accepted = torch.randint(0, 256, (1, 3), generator=g)
    with torch.inference_mode():
        cache = DynamicCache(config=target.config)
        target(prefix, past_key_values=cache, use_cache=True)
        target(rejected, past_key_values=cache, use_cache=True)
        crop_to(cache, 20)
        assert cache.get_seq_length() == 20
        extended = target(accepted, past_key_values=cache, use_cache=True).logits
        fresh = target(torch.cat([prefix, accepted], 1)).logits[:, -3:]
    torch.testing.assert_close(extended, fresh, rtol=1e-4, atol=1e-4)


def test_crop_to_longer_length_is_a_no_op(pair):
    target, _ = pair
    with torch.inference_mode():
        cache = DynamicCache(config=target.config)
        target(torch.zeros(1, 4, dtype=torch.long), past_key_values=cache, use_cache=True)
    crop_to(cache, 10)
    assert cache.get_seq_length() == 4

import pytest
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


def test_static_rewind_then_extend_equals_fresh_prefill(pair):
    """The static rule: rewinding the write position leaves stale entries behind, masked, then overwritten."""
    from specdec.engine.cache import KVCache

    target, _ = pair
    g = torch.Generator().manual_seed(0)
    prefix = torch.randint(0, 256, (1, 20), generator=g)
    rejected = torch.randint(0, 256, (1, 5), generator=g)
    accepted = torch.randint(0, 256, (1, 3), generator=g)

    def forward(kv, ids):
        out = target(ids, past_key_values=kv.cache, use_cache=True, attention_mask=kv.attention_mask(ids.shape[1], "cpu"))
        kv.wrote(ids.shape[1])
        return out.logits

    with torch.inference_mode():
        kv = KVCache.static(target.config, 64)
        forward(kv, prefix)
        forward(kv, rejected)
        kv.rollback(20)
        assert kv.length == 20 and int(kv.cache.get_seq_length()) == 20
        extended = forward(kv, accepted[:, :1])  # one row: the mask alone hides the stale rows after it
        extended = torch.cat([extended, forward(kv, accepted[:, 1:])], 1)
        fresh = target(torch.cat([prefix, accepted], 1)).logits[:, -3:]
    torch.testing.assert_close(extended, fresh, rtol=1e-4, atol=1e-4)


def test_static_cache_refuses_overflow(pair):
    from specdec.engine.cache import KVCache

    kv = KVCache.static(pair[0].config, 8)
    kv.length = 6
    with pytest.raises(ValueError, match="cannot take 6 \\+ 3"):
        kv.attention_mask(3, "cpu")

"""The cache rules of this package, each written once.

After every step the target's KV cache holds exactly the committed sequence except its last
token: ``cache length == committed length - 1``; a drafter's cache holds a prefix of that and
is fed the missing tokens when it next drafts. The last committed token is fed next, so the
target scores ``[last, d1 .. dN]`` in one pass and a rejected tail is dropped, never recomputed.

Rolling back to ``length``:
- dynamic cache (eager): crop, through the public ``Cache.get_seq_length`` and ``Cache.crop``
  (negative argument, valid in transformers 4.57 and 5.x);
- static cache (compiled): move the next write position back to ``length``. The stale entries
  behind it stay in memory, masked (:meth:`KVCache.attention_mask`) until overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Cache, DynamicCache, StaticCache


def crop_to(cache: Cache, length: int) -> None:
    """Dynamic rule: drop cached positions beyond ``length`` (no-op if the cache is not longer)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


def set_write_position(cache: StaticCache, length: int) -> None:
    """Static rule: the next write goes to position ``length`` (each layer's ``cumulative_length``,
    the public counter transformers writes at and derives positions from)."""
    with torch.inference_mode():  # the counters may be inference tensors (made inside our loops)
        for layer in cache.layers:
            layer.cumulative_length.fill_(length)


@dataclass
class KVCache:
    """A model's KV cache and the number of positions in it that count (``length``).

    ``max_len`` is None for a dynamic cache, the preallocated length of a static one.
    """

    cache: Cache
    max_len: int | None = None
    length: int = 0

    @classmethod
    def dynamic(cls, config) -> KVCache:
        return cls(DynamicCache(config=config))

    @classmethod
    def static(cls, config, max_len: int) -> KVCache:
        return cls(StaticCache(config=config, max_cache_len=max_len), max_len)

    @property
    def is_static(self) -> bool:
        return self.max_len is not None

    def attention_mask(self, rows: int, device: torch.device) -> torch.Tensor | None:
        """For a static cache: (1, max_len), 1 at the positions a forward of ``rows`` may see
        (the kept ones and its own), 0 at stale and empty ones. None for a dynamic cache."""
        if self.max_len is None:
            return None
        if self.length + rows > self.max_len:
            raise ValueError(f"static KV cache of {self.max_len} positions cannot take {self.length} + {rows}")
        return (torch.arange(self.max_len, device=device) < self.length + rows).long().unsqueeze(0)

    def wrote(self, rows: int, written: int | None = None) -> None:
        """A forward appended ``rows`` real positions (``written`` >= rows when padded)."""
        self.length += rows
        if written is not None and written != rows:
            set_write_position(self.cache, self.length)

    def rollback(self, length: int) -> None:
        """Keep the first ``length`` positions: crop a dynamic cache, rewind a static one."""
        if length >= self.length:
            return
        if self.max_len is None:
            crop_to(self.cache, length)
        else:
            set_write_position(self.cache, length)
        self.length = length

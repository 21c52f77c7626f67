"""The one cache rule of this package, written once.

After every step the target's KV cache holds exactly the committed sequence except its last
token: ``cache length == committed length - 1``; a draft model's cache holds a prefix of that
(at most ``committed length - 1``) and is fed the missing tokens when it next drafts. The last
committed token is fed next, so the target scores ``[last, d1 .. dN]`` in one pass and a
rejected tail is dropped by cropping, never by recomputing the prefix. Only the public
``Cache.get_seq_length`` and ``Cache.crop`` (with a negative argument, valid in transformers 4.57
and 5.x) are used.
"""

from __future__ import annotations

from transformers import Cache


def crop_to(cache: Cache, length: int) -> None:
    """Drop cached positions beyond ``length`` (no-op if the cache is not longer)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)

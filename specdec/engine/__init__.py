"""The decoding engine: sampling, acceptance, the cache rule, drafters, the loop and its stats."""

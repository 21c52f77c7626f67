"""Models: loading (preset, .gguf, directory, hub id), presets, registry assets, reduced heads, packed twins."""

from .loading import LoadedModel, ModelLoadError, check_pair, load_head, load_model, load_pair
from .packed import PackUnavailable, packed_twin
from .presets import PAIRS, resolve_pair

__all__ = ["PAIRS", "LoadedModel", "ModelLoadError", "PackUnavailable", "check_pair", "load_head", "load_model", "load_pair",
           "packed_twin", "resolve_pair"]

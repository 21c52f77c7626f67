"""Models: loading (preset, .gguf, directory, hub id), presets, registry assets, reduced heads."""

from .loading import LoadedModel, ModelLoadError, check_pair, load_head, load_model, load_pair
from .presets import PAIRS, resolve_pair

__all__ = ["PAIRS", "LoadedModel", "ModelLoadError", "check_pair", "load_head", "load_model", "load_pair", "resolve_pair"]

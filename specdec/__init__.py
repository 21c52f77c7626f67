"""specdec: lossless speculative decoding over HuggingFace transformers, with an honest study.

Names are imported lazily so that torch-free parts (``specdec plot``) start without torch.
"""

from importlib import import_module

_EXPORTS = {
    "GenerationResult": "engine.stats",
    "GenerationStats": "engine.stats",
    "autoregressive_generate": "engine.loop",
    "speculative_generate": "engine.loop",
    "Draft": "engine.drafters",
    "Drafter": "engine.drafters",
    "ModelDrafter": "engine.drafters",
    "PromptLookupDrafter": "engine.drafters",
    "FeatureHeadDrafter": "engine.drafters",
    "LookupBranchDrafter": "engine.drafters",
    "load_feature_head": "models.feature_head",
    "SamplingParams": "engine.sampling",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

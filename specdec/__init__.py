"""specdec: lossless speculative decoding over HuggingFace transformers, with an honest study."""

from .decoding import (
    GenerationResult,
    GenerationStats,
    autoregressive_generate,
    speculative_generate,
)
from .drafters import Draft, Drafter, ModelDrafter, PromptLookupDrafter
from .sampling import SamplingParams

__all__ = [
    "Draft",
    "Drafter",
    "GenerationResult",
    "GenerationStats",
    "ModelDrafter",
    "PromptLookupDrafter",
    "SamplingParams",
    "autoregressive_generate",
    "speculative_generate",
]
__version__ = "0.1.0"

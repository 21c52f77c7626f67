"""The draft model: its shape, a fresh Llama with the target's vocabulary, PCA-initialised embeddings,
and the choice of ids for a sub-vocabulary head (:mod:`specdec.models.subvocab`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from specdec.models.subvocab import SubVocabLlamaForCausalLM

from .records import Record, collate


@dataclass
class DraftConfig:
    """Shape of the draft ``LlamaForCausalLM`` (vocabulary comes from the target).

    hidden 240 keeps the bf16 tied embedding (49152 x 240) in one file under 25 MB."""

    layers: int = 2
    hidden: int = 240
    intermediate: int = 960
    heads: int = 4
    kv_heads: int = 2

    def validate(self) -> None:
        """ValueError for a shape Llama cannot build."""
        for name, value in vars(self).items():
            if value < 1:
                raise ValueError(f"--draft-{name.replace('_', '-')} must be >= 1, got {value}")
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError(f"--draft-hidden ({self.hidden}) must divide by --draft-heads ({self.heads}), "
                             f"and that by --draft-kv-heads ({self.kv_heads})")


def make_draft(target_cfg: Any, dc: DraftConfig) -> LlamaForCausalLM:
    """A fresh draft sharing the target's vocabulary, special ids, RoPE and context length."""
    rope = getattr(target_cfg, "rope_parameters", None) or {"rope_type": "default", "rope_theta": 100000.0}
    cfg = LlamaConfig(vocab_size=target_cfg.vocab_size, hidden_size=dc.hidden, intermediate_size=dc.intermediate,
                      num_hidden_layers=dc.layers, num_attention_heads=dc.heads, num_key_value_heads=dc.kv_heads,
                      max_position_embeddings=target_cfg.max_position_embeddings, rope_parameters=dict(rope),
                      rms_norm_eps=target_cfg.rms_norm_eps, tie_word_embeddings=True,
                      bos_token_id=target_cfg.bos_token_id, eos_token_id=target_cfg.eos_token_id,
                      pad_token_id=getattr(target_cfg, "pad_token_id", None))
    return LlamaForCausalLM(cfg)


def pca_embeddings(emb: torch.Tensor, dim: int, std: float = 0.02) -> torch.Tensor:
    """Target embeddings projected onto their top ``dim`` principal directions (fitted on up to
    16384 rows, fixed seed), rescaled to ``std``."""
    x = emb.float() - emb.float().mean(0, keepdim=True)
    sample = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:16384]
    _, _, v = torch.linalg.svd(x[sample], full_matrices=False)
    proj = x @ v[:dim].T
    return proj * (std / proj.std())


def choose_vocab(recs: list[Record], size: int, vocab_size: int, always: tuple[int, ...] = ()) -> list[int]:
    """The ``size`` target ids the teacher ranks first most often (ties: most often in its top-k),
    plus ``always`` (special ids), ascending."""
    top1 = torch.bincount(torch.cat([r.tids[:, 0] for r in recs]).long(), minlength=vocab_size)
    anyk = torch.bincount(torch.cat([r.tids.flatten() for r in recs]).long(), minlength=vocab_size)
    score = top1.double() * (anyk.max().double() + 1) + anyk.double()  # top-1 count first, top-k count breaks ties
    extra = [t for t in score.argsort(descending=True).tolist() if t not in always][: max(size - len(always), 0)]
    return sorted(set(always) | set(extra))


def head_coverage(recs: list[Record], vocab: list[int], pad_id: int) -> float:
    """Fraction of the supervised answer positions whose target argmax the head can score."""
    allowed = set(vocab)
    hit = tot = 0
    for r in recs:
        b = collate([r], pad_id, gen_only=True)
        top1 = b["tids"][b["mask"]][:, 0].tolist()
        hit += sum(t in allowed for t in top1)
        tot += len(top1)
    return hit / max(tot, 1)


def head_columns(model: Any) -> torch.Tensor | None:
    """Target id -> logit column of a sub-vocabulary head (-1 where not scored); None for a full head."""
    if not isinstance(model, SubVocabLlamaForCausalLM):
        return None
    cols = torch.full((model.config.vocab_size,), -1, dtype=torch.long)
    cols[torch.tensor(model.config.draft_vocab)] = torch.arange(len(model.config.draft_vocab))
    return cols


def save_draft(model: Any, out_dir: str | Path) -> None:
    """Save a bfloat16 copy of the draft (shards of at most 20 MB), replacing any earlier weights;
    the model being trained keeps its float32 weights."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("model*.safetensors*"):
        old.unlink()
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(out, max_shard_size="20MB")

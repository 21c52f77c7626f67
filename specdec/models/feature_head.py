"""A draft head that reads the target's own hidden states (EAGLE, Li et al. 2024).

One Llama decoder layer (or ``num_layers``) over ``fc(concat(embed(x_{t+1}), g_t))``, where ``g_t``
is the target's feature at position t (EAGLE-1: its last hidden state; with several ``feature_layers``,
a learned fusion of low, middle and high layers as in EAGLE-3) and ``embed`` is the target's own
embedding. Its output predicts the target's next feature; the target's LM head (or a reduced head of
the head's own over ``draft_vocab``, EAGLE-3 / FR-Spec, with the context's other ids read out through
the target's rows once fitted: :mod:`.context_vocab`) reads it out. While drafting, the head's
output stands in for the feature the target has not computed yet.

A head belongs to one target: its config records the target's hidden size, layer count,
vocabulary and a signature of its embedding, and :func:`load_feature_head` refuses any other.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import DynamicCache, LlamaConfig, LlamaModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from ..files import atomic_path, atomic_write_text
from .context_vocab import ContextVocab

CONFIG_FILE, WEIGHTS_FILE = "head_config.json", "head.safetensors"
SIGNATURE_ROWS = 8


def embedding_signature(target: Any) -> list[float]:
    """L2 norms of the target's first embedding rows (in float64, so the dtype barely moves them)."""
    rows = target.get_input_embeddings().weight[:SIGNATURE_ROWS].detach().double()
    return [round(float(x), 4) for x in rows.norm(dim=-1)]


@dataclass
class FeatureHeadConfig:
    """The head's shape and the target it was made for (saved as ``head_config.json``)."""

    target_name: str
    target_hidden_size: int
    target_num_layers: int
    target_vocab_size: int
    feature_layers: list[int]  # indices into the target's hidden_states (0: embeddings, L: last, normed)
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    num_layers: int = 1  # decoder layers in the head's body (EAGLE: 1; configs saved before it read as 1)
    rms_norm_eps: float = 1e-5
    rope_parameters: dict = field(default_factory=lambda: {"rope_type": "default", "rope_theta": 10000.0})
    max_position_embeddings: int = 2048
    draft_vocab: list[int] | None = None  # target ids the head scores; None: all, through the target's LM head
    embedding_signature: list[float] = field(default_factory=list)
    context_scale: float | None = None  # with draft_vocab: context ids outside it scored (:mod:`.context_vocab`)
    context_bias: float = 0.0

    @classmethod
    def for_target(cls, target: Any, name: str, feature_layers: list[int] | None = None,
                   draft_vocab: list[int] | None = None, num_layers: int = 1) -> FeatureHeadConfig:
        """A head shaped like ``num_layers`` layers of ``target`` (EAGLE-1 reads the last hidden state by default)."""
        c = target.config
        layers = list(feature_layers) if feature_layers else [c.num_hidden_layers]
        rope = getattr(c, "rope_parameters", None) or {"rope_type": "default", "rope_theta": 10000.0}
        return cls(target_name=name, target_hidden_size=c.hidden_size, target_num_layers=c.num_hidden_layers,
                   target_vocab_size=c.vocab_size, feature_layers=layers,
                   num_attention_heads=c.num_attention_heads, num_key_value_heads=c.num_key_value_heads,
                   intermediate_size=c.intermediate_size, num_layers=num_layers, rms_norm_eps=c.rms_norm_eps,
                   rope_parameters=dict(rope),
                   max_position_embeddings=c.max_position_embeddings,
                   draft_vocab=sorted(set(draft_vocab)) if draft_vocab is not None else None,
                   embedding_signature=embedding_signature(target))

    def llama_config(self, vocab_size: int) -> LlamaConfig:
        """The Llama config of the head's body (``vocab_size``: what its logits span)."""
        return LlamaConfig(vocab_size=vocab_size, hidden_size=self.target_hidden_size,
                           intermediate_size=self.intermediate_size, num_hidden_layers=self.num_layers,
                           num_attention_heads=self.num_attention_heads, num_key_value_heads=self.num_key_value_heads,
                           rms_norm_eps=self.rms_norm_eps, rope_parameters=dict(self.rope_parameters),
                           max_position_embeddings=self.max_position_embeddings, tie_word_embeddings=False,
                           bos_token_id=None, eos_token_id=None, pad_token_id=None)

    def mismatch(self, target: Any) -> str | None:
        """Why this head cannot serve ``target`` (None when it can)."""
        c = target.config
        checks = (("hidden size", self.target_hidden_size, c.hidden_size),
                  ("layer count", self.target_num_layers, c.num_hidden_layers),
                  ("vocabulary", self.target_vocab_size, c.vocab_size))
        for what, mine, theirs in checks:
            if mine != theirs:
                return f"it was trained for a target with {what} {mine}, this target has {theirs}"
        if any(not 0 <= i <= c.num_hidden_layers for i in self.feature_layers):
            return f"it reads hidden states {self.feature_layers}, this target has 0..{c.num_hidden_layers}"
        mine, theirs = self.embedding_signature, embedding_signature(target)
        if mine and any(abs(a - b) > 1e-2 * max(abs(a), 1e-3) for a, b in zip(mine, theirs)):
            return f"it was trained for {self.target_name!r}, whose embeddings differ from this target's"
        return None


class FeatureHead(nn.Module):
    """The head itself; the target's embedding (and, without ``draft_vocab``, its LM head) is borrowed.

    It also answers a causal LM's call (``head(input_ids, past_key_values=..., logits_to_keep=1)``,
    with zero features), so the cost model can time it like any draft.
    """

    def __init__(self, cfg: FeatureHeadConfig, target: Any, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.head_config = cfg
        hidden, k = cfg.target_hidden_size, len(cfg.feature_layers)
        self.config = cfg.llama_config(cfg.target_vocab_size)  # what caches and the cost model read
        self.config._name_or_path = f"feature-head:{cfg.target_name}:{'-'.join(map(str, cfg.feature_layers))}"
        self.fuse = nn.Linear(k * hidden, hidden, bias=False) if k > 1 else None
        self.fc = nn.Linear(2 * hidden, hidden, bias=False)
        self.body = LlamaModel(cfg.llama_config(vocab_size=1))  # fed inputs_embeds only
        self.target_embed = [target.get_input_embeddings()]  # a list: borrowed, not a submodule (not saved)
        self.target_lm_head = [target.get_output_embeddings()]
        if cfg.draft_vocab is not None:
            self.lm_head = nn.Linear(hidden, len(cfg.draft_vocab), bias=False)
            with torch.no_grad():
                self.lm_head.weight.copy_(target.get_output_embeddings().weight[torch.tensor(cfg.draft_vocab)])
            self.register_buffer("vocab_ids", torch.tensor(cfg.draft_vocab, dtype=torch.long), persistent=False)
        else:
            self.lm_head = None
        self.to(dtype=dtype or target.dtype, device=target.device)  # training keeps fp32 beside a bf16 target

    @property
    def name_or_path(self) -> str:
        return self.config._name_or_path

    @property
    def device(self) -> torch.device:
        return self.fc.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.fc.weight.dtype

    def features(self, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """g: the target's hidden states at ``feature_layers``, fused to (B, T, H)."""
        picked = [hidden_states[i] for i in self.head_config.feature_layers]
        return picked[0] if self.fuse is None else self.fuse(torch.cat(picked, dim=-1))

    def step(self, features: torch.Tensor, next_tokens: torch.Tensor, past_key_values: Any = None,
             position_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted next features (B, T, H) from features g_t (B, T, H) and tokens x_{t+1} (B, T);
        positions follow the cache unless ``position_ids`` are given (training's unrolled steps)."""
        embeds = self.target_embed[0](next_tokens).to(features.dtype)
        x = self.fc(torch.cat([embeds, features], dim=-1))
        if x.shape[1] == 1 and isinstance(past_key_values, DynamicCache) and position_ids is None and attention_mask is None:
            return self._one_row(x, past_key_values)
        return self.body(inputs_embeds=x, past_key_values=past_key_values, use_cache=past_key_values is not None,
                         position_ids=position_ids, attention_mask=attention_mask).last_hidden_state

    def _one_row(self, x: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        """The body's forward for one new row over a dynamic cache, its layer called directly: one row
        sees every cached position, so no mask is built (the body's own call costs ~0.3 ms more a step)."""
        position_ids = torch.full((1, 1), cache.get_seq_length(), dtype=torch.long, device=x.device)
        rotary = self.body.rotary_emb(x, position_ids=position_ids)
        for layer in self.body.layers:
            x = layer(x, position_ids=position_ids, past_key_values=cache, use_cache=True, position_embeddings=rotary)
        return self.body.norm(x)

    def context_vocab(self, scale: float | None = None, bias: float | None = None) -> ContextVocab | None:
        """Empty context columns for one generation, scored with the fitted scale and bias unless given
        (None: the head scores every id, or neither a fit nor a scale is there)."""
        cfg = self.head_config
        scale = cfg.context_scale if scale is None else scale
        if self.lm_head is None or scale is None:
            return None
        return ContextVocab(self.target_lm_head[0].weight.detach(), self.vocab_ids, scale,
                            cfg.context_bias if bias is None else bias)

    def columns(self, context: ContextVocab | None = None) -> torch.Tensor | None:
        """The target id of each column :meth:`head_logits` returns (None: all ids, in order)."""
        if self.lm_head is None:
            return None
        return self.vocab_ids if context is None else context.columns

    def head_logits(self, hidden: torch.Tensor, context: ContextVocab | None = None) -> torch.Tensor:
        """Scores over the head's own columns (``draft_vocab``, or the full vocabulary), then ``context``'s."""
        if self.lm_head is not None:
            small = self.lm_head(hidden)
            return small if context is None or not len(context) else torch.cat([small, context.scores(hidden)], -1)
        weight = self.target_lm_head[0].weight
        return torch.nn.functional.linear(hidden, weight if weight.dtype == hidden.dtype else weight.to(hidden.dtype))

    def logits(self, hidden: torch.Tensor, context: ContextVocab | None = None) -> torch.Tensor:
        """Full-vocabulary logits: the head's scores, -inf at ids outside its columns (q = 0)."""
        small, cols = self.head_logits(hidden, context), self.columns(context)
        if cols is None:
            return small
        full = small.new_full((*small.shape[:-1], self.head_config.target_vocab_size), float("-inf"))
        return full.index_copy_(-1, cols, small)

    def top_tokens(self, hidden: torch.Tensor, k: int, vocab_size: int,
                   context: ContextVocab | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The k likeliest next ids below ``vocab_size`` and their log q, each (..., k), from the head's
        own columns and ``context``'s (no full-vocabulary row: a token tree ranks many rows at once)."""
        scores, cols = self.head_logits(hidden, context).float(), self.columns(context)
        if cols is None:
            scores[..., vocab_size:] = float("-inf")
        elif vocab_size < self.head_config.target_vocab_size:
            scores = scores.masked_fill(cols >= vocab_size, float("-inf"))
        logq, col = scores.log_softmax(-1).topk(k, dim=-1)
        return logq, col if cols is None else cols[col]

    def restricted(self, keep: list[int], target: Any) -> FeatureHead:
        """A copy scoring only ``keep``, ids it scores now (a smaller EAGLE-3 vocabulary: a cheaper
        readout, c falls); each kept id's score is unchanged, so no retraining is needed."""
        now = self.head_config.draft_vocab
        if now is not None and not set(keep) <= set(now):
            raise ValueError(f"cannot keep ids the head does not score: {sorted(set(keep) - set(now))[:5]}")
        cut = FeatureHead(replace(self.head_config, draft_vocab=sorted(set(keep))), target, dtype=self.dtype)
        missing, unexpected = cut.load_state_dict(
            {k: v for k, v in self.state_dict().items() if not k.startswith("lm_head.")}, strict=False)
        assert missing == ["lm_head.weight"] and not unexpected, (missing, unexpected)
        if self.lm_head is not None:  # else the constructor copied the target's LM head rows
            with torch.no_grad():
                cut.lm_head.weight.copy_(self.lm_head.weight[torch.searchsorted(self.vocab_ids, cut.vocab_ids)])
        return cut.train(self.training)

    def grown(self, num_layers: int, target: Any) -> FeatureHead:
        """A copy with ``num_layers`` decoder layers, the new ones after the old and their output
        projections zero, so it computes what this head does until training moves them (more capacity
        without starting over)."""
        if num_layers < self.head_config.num_layers:
            raise ValueError(f"a head cannot shrink: it has {self.head_config.num_layers} layers, asked for {num_layers}")
        big = FeatureHead(replace(self.head_config, num_layers=num_layers), target, dtype=self.dtype)
        missing, unexpected = big.load_state_dict(self.state_dict(), strict=False)
        new = range(self.head_config.num_layers, num_layers)
        assert not unexpected and all(int(k.split(".")[2]) in new for k in missing), (missing, unexpected)
        with torch.no_grad():
            for i in new:
                big.body.layers[i].self_attn.o_proj.weight.zero_()
                big.body.layers[i].mlp.down_proj.weight.zero_()
        return big.train(self.training)

    def forward(self, input_ids: torch.Tensor, past_key_values: Any = None, use_cache: bool = True,
                logits_to_keep: int = 0, attention_mask: torch.Tensor | None = None, **_: Any) -> CausalLMOutputWithPast:
        """A causal LM's call with zero features: the same work as a drafting step, for timing."""
        feats = torch.zeros(*input_ids.shape, self.head_config.target_hidden_size,
                            dtype=self.fc.weight.dtype, device=input_ids.device)
        hidden = self.step(feats, input_ids, past_key_values if use_cache else None, attention_mask=attention_mask)
        return CausalLMOutputWithPast(logits=self.logits(hidden[:, -logits_to_keep:]), past_key_values=past_key_values)

    def save(self, directory: str | Path) -> None:
        """``head_config.json`` and ``head.safetensors`` (the head's own weights only)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            save_file(state, str(tmp))
        atomic_write_text(directory / CONFIG_FILE, json.dumps(asdict(self.head_config), indent=1) + "\n")


def is_head_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a saved feature head."""
    return (Path(path) / CONFIG_FILE).is_file()


def load_feature_head(path: str | Path, target: Any) -> FeatureHead:
    """The head saved in ``path``, attached to ``target``; ValueError (one line) if it was made for another."""
    path = Path(path)
    if not is_head_dir(path):
        raise ValueError(f"{path} is not a feature-head directory (no {CONFIG_FILE})")
    cfg = FeatureHeadConfig(**json.loads((path / CONFIG_FILE).read_text()))
    why = cfg.mismatch(target)
    if why is not None:
        raise ValueError(f"refusing feature head {path}: {why}")
    head = FeatureHead(cfg, target)
    state = load_file(str(path / WEIGHTS_FILE))
    head.load_state_dict({k: v.to(head.fc.weight.dtype) for k, v in state.items()})
    return head.eval()

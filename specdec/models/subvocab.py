"""A Llama draft whose output head scores only a subset of the target's vocabulary.

The head is most of a small draft's cost (49,152 x 240 of SmolLM2's vocabulary against ~1.8M
weights in two layers), yet a target emits a few thousand distinct tokens. Scoring only those keeps
speculation lossless: every other id gets logit -inf, i.e. q = 0, so the draft never proposes it and
the target's own token replaces it when the target wants it. The logits stay full-width, so the
model works anywhere a ``LlamaForCausalLM`` does (our engine, HF assisted generation).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.llama.modeling_llama import LlamaModel, LlamaPreTrainedModel

ARCHITECTURE = "SubVocabLlamaForCausalLM"


class SubVocabLlamaForCausalLM(LlamaForCausalLM):
    """``LlamaForCausalLM`` with a head over ``config.draft_vocab`` (target token ids, ascending)."""

    _tied_weights_keys: dict = {}

    def __init__(self, config: LlamaConfig) -> None:
        LlamaPreTrainedModel.__init__(self, config)
        self.model = LlamaModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, len(config.draft_vocab), bias=False)
        self._vocab_ids: torch.Tensor | None = None
        self.post_init()

    def vocab_ids(self, device: torch.device) -> torch.Tensor:
        """The target ids the head scores, as a tensor on ``device`` (built once)."""
        if self._vocab_ids is None or self._vocab_ids.device != device:
            self._vocab_ids = torch.tensor(self.config.draft_vocab, dtype=torch.long, device=device)
        return self._vocab_ids

    def sub_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Head scores over ``draft_vocab`` only (what training uses: no full-width tensor)."""
        return self.lm_head(hidden)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Full-width logits: the head's scores at ``draft_vocab``, -inf elsewhere."""
        if labels is not None:
            raise ValueError("SubVocabLlamaForCausalLM computes no loss; train on sub_logits()")
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=past_key_values, inputs_embeds=inputs_embeds,
                         use_cache=use_cache, **kwargs)
        hidden = out.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        small = self.sub_logits(hidden[:, keep, :])
        logits = small.new_full((*small.shape[:-1], self.config.vocab_size), float("-inf"))
        logits.index_copy_(-1, self.vocab_ids(small.device), small)
        return CausalLMOutputWithPast(logits=logits, past_key_values=out.past_key_values,
                                      hidden_states=out.hidden_states, attentions=out.attentions)


def make_subvocab_config(base: LlamaConfig, vocab: Sequence[int]) -> LlamaConfig:
    """A copy of ``base`` for a sub-vocabulary head over the sorted, unique ``vocab``."""
    ids = sorted(set(int(t) for t in vocab))
    if not ids or ids[0] < 0 or ids[-1] >= base.vocab_size:
        raise ValueError(f"draft_vocab must be non-empty ids in [0, {base.vocab_size})")
    cfg = LlamaConfig.from_dict(base.to_dict())
    cfg.draft_vocab = ids
    cfg.tie_word_embeddings = False
    cfg.architectures = [ARCHITECTURE]
    return cfg


def is_subvocab_dir(path: str | Path) -> bool:
    """Whether a saved model directory holds a :class:`SubVocabLlamaForCausalLM`."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    return ARCHITECTURE in (json.loads(cfg.read_text()).get("architectures") or [])


def load_causal_lm(source: str | Path, dtype: torch.dtype, **kwargs: Any) -> Any:
    """``AutoModelForCausalLM.from_pretrained``, except that a sub-vocabulary draft gets its own class."""
    from transformers import AutoModelForCausalLM

    cls = SubVocabLlamaForCausalLM if is_subvocab_dir(source) else AutoModelForCausalLM
    return cls.from_pretrained(str(source), dtype=dtype, **kwargs)


def restrict_head(model: LlamaForCausalLM, vocab: Sequence[int]) -> SubVocabLlamaForCausalLM:
    """A sub-vocabulary copy of a full Llama: same body and embeddings, head rows at ``vocab``."""
    cfg = make_subvocab_config(model.config, vocab)
    sub = SubVocabLlamaForCausalLM(cfg).to(model.dtype)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("lm_head.")}
    missing, unexpected = sub.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"lm_head.weight"}:  # only the head is new; anything else is a bug
        raise ValueError(f"cannot restrict head: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        ids = torch.tensor(cfg.draft_vocab, device=model.lm_head.weight.device)
        sub.lm_head.weight.copy_(model.get_output_embeddings().weight[ids])
    return sub.to(model.device).eval()

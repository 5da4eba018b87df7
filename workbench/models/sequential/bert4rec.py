"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional transformer over each user's items,
trained to fill in masked items (the Cloze task), on ``transformers.BertModel``.

Tokens: 0 is padding, ``1..n_items`` are the items (item index + 1), ``n_items + 1`` is
``[MASK]``. Sequences are padded on the left and positions are counted back from the
newest token, which always sits at position ``max_length - 1`` -- so a batch padded to
its own longest sequence scores exactly as one padded to ``max_length``. Training
replaces each item with ``[MASK]`` with probability ``mask_probability`` (at least one
per sequence) and minimises the full softmax cross-entropy over the catalogue at the
masked positions. The output layer is tied to the item embeddings: ``logits =
LN(GELU(W h)) @ E_items^T + b``. To recommend, ``[MASK]`` is appended to the most
recent ``max_length - 1`` items and its logits are the next-item scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.data.sequences import pad
from workbench.models.sequential.base import SequentialConfig, SequentialModel, bert_encoder


@dataclass(frozen=True, kw_only=True)
class BERT4RecConfig(SequentialConfig):
    """:class:`~workbench.models.sequential.base.SequentialConfig` plus ``mask_probability``: the
    chance that a training item is replaced by ``[MASK]``."""

    mask_probability: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.mask_probability < 1.0:
            raise ValueError(f"BERT4RecConfig: mask_probability must be in (0, 1), got {self.mask_probability!r}")
        if self.max_length < 2:
            raise ValueError("BERT4RecConfig: max_length must be >= 2 (history plus [MASK])")


class BERT4RecNetwork(nn.Module):
    """BertModel + a tied masked-item head; see the module docstring."""

    def __init__(self, n_items: int, config: BERT4RecConfig) -> None:
        super().__init__()
        c = config.embedding_size
        self.n_items, self.mask_token, self.max_length = n_items, n_items + 1, config.max_length
        self.bert = bert_encoder(config, n_items + 2)
        self.head = nn.Sequential(nn.Linear(c, c), nn.GELU(), nn.LayerNorm(c, eps=1e-12))
        self.bias = nn.Parameter(torch.zeros(n_items))

    def _bert(self, tokens: torch.Tensor, *, output_attentions: bool = False):
        t = tokens.shape[1]
        positions = torch.arange(self.max_length - t, self.max_length, device=tokens.device)[None]  # (1, T)
        mask = (tokens != 0).long()  # (B, T)
        return self.bert(
            input_ids=tokens, attention_mask=mask, position_ids=positions, output_attentions=output_attentions
        )

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) left-padded tokens -> (B, T, C) hidden states."""
        return self._bert(tokens).last_hidden_state

    def attentions(self, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, T) tokens -> per layer (B, heads, T, T) attention weights (eager attention)."""
        return self._bert(tokens, output_attentions=True).attentions

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., n_items), through the item embeddings (tied)."""
        items = self.bert.embeddings.word_embeddings.weight[1 : self.n_items + 1]  # (N, C)
        return self.head(hidden) @ items.T + self.bias


class BERT4Rec(SequentialModel):
    """Bidirectional masked-item transformer; ``BERT4Rec(mask_probability=0.4)`` or ``BERT4Rec(config=...)``."""

    config_class = BERT4RecConfig

    def _build(self, n_items: int) -> BERT4RecNetwork:
        return BERT4RecNetwork(n_items, self.config)

    def training_windows(self) -> list[np.ndarray]:
        """Training histories cut into windows of ``max_length`` items."""
        return self._windows(self.config.max_length)

    def _batches(self, rng: np.random.Generator):
        """Shuffled batches of Cloze-masked training windows."""
        sequences = self.training_windows()
        order = rng.permutation(len(sequences))
        for start in range(0, len(order), self.config.batch_size):
            tokens = pad(
                [sequences[i] + 1 for i in order[start : start + self.config.batch_size]], side="left"
            )  # (B, T)
            real = tokens != 0
            masked = real & (rng.random(tokens.shape) < self.config.mask_probability)
            masked[~masked.any(1), -1] = True  # every sequence predicts at least its newest item
            inputs = np.where(masked, self.network.mask_token, tokens)
            yield {
                "tokens": torch.as_tensor(inputs, device=self.device_),
                "masked": torch.as_tensor(masked, device=self.device_),
                "labels": torch.as_tensor(tokens[masked] - 1, device=self.device_),
            }

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.network.hidden(batch["tokens"])  # (B, T, C)
        logits = self.network.logits(hidden[batch["masked"]])  # (M, n_items)
        return F.cross_entropy(logits.float(), batch["labels"])

    @property
    def context_length(self) -> int:
        """How many of the most recent history items one prediction reads ([MASK] takes a slot)."""
        return self.config.max_length - 1

    def tokens(self, sequences: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """Item-index histories -> the padded batch :meth:`score_tokens` takes:
        ``tokens`` (B, T), the last ``max_length - 1`` items then ``[MASK]``."""
        rows = [np.r_[s[-self.context_length :] + 1, self.network.mask_token] for s in sequences]
        return {"tokens": torch.as_tensor(pad(rows, side="left"), device=self.device_)}

    def score_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) tokens ending in ``[MASK]`` -> (B, n_items) next-item logits."""
        return self.network.logits(self.network.hidden(tokens)[:, -1])

"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over each user's items,
trained with the full softmax cross-entropy over the catalogue at every position
(Klenitskiy & Vasilev, RecSys 2023, show it beats the original sampled BCE).

Built on ``transformers.BertModel`` in decoder mode (a causal mask, no cross-attention,
no cache). Tokens: 0 is padding, ``1..n_items`` are the items (item index + 1).
Sequences are padded on the right: under a causal mask no real position ever attends to
padding, so no padding mask is needed, and each position's output depends only on the
items up to it -- training on a whole sequence trains every prefix exactly as it is
scored later. The output layer is the item embedding matrix (tied): ``logits = h @
E_items^T``. To recommend, the hidden state of the newest of the last ``max_length``
items gives the next-item scores.
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
class SASRecConfig(SequentialConfig):
    """:class:`~workbench.models.sequential.base.SequentialConfig`; SASRec adds nothing."""


class SASRecNetwork(nn.Module):
    """Causal BertModel with tied item embeddings; see the module docstring."""

    def __init__(self, n_items: int, config: SASRecConfig) -> None:
        super().__init__()
        self.n_items = n_items
        self.bert = bert_encoder(config, n_items + 1, causal=True)

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) right-padded tokens -> (B, T, C); position t sees tokens 0..t only."""
        return self.bert(input_ids=tokens, use_cache=False).last_hidden_state

    def attentions(self, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, T) tokens -> per layer (B, heads, T, T) attention weights (eager attention)."""
        return self.bert(input_ids=tokens, use_cache=False, output_attentions=True).attentions

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., n_items), through the item embeddings (tied)."""
        return hidden @ self.bert.embeddings.word_embeddings.weight[1:].T


class SASRec(SequentialModel):
    """Causal next-item transformer; ``SASRec(epochs=20).fit(df)`` or ``SASRec(config=SASRecConfig(...))``."""

    config_class = SASRecConfig

    def _build(self, n_items: int) -> SASRecNetwork:
        return SASRecNetwork(n_items, self.config)

    def training_windows(self) -> list[np.ndarray]:
        """Training histories cut into windows of ``max_length + 1`` items (one overlapping,
        so every next-item transition is trained once)."""
        return self._windows(self.config.max_length + 1, overlap=1)

    def _batches(self, rng: np.random.Generator):
        """Shuffled batches of windows: inputs are all but the newest item, labels the
        same window shifted by one (-1 on padding)."""
        sequences = self.training_windows()
        order = rng.permutation(len(sequences))
        for start in range(0, len(order), self.config.batch_size):
            chunk = [sequences[i] for i in order[start : start + self.config.batch_size]]
            inputs = pad([s[:-1] + 1 for s in chunk], side="right")  # (B, T)
            labels = pad([s[1:] + 1 for s in chunk], side="right") - 1  # (B, T), -1 on padding
            yield {
                "tokens": torch.as_tensor(inputs, device=self.device_),
                "labels": torch.as_tensor(labels, device=self.device_),
            }

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.network.hidden(batch["tokens"])  # (B, T, C)
        real = batch["labels"] >= 0  # (B, T)
        logits = self.network.logits(hidden[real])  # (M, n_items)
        return F.cross_entropy(logits.float(), batch["labels"][real])

    @property
    def context_length(self) -> int:
        """How many of the most recent history items one prediction reads."""
        return self.config.max_length

    def tokens(self, sequences: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """Item-index histories -> the padded batch :meth:`score_tokens` takes:
        ``tokens`` (B, T) of the last ``max_length`` items and their ``lengths`` (B,)."""
        rows = [s[-self.context_length :] + 1 for s in sequences]
        return {
            "tokens": torch.as_tensor(pad(rows, side="right"), device=self.device_),
            "lengths": torch.as_tensor([len(r) for r in rows], device=self.device_),
        }

    def score_tokens(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T) right-padded tokens and (B,) lengths -> (B, n_items) next-item logits."""
        hidden = self.network.hidden(tokens)  # (B, T, C)
        newest = hidden[torch.arange(len(tokens), device=tokens.device), lengths - 1]  # (B, C)
        return self.network.logits(newest)

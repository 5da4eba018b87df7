"""What SASRec and BERT4Rec share: their options, their BERT encoder, and fitting,
scoring, recommending and checkpointing a next-item model over item-index sequences.

A sequential model reads each user's items in time order (:func:`workbench.data.sequences.histories`)
and scores the next item; it trains through :func:`workbench.models.training.train` with
early stopping on validation nDCG@k (full ranking, :mod:`workbench.metrics.ranks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from workbench.data.matrix import IndexMap, rows_matrix
from workbench.data.schema import ITEM, TIMESTAMP, USER
from workbench.data.sequences import histories, windows
from workbench.devices import resolve_device
from workbench.metrics.ranks import full_ranks, rank_metrics
from workbench.models.base import Recommender, to_frame, topk_blocked
from workbench.models.training import LoopOptions, load_checkpoint, save_checkpoint, train

if TYPE_CHECKING:
    from transformers import BertModel


@dataclass(frozen=True, kw_only=True)
class SequentialConfig(LoopOptions):
    """Hyper-parameters common to the sequential models (plus :class:`LoopOptions`).

    ``max_length``: the most recent items a model reads (longer histories are truncated,
    keeping the most recent); ``k``: the cut-off of the early-stopping metric nDCG@k and
    the default list length; ``device``: "auto", "cpu", "cuda" or "mps"; ``schedule``:
    the learning rate after warm-up, "constant" or "linear" (decaying to 0 at the end of
    the last of ``epochs``, as the two-tower does; it sets ``decay_steps``).
    """

    embedding_size: int = 64
    layers: int = 2
    heads: int = 2
    max_length: int = 200
    dropout: float = 0.2
    batch_size: int = 64
    k: int = 10
    device: str = "auto"
    schedule: str = "constant"

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if self.schedule not in ("constant", "linear"):
            raise ValueError(f"{name}: schedule must be 'constant' or 'linear', got {self.schedule!r}")
        if self.schedule == "linear" and self.decay_steps is not None:
            raise ValueError(f"{name}: schedule 'linear' sets decay_steps itself; got decay_steps={self.decay_steps!r}")
        for field in (
            "embedding_size",
            "layers",
            "heads",
            "max_length",
            "batch_size",
            "k",
            "epochs",
            "eval_every",
        ):
            if not (isinstance(getattr(self, field), int) and getattr(self, field) >= 1):
                raise ValueError(f"{name}: {field} must be a positive integer, got {getattr(self, field)!r}")
        if not (isinstance(self.patience, int) and self.patience >= 0):
            raise ValueError(f"{name}: patience must be an integer >= 0 (0: never stop early), got {self.patience!r}")
        if self.embedding_size % self.heads:
            raise ValueError(f"{name}: embedding_size {self.embedding_size} is not divisible by heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {self.dropout!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"{name}: learning_rate must be > 0, got {self.learning_rate!r}")


def bert_encoder(config: SequentialConfig, vocab_size: int, *, causal: bool = False) -> BertModel:
    """The ``transformers.BertModel`` both sequential models build on: ``config``'s sizes,
    token 0 as padding, no pooler; ``causal`` makes it a decoder (SASRec), no KV cache."""
    from transformers import BertConfig, BertModel  # deferred: importing transformers takes seconds

    c = config.embedding_size
    bert_config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=c,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        intermediate_size=4 * c,
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
        max_position_embeddings=config.max_length,
        type_vocab_size=1,
        pad_token_id=0,
        is_decoder=causal,
        use_cache=False,
    )
    return BertModel(bert_config, add_pooling_layer=False)


class SequentialModel(Recommender):
    """Fit, score, recommend and checkpoint a next-item model over item-index sequences.

    Subclassed by BERT4Rec and SASRec, which supply ``config_class``; ``_build(n_items)``,
    a network with a ``bert`` (``transformers.BertModel``) and ``attentions(tokens)``; ``training_windows()``,
    ``_batches(rng)`` and ``_loss(batch)`` for training; and ``context_length``,
    ``tokens(sequences)`` (a dict of padded tensors) and ``score_tokens(**tokens)`` ->
    (B, n_items) for inference. The last two are the tensor-level path to benchmark:
    ``score_tokens`` is one forward pass, no Python loop over rows (call it under
    ``torch.inference_mode()``, and ``autocast`` for other precisions).

    Histories are lists of item ids, oldest first. Bad input, the same everywhere:

    - longer than ``context_length``: only the most recent items are read (all of them
      are still excluded from the recommendations);
    - empty: scored by training popularity (``log(1 + count)``), nothing excluded;
    - unknown item ids: ``unknown="error"`` raises :class:`~workbench.data.matrix.UnknownIdError`,
      ``unknown="skip"`` drops them from the history;
    - ``k`` larger than the catalogue: ``ValueError``.
    """

    config_class = SequentialConfig
    #: rows per forward pass when scoring many histories (bounds memory, not a result)
    inference_batch_size: int = 256

    # -- fitting ---------------------------------------------------------------------

    def fit(
        self,
        interactions: pd.DataFrame,
        *,
        validation: pd.DataFrame | None = None,
        progress: bool = False,
        on_epoch: Callable[[dict[str, float]], None] | None = None,
    ):
        """Train on each user's time-ordered items; early-stop on ``validation``.

        ``validation`` holds one (``user_id``, ``item_id``) row per user: the item that
        followed that user's training items; the loop keeps the epoch with the best
        full-ranking nDCG@``k`` on it. Without it, all ``epochs`` run. ``on_epoch(row)``
        is called as each epoch ends (see :func:`~workbench.models.training.train`).
        Returns ``self``.
        """
        self._index(interactions, columns=(USER, ITEM, TIMESTAMP))
        by_user = histories(interactions)
        self.sequences_ = [self.items.index(by_user[u]) for u in self.users.ids_]  # per user index, oldest first
        counts = np.bincount(np.concatenate(self.sequences_), minlength=len(self.items))
        self.device_ = resolve_device(self.config.device)
        self.popularity_ = torch.log1p(torch.as_tensor(counts, dtype=torch.float32))  # (n_items,)
        torch.manual_seed(self.config.seed)
        self.network = self._build(len(self.items)).to(self.device_)
        self.result_ = train(
            self.network,
            batches=self._batches,
            loss=self._loss,
            validate=None if validation is None else self._validator(validation),
            options=self._loop_options(),
            batch_size=self.config.batch_size,
            progress=progress,
            description=type(self).__name__,
            on_epoch=on_epoch,
        )
        return self

    def _loop_options(self) -> LoopOptions:
        """The config's :class:`LoopOptions`; a "linear" schedule decays to 0 at the last epoch's last step."""
        options = {f: getattr(self.config, f) for f in LoopOptions.__dataclass_fields__}
        if self.config.schedule == "linear":
            steps_per_epoch = math.ceil(len(self.training_windows()) / self.config.batch_size)
            options["decay_steps"] = max(1, steps_per_epoch * self.config.epochs)
        return LoopOptions(**options)

    def _fit(self, matrix, *, progress: bool = False) -> None:
        raise TypeError(f"{type(self).__name__} needs time order: call fit(interactions), not _fit(matrix)")

    def _validator(self, validation: pd.DataFrame) -> Callable[[], float]:
        validation = validation[self.users.contains(validation[USER].to_numpy())]
        rows = self.users.index(validation[USER].to_numpy())
        items = validation[ITEM].to_numpy()
        known = self.items.contains(items)
        targets = torch.full((len(rows),), -1, dtype=torch.long)
        targets[torch.as_tensor(known)] = torch.as_tensor(self.items.index(items[known]))
        seen = self.seen[rows].tocoo()
        exclude = torch.as_tensor(np.stack([seen.row, seen.col]), dtype=torch.long)

        def validate() -> float:
            scores = self.score(rows).float().cpu()  # (n_valid, n_items)
            return rank_metrics(full_ranks(scores, targets, exclude), self.config.k)[f"ndcg@{self.config.k}"]

        return validate

    def _windows(self, length: int, *, overlap: int = 0) -> list[np.ndarray]:
        """Every training user's item indices cut into windows of ``length`` (newest
        first, see :func:`workbench.data.sequences.windows`), so long histories are used whole."""
        return [w for s in self.sequences_ for w in windows(s, length, overlap=overlap)]

    # -- inference -------------------------------------------------------------------

    def encode(self, histories, *, unknown: str = "error") -> list[np.ndarray]:
        """Item-id histories -> item-index arrays (see the class docstring for ``unknown``)."""
        if unknown not in ("error", "skip"):
            raise ValueError(f"unknown must be 'error' or 'skip', got {unknown!r}")
        out = []
        for history in histories:
            ids = np.asarray(history, dtype=np.int64).ravel()
            if unknown == "skip":
                ids = ids[self.items.contains(ids)]
            out.append(self.items.index(ids))
        return out

    def score_sequences(self, sequences: list[np.ndarray]) -> torch.Tensor:
        """Item-index histories -> (B, n_items) scores on the model's device."""
        scores = self.popularity_.to(self.device_).expand(len(sequences), -1).clone()  # (B, n_items)
        filled = [i for i, s in enumerate(sequences) if len(s)]
        if self.network.training:  # eval() walks every module: 0.1 ms, a tenth of one user's call
            self.network.eval()
        with torch.inference_mode():
            for start in range(0, len(filled), self.inference_batch_size):
                rows = filled[start : start + self.inference_batch_size]
                batch = self.tokens([sequences[i] for i in rows])
                scores[torch.as_tensor(rows, device=self.device_)] = self.score_tokens(**batch).float()
        return scores

    def score_histories(self, histories, *, unknown: str = "error") -> torch.Tensor:
        """Histories (lists of item ids, oldest first) -> (B, n_items) next-item scores."""
        self._check_fitted()
        return self.score_sequences(self.encode(histories, unknown=unknown))

    def score(self, user_index: np.ndarray) -> torch.Tensor:
        """(B,) user indices -> (B, n_items): scores given each user's training history."""
        self._check_fitted()
        return self.score_sequences([self.sequences_[u] for u in np.asarray(user_index, dtype=np.int64)])

    def recommend_histories(
        self, histories, k: int | None = None, *, ids=None, exclude_seen: bool = True, unknown: str = "error"
    ) -> pd.DataFrame:
        """Top-``k`` next items for each history -> (``user_id``, ``item_id``, ``score``, ``rank``).

        ``ids`` label the rows (default: the position of each history in the list);
        ``exclude_seen`` drops every item of the history, not only the part read.
        """
        self._check_fitted()
        sequences = self.encode(histories, unknown=unknown)
        ids = np.arange(len(sequences)) if ids is None else np.asarray(ids)
        if len(ids) != len(sequences):
            raise ValueError(f"{len(ids)} ids for {len(sequences)} histories")
        exclude = rows_matrix(sequences, len(self.items)) if exclude_seen else None
        idx, val = topk_blocked(
            lambda rows: self.score_sequences([sequences[r] for r in rows]),
            np.arange(len(sequences)),
            self.config.k if k is None else k,
            n_items=len(self.items),
            exclude=exclude,
            block_size=self.inference_batch_size,
        )
        return to_frame(ids, idx, val, self.items)

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        """(B,) item indices -> (B, n_items) cosine similarity of the learned item embeddings."""
        self._check_fitted()
        weight = self.network.bert.embeddings.word_embeddings.weight.detach()[1 : len(self.items) + 1]  # (N, C)
        unit = torch.nn.functional.normalize(weight.float(), dim=1)
        return unit[torch.as_tensor(item_index, device=unit.device)] @ unit.T

    def attention(self, history, *, unknown: str = "error") -> pd.DataFrame:
        """How the next-item prediction for one history attends to the items it reads.

        Returns one row per (layer, history item read): ``item_id``, ``steps_back`` (0 =
        newest), ``layer`` (1 = first) and ``weight`` (mean over heads; per layer, the
        weights over the items read plus any ``[MASK]`` sum to 1).
        """
        self._check_fitted()
        sequence = self.encode([history], unknown=unknown)[0][-self.context_length :]
        if not len(sequence):
            raise ValueError("attention: the history has no item the model knows")
        tokens = self.tokens([sequence])["tokens"]  # (1, T), no padding for a single row
        bert = self.network.bert
        implementation = bert.config._attn_implementation
        bert.set_attn_implementation("eager")  # sdpa does not return weights
        try:
            with torch.inference_mode():
                layers = self.network.attentions(tokens)  # L x (1, H, T, T)
        finally:
            bert.set_attn_implementation(implementation)
        n = len(sequence)
        return pd.DataFrame(
            {
                ITEM: np.tile(self.items.ids(sequence), len(layers)),
                "steps_back": np.tile(np.arange(n)[::-1], len(layers)),
                "layer": np.repeat(np.arange(1, len(layers) + 1), n),
                "weight": np.concatenate([w[0].mean(0)[-1, :n].float().cpu().numpy() for w in layers]),
            }
        )

    # -- checkpoints -----------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write weights, id maps and training histories (safetensors) plus the options and
        the training curves (JSON): :func:`workbench.models.training.save_checkpoint`."""
        self._check_fitted()
        lengths = np.array([len(s) for s in self.sequences_], dtype=np.int64)
        tensors = {f"network.{name}": t for name, t in self.network.state_dict().items()}
        tensors.update(
            users=torch.as_tensor(self.users.ids_),
            items=torch.as_tensor(self.items.ids_),
            sequence_items=torch.as_tensor(np.concatenate(self.sequences_)),
            sequence_lengths=torch.as_tensor(lengths),
            popularity=self.popularity_,
        )
        return save_checkpoint(
            path, model=type(self).__name__, config=self.config, result=self.result_, tensors=tensors
        )

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None):
        """Read a :meth:`save` folder back (optionally onto another ``device``)."""
        saved = load_checkpoint(path, model=cls.__name__)
        tensors = saved.tensors
        options = saved.config if device is None else {**saved.config, "device": device}
        model = cls(config=cls.config_class(**options))
        model.users = IndexMap(tensors["users"].numpy(), kind="user")
        model.items = IndexMap(tensors["items"].numpy(), kind="item")
        lengths = tensors["sequence_lengths"].numpy()
        model.sequences_ = np.split(tensors["sequence_items"].numpy(), np.cumsum(lengths)[:-1])
        model.seen = rows_matrix(model.sequences_, len(model.items))
        model.popularity_ = tensors["popularity"]
        model.device_ = resolve_device(model.config.device)
        model.network = model._build(len(model.items))
        state = {name.removeprefix("network."): t for name, t in tensors.items() if name.startswith("network.")}
        model.network.load_state_dict(state)
        model.network.to(model.device_).eval()
        model.result_ = saved.result
        return model

"""A fine-tuned two-tower recommender over item text.

Item tower: the top ``layers - freeze`` layers of a pretrained BERT (copied, trainable)
over the item's text, mean-pooled, then a linear projection, L2-normalised:
``e_i = normalise(P @ pool(BERT_top(h_i)))`` where ``h_i`` are the token states after
the ``freeze`` frozen layers -- computed once and cached (``cache_frozen=True``), so a
step costs only the trainable layers. User tower: a learned map of the mean of the
history's *pretrained* text embeddings, ``u = normalise(W @ mean_{j in H(u)} f_j)``
(``f_j``: the frozen encoder's mean-pooled output, unit length), so any user with a
history is scored without retraining (see :meth:`TextRecommender.fold_in`) and the user
side never goes stale while the item tower moves. Score: ``s * cos(u, e_i)``.

Training (one epoch = every item with interactions once): a step takes ``batch_size``
items and *all* their training interactions. For each pair (u, i) the user vector
averages the user's other history items (``i`` left out) and the loss is either

- ``softmax``: in-batch sampled softmax over the step's items (the user's other
  positives among them masked), or
- ``bce``: binary cross-entropy ``-[y log sigma(x) + (1-y) log(1-sigma(x))]`` on the
  positive and ``negatives`` items sampled from the step's items the user did not touch.

Batches are random but drawn from windows sorted by token length, so little compute
goes to padding. Training runs in the workbench's one loop
(:func:`workbench.models.training.train`): AdamW (decoupled weight decay on matrices
only; the encoder layers at ``learning_rate``, the heads at ``head_learning_rate``),
linear warm-up then linear decay to 0, gradient clipping, bf16 autocast on CUDA where
supported (``precision="auto"``; float32 on CPU unless ``precision="bf16"``). With a
validation set, after every epoch all item vectors are recomputed and nDCG@k is
measured; the best epoch's weights are kept (and with ``patience``, training stops after
that many epochs without improvement). Epoch 0 in the curves is the untrained start,
which equals :class:`~workbench.models.text.frozen.FrozenText` when ``embedding_size`` is
None (projection and ``W`` start as identities).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from workbench.data.matrix import IndexMap
from workbench.data.schema import ITEM
from workbench.devices import autocast, is_out_of_memory, resolve_device, too_large
from workbench.models.config import check_options
from workbench.models.text.base import TextRecommender
from workbench.models.text.encoder import Encoder, embed_texts, hidden_states, mean_pool, run_layers, tokenize
from workbench.models.training import LoopOptions, load_checkpoint, save_checkpoint, train
from workbench.models.validation import topk_metrics

#: batches per length-sorting window (see ``TwoTower._batches``)
BUCKET = 8


@dataclass(frozen=True, kw_only=True)
class TwoTowerConfig:
    """Hyper-parameters of :class:`TwoTower`. ``freeze``, ``epochs``, ``learning_rate``,
    ``batch_size`` and ``loss`` were chosen on a validation split of ml-100k training data
    within a CPU budget of about a minute per fine-tune (``benchmarks/bench_text.py
    --sweep``); the others are common fine-tuning defaults."""

    max_length: int = 32  # tokens read per item
    freeze: int = 5  # lower encoder layers kept frozen; 0 = fine-tune everything incl. embeddings
    cache_frozen: bool = True  # compute the frozen layers once instead of every step
    embedding_size: int | None = None  # projection size; None = hidden size, identity start
    loss: str = "softmax"  # softmax | bce
    negatives: int = 8  # sampled negatives per positive (loss="bce")
    epochs: int = 6
    batch_size: int = 64  # items per step, each with all its training interactions
    learning_rate: float = 3e-4  # encoder layers
    head_learning_rate: float = 1e-3  # projection, user map and score scale
    weight_decay: float = 0.01
    warmup: float = 0.1  # share of all steps spent warming up, then linear decay to 0
    clip_norm: float = 1.0
    patience: int = 0  # stop after this many validations without improvement; 0 runs every epoch
    temperature: float = 0.05  # initial 1 / score scale
    precision: str = "auto"  # auto | bf16 | fp32
    k: int = 10  # validation metric nDCG@k
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        check_options(
            self,
            positive=(
                "max_length",
                "epochs",
                "batch_size",
                "learning_rate",
                "head_learning_rate",
                "clip_norm",
                "temperature",
                "k",
                "negatives",
            ),
            non_negative=("freeze", "weight_decay", "warmup", "patience"),
        )
        if self.loss not in ("softmax", "bce"):
            raise ValueError(f"TwoTowerConfig: loss must be 'softmax' or 'bce', got {self.loss!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"TwoTowerConfig: precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        if not self.warmup < 1:
            raise ValueError(f"TwoTowerConfig: warmup is a share of the steps, < 1; got {self.warmup}")


class _Network(nn.Module):
    """Trainable part: top encoder layers (+ embeddings if nothing is frozen), projection,
    user map ``W`` and the log score scale."""

    def __init__(self, encoder: Encoder, cfg: TwoTowerConfig):
        super().__init__()
        bert = encoder.model
        self.bert_config = bert.config
        self.embeddings = copy.deepcopy(bert.embeddings) if cfg.freeze == 0 else None
        self.layers = nn.ModuleList(copy.deepcopy(list(bert.encoder.layer[cfg.freeze :])))
        hidden = encoder.hidden_size
        size = cfg.embedding_size or hidden
        self.projection = nn.Linear(hidden, size, bias=False)
        self.user_map = nn.Linear(hidden, size, bias=False)
        with torch.no_grad():  # both towers start as the same map: epoch 0 = frozen baseline
            if size == hidden:
                self.projection.weight.copy_(torch.eye(size))
            else:
                nn.init.orthogonal_(self.projection.weight)
            self.user_map.weight.copy_(self.projection.weight)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature)))
        self.bias = nn.Parameter(torch.zeros(()))  # used by the bce loss only

    def encoder_parameters(self) -> list[nn.Parameter]:
        mods = [self.layers] + ([self.embeddings] if self.embeddings is not None else [])
        return [p for m in mods for p in m.parameters()]

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.projection.parameters(), *self.user_map.parameters(), self.log_scale, self.bias]

    def items(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, H) frozen-layer states or (B, L) token ids, (B, L) mask -> (B, d) unit vectors."""
        if self.embeddings is not None:
            states = self.embeddings(input_ids=states, token_type_ids=torch.zeros_like(states))
        states = run_layers(self.layers, states, mask, self.bert_config)
        return nn.functional.normalize(self.projection(mean_pool(states, mask)).float(), dim=1)

    def users(self, history_mean: torch.Tensor) -> torch.Tensor:
        """(P, hidden) mean of history text vectors -> (P, d) unit user vectors."""
        return nn.functional.normalize(self.user_map(history_mean).float(), dim=1)


class _Inputs:
    """What the trainable layers read, per item: cached frozen-layer states, or token ids
    (run through the frozen layers every step when ``cache_frozen=False``)."""

    def __init__(self, encoder: Encoder, texts: list[str], cfg: TwoTowerConfig, progress: bool):
        self.encoder, self.freeze, self.device = encoder, cfg.freeze, encoder.device
        self.precomputed = cfg.cache_frozen and cfg.freeze > 0
        if self.precomputed:
            self.data, self.mask = hidden_states(
                encoder, texts, layer=cfg.freeze, max_length=cfg.max_length, progress=progress
            )
        else:
            tokens = tokenize(encoder, texts, cfg.max_length)
            self.data, self.mask = tokens["input_ids"], tokens["attention_mask"]
        self.lengths = self.mask.sum(1).numpy()  # (n_items,) real tokens per item

    def __call__(self, item_index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.as_tensor(item_index, dtype=torch.long)
        mask = self.mask[rows]
        length = int(mask.sum(1).max())
        data, mask = self.data[rows, :length].to(self.device), mask[:, :length].to(self.device)
        if not self.precomputed and self.freeze > 0:
            bert = self.encoder.model
            with torch.no_grad():
                states = bert.embeddings(input_ids=data, token_type_ids=torch.zeros_like(data))
                data = run_layers(bert.encoder.layer[: self.freeze], states, mask, bert.config)
        return data, mask


class TwoTower(TextRecommender):
    """Fine-tuned text two-tower recommender; see the module docstring.

    ``TwoTower(items, encoder=enc, epochs=6)`` or ``TwoTower(items, encoder=enc,
    config=TwoTowerConfig(...))``. After ``fit``: ``result_`` (a
    :class:`~workbench.models.training.TrainingResult`: its curves add ``tokens`` and
    ``tokens_per_s`` per epoch) and ``cache_seconds_`` (building the frozen-layer cache).
    """

    config_class = TwoTowerConfig

    def fit(
        self,
        interactions: pd.DataFrame,
        *,
        validation: pd.DataFrame | None = None,
        candidates=None,
        progress: bool = False,
    ) -> TwoTower:
        """Fine-tune on ``interactions``; with ``validation`` keep the epoch of best
        nDCG@k (ranked among ``candidates`` item ids if given, e.g. pseudo-cold items)."""
        self.candidates_ = None if candidates is None else np.asarray(candidates)
        return super().fit(interactions, validation=validation, progress=progress)

    # -- training --------------------------------------------------------------------

    def _train(self, validation: pd.DataFrame | None, *, progress: bool) -> None:
        cfg = self.config
        if self.encoder is None:
            raise ValueError("TwoTower.fit needs an encoder (workbench.models.text.encoder.load_encoder())")
        if cfg.freeze > self.encoder.num_layers:
            raise ValueError(f"freeze={cfg.freeze} but the encoder has {self.encoder.num_layers} layers")
        device = resolve_device(cfg.device)
        if device != self.encoder.device:
            raise ValueError(f"TwoTower device {device} differs from the encoder's {self.encoder.device}")
        started = time.perf_counter()
        texts = self.texts()
        inputs = _Inputs(self.encoder, texts, cfg, progress)
        self.cache_seconds_ = time.perf_counter() - started
        torch.manual_seed(cfg.seed)  # the projection's start (orthogonal when embedding_size is set)
        self.network_ = net = _Network(self.encoder, cfg).to(device)
        self.device_ = device
        pooled = embed_texts(self.encoder, texts, max_length=cfg.max_length, progress=progress)
        self.history_vectors_ = nn.functional.normalize(pooled, dim=1)  # (n_items, hidden), fixed
        trainable = np.flatnonzero(np.asarray(self.seen.sum(0)).ravel() > 0)
        steps = math.ceil(len(trainable) / cfg.batch_size) * cfg.epochs
        options = LoopOptions(
            epochs=cfg.epochs,
            learning_rate=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            warmup_steps=max(1, int(cfg.warmup * steps)),
            decay_steps=steps,
            clip_norm=cfg.clip_norm,
            patience=cfg.patience,
            precision=cfg.precision,
            seed=cfg.seed,
        )
        self._tokens = 0

        def validate() -> float:
            self._publish(net, self._all_items(net, inputs))
            return topk_metrics(self, validation, k=cfg.k, candidates=self.candidates_)["ndcg"]

        def tokens() -> dict[str, int]:
            count, self._tokens = self._tokens, 0
            return {"tokens": count}

        result = train(
            net,
            batches=lambda rng: self._batches(trainable, inputs, rng),
            loss=self._loss,
            validate=None if validation is None else validate,
            options=options,
            parameter_groups=[
                (net.encoder_parameters(), cfg.learning_rate),
                (net.head_parameters(), cfg.head_learning_rate),
            ],
            validate_first=True,
            epoch_extras=tokens,
            batch_size=cfg.batch_size,
            progress=progress,
            description="TwoTower",
        )
        curves = result.curves.assign(tokens_per_s=result.curves["tokens"] / result.curves["train_seconds"])
        self.result_ = dataclasses.replace(result, curves=curves.replace([np.inf], np.nan))
        with torch.inference_mode(), autocast(device, cfg.precision):
            self._publish(net, self._all_items(net, inputs))  # the weights kept

    def _batches(self, trainable: np.ndarray, inputs: _Inputs, rng: np.random.Generator):
        """One epoch of steps: random items of similar token length (:meth:`_item_batches`),
        each with all its training interactions; a user's vector leaves the item out."""
        cfg = self.config
        seen_csc = self.seen.tocsc()
        counts = np.asarray(self.seen.sum(1)).ravel()  # (n_users,)
        vectors = self.history_vectors_
        sums = torch.as_tensor(self.seen @ vectors.numpy(), dtype=torch.float32)  # (n_users, hidden)
        for batch in self._item_batches(trainable, inputs.lengths, rng):  # (B,) item indices
            sub = seen_csc[:, batch].tocoo()  # pairs (user, position in batch)
            keep = counts[sub.row] >= 2  # a user needs another item to stand for them
            users, cols = sub.row[keep], sub.col[keep]
            if len(users) == 0:
                continue
            history = (sums[users] - vectors[batch[cols]]) / torch.as_tensor(counts[users] - 1.0, dtype=torch.float32)[
                :, None
            ]
            positives = torch.as_tensor(self.seen[users][:, batch].toarray() > 0)  # (P, B)
            data, mask = inputs(batch)
            step = {
                "data": data,
                "mask": mask,
                "history": history.to(self.device_),
                "cols": torch.as_tensor(cols, dtype=torch.long).to(self.device_),
                "positives": positives.to(self.device_),
            }
            if cfg.loss == "bce":  # uniform noise that picks the sampled negatives
                step["noise"] = torch.as_tensor(rng.random(positives.shape), device=self.device_)
            yield step

    def _item_batches(self, trainable: np.ndarray, lengths: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """Random batches of similar token length (less padding): shuffle, sort within
        windows of ``BUCKET`` batches by length, cut, then shuffle the batch order."""
        size = self.config.batch_size
        order = rng.permutation(trainable)
        window = size * BUCKET
        batches = []
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def _loss(self, step: dict[str, torch.Tensor]) -> torch.Tensor:
        net, positives, cols = self.network_, step["positives"], step["cols"]
        self._tokens += int(step["mask"].sum())
        items = net.items(step["data"], step["mask"])  # (B, d)
        users = net.users(step["history"])  # (P, d)
        logits = net.log_scale.exp() * users @ items.T  # (P, B)
        target = torch.zeros_like(positives)
        target[torch.arange(len(cols)), cols] = True
        if self.config.loss == "softmax":
            logits = logits.masked_fill(positives & ~target, float("-inf"))
            return nn.functional.cross_entropy(logits, cols)
        logits = logits + net.bias
        noise = step["noise"].masked_fill(positives, -1.0)
        n_neg = min(self.config.negatives, positives.shape[1])
        negative = torch.zeros_like(positives).scatter_(1, noise.topk(n_neg, dim=1).indices, True) & ~positives
        chosen = target | negative
        return nn.functional.binary_cross_entropy_with_logits(logits[chosen], target[chosen].float())

    def _all_items(self, net: _Network, inputs: _Inputs) -> torch.Tensor:
        """Every catalogue item through the current tower -> (n_items, d) CPU float32
        (called under ``inference_mode`` and autocast)."""
        batch_size = self.config.batch_size
        net.eval()
        out = []
        for start in range(0, len(self.items), batch_size):
            rows = np.arange(start, min(start + batch_size, len(self.items)))
            try:
                out.append(net.items(*inputs(rows)).float().cpu())
            except Exception as err:
                if is_out_of_memory(err):
                    raise too_large(err, batch_size, "embedding the catalogue") from err
                raise
        return torch.cat(out)

    def _publish(self, net: _Network, vectors: torch.Tensor) -> None:
        self.item_vectors_ = vectors
        self.user_map_ = net.user_map.weight.detach().float().cpu().clone()
        self.scale_ = float(net.log_scale.detach().exp())

    # -- checkpoints -----------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write ``model.safetensors`` (network, item vectors, id maps, histories) and
        ``config.json`` (options, training curves, encoder, catalogue texts) into the folder
        ``path`` (:func:`workbench.models.training.save_checkpoint`)."""
        self._check_fitted()
        tensors = {f"network.{k}": v for k, v in self.network_.state_dict().items()}
        tensors.update(
            item_vectors=self.item_vectors_,
            history_vectors=self.history_vectors_,
            items=torch.as_tensor(self.items.ids_),
            users=torch.as_tensor(self.users.ids_),
            seen_indptr=torch.as_tensor(self.seen.indptr.astype(np.int64)),
            seen_indices=torch.as_tensor(self.seen.indices.astype(np.int64)),
        )
        catalogue = {
            "item_id": self.catalogue[ITEM].astype(int).tolist(),
            "text": self.catalogue["text"].fillna("").astype(str).tolist(),
        }
        extra = {"encoder": self.encoder.name if self.encoder else None, "catalogue": catalogue}
        return save_checkpoint(
            path, model="TwoTower", config=self.config, result=self.result_, tensors=tensors, extra=extra
        )

    @classmethod
    def load(cls, path: str | Path, *, encoder: Encoder | None = None) -> TwoTower:
        """Read a :meth:`save` folder. Scoring needs nothing else; pass the ``encoder``
        (the same checkpoint it was trained from) to restore the trainable network too."""
        saved = load_checkpoint(path, model="TwoTower")
        tensors = saved.tensors
        model = cls(pd.DataFrame(saved.meta["catalogue"]), encoder=encoder, config=TwoTowerConfig(**saved.config))
        model.items = IndexMap(tensors["items"].numpy(), kind="item")
        model.users = IndexMap(tensors["users"].numpy(), kind="user")
        indptr, indices = tensors["seen_indptr"].numpy(), tensors["seen_indices"].numpy()
        model.seen = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, indptr), shape=(len(model.users), len(model.items))
        )
        model.item_vectors_ = tensors["item_vectors"]
        model.history_vectors_ = tensors["history_vectors"]
        model.result_ = saved.result
        state = {k.removeprefix("network."): v for k, v in tensors.items() if k.startswith("network.")}
        model.user_map_ = state["user_map.weight"]
        model.scale_ = float(state["log_scale"].exp())
        if encoder is not None:
            model.network_ = _Network(encoder, model.config)
            model.network_.load_state_dict(state)
            model.network_.to(encoder.device).eval()
        return model

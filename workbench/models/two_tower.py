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
goes to padding. AdamW (decoupled weight decay on matrices only), linear warm-up then linear decay to 0,
gradient clipping, bf16 autocast on CUDA where supported (``precision="auto"``; float32
on CPU unless ``precision="bf16"``). After every epoch all item vectors are recomputed
and, with a validation set, nDCG@k is measured; the best epoch's weights are kept (and
with ``patience``, training stops after that many epochs without improvement).
Epoch 0 in the history is the untrained start, which equals :class:`FrozenText` when
``embedding_size`` is None (projection and ``W`` start as identities).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from workbench import coldstart, text
from workbench.devices import resolve_device
from workbench.matrix import IndexMap
from workbench.models.base import check_options
from workbench.models.text import TextRecommender
from workbench.schema import ITEM


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
        check_options(self, positive=("max_length", "epochs", "batch_size", "learning_rate", "head_learning_rate",
                                      "clip_norm", "temperature", "k", "negatives"),
                      non_negative=("freeze", "weight_decay", "warmup", "patience"))
        if self.loss not in ("softmax", "bce"):
            raise ValueError(f"TwoTowerConfig: loss must be 'softmax' or 'bce', got {self.loss!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"TwoTowerConfig: precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        if not self.warmup < 1:
            raise ValueError(f"TwoTowerConfig: warmup is a share of the steps, < 1; got {self.warmup}")


class _Network(nn.Module):
    """Trainable part: top encoder layers (+ embeddings if nothing is frozen), projection,
    user map ``W`` and the log score scale."""

    def __init__(self, encoder: text.Encoder, cfg: TwoTowerConfig):
        super().__init__()
        bert = encoder.model
        self.bert_config = bert.config
        self.embeddings = copy.deepcopy(bert.embeddings) if cfg.freeze == 0 else None
        self.layers = nn.ModuleList(copy.deepcopy(list(bert.encoder.layer[cfg.freeze:])))
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
        states = text.run_layers(self.layers, states, mask, self.bert_config)
        return nn.functional.normalize(self.projection(text.mean_pool(states, mask)).float(), dim=1)

    def users(self, history_mean: torch.Tensor) -> torch.Tensor:
        """(P, hidden) mean of history text vectors -> (P, d) unit user vectors."""
        return nn.functional.normalize(self.user_map(history_mean).float(), dim=1)


class _Inputs:
    """What the trainable layers read, per item: cached frozen-layer states, or token ids
    (run through the frozen layers every step when ``cache_frozen=False``)."""

    def __init__(self, encoder: text.Encoder, texts: list[str], cfg: TwoTowerConfig, progress: bool):
        self.encoder, self.freeze, self.device = encoder, cfg.freeze, encoder.device
        self.precomputed = cfg.cache_frozen and cfg.freeze > 0
        if self.precomputed:
            self.data, self.mask = text.hidden_states(encoder, texts, layer=cfg.freeze, max_length=cfg.max_length,
                                                      progress=progress)
        else:
            tokens = text.tokenize(encoder, texts, cfg.max_length)
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
                data = text.run_layers(bert.encoder.layer[: self.freeze], states, mask, bert.config)
        return data, mask


def _autocast(device: torch.device, precision: str):
    if precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class TwoTower(TextRecommender):
    """Fine-tuned text two-tower recommender; see the module docstring.

    After ``fit``: ``history_`` (one row per epoch: ``train_loss``, ``valid_ndcg``,
    ``seconds``, ``train_seconds``, ``tokens``, ``tokens_per_s``, ``peak_memory_mb``),
    ``best_epoch_`` and ``cache_seconds_`` (building the frozen-layer cache).
    """

    def __init__(self, items: pd.DataFrame, *, encoder: text.Encoder | None, config: TwoTowerConfig | None = None,
                 progress: bool = True) -> None:
        super().__init__(items, encoder)
        self.config = config or TwoTowerConfig()
        self.progress = progress

    def fit(self, interactions: pd.DataFrame, *, validation: pd.DataFrame | None = None,
            candidates=None) -> "TwoTower":
        """Fine-tune on ``interactions``; with ``validation`` keep the epoch of best
        nDCG@k (ranked among ``candidates`` item ids if given, e.g. pseudo-cold items)."""
        self.candidates_ = None if candidates is None else np.asarray(candidates)
        return super().fit(interactions, validation=validation)

    # -- training --------------------------------------------------------------------

    def _train(self, validation: pd.DataFrame | None) -> None:
        cfg = self.config
        if self.encoder is None:
            raise ValueError("TwoTower.fit needs an encoder (text.load_encoder())")
        if cfg.freeze > self.encoder.num_layers:
            raise ValueError(f"freeze={cfg.freeze} but the encoder has {self.encoder.num_layers} layers")
        device = resolve_device(cfg.device)
        if device != self.encoder.device:
            raise ValueError(f"TwoTower device {device} differs from the encoder's {self.encoder.device}")
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        started = time.perf_counter()
        texts = self.texts()
        inputs = _Inputs(self.encoder, texts, cfg, self.progress)
        self.cache_seconds_ = time.perf_counter() - started
        self.network_ = net = _Network(self.encoder, cfg).to(device)
        trainable = np.flatnonzero(np.asarray(self.seen.sum(0)).ravel() > 0)
        steps = math.ceil(len(trainable) / cfg.batch_size)
        optimizer = self._optimizer(net, steps * cfg.epochs)
        self.device_ = device
        pooled = text.embed_texts(self.encoder, texts, max_length=cfg.max_length, progress=self.progress)
        self.history_vectors_ = nn.functional.normalize(pooled, dim=1)  # (n_items, hidden), fixed
        vectors = self._all_items(net, inputs)
        rows = [self._record(0, math.nan, validation, vectors, 0.0, 0.0, 0, device)]
        best = (rows[0]["valid_ndcg"], 0, copy.deepcopy(net.state_dict()), vectors)
        bar = tqdm(range(1, cfg.epochs + 1), desc="fine-tuning", disable=not self.progress, leave=False)
        for epoch in bar:
            t0 = time.perf_counter()
            loss, tokens = self._epoch(net, inputs, trainable, optimizer, rng, device)
            train_seconds = time.perf_counter() - t0
            vectors = self._all_items(net, inputs)
            rows.append(self._record(epoch, loss, validation, vectors, time.perf_counter() - t0, train_seconds,
                                     tokens, device))
            score = rows[-1]["valid_ndcg"]
            if validation is None or score > best[0]:
                best = (score, epoch, copy.deepcopy(net.state_dict()), vectors)
            bar.set_postfix(loss=f"{loss:.3f}", valid=f"{score:.4f}")
            if validation is not None and cfg.patience and epoch - best[1] >= cfg.patience:
                break  # the learning-rate schedule was planned for all epochs; stopping early only saves time
        net.load_state_dict(best[2])
        self.best_epoch_ = best[1]
        self._publish(net, best[3])
        self.history_ = pd.DataFrame(rows)

    def _optimizer(self, net: _Network, total_steps: int):
        cfg = self.config
        decay = lambda ps: [p for p in ps if p.dim() >= 2]  # noqa: E731
        no_decay = lambda ps: [p for p in ps if p.dim() < 2]  # noqa: E731
        groups = [
            {"params": decay(net.encoder_parameters()), "lr": cfg.learning_rate, "weight_decay": cfg.weight_decay},
            {"params": no_decay(net.encoder_parameters()), "lr": cfg.learning_rate, "weight_decay": 0.0},
            {"params": decay(net.head_parameters()), "lr": cfg.head_learning_rate, "weight_decay": cfg.weight_decay},
            {"params": no_decay(net.head_parameters()), "lr": cfg.head_learning_rate, "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]])
        warm = max(1, int(cfg.warmup * total_steps))
        shape = lambda s: min((s + 1) / warm, max(0.0, (total_steps - s) / max(1, total_steps - warm)))  # noqa: E731
        self.schedule_ = torch.optim.lr_scheduler.LambdaLR(optimizer, shape)
        return optimizer

    def _epoch(self, net, inputs, trainable, optimizer, rng, device) -> tuple[float, int]:
        cfg = self.config
        seen_csc = self.seen.tocsc()
        counts = np.asarray(self.seen.sum(1)).ravel()  # (n_users,)
        vectors = self.history_vectors_
        sums = torch.as_tensor(self.seen @ vectors.numpy(), dtype=torch.float32)  # (n_users, hidden)
        total, steps, tokens = 0.0, 0, 0
        net.train()
        for batch in self._batches(trainable, inputs.lengths, rng):  # (B,) item indices
            sub = seen_csc[:, batch].tocoo()  # pairs (user, position in batch)
            keep = counts[sub.row] >= 2  # a user needs another item to stand for them
            users, cols = sub.row[keep], sub.col[keep]
            if len(users) == 0:
                continue
            history = (sums[users] - vectors[batch[cols]]) / torch.as_tensor(counts[users] - 1.0, dtype=torch.float32)[:, None]
            positives = torch.as_tensor(self.seen[users][:, batch].toarray() > 0)  # (P, B)
            data, mask = inputs(batch)
            try:
                with _autocast(device, cfg.precision):
                    value = self._loss(net, data, mask, history.to(device), torch.as_tensor(cols, dtype=torch.long).to(device),
                                       positives.to(device), rng)
                optimizer.zero_grad(set_to_none=True)
                value.backward()
            except Exception as err:  # noqa: BLE001 -- re-raised unless it is an OOM
                if text.is_out_of_memory(err):
                    raise text.too_large(err, cfg.batch_size, "fine-tuning") from err
                raise
            nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_norm)
            optimizer.step()
            self.schedule_.step()
            total, steps, tokens = total + float(value.detach()), steps + 1, tokens + int(mask.sum())
        return total / max(steps, 1), tokens

    def _batches(self, trainable: np.ndarray, lengths: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
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

    def _loss(self, net, data, mask, history, cols, positives, rng) -> torch.Tensor:
        items = net.items(data, mask)  # (B, d)
        users = net.users(history)  # (P, d)
        logits = net.log_scale.exp() * users @ items.T  # (P, B)
        target = torch.zeros_like(positives)
        target[torch.arange(len(cols)), cols] = True
        if self.config.loss == "softmax":
            logits = logits.masked_fill(positives & ~target, float("-inf"))
            return nn.functional.cross_entropy(logits, cols)
        logits = logits + net.bias
        noise = torch.as_tensor(rng.random(positives.shape), device=logits.device).masked_fill(positives, -1.0)
        n_neg = min(self.config.negatives, positives.shape[1])
        negative = torch.zeros_like(positives).scatter_(1, noise.topk(n_neg, dim=1).indices, True) & ~positives
        chosen = target | negative
        return nn.functional.binary_cross_entropy_with_logits(logits[chosen], target[chosen].float())

    def _all_items(self, net: _Network, inputs: _Inputs) -> torch.Tensor:
        """Every catalogue item through the current tower -> (n_items, d) CPU float32."""
        batch_size = self.config.batch_size
        net.eval()
        out = []
        with torch.inference_mode(), _autocast(self.device_, self.config.precision):
            for start in range(0, len(self.items), batch_size):
                rows = np.arange(start, min(start + batch_size, len(self.items)))
                try:
                    out.append(net.items(*inputs(rows)).float().cpu())
                except Exception as err:  # noqa: BLE001 -- re-raised unless it is an OOM
                    if text.is_out_of_memory(err):
                        raise text.too_large(err, batch_size, "embedding the catalogue") from err
                    raise
        net.train()
        return torch.cat(out)

    def _publish(self, net: _Network, vectors: torch.Tensor) -> None:
        self.item_vectors_ = vectors
        self.user_map_ = net.user_map.weight.detach().float().cpu().clone()
        self.scale_ = float(net.log_scale.detach().exp())

    def _record(self, epoch, loss, validation, vectors, seconds, train_seconds, tokens, device) -> dict:
        score = math.nan
        if validation is not None:
            self._publish(self.network_, vectors)
            score = coldstart.evaluate(self, validation, k=self.config.k, candidates=self.candidates_)["ndcg"]
        return {"epoch": epoch, "train_loss": loss, "valid_ndcg": score, "seconds": seconds,
                "train_seconds": train_seconds, "tokens": tokens,
                "tokens_per_s": tokens / train_seconds if train_seconds else math.nan,
                "peak_memory_mb": _peak_memory_mb(device)}

    # -- checkpoints -----------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write ``model.safetensors`` (network, item vectors, id maps, histories) and
        ``config.json`` (options, encoder, catalogue texts) into the folder ``path``."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {f"network.{k}": v.detach().cpu().contiguous() for k, v in self.network_.state_dict().items()}
        tensors.update(item_vectors=self.item_vectors_, history_vectors=self.history_vectors_, items=torch.as_tensor(self.items.ids_),
                       users=torch.as_tensor(self.users.ids_),
                       seen_indptr=torch.as_tensor(self.seen.indptr.astype(np.int64)),
                       seen_indices=torch.as_tensor(self.seen.indices.astype(np.int64)))
        save_file(tensors, str(path / "model.safetensors"))
        meta = {"model": "TwoTower", "format": 1, "config": asdict(self.config), "best_epoch": self.best_epoch_,
                "encoder": self.encoder.name if self.encoder else None,
                "catalogue": {"item_id": self.catalogue[ITEM].astype(int).tolist(), "text": self.catalogue["text"].fillna("").astype(str).tolist()}}
        (path / "config.json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path, *, encoder: text.Encoder | None = None) -> "TwoTower":
        """Read a :meth:`save` folder. Scoring needs nothing else; pass the ``encoder``
        (the same checkpoint it was trained from) to restore the trainable network too."""
        import scipy.sparse as sp

        path = Path(path)
        for name in ("model.safetensors", "config.json"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path}: no {name}; not a TwoTower checkpoint folder")
        meta = json.loads((path / "config.json").read_text())
        if meta.get("model") != "TwoTower":
            raise ValueError(f"{path} holds a {meta.get('model')!r} checkpoint, not TwoTower")
        tensors = load_file(str(path / "model.safetensors"))
        model = cls(pd.DataFrame(meta["catalogue"]), encoder=encoder, config=TwoTowerConfig(**meta["config"]),
                    progress=False)
        model.items = IndexMap(tensors["items"].numpy(), kind="item")
        model.users = IndexMap(tensors["users"].numpy(), kind="user")
        indptr, indices = tensors["seen_indptr"].numpy(), tensors["seen_indices"].numpy()
        model.seen = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr),
                                   shape=(len(model.users), len(model.items)))
        model.item_vectors_ = tensors["item_vectors"]
        model.history_vectors_ = tensors["history_vectors"]
        model.best_epoch_ = meta["best_epoch"]
        state = {k.removeprefix("network."): v for k, v in tensors.items() if k.startswith("network.")}
        model.user_map_ = state["user_map.weight"]
        model.scale_ = float(state["log_scale"].exp())
        if encoder is not None:
            model.network_ = _Network(encoder, model.config)
            model.network_.load_state_dict(state)
            model.network_.to(encoder.device).eval()
        return model

"""The one training loop and the one checkpoint format of every trained torch model
(SASRec, BERT4Rec and the two-tower).

:func:`train` runs AdamW (its fused kernel on CPU and CUDA, decoupled weight decay on
matrices only, per-group learning rates), a linear warm-up then a constant or linearly
decaying learning rate, gradient clipping, autocast at the model's precision (bf16 on
CUDA by default, float32 on CPU), a ``tqdm.auto`` progress bar and early stopping on a
validation score (higher is better): it keeps the best weights and restores them at the
end. The model supplies the hooks -- ``batches(rng)`` (one epoch), ``loss(batch)`` and
``validate()`` -- and gets the per-epoch curves back; the loop never prints or plots.

A checkpoint is a folder with ``model.safetensors`` (tensors) and ``config.json``
(``model``, ``format``, ``config``, ``training`` and whatever else the model needs),
written atomically by :func:`save_checkpoint` and read by :func:`load_checkpoint`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from workbench.devices import autocast, is_out_of_memory, peak_memory_mb, too_large

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
#: version of the checkpoint layout (config.json keys and tensor names)
CHECKPOINT_FORMAT = 1


@dataclass(frozen=True, kw_only=True)
class LoopOptions:
    """How :func:`train` optimises; the sequential configs carry the same names."""

    epochs: int = 100
    learning_rate: float = 1e-3
    weight_decay: float = 0.0  # AdamW decay of matrices (biases and norms never decay)
    warmup_steps: int = 100  # linear learning-rate warm-up, in optimiser steps
    decay_steps: int | None = None  # linear decay to 0 at this step after warm-up; None: constant
    clip_norm: float = 1.0  # max global gradient norm
    patience: int = 5  # validations without improvement before stopping; 0: never stop early
    eval_every: int = 1  # validate every this many epochs (and after the last)
    precision: str = "auto"  # autocast: auto (bf16 on CUDA where supported, else fp32), fp32, bf16, fp16
    fused_optimizer: bool = True  # AdamW's fused kernel on CPU and CUDA (same update, fewer ops per step)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(
                f"{type(self).__name__}: precision must be auto, fp32, bf16 or fp16, got {self.precision!r}"
            )
        if not isinstance(self.fused_optimizer, bool):
            name = type(self).__name__
            raise ValueError(f"{name}: fused_optimizer must be True or False, got {self.fused_optimizer!r}")
        if self.decay_steps is not None and not self.decay_steps >= 1:
            raise ValueError(f"{type(self).__name__}: decay_steps must be >= 1 or None, got {self.decay_steps!r}")


#: the columns of :attr:`TrainingResult.curves` (a model may add its own after them)
CURVE_COLUMNS = ("epoch", "train_loss", "valid_score", "seconds", "train_seconds", "peak_memory_mb")


@dataclass(frozen=True)
class TrainingResult:
    """``curves``: one row per epoch -- ``epoch`` (0: the untrained start, when it was
    validated), ``train_loss``, ``valid_score`` (NaN where not validated), cumulative
    ``seconds``, the epoch's ``train_seconds`` (optimisation only) and ``peak_memory_mb``
    (the high-water mark so far, see :func:`workbench.devices.peak_memory_mb`) -- and the
    best validated epoch."""

    curves: pd.DataFrame
    best_epoch: int
    best_score: float
    stopped_early: bool

    def to_json(self) -> dict[str, Any]:
        """A strict-JSON dict (NaN as null) for checkpoints."""
        curves = {
            c: [None if isinstance(v, float) and math.isnan(v) else v for v in self.curves[c].tolist()]
            for c in self.curves.columns
        }
        best = self.best_score if math.isfinite(self.best_score) else None
        return {
            "best_epoch": self.best_epoch,
            "best_score": best,
            "stopped_early": self.stopped_early,
            "curves": curves,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainingResult:
        best = math.nan if data.get("best_score") is None else data["best_score"]
        curves = pd.DataFrame(data.get("curves", {})).apply(pd.to_numeric)  # null -> NaN
        curves = curves[[*[c for c in CURVE_COLUMNS if c in curves], *[c for c in curves if c not in CURVE_COLUMNS]]]
        return cls(curves, data.get("best_epoch", 0), best, data.get("stopped_early", False))


def learning_rate_factor(options: LoopOptions) -> Callable[[int], float]:
    """Step -> multiplier of the learning rate: linear warm-up over ``warmup_steps``, then
    constant, or (with ``decay_steps``) linear decay reaching 0 at ``decay_steps``."""
    warm = max(options.warmup_steps, 1)
    total = options.decay_steps
    if total is None:
        return lambda step: min(1.0, (step + 1) / warm)
    return lambda step: min((step + 1) / warm, max(0.0, (total - step) / max(1, total - warm)))


#: devices where AdamW has a fused kernel (one pass over every parameter per step)
FUSED_DEVICES = ("cpu", "cuda")


def _optimizer(
    groups: list[tuple[list[torch.nn.Parameter], float]], weight_decay: float, *, fused: bool = True
) -> torch.optim.AdamW:
    """AdamW over ``(parameters, learning rate)`` groups; matrices decay, biases and norms do not.

    ``fused``: AdamW's fused kernel where every parameter is a float on a
    :data:`FUSED_DEVICES` device (the same update, about 10 ops per parameter fewer per step);
    elsewhere, or with ``fused=False``, torch's default loop.
    """
    param_groups = []
    for params, lr in groups:
        param_groups.append({"params": [p for p in params if p.dim() >= 2], "lr": lr, "weight_decay": weight_decay})
        param_groups.append({"params": [p for p in params if p.dim() < 2], "lr": lr, "weight_decay": 0.0})
    param_groups = [g for g in param_groups if g["params"]]
    every = [p for g in param_groups for p in g["params"]]
    fusable = fused and all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in every)
    return torch.optim.AdamW(param_groups, fused=True if fusable else None)


def train(
    network: torch.nn.Module,
    *,
    batches: Callable[[np.random.Generator], Iterable[Any]],
    loss: Callable[[Any], torch.Tensor],
    validate: Callable[[], float] | None,
    options: LoopOptions,
    parameter_groups: list[tuple[list[torch.nn.Parameter], float]] | None = None,
    validate_first: bool = False,
    epoch_extras: Callable[[], dict[str, float]] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    description: str = "training",
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainingResult:
    """Optimise ``loss`` over ``batches(rng)`` (one epoch per call) for ``options.epochs``.

    ``validate()`` (run under ``inference_mode`` and autocast, the network in eval mode)
    returns a score to maximise; after ``options.patience`` validations without
    improvement the loop stops, and the best weights are restored. Without ``validate``
    the last epoch's weights are kept. ``parameter_groups``: ``(parameters, learning
    rate)`` pairs (default: every trainable parameter at ``options.learning_rate``);
    ``validate_first``: also validate the untrained network (epoch 0), which then competes
    for best; ``epoch_extras()``: the model's own per-epoch columns; ``batch_size``: named
    in the error raised when a step runs out of memory; ``on_epoch(row)``: called with each
    epoch's row of the curves as it ends (progress shown elsewhere, e.g. from another
    process). Seeds torch and the batch RNG with ``options.seed``.
    """
    device = next(network.parameters()).device
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    if parameter_groups is None:
        parameter_groups = [([p for p in network.parameters() if p.requires_grad], options.learning_rate)]
    optimizer = _optimizer(parameter_groups, options.weight_decay, fused=options.fused_optimizer)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor(options))
    best_score, best_epoch, best_state, waited, stopped = -math.inf, 0, None, 0, False
    rows, started = [], time.perf_counter()

    def run_validation() -> float:
        network.eval()
        with torch.inference_mode(), autocast(device, options.precision):
            return float(validate())

    if validate_first and validate is not None:
        best_score, best_state = run_validation(), copy.deepcopy(network.state_dict())
        rows.append(_row(0, math.nan, best_score, started, 0.0, device, epoch_extras))
    bar = tqdm(range(1, options.epochs + 1), desc=description, disable=not progress, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        train_loss = _epoch(network, batches(rng), loss, optimizer, schedule, options, device, batch_size, description)
        train_seconds = time.perf_counter() - t0
        score = math.nan
        if validate is not None and (epoch % options.eval_every == 0 or epoch == options.epochs):
            score = run_validation()
            if score > best_score:
                best_score, best_epoch, waited = score, epoch, 0
                best_state = copy.deepcopy(network.state_dict())
            else:
                waited += 1
        rows.append(_row(epoch, train_loss, score, started, train_seconds, device, epoch_extras))
        if on_epoch is not None:
            on_epoch({**rows[-1], "best_score": best_score, "epochs": options.epochs})
        bar.set_postfix(loss=f"{train_loss:.3f}", valid=f"{best_score:.4f}")
        if options.patience and waited >= options.patience:
            stopped = True
            break
    if best_state is not None:
        network.load_state_dict(best_state)
    else:
        best_epoch = rows[-1]["epoch"] if rows else 0
    network.eval()
    curves = pd.DataFrame(rows)
    return TrainingResult(
        curves[[*CURVE_COLUMNS, *[c for c in curves.columns if c not in CURVE_COLUMNS]]],
        best_epoch,
        best_score,
        stopped,
    )


def _row(epoch, train_loss, score, started, train_seconds, device, extras) -> dict[str, float]:
    row = {
        "epoch": epoch,
        "train_loss": train_loss,
        "valid_score": score,
        "seconds": time.perf_counter() - started,
        "train_seconds": train_seconds,
        "peak_memory_mb": peak_memory_mb(device),
    }
    return {**row, **(extras() if extras is not None else {})}


def _epoch(network, batches, loss, optimizer, schedule, options, device, batch_size, description) -> float:
    network.train()
    total, steps = 0.0, 0
    for batch in batches:
        try:
            with autocast(device, options.precision):
                value = loss(batch)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
        except Exception as err:
            if is_out_of_memory(err):
                raise too_large(err, batch_size, f"training {description}") from err
            raise
        torch.nn.utils.clip_grad_norm_(network.parameters(), options.clip_norm)
        optimizer.step()
        schedule.step()
        total, steps = total + float(value.detach()), steps + 1
    return total / max(steps, 1)


# -- checkpoints ------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder read back: the ``tensors``, the model's ``config`` (a dict),
    its training ``result`` and everything else its ``config.json`` holds (``meta``)."""

    tensors: dict[str, torch.Tensor]
    config: dict[str, Any]
    result: TrainingResult
    meta: dict[str, Any]


def save_checkpoint(
    path: str | Path,
    *,
    model: str,
    config: Any,
    result: TrainingResult,
    tensors: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the folder ``path``: ``tensors`` as ``model.safetensors`` and, as
    ``config.json``, the ``model`` name, the format, the ``config`` dataclass, the training
    ``result`` and any ``extra`` (JSON values) the model needs to load itself.

    Atomic: both files are written into a temporary folder beside ``path``, which then
    replaces it, so an interrupted save never leaves half a checkpoint (nor loses the
    one that was there).
    """
    meta = {
        "model": model,
        "format": CHECKPOINT_FORMAT,
        "config": asdict(config),
        "training": result.to_json(),
        **(extra or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, str(staging / WEIGHTS_FILE))
        (staging / CONFIG_FILE).write_text(json.dumps(meta, indent=1) + "\n")  # keys in order: curve columns
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            staging.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def load_checkpoint(path: str | Path, *, model: str | None = None) -> Checkpoint:
    """Read a folder written by :func:`save_checkpoint`; with ``model``, ``ValueError``
    unless that model wrote it. A folder that is not a checkpoint is a
    ``FileNotFoundError``; another checkpoint format, a ``ValueError``."""
    path = Path(path)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path}: no {name}; not a checkpoint folder")
    meta = json.loads((path / CONFIG_FILE).read_text())
    if model is not None and meta.get("model") != model:
        raise ValueError(f"{path} holds a {meta.get('model')!r} checkpoint, not {model}")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {meta.get('format')!r}; this workbench reads {CHECKPOINT_FORMAT}")
    result = TrainingResult.from_json(meta.get("training", {}))
    return Checkpoint(load_file(str(path / WEIGHTS_FILE)), meta.get("config", {}), result, meta)


def checkpoint_model(path: str | Path) -> str:
    """The model name a checkpoint folder was written by (its ``config.json``)."""
    config = Path(path) / CONFIG_FILE
    if not config.is_file():
        raise FileNotFoundError(f"{path}: no {CONFIG_FILE}; not a checkpoint folder")
    return json.loads(config.read_text()).get("model", "?")

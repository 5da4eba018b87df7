"""The shared training loop and checkpoint files, on a network small enough to reason about."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.devices import BatchTooLargeError, autocast
from workbench.models.training import (
    CHECKPOINT_FORMAT,
    CURVE_COLUMNS,
    LoopOptions,
    TrainingResult,
    _optimizer,
    learning_rate_factor,
    load_checkpoint,
    save_checkpoint,
    train,
)


def regression(seed: int = 0):
    """y = 3x - 1 with a little noise, in batches of 16; a fresh 1-1 linear layer."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(128, 1, generator=gen)
    y = 3 * x - 1 + 0.01 * torch.randn(128, 1, generator=gen)
    network = torch.nn.Linear(1, 1)

    def batches(rng: np.random.Generator):
        order = rng.permutation(len(x))
        for start in range(0, len(x), 16):
            rows = torch.as_tensor(order[start : start + 16])
            yield x[rows], y[rows]

    def loss(batch):
        return torch.nn.functional.mse_loss(network(batch[0]), batch[1])

    return network, batches, loss


def test_loss_falls_and_curves_have_one_row_per_epoch():
    network, batches, loss = regression()
    result = train(
        network,
        batches=batches,
        loss=loss,
        validate=None,
        options=LoopOptions(epochs=30, learning_rate=0.1, warmup_steps=5),
        progress=False,
    )
    curves = result.curves
    assert list(curves.columns) == list(CURVE_COLUMNS)
    assert CURVE_COLUMNS == ("epoch", "train_loss", "valid_score", "seconds", "train_seconds", "peak_memory_mb")
    assert curves["epoch"].tolist() == list(range(1, 31)) and curves["valid_score"].isna().all()
    assert curves["train_loss"].iloc[-1] < 0.01 < curves["train_loss"].iloc[0]
    assert result.best_epoch == 30 and not result.stopped_early and not network.training
    assert network.weight.item() == pytest.approx(3.0, abs=0.05)


def test_early_stopping_restores_the_best_weights():
    network, batches, loss = regression()
    scores = iter([0.1, 0.5, 0.4, 0.3, 0.2, 0.9])
    weights = []

    def validate():
        weights.append(network.weight.item())
        assert not network.training and torch.is_inference_mode_enabled()
        return next(scores)

    options = LoopOptions(epochs=6, learning_rate=0.1, patience=3, warmup_steps=1)
    result = train(network, batches=batches, loss=loss, validate=validate, options=options, progress=False)
    assert result.stopped_early and result.best_epoch == 2 and result.best_score == 0.5
    assert len(result.curves) == 5  # epochs 3, 4, 5 did not improve: stop after 5
    assert network.weight.item() == pytest.approx(weights[1])


def test_eval_every_skips_validations_but_always_validates_the_last_epoch():
    network, batches, loss = regression()
    result = train(
        network,
        batches=batches,
        loss=loss,
        validate=lambda: 1.0,
        options=LoopOptions(epochs=5, eval_every=2),
        progress=False,
    )
    assert result.curves["valid_score"].notna().tolist() == [False, True, False, True, True]


def test_same_seed_same_weights():
    finals = []
    for _ in range(2):
        torch.manual_seed(123)  # the network's initial weights
        network, batches, loss = regression()
        train(network, batches=batches, loss=loss, validate=None, options=LoopOptions(epochs=3, seed=5), progress=False)
        finals.append((network.weight.item(), network.bias.item()))
    assert finals[0] == finals[1]


def test_the_fused_optimizer_makes_the_same_updates_as_the_plain_one():
    finals = {}
    for fused in (True, False):
        torch.manual_seed(123)
        network, batches, loss = regression()
        start = torch.cat([network.weight.detach().ravel(), network.bias.detach()])
        options = LoopOptions(epochs=3, learning_rate=0.1, weight_decay=0.01, warmup_steps=2, fused_optimizer=fused)
        train(network, batches=batches, loss=loss, validate=None, options=options, progress=False)
        finals[fused] = torch.cat([network.weight.detach().ravel(), network.bias.detach()])
    assert (finals[True] - start).abs().min() > 0.1  # it trained
    torch.testing.assert_close(finals[True], finals[False], rtol=1e-5, atol=1e-6)


def test_the_optimizer_is_fused_on_cpu_unless_told_not_to():
    network = torch.nn.Linear(2, 2)
    assert _optimizer([(list(network.parameters()), 0.1)], 0.0).defaults["fused"] is True
    assert not _optimizer([(list(network.parameters()), 0.1)], 0.0, fused=False).defaults["fused"]
    with pytest.raises(ValueError, match="fused_optimizer must be True or False, got 'yes'"):
        LoopOptions(fused_optimizer="yes")


def test_autocast_is_a_no_op_on_cpu():
    with autocast(torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.parametrize(
    "precision, dtype", [("auto", torch.float32), ("fp32", torch.float32), ("bf16", torch.bfloat16)]
)
def test_loss_and_validation_run_at_the_options_precision(precision, dtype):
    network, batches, _ = regression()
    seen = {}

    def loss(batch):
        out = network(batch[0])
        seen["train"] = out.dtype
        return torch.nn.functional.mse_loss(out.float(), batch[1])

    def validate():
        seen["valid"] = network(torch.ones(2, 1)).dtype
        return 0.0

    options = LoopOptions(epochs=1, precision=precision)
    train(network, batches=batches, loss=loss, validate=validate, options=options, progress=False)
    assert seen == {"train": dtype, "valid": dtype}


@dataclass(frozen=True)
class Options:
    """A stand-in model config (any dataclass is saved with ``asdict``)."""

    a: int = 1
    name: str = "x"


def a_result(best_epoch: int = 2) -> TrainingResult:
    curves = pd.DataFrame(
        {
            "epoch": [0, 1, 2],
            "train_loss": [math.nan, 0.5, 0.25],
            "valid_score": [0.1, math.nan, 0.3],
            "seconds": [0.0, 1.0, 2.0],
            "train_seconds": [0.0, 1.0, 1.0],
            "peak_memory_mb": [10.0, 11.0, 12.0],
        }
    )
    return TrainingResult(curves, best_epoch, 0.3, False)


def test_checkpoint_roundtrip(tmp_path):
    tensors = {"w": torch.arange(6.0).reshape(2, 3), "ids": torch.tensor([5, 7])}
    result = a_result()
    path = save_checkpoint(
        tmp_path / "ckpt", model="X", config=Options(a=3), result=result, tensors=tensors, extra={"note": [1, 2]}
    )
    assert {p.name for p in path.iterdir()} == {"model.safetensors", "config.json"}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no staging folder left behind
    back = load_checkpoint(path)
    meta = json.loads((path / "config.json").read_text())
    assert back.meta == meta and set(meta) == {"model", "format", "config", "training", "note"}
    assert (meta["model"], meta["format"], meta["note"]) == ("X", CHECKPOINT_FORMAT, [1, 2])
    assert back.config == {"a": 3, "name": "x"} and meta["config"] == back.config
    assert set(meta["training"]) == {"best_epoch", "best_score", "stopped_early", "curves"}
    assert meta["training"]["curves"]["train_loss"][0] is None  # strict JSON: NaN is null
    assert (back.result.best_epoch, back.result.best_score, back.result.stopped_early) == (2, 0.3, False)
    pd.testing.assert_frame_equal(back.result.curves, result.curves, check_dtype=False, check_like=True)
    assert all(torch.equal(back.tensors[k], tensors[k]) for k in tensors)
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        load_checkpoint(tmp_path)


def test_checkpoint_keeps_the_curve_columns_in_order(tmp_path):
    result = a_result()
    curves = result.curves.assign(tokens=[0, 5, 6])  # a model's own column comes after the standard ones
    result = TrainingResult(curves, 2, 0.3, False)
    path = save_checkpoint(tmp_path / "ckpt", model="X", config=Options(), result=result, tensors={"w": torch.ones(1)})
    assert list(load_checkpoint(path).result.curves.columns) == [*CURVE_COLUMNS, "tokens"]


# -- what the loop gained: parameter groups, epoch 0, decay, patience 0, OOM, extras -----


def test_parameter_groups_train_at_their_own_learning_rates():
    torch.manual_seed(7)
    network, batches, loss = regression()
    start = {name: p.detach().clone() for name, p in network.named_parameters()}
    options = LoopOptions(epochs=5, learning_rate=0.1, warmup_steps=1)
    groups = [([network.weight], 0.1), ([network.bias], 0.0)]  # the bias is frozen by its rate
    train(network, batches=batches, loss=loss, validate=None, options=options, parameter_groups=groups, progress=False)
    assert torch.equal(network.bias.detach(), start["bias"])
    assert not torch.equal(network.weight.detach(), start["weight"])
    # two groups at the default rate train exactly like no groups at all
    finals = []
    for groups in (None, [([network.weight], 0.1), ([network.bias], 0.1)]):
        with torch.no_grad():
            for name, p in network.named_parameters():
                p.copy_(start[name])
        train(
            network, batches=batches, loss=loss, validate=None, options=options, parameter_groups=groups, progress=False
        )
        finals.append([p.detach().clone() for p in network.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*finals))


def test_validate_first_adds_epoch_zero_and_keeps_the_untrained_weights_when_best():
    network, batches, loss = regression()
    untrained = [p.detach().clone() for p in network.parameters()]
    scores = iter([0.9, 0.1, 0.2])
    options = LoopOptions(epochs=2, learning_rate=0.1, warmup_steps=1)
    result = train(
        network,
        batches=batches,
        loss=loss,
        validate=lambda: next(scores),
        options=options,
        validate_first=True,
        progress=False,
    )
    curves = result.curves
    assert curves["epoch"].tolist() == [0, 1, 2] and curves["valid_score"].tolist() == [0.9, 0.1, 0.2]
    assert np.isnan(curves.loc[0, "train_loss"]) and curves.loc[0, "train_seconds"] == 0.0
    assert curves["seconds"].is_monotonic_increasing  # cumulative
    assert result.best_epoch == 0 and result.best_score == 0.9 and not result.stopped_early
    assert all(torch.equal(p.detach(), q) for p, q in zip(network.parameters(), untrained))
    # without a validation set there is nothing to validate first: no epoch-0 row
    network, batches, loss = regression()
    result = train(
        network, batches=batches, loss=loss, validate=None, options=options, validate_first=True, progress=False
    )
    assert result.curves["epoch"].tolist() == [1, 2] and result.best_epoch == 2


def test_learning_rate_warms_up_then_decays_linearly_to_zero():
    factor = learning_rate_factor(LoopOptions(warmup_steps=4, decay_steps=10))
    got = [factor(step) for step in range(13)]
    expected = [0.25, 0.5, 0.75, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0, 0.0, 0.0]
    assert got == pytest.approx(expected)
    constant = learning_rate_factor(LoopOptions(warmup_steps=4))
    assert [constant(step) for step in (0, 3, 4, 100, 10_000)] == pytest.approx([0.25, 1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="decay_steps"):
        LoopOptions(decay_steps=0)
    with pytest.raises(ValueError, match="precision"):
        LoopOptions(precision="int8")


def test_train_follows_the_decay_schedule():
    network, batches, loss = regression()
    start = network.weight.item()
    weights = []

    def validate():
        weights.append(network.weight.item())
        return 0.0

    # decay_steps=1: the first step runs at the full rate, every later one at rate 0
    options = LoopOptions(epochs=3, learning_rate=0.1, warmup_steps=1, decay_steps=1, patience=0)
    train(network, batches=batches, loss=loss, validate=validate, options=options, progress=False)
    assert weights[0] != start and weights == [weights[0]] * 3


def test_patience_zero_never_stops_early():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    for patience, epochs_run in ((0, 6), (1, 2), (2, 3)):
        network, batches, loss = regression()
        it = iter(scores)
        options = LoopOptions(epochs=6, learning_rate=0.1, warmup_steps=1, patience=patience)
        result = train(
            network, batches=batches, loss=loss, validate=lambda it=it: next(it), options=options, progress=False
        )
        assert len(result.curves) == epochs_run and result.stopped_early == (patience > 0)
        assert result.best_epoch == 1


def test_out_of_memory_in_the_loss_names_the_batch_size():
    network, batches, _ = regression()

    def boom(batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    options = LoopOptions(epochs=1)
    with pytest.raises(BatchTooLargeError, match=r"batch_size=64.*try batch_size=32") as info:
        train(
            network,
            batches=batches,
            loss=boom,
            validate=None,
            options=options,
            batch_size=64,
            description="SASRec",
            progress=False,
        )
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError) and "SASRec" in str(info.value)

    def cpu_boom(batch):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 GB")

    with pytest.raises(BatchTooLargeError, match="smaller batch_size"):
        train(network, batches=batches, loss=cpu_boom, validate=None, options=options, progress=False)

    def other(batch):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):  # anything else passes through unchanged
        train(network, batches=batches, loss=other, validate=None, options=options, batch_size=64, progress=False)


def test_epoch_extras_become_columns_after_the_standard_ones():
    network, batches, loss = regression()
    counter = iter(range(100))
    result = train(
        network,
        batches=batches,
        loss=loss,
        validate=lambda: 1.0,
        options=LoopOptions(epochs=2),
        validate_first=True,
        epoch_extras=lambda: {"calls": next(counter)},
        progress=False,
    )
    assert list(result.curves.columns) == [*CURVE_COLUMNS, "calls"]
    assert result.curves["calls"].tolist() == [0, 1, 2]


# -- checkpoints: atomic, and refusing what is not theirs ----------------------------------


def test_a_failed_save_keeps_the_old_checkpoint_and_a_good_one_replaces_it(tmp_path):
    path = tmp_path / "ckpt"
    old = {"w": torch.zeros(3)}
    save_checkpoint(path, model="X", config=Options(a=1), result=a_result(), tensors=old)
    shared = torch.ones(4)
    with pytest.raises(RuntimeError, match="share memory"):  # safetensors refuses them
        save_checkpoint(path, model="X", config=Options(a=2), result=a_result(), tensors={"a": shared, "b": shared})
    with pytest.raises(TypeError):  # the weights are written, then config.json fails half-way
        save_checkpoint(
            path,
            model="X",
            config=Options(a=2),
            result=a_result(),
            tensors={"w": torch.ones(3)},
            extra={"bad": object()},
        )
    kept = load_checkpoint(path)
    assert torch.equal(kept.tensors["w"], old["w"]) and kept.config["a"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # nothing half-written left beside it
    save_checkpoint(path, model="X", config=Options(a=3), result=a_result(best_epoch=1), tensors={"v": torch.ones(2)})
    new = load_checkpoint(path)
    assert set(new.tensors) == {"v"} and new.config["a"] == 3 and new.result.best_epoch == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # the replaced one is gone


def test_load_checkpoint_refuses_another_models_checkpoint_and_another_format(tmp_path):
    path = save_checkpoint(
        tmp_path / "ckpt", model="SASRec", config=Options(), result=a_result(), tensors={"w": torch.zeros(1)}
    )
    assert load_checkpoint(path, model="SASRec").meta["model"] == "SASRec"
    with pytest.raises(ValueError, match="holds a 'SASRec' checkpoint, not BERT4Rec"):
        load_checkpoint(path, model="BERT4Rec")
    meta = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**meta, "format": CHECKPOINT_FORMAT + 1}))
    with pytest.raises(ValueError, match="format"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="format"):
        load_checkpoint(path, model="SASRec")

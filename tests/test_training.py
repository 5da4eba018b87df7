"""The shared training loop and checkpoint files, on a network small enough to reason about."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench.training import (
    LoopOptions,
    SequentialConfig,
    autocast,
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
    result = train(network, batches=batches, loss=loss, validate=None, options=LoopOptions(epochs=30, learning_rate=0.1, warmup_steps=5), progress=False)
    curves = result.curves
    assert list(curves.columns) == ["epoch", "train_loss", "valid_score", "seconds"]
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
    result = train(network, batches=batches, loss=loss, validate=lambda: 1.0,
                   options=LoopOptions(epochs=5, eval_every=2), progress=False)
    assert result.curves["valid_score"].notna().tolist() == [False, True, False, True, True]


def test_same_seed_same_weights():
    finals = []
    for _ in range(2):
        torch.manual_seed(123)  # the network's initial weights
        network, batches, loss = regression()
        train(network, batches=batches, loss=loss, validate=None, options=LoopOptions(epochs=3, seed=5), progress=False)
        finals.append((network.weight.item(), network.bias.item()))
    assert finals[0] == finals[1]


def test_autocast_is_a_no_op_on_cpu():
    with autocast(torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_checkpoint_roundtrip(tmp_path):
    tensors = {"w": torch.arange(6.0).reshape(2, 3), "ids": torch.tensor([5, 7])}
    path = save_checkpoint(tmp_path / "ckpt", tensors, {"model": "X", "config": {"a": 1}})
    assert {p.name for p in path.iterdir()} == {"model.safetensors", "config.json"}
    back, meta = load_checkpoint(path)
    assert meta == {"model": "X", "config": {"a": 1}} and json.loads((path / "config.json").read_text()) == meta
    assert all(torch.equal(back[k], tensors[k]) for k in tensors)
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(embedding_size=30, heads=4), "divisible"),
        (dict(max_length=0), "max_length"),
        (dict(dropout=1.0), "dropout"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(epochs=2.5), "epochs"),
    ],
)
def test_sequential_config_rejects_bad_values(options, message):
    with pytest.raises(ValueError, match=message):
        SequentialConfig(**options)
    with pytest.raises(TypeError):
        SequentialConfig(64)  # keyword-only

"""Training curves: one curves frame or several by model, epoch 0 validated only, the
best validated epoch marked."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from workbench.models.training import CURVE_COLUMNS
from workbench.plots.training import training_curves


def _curves(valid: list[float], *, validate_first: bool = True) -> pd.DataFrame:
    """A TrainingResult.curves frame: epoch 0 (validated, not trained) when
    ``validate_first``, then one row per trained epoch."""
    n = len(valid) - validate_first
    epochs = np.arange(0 if validate_first else 1, n + 1)
    loss = [np.nan] * validate_first + [1.0 / e for e in range(1, n + 1)]
    seconds = np.arange(len(epochs), dtype=float)
    return pd.DataFrame(
        {
            "epoch": epochs,
            "train_loss": loss,
            "valid_score": valid,
            "seconds": seconds,
            "train_seconds": seconds,
            "peak_memory_mb": 1.0,
        },
        columns=list(CURVE_COLUMNS),
    )


def _best_epoch_lines(ax) -> list[float]:
    """x of the vertical dotted lines (the best epochs)."""
    return [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == ":"]


def test_one_frame_draws_loss_and_validation_and_marks_the_best_epoch():
    fig = training_curves(_curves([0.05, 0.10, 0.30, 0.20]), k=5, title="SASRec")
    loss_ax, valid_ax = fig.axes
    assert isinstance(fig, Figure) and fig._suptitle.get_text() == "SASRec"
    [loss] = loss_ax.lines
    assert list(loss.get_xdata()) == [1, 2, 3]  # epoch 0 is validated, not trained
    valid = [line for line in valid_ax.lines if line.get_linestyle() != ":"]
    assert len(valid) == 1 and list(valid[0].get_xdata()) == [0, 1, 2, 3]
    assert _best_epoch_lines(valid_ax) == [2]
    assert "nDCG@5" in valid_ax.get_ylabel() and loss_ax.get_title() and valid_ax.get_title()
    assert loss_ax.get_legend() is None  # one unnamed model: nothing to tell apart
    plt.close(fig)


def test_a_dict_draws_one_line_per_model_each_with_its_best_epoch():
    curves = {"SASRec": _curves([0.05, 0.30, 0.20]), "BERT4Rec": _curves([0.1, 0.2, 0.25, 0.4], validate_first=False)}
    fig = training_curves(curves)
    loss_ax, valid_ax = fig.axes
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["SASRec", "BERT4Rec"]
    assert [t.get_text() for t in valid_ax.get_legend().get_texts()] == ["SASRec", "BERT4Rec"]
    assert len(loss_ax.lines) == 2
    assert _best_epoch_lines(valid_ax) == [1, 4]
    assert "nDCG@10" in valid_ax.get_ylabel()  # k defaults to 10
    plt.close(fig)


def test_curves_without_validation_draw_no_best_epoch():
    frame = _curves([np.nan, np.nan, np.nan], validate_first=False)
    fig = training_curves({"no validation": frame})
    assert len(fig.axes[0].lines) == 1 and _best_epoch_lines(fig.axes[1]) == []
    plt.close(fig)


@pytest.mark.parametrize("curves", [pd.DataFrame(columns=list(CURVE_COLUMNS)), {}])
def test_empty_curves_still_make_a_figure(curves):
    fig = training_curves(curves)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    plt.close(fig)

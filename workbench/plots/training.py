"""Training curves of the models trained by :func:`workbench.models.training.train`
(the two-tower in notebook 03, the sequential models in notebook 04)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure


def training_curves(curves: pd.DataFrame | dict[str, pd.DataFrame], *, k: int = 10, title: str = "") -> Figure:
    """Training loss and validation nDCG@k per epoch, one line per model.

    ``curves``: one :attr:`~workbench.models.training.TrainingResult.curves` frame, or
    several by model name. Epoch 0, where present, is the untrained start (validated,
    not trained); a dotted line marks each model's best validated epoch (the weights kept).
    """
    if isinstance(curves, pd.DataFrame):
        curves = {"": curves}
    fig, (loss_ax, valid_ax) = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, frame in curves.items():
        trained = frame.dropna(subset=["train_loss"])
        loss_ax.plot(trained["epoch"], trained["train_loss"], marker="." if len(trained) < 30 else None, label=name)
        valid = frame.dropna(subset=["valid_score"])
        line = valid_ax.plot(valid["epoch"], valid["valid_score"], marker=".", label=name)[0]
        if len(valid):
            best = valid.loc[valid["valid_score"].idxmax()]
            valid_ax.axvline(best["epoch"], color=line.get_color(), linestyle=":", linewidth=1)
    loss_ax.set(xlabel="epoch", ylabel="training loss (nats per predicted item)", title="Training loss")
    valid_ax.set(
        xlabel="epoch (0 = before training)",
        ylabel=f"validation nDCG@{k}",
        title="Validation (dotted: best epoch, kept)",
    )
    if any(curves):
        for ax in (loss_ax, valid_ax):
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig

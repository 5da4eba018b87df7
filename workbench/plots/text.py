"""Figures for notebook 03 (text models). Each function returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from workbench.data.schema import ITEM


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """(n, d) -> (n, 2) projection on the two leading principal components."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def embedding_map(vectors: pd.DataFrame, items: pd.DataFrame, *, top_genres: int = 8, title: str = "") -> Figure:
    """Items' vectors (rows indexed by ``item_id``) in 2-D by PCA, coloured by first genre.

    Genres beyond the ``top_genres`` most frequent are drawn grey as "other".
    """
    genres = items.set_index(ITEM)["genres"].reindex(vectors.index)
    first = genres.map(lambda g: g[0] if isinstance(g, tuple) and len(g) else "none")
    keep = first.value_counts().index[:top_genres]
    label = first.where(first.isin(keep), "other")
    xy = pca_2d(vectors.to_numpy())
    fig, ax = plt.subplots(figsize=(6.5, 5))
    colours = plt.get_cmap("tab10")
    for n, g in enumerate([*keep, "other"]):
        sel = (label == g).to_numpy()
        if sel.any():
            ax.scatter(
                xy[sel, 0], xy[sel, 1], s=6, alpha=0.7, label=g, color="lightgrey" if g == "other" else colours(n % 10)
            )
    ax.set(
        xlabel="principal component 1",
        ylabel="principal component 2",
        title=title or "Item text embeddings (PCA), coloured by first genre",
    )
    ax.legend(markerscale=3, fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def weight_curve(validation: pd.DataFrame, *, title: str = "") -> Figure:
    """Validation nDCG against the hybrid's CF weight (``Hybrid.validation_``)."""
    metric = next(c for c in validation.columns if c != "cf_weight")
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(validation["cf_weight"], validation[metric], marker="o")
    ax.set(
        xlabel="CF weight w (0 = text only, 1 = CF only)",
        ylabel=f"validation {metric.replace('valid_', '')}",
        title=title or "Hybrid: score fusion weight",
    )
    fig.tight_layout()
    return fig

"""The cold-start protocol of notebook 03: text models that rank items nobody has interacted with.

:func:`text_models` fits the three text models on a :func:`workbench.data.splits.cold_split`
and its pseudo-cold carve; call it once per item text (``workbench.data.text.with_tags``
with one tag policy, then another) to see what the text is worth. The CF baselines (EASE,
genre popularity) read no text and are fitted once by the caller.
"""

from __future__ import annotations

import pandas as pd

from workbench.data.splits import ColdSplit
from workbench.models.base import Recommender
from workbench.models.ease import EASE
from workbench.models.hybrid import Hybrid
from workbench.models.text.encoder import Encoder
from workbench.models.text.frozen import FrozenText
from workbench.models.text.two_tower import TwoTower, TwoTowerConfig

TWO_TOWER = "Two-tower (fine-tuned)"


def text_models(
    items: pd.DataFrame,
    cold: ColdSplit,
    carve: ColdSplit,
    *,
    encoder: Encoder,
    config: TwoTowerConfig,
    cold_fraction: float,
    k: int = 10,
    progress: bool = False,
) -> dict[str, Recommender]:
    """Frozen text, the two-tower and the hybrid, fitted for cold start on ``items``' text.

    The two-tower is fine-tuned on ``carve.train`` with early stopping on the pseudo-cold
    ``carve.test``; the hybrid (EASE carried to cold items through text neighbours) then
    chooses its weight on its own pseudo-cold carve of ``cold.train`` and folds
    ``cold.train`` into the two-tower, so both rank with every warm interaction.
    """
    two_tower = TwoTower(items, encoder=encoder, config=config).fit(
        carve.train, validation=carve.test, candidates=carve.cold_items, progress=progress
    )
    hybrid = Hybrid(cf=EASE(), text=two_tower, target="cold", cold_fraction=cold_fraction, k=k).fit(cold.train)
    return {
        "Frozen text": FrozenText(items, encoder=encoder).fit(cold.train),
        TWO_TOWER: two_tower,
        "Hybrid (EASE via text + two-tower)": hybrid,
    }


def side_by_side(tables: dict[str, pd.DataFrame], metric: str) -> pd.DataFrame:
    """One ``metric`` column per named table (rows: models in all of them), and the
    difference of the last from the first: e.g. ``{"no tags": t0, "all tags": t1}``."""
    names = list(tables)
    out = pd.concat({name: t[metric] for name, t in tables.items()}, axis=1).dropna()
    out[f"{names[-1]} - {names[0]}"] = out[names[-1]] - out[names[0]]
    return out

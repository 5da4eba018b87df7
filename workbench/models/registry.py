"""Every model by name, in one place: build one, load a checkpoint, ask what it takes.

>>> build("EASE", reg=300)                     # == EASE(reg=300); names ignore case
>>> build("sasrec", epochs=3, max_length=25)
>>> build("TwoTower", items=data.items, encoder=enc, epochs=6)
>>> load("runs/sasrec-ckpt")                   # whichever model wrote the checkpoint
>>> options("IALS")                            # ('factors', 'reg', 'alpha', ...)
>>> build("ease", **applicable("ease", seed=0, device="cpu"))   # EASE has no seed: dropped

The service, the speed benchmark, sweeps and the CLI build models only through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.models.base import NotFittedError, Recommender, to_frame, topk_blocked
from workbench.models.blend import Blend, BlendConfig
from workbench.models.bpr import BPR, BPRConfig
from workbench.models.config import option_names
from workbench.models.ease import EASE, EASEConfig
from workbench.models.hybrid import Hybrid, HybridConfig
from workbench.models.ials import IALS, IALSConfig
from workbench.models.knn import ItemKNN, ItemKNNConfig
from workbench.models.popularity import GenrePopularity, GenrePopularityConfig, Popularity, PopularityConfig
from workbench.models.sequential.base import SequentialModel
from workbench.models.sequential.bert4rec import BERT4Rec, BERT4RecConfig
from workbench.models.sequential.sasrec import SASRec, SASRecConfig
from workbench.models.text.frozen import FrozenText, FrozenTextConfig
from workbench.models.text.two_tower import TwoTower, TwoTowerConfig
from workbench.models.training import checkpoint_model
from workbench.models.two_stage import TwoStage, TwoStageConfig

#: what ``workbench.models`` exports (every model, its config and the registry functions)
__all__ = [
    "BPR",
    "EASE",
    "IALS",
    "MODELS",
    "BERT4Rec",
    "BERT4RecConfig",
    "BPRConfig",
    "Blend",
    "BlendConfig",
    "EASEConfig",
    "FrozenText",
    "FrozenTextConfig",
    "GenrePopularity",
    "GenrePopularityConfig",
    "Hybrid",
    "HybridConfig",
    "IALSConfig",
    "ItemKNN",
    "ItemKNNConfig",
    "NotFittedError",
    "Popularity",
    "PopularityConfig",
    "Recommender",
    "SASRec",
    "SASRecConfig",
    "TwoStage",
    "TwoStageConfig",
    "TwoTower",
    "TwoTowerConfig",
    "applicable",
    "build",
    "checkpoint_model",
    "is_sequential",
    "load",
    "model_class",
    "options",
    "to_frame",
    "topk_blocked",
]

#: every model, by its class name
MODELS: dict[str, type[Recommender]] = {
    cls.__name__: cls
    for cls in (
        Popularity,
        GenrePopularity,
        ItemKNN,
        EASE,
        IALS,
        BPR,
        Blend,
        SASRec,
        BERT4Rec,
        FrozenText,
        TwoTower,
        Hybrid,
        TwoStage,
    )
}


def model_class(name: str) -> type[Recommender]:
    """The class registered as ``name`` (any case); ``ValueError`` lists the names."""
    found = {key.lower(): cls for key, cls in MODELS.items()}.get(str(name).lower())
    if found is None:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return found


def build(name: str, /, **options: Any) -> Recommender:
    """A new, unfitted model ``name`` with ``options`` (and any constructor argument, such
    as ``items=`` or ``encoder=``). An option the model does not take is a ``TypeError``
    naming the ones it does; a value out of range, a ``ValueError``."""
    return model_class(name)(**options)


def options(name: str) -> tuple[str, ...]:
    """The options model ``name`` takes (its config's fields), in declaration order."""
    return option_names(model_class(name).config_class)


def applicable(name: str, /, **settings: Any) -> dict[str, Any]:
    """The ``settings`` that model ``name`` takes as options, the others dropped: for
    settings a study shares across models (``seed``, ``device``, ``epochs``), e.g.
    ``build(name, **applicable(name, seed=0, device="cpu"))``. Options meant for one
    model go to :func:`build` directly, where a typo is an error."""
    taken = options(name)
    return {key: value for key, value in settings.items() if key in taken}


def is_sequential(name: str) -> bool:
    """True for the next-item transformers (SASRec, BERT4Rec)."""
    return issubclass(model_class(name), SequentialModel)


def load(path: str | Path, **options: Any) -> Recommender:
    """The fitted model saved in the checkpoint folder ``path``, whichever model wrote it
    (``options`` go to its ``load``: ``device=`` for sequential models, ``encoder=`` for
    the two-tower)."""
    cls = model_class(checkpoint_model(path))
    if not hasattr(cls, "load"):
        raise ValueError(f"{path}: {cls.__name__} has no checkpoint format")
    return cls.load(path, **options)

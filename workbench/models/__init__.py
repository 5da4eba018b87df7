"""Recommenders behind one interface, :class:`~workbench.models.base.Recommender`.

One module per model (``popularity``, ``knn``, ``ease``, ``ials``, ``bpr``, ``blend``,
``hybrid``), the next-item transformers in :mod:`.sequential` and the text models in
:mod:`.text`; what they share lives once: the interface and blocked top-k (:mod:`.base`),
the constructor convention (:mod:`.config`), the training loop and checkpoint format
(:mod:`.training`), self-validation (:mod:`.validation`), score fusion (:mod:`.fusion`)
and the registry (:mod:`.registry`: ``build(name, **options)``, ``load(path)``).

Models may import :mod:`workbench.data`, :mod:`workbench.metrics` and
:mod:`workbench.devices`, never evaluation, serving or anything above. Every class and
registry function is available here (``workbench.models.EASE``,
``workbench.models.build``), through the registry, imported on first use, so that
importing one module of the package (``models.base`` for a type) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    registry = importlib.import_module("workbench.models.registry")  # imports every model, once
    if name not in registry.__all__:
        raise AttributeError(f"module 'workbench.models' has no attribute {name!r}")
    return getattr(registry, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *importlib.import_module("workbench.models.registry").__all__})

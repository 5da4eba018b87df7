"""Figures (and the odd display table) for the notebooks, one module per topic:
:mod:`.data` (01), :mod:`.cf` (02), :mod:`.text` (03), :mod:`.sequential` (04),
:mod:`.speed` (05), :mod:`.retrieval` (06), :mod:`.serving` (07), :mod:`.streaming` (08),
:mod:`.sweeps` (09), and what several share: :mod:`.training` (training curves) and
:mod:`.neighbours` (nearest items by title).

Every function returns a matplotlib Figure (or a DataFrame) and never displays it.
Plots may import any layer below them (data, metrics, models, evaluation, serving,
speed); only the widgets, the run machinery and the CLI sit above.
"""

from workbench.plots import (
    cf,
    data,
    neighbours,
    retrieval,
    sequential,
    serving,
    speed,
    streaming,
    sweeps,
    text,
    training,
)

__all__ = [
    "cf",
    "data",
    "neighbours",
    "retrieval",
    "sequential",
    "serving",
    "speed",
    "streaming",
    "sweeps",
    "text",
    "training",
]

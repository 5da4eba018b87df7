"""Every combination of a grid of settings: the one grid expander, used by grid search
(:mod:`.search`) and by notebook sweeps (:mod:`workbench.runs.sweeps`). Plain Python, so
a sweep's driver processes need not load torch."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence


def parameter_grid(options: Mapping[str, Sequence]) -> list[dict]:
    """Every combination of ``options`` (name -> values), as a list of dicts, the last
    name varying fastest."""
    names = list(options)
    return [dict(zip(names, values)) for values in itertools.product(*(options[n] for n in names))]

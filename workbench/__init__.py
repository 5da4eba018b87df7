"""workbench: the reference workbench for real-time recommender performance.

Layers, lowest first; a module imports only from its own layer or lower ones (checked
by ``lint-imports``, see ``[tool.importlinter]`` in pyproject.toml):

- :mod:`workbench.data` and :mod:`workbench.devices` -- interactions, splits and
  sequences; device, precision and memory;
- :mod:`workbench.metrics` -- metric definitions;
- :mod:`workbench.models` -- every recommender, its training loop and the registry;
- :mod:`workbench.evaluation` -- protocols that fit, rank and compare models;
- :mod:`workbench.serving` and :mod:`workbench.speed` -- real-time serving; inference speed;
- :mod:`workbench.plots` -- the notebooks' figures;
- :mod:`workbench.runs` and :mod:`workbench.widgets` -- recording, executing, storing
  and sweeping notebook runs; interactive panels;
- :mod:`workbench.cli` -- the ``workbench`` command.
"""

__version__ = "0.1.0"

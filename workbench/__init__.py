"""workbench: the reference workbench for real-time recommender performance."""

__version__ = "0.1.0"

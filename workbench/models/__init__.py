"""Recommenders behind one interface (:class:`Recommender`)."""

from workbench.models.base import NotFittedError, Recommender, topk_blocked

__all__ = ["NotFittedError", "Recommender", "topk_blocked"]

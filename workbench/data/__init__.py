"""Interaction data, from the raw files to what a model is fitted on.

The schema (``user_id``, ``item_id``, ``rating``, ``timestamp``; :mod:`.schema`), data
sets by name (MovieLens downloads verified and cached, and the synthetic generator;
:mod:`.datasets`, :mod:`.download`, :mod:`.movielens`, :mod:`.synthetic`), id maps and
sparse matrices (:mod:`.matrix`), splits (:mod:`.splits`) and per-user item sequences
(:mod:`.sequences`).

The bottom layer: it imports nothing else from the workbench, and everything above it
may import it.
"""

"""Evaluation protocols: how models are fitted, ranked and compared on a split.

- :mod:`.topk` -- top-k lists against held-out interactions (notebooks 02 and 03), beside
  Microsoft Recommenders' published table;
- :mod:`.next_item` -- leave-one-out next-item ranking, full and sampled (notebook 04);
- :mod:`.pointwise` -- will user u interact with item i: calibrated ROC-AUC and log-loss;
- :mod:`.cold_start` -- the text models fitted for cold items (notebook 03), per item text;
- :mod:`.search` -- grids, grid search on validation, the quality-cost Pareto front.

Evaluation may import models (it fits them, through the registry), metrics, data and
devices; nothing below it imports evaluation.
"""

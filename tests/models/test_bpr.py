"""BPR: negatives are drawn from the items a user has not interacted with."""

from __future__ import annotations

import torch

from workbench.models.bpr import sample_negatives


def test_negatives_avoid_positives():
    n_items = 6
    positives = {0: [0, 1, 2, 3, 4], 1: [5]}  # user 0 has a single negative: item 5
    keys = torch.tensor(sorted(u * n_items + i for u, items in positives.items() for i in items))
    users = torch.tensor([0] * 500 + [1] * 500)
    items = sample_negatives(users, keys, n_items, torch.Generator().manual_seed(0))
    for user, item in zip(users.tolist(), items.tolist()):
        assert item not in positives[user] or user == 0  # user 0: 5 redraws may all miss
    assert (items[:500] == 5).float().mean() > 0.5  # redrawing finds it most of the time
    assert set(items[500:].tolist()) == {0, 1, 2, 3, 4}

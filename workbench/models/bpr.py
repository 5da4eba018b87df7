"""BPR: matrix factorisation trained on sampled (user, positive, negative) triples
(Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", 2009).

Score ``x_ui = p_u . q_i + b_i``. Each epoch visits every training interaction once in a
random order, pairs it with an item drawn uniformly from those the user has *not*
interacted with, and takes Adam steps on ``-log sigmoid(x_ui - x_uj)`` plus an L2
penalty on the embeddings in the batch. Plain torch: runs on CPU and CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from workbench.devices import resolve_device
from workbench.models.base import Recommender
from workbench.models.config import check_options

#: redraws of a negative that hit a positive before it is kept anyway (rare on sparse data)
NEGATIVE_REDRAWS = 5


@dataclass(frozen=True, kw_only=True)
class BPRConfig:
    """Options of :class:`BPR` (defaults chosen on a validation split of ml-100k
    training data; see notebook 02)."""

    factors: int = 64  # latent dimension
    epochs: int = 20  # passes over the training interactions
    learning_rate: float = 0.003  # Adam step size
    reg: float = 0.01  # L2 weight on the batch's embeddings and biases
    batch_size: int = 1024  # triples per step
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        check_options(self, positive=("factors", "epochs", "learning_rate", "batch_size"), non_negative=("reg",))


def sample_negatives(
    users: torch.Tensor, positive_keys: torch.Tensor, n_items: int, gen: torch.Generator
) -> torch.Tensor:
    """(B,) users -> (B,) items drawn uniformly, redrawn while (user, item) is a positive.

    ``positive_keys`` are the sorted ``user * n_items + item`` of every positive.
    """
    items = torch.randint(n_items, users.shape, generator=gen, device=users.device)
    for _ in range(NEGATIVE_REDRAWS):
        keys = users * n_items + items
        pos = torch.searchsorted(positive_keys, keys).clamp_max(len(positive_keys) - 1)
        clash = positive_keys[pos] == keys
        if not bool(clash.any()):
            break
        items = torch.where(clash, torch.randint(n_items, users.shape, generator=gen, device=users.device), items)
    return items


class BPR(Recommender):
    """Bayesian personalised ranking MF; see the module docstring."""

    config_class = BPRConfig

    def _fit(self, matrix: sp.csr_matrix, *, progress: bool = False) -> None:
        cfg = self.config
        device = resolve_device(cfg.device)
        init = torch.Generator().manual_seed(cfg.seed)  # parameters, drawn on CPU for any device
        gen = torch.Generator(device=device).manual_seed(cfg.seed)  # order and negatives
        n_users, n_items = matrix.shape
        coo = matrix.tocoo()
        users = torch.as_tensor(coo.row.astype(np.int64), device=device)  # (nnz,)
        items = torch.as_tensor(coo.col.astype(np.int64), device=device)  # (nnz,)
        keys = torch.sort(users * n_items + items).values  # (nnz,) sorted
        user_emb = torch.nn.Parameter((torch.randn(n_users, cfg.factors, generator=init) * 0.1).to(device))
        item_emb = torch.nn.Parameter((torch.randn(n_items, cfg.factors, generator=init) * 0.1).to(device))
        item_bias = torch.nn.Parameter(torch.zeros(n_items, device=device))
        opt = torch.optim.Adam([user_emb, item_emb, item_bias], lr=cfg.learning_rate)
        for _ in tqdm(range(cfg.epochs), desc="BPR", disable=not progress, leave=False):
            order = torch.randperm(len(users), generator=gen, device=device)
            for batch in order.split(cfg.batch_size):
                u, i = users[batch], items[batch]
                j = sample_negatives(u, keys, n_items, gen)
                pu, qi, qj = user_emb[u], item_emb[i], item_emb[j]  # (B, f) each
                diff = (pu * (qi - qj)).sum(1) + item_bias[i] - item_bias[j]  # (B,)
                penalty = (pu.square() + qi.square() + qj.square()).sum(1) + item_bias[i] ** 2 + item_bias[j] ** 2
                loss = -F.logsigmoid(diff).mean() + cfg.reg * penalty.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.user_factors_ = user_emb.detach()
        self.item_factors_ = item_emb.detach()
        self.item_bias_ = item_bias.detach()
        self.device_ = device

    def score(self, user_index: np.ndarray) -> torch.Tensor:
        """(B,) user indices -> (B, n_items) scores ``p_u . q_i + b_i``."""
        users = self.user_factors_[torch.as_tensor(user_index, device=self.device_)]
        return users @ self.item_factors_.T + self.item_bias_

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        """(B,) item indices -> (B, n_items) cosine similarity of item factors."""
        unit = F.normalize(self.item_factors_, dim=1)  # (n_items, f)
        return unit[torch.as_tensor(item_index, device=self.device_)] @ unit.T

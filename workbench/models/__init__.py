"""Recommenders behind one interface (:class:`Recommender`)."""

from workbench.models.base import NotFittedError, Recommender, topk_blocked
from workbench.models.bert4rec import BERT4Rec, BERT4RecConfig
from workbench.models.blend import Blend
from workbench.models.bpr import BPR
from workbench.models.ease import EASE
from workbench.models.ials import IALS
from workbench.models.knn import ItemKNN
from workbench.models.popularity import Popularity
from workbench.models.sasrec import SASRec, SASRecConfig
from workbench.models.text import FrozenText, TextRecommender
from workbench.models.two_tower import TwoTower, TwoTowerConfig
from workbench.models.hybrid import Hybrid

__all__ = ["NotFittedError", "Recommender", "topk_blocked"]
__all__ += ["BPR", "EASE", "IALS", "Blend", "ItemKNN", "Popularity"]
__all__ += ["BERT4Rec", "BERT4RecConfig", "SASRec", "SASRecConfig"]
__all__ += ["FrozenText", "TextRecommender", "TwoTower", "TwoTowerConfig", "Hybrid"]

"""BERT4Rec specifics: Cloze batches, positions counted from the newest item, tied output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertModel

from workbench.models import BERT4Rec, BERT4RecConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def model(n_items: int = 30, **options) -> BERT4Rec:
    torch.manual_seed(0)
    m = BERT4Rec(config=BERT4RecConfig(embedding_size=16, heads=2, layers=2, max_length=8, device="cpu", **options))
    m.device_ = torch.device("cpu")
    m.network = m._build(n_items).eval()
    return m


def test_built_on_transformers_bert_with_item_pad_and_mask_tokens():
    net = model(30).network
    assert isinstance(net.bert, BertModel)
    assert net.bert.config.vocab_size == 32 and net.mask_token == 31 and net.bert.config.pad_token_id == 0
    assert net.bert.config.max_position_embeddings == 8 and not net.bert.config.is_decoder


def test_output_layer_is_tied_to_the_item_embeddings():
    net = model(30).network
    hidden = torch.randn(3, 16)
    items = net.bert.embeddings.word_embeddings.weight[1:31]
    torch.testing.assert_close(net.logits(hidden), net.head(hidden) @ items.T + net.bias)
    assert not any(p.shape == (30, 16) for name, p in net.named_parameters() if "word_embeddings" not in name)


def test_cloze_batches_mask_about_p_of_the_items_and_at_least_one_per_sequence():
    m = model(50, mask_probability=0.3, batch_size=1000)
    rng = np.random.default_rng(0)
    m.sequences_ = [rng.integers(0, 50, size=rng.integers(2, 20)) for _ in range(400)]
    (batch,) = list(m._batches(np.random.default_rng(1)))
    tokens, masked, labels = batch["tokens"], batch["masked"], batch["labels"]
    assert masked.any(1).all() and (tokens[masked] == m.network.mask_token).all()
    assert (tokens[~masked] <= 50).all() and (labels >= 0).all() and (labels < 50).all()
    real = (tokens != 0).sum().item()
    assert 0.27 < masked.sum().item() / real < 0.36  # p plus the forced one in short sequences
    # a label is the original item under its mask: rebuild a sequence and compare
    windows = {tuple(w.tolist()) for s in m.sequences_ for w in [s[-8:]]}
    restored = tokens.clone()
    restored[masked] = labels + 1
    rows = {tuple((r[r > 0] - 1).tolist()) for r in restored}
    assert windows <= rows


def test_scoring_appends_mask_after_the_most_recent_items():
    m = model(30)
    batch = m.tokens([np.arange(20), np.array([4])])
    assert batch["tokens"].tolist() == [list(range(14, 21)) + [31], [0] * 6 + [5, 31]]
    assert m.context_length == 7


def test_newest_item_always_has_the_last_position():
    net = model(30).network
    short = torch.tensor([[5, 6, 31]])
    padded = torch.tensor([[0, 0, 0, 5, 6, 31]])
    with torch.inference_mode():
        torch.testing.assert_close(net.hidden(short)[:, -1], net.hidden(padded)[:, -1], rtol=1e-4, atol=1e-5)


def test_mask_probability_is_checked():
    with pytest.raises(ValueError, match="mask_probability"):
        BERT4RecConfig(mask_probability=0.0)
    with pytest.raises(ValueError, match="max_length"):
        BERT4RecConfig(max_length=1)

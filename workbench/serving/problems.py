"""What an error body may quote of a client's input: short excerpts only, so a 10 MB
field name or value never comes back as a 10 MB response."""

from __future__ import annotations

import math
import reprlib

#: the most characters of a client's input that an error body quotes
EXCERPT_CHARS = 40

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = EXCERPT_CHARS
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 4
_repr.maxlevel = 2


def excerpted(error: dict) -> dict:
    """One pydantic validation error as a 422 body quotes it: ``type``, ``loc``, ``msg``
    and ``input``, every client-supplied part cut to a short excerpt (a 10 MB field name
    comes back as 40 characters and its length); ``ctx`` and ``url`` are left out."""
    out = {
        "type": error["type"],
        "loc": [part if isinstance(part, int) else excerpt(str(part)) for part in error["loc"]],
        "msg": excerpt(str(error["msg"]), 4 * EXCERPT_CHARS),
    }
    if "input" in error:
        out["input"] = excerpt(error["input"])
    return out


def excerpt(value, limit: int = EXCERPT_CHARS):
    """``value`` fit to quote back to a client: None, booleans, finite floats and int64s
    as they are; NaN and infinities as strings (``"nan"``, ``"inf"``: JSON has no such
    numbers); a string cut to ``limit`` characters plus its length; anything else as a
    short ``repr``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return value if value.bit_length() < 64 else f"<an integer of {value.bit_length()} bits>"
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}... ({len(value):,} characters)"
    return _repr.repr(value)

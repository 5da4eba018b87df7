"""The constructor convention every model follows: keyword options or a config object,
validated into one frozen dataclass, ``self.config``.

    EASE(reg=300)                       # keywords ...
    EASE(config=EASEConfig(reg=300))    # ... or the config object, never both
    EASE().config                       # EASEConfig(reg=600.0, device='auto')

Defaults are written once, in the model's config dataclass; :func:`make_config` refuses
an unknown name and lists the accepted ones, so a typo never passes silently. What a model
is built *from* -- an item table, a text encoder, component models -- is a named
constructor argument, not an option. ``device`` is an option wherever a model computes
with torch; ``progress`` is an argument of ``fit``, for every model.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any


def check_options(config, *, positive: tuple[str, ...] = (), non_negative: tuple[str, ...] = ()) -> None:
    """Raise ``ValueError`` naming the first option of ``config`` that is out of range."""
    name = type(config).__name__
    for field in positive:
        if not getattr(config, field) > 0:
            raise ValueError(f"{name}: {field} must be > 0, got {getattr(config, field)!r}")
    for field in non_negative:
        if not getattr(config, field) >= 0:
            raise ValueError(f"{name}: {field} must be >= 0, got {getattr(config, field)!r}")


def option_names(config_class: type) -> tuple[str, ...]:
    """The options a config dataclass takes, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(config_class) if f.init)


def make_config(config_class: type, config: Any, options: dict[str, Any], *, owner: str):
    """``config`` as given (checked to be a ``config_class``), or ``config_class(**options)``.

    Raises ``TypeError`` for both at once, the wrong config type or an unknown option;
    the config's own ``__post_init__`` raises ``ValueError`` for a value out of range.
    """
    if config is not None:
        if options:
            raise TypeError(f"{owner}: pass options as keywords or as config=, not both (got {sorted(options)})")
        if not isinstance(config, config_class):
            raise TypeError(f"{owner} needs a {config_class.__name__}, got {type(config).__name__}")
        return config
    unknown = sorted(set(options) - set(option_names(config_class)))
    if unknown:
        raise TypeError(f"{owner}: unknown option(s) {unknown}; it takes {list(option_names(config_class))}")
    return config_class(**options)


def signature(cls: type, config_class: type) -> inspect.Signature:
    """What ``help(cls)`` and Jupyter should show: the constructor's own arguments, then
    every option of ``config_class`` with its default, then ``config=None``."""
    own = [
        p
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and name != "config" and p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    options = []
    for f in dataclasses.fields(config_class):
        if not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty
        options.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=f.type))
    config = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=config_class.__name__)
    return inspect.Signature([*own, *options, config])

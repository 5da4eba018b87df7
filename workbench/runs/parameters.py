"""Notebook parameters: what a notebook declares, and the values that may reach its kernel.

papermill passes parameters by writing Python source into an injected cell. It escapes
str, int, float, bool and None and lists and dicts of them (with str keys); anything else
-- a tuple, a set, bytes, a non-str dict key -- it writes as its ``repr`` between quotes,
unescaped, so a string inside a tuple can end the quotes and run code in the kernel.
:func:`check_parameters` lets through only those JSON-like values (finite floats, 64-bit ints: what
the record and the store hold as they are), of the type the notebook declares:

- the parameter's annotation where it has one (``devices: list = None``), else
- its default's type: ``None`` declares "str or None"; an int default takes an int (not
  a bool); a float default takes an int or a float; a default that is no literal takes
  any JSON-like value.

``workbench run``, ``workbench sweep``, :func:`~workbench.runs.executor.execute`,
:func:`~workbench.runs.executor.run_all` and :func:`~workbench.runs.sweeps.sweep` all
check with it before any kernel starts.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import papermill as pm

#: the value types papermill writes as escaped literals
JSON_TYPES = (type(None), bool, int, float, str, list, dict)
_INT64 = 2**63
#: annotations a parameters cell may use, and the types they declare
_ANNOTATIONS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "list": (list,), "dict": (dict,)}


class ParameterError(ValueError):
    """A parameter value that must not (or cannot usefully) reach the notebook."""


@dataclass(frozen=True)
class Declared:
    """One parameter of a notebook: its default (the literal, or its source text where it
    is no literal) and the top-level types it accepts (None: any JSON-like value)."""

    name: str
    default: Any
    types: tuple[type, ...] | None

    def describe(self) -> str:
        """The accepted types in words, e.g. ``str or None``."""
        if self.types is None:
            return "any JSON-like value"
        return " or ".join("None" if t is type(None) else t.__name__ for t in self.types)


def _declared_types(default: Any, annotation: str | None) -> tuple[type, ...] | None:
    base = (annotation or "").strip().strip("'\"").removeprefix("Optional[").split("[")[0].strip()
    types = _ANNOTATIONS.get(base)
    if types is None and default is None:
        return (str, type(None))
    types = types or _ANNOTATIONS.get(type(default).__name__)
    if types is None:
        return None
    return types + (type(None),) if default is None else types


def declared_parameters(notebook: str | Path) -> dict[str, Declared]:
    """The parameters the notebook's ``parameters`` cell declares, in order."""
    out = {}
    for name, info in pm.inspect_notebook(str(notebook)).items():
        annotation = info.get("inferred_type_name")
        annotation = None if annotation in (None, "None") else annotation
        try:
            default = ast.literal_eval(info["default"])
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            out[name] = Declared(name, info["default"], _ANNOTATIONS.get(annotation or ""))
            continue
        out[name] = Declared(name, default, _declared_types(default, annotation))
    return out


def _excerpt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_like(value: Any, where: str) -> None:
    """Raise :class:`ParameterError` unless ``value`` is JSON-like all the way down."""
    kind = type(value)
    if kind not in JSON_TYPES:
        raise ParameterError(
            f"{where} is a {kind.__name__} ({_excerpt(value)}): papermill passes only str, int, float, "
            "bool, None and lists and dicts of them safely; use a list for a sequence, plain Python "
            "numbers (value.item() for numpy), or quote text"
        )
    if kind is float and not math.isfinite(value):
        raise ParameterError(f"{where} is {value!r}: only finite numbers are parameters")
    if kind is int and not -_INT64 <= value < _INT64:
        raise ParameterError(f"{where} is an integer past 64 bits ({_excerpt(value)})")
    if kind is list:
        for i, item in enumerate(value):
            _json_like(item, f"{where}[{i}]")
    elif kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise ParameterError(f"{where} has a key {_excerpt(key)} ({type(key).__name__}); keys must be str")
            _json_like(item, f"{where}[{key!r}]")


def check_value(declared: Declared, value: Any) -> None:
    """Raise :class:`ParameterError` unless ``value`` is JSON-like and of the declared type."""
    try:
        _json_like(value, f"parameter {declared.name!r}")
    except RecursionError:
        raise ParameterError(f"parameter {declared.name!r} is nested too deeply") from None
    if declared.types is not None and type(value) not in declared.types:
        as_text = str in declared.types and type(value) in (int, float, bool)
        hint = f"; to pass it as text, quote it: -p {declared.name} \"'{value}'\"" if as_text else ""
        raise ParameterError(
            f"parameter {declared.name!r} expects {declared.describe()} (default {_excerpt(declared.default)}), "
            f"got {_excerpt(value)} ({type(value).__name__}){hint}"
        )


def check_parameters(notebook: str | Path, parameters: Mapping[str, Any]) -> None:
    """Raise :class:`ParameterError` unless every parameter is declared by ``notebook``
    and its value passes :func:`check_value`."""
    declared = declared_parameters(notebook)
    unknown = sorted(str(name) for name in set(parameters) - set(declared))
    if unknown:
        raise ParameterError(
            f"{Path(notebook).name} declares no parameter(s) {unknown}; it declares {sorted(declared)}"
        )
    for name, value in parameters.items():
        check_value(declared[name], value)


def parse_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value: the Python literal it spells (``3``, ``0.1``, ``None``,
    ``[1, 2]``, ``'quoted text'``), else the text itself. What comes back is checked by
    :func:`check_value` before it is used."""
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text

"""Notebook parameters: only values papermill writes as escaped literals, of the declared
type, reach a kernel; everything else is refused before any kernel starts."""

from __future__ import annotations

import ast
import json
import math

import nbformat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from papermill.translators import PythonTranslator

from workbench.cli import main
from workbench.runs import executor, parameters, sweeps

#: a string that ends papermill's quotes when written unescaped: touches ``PWNED`` in the kernel's folder
ESCAPE = '"; __import__("os").system("touch PWNED"); "'
#: strings papermill must carry into the kernel unchanged: quotes, backslashes, newlines, triple quotes
HOSTILE_STRINGS = [
    ESCAPE,
    "'; __import__('os').system('touch PWNED'); '",
    '\\"; __import__("os").system("touch PWNED"); \\"',
    '"""\nimport os; os.system("touch PWNED")\n"""',
    "line one\nline two\r\n\ttabbed \\ back\\slash \\n not a newline",
    "\x00 nul, \u2028 line separator, \U0001f600 emoji, \\u0041 not an escape",
]
PARAMETERS = (
    "label = 'a'  # text\n"
    "count = 1  # an int\n"
    "rate = 0.5  # a float\n"
    "flag = False  # a bool\n"
    "data_path = None  # text or None\n"
    "names = ['a']  # a list\n"
    "table = {'a': 'b'}  # a dict\n"
    "devices: list = None  # a list or None, declared by its annotation"
)
RECORDS = """
from workbench import runs
p = runs.start(parameters=globals())
runs.record("parameters", p.as_dict())
"""


@pytest.fixture
def notebook(tmp_path):
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(RECORDS),
        ]
    )
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    path = tmp_path / "09_params.ipynb"
    nbformat.write(nb, path)
    return path


#: values papermill would write unescaped or not as the same value, in every position
UNSAFE = [
    (ESCAPE,),  # a tuple at top level
    ["ok", (ESCAPE,)],  # inside a list
    {"k": (ESCAPE,)},  # as a dict value
    {(ESCAPE,): "v"},  # as a dict key
    {1: "v"},  # a key papermill writes as the string "1"
    {ESCAPE},  # a set
    ESCAPE.encode(),  # bytes
    [{"deep": [b"x"]}],
    complex(1, 2),
    ...,
    float("nan"),
    float("inf"),
    [1, -math.inf],
    10**400,  # past what the store and a 64-bit reader hold
]


@pytest.mark.parametrize("value", UNSAFE, ids=[type(v).__name__ + str(i) for i, v in enumerate(UNSAFE)])
def test_values_papermill_cannot_escape_are_refused_in_every_position(value):
    anything = parameters.Declared("x", default="os.getcwd()", types=None)  # a default that is no literal
    with pytest.raises(parameters.ParameterError, match=r"parameter 'x'"):
        parameters.check_value(anything, value)


def test_hostile_strings_in_parameters_are_refused_before_any_kernel_starts(notebook, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    tuple_text = repr((ESCAPE,))
    assert main(["run", str(notebook), "-p", "label", tuple_text, "--runs-dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "'label'" in err and "tuple" in err and "Traceback" not in err
    assert main(["sweep", str(notebook), "-p", "names", repr([(ESCAPE,)]), "--runs-dir", str(runs_dir)]) == 2
    assert "'names'" in capsys.readouterr().err
    with pytest.raises(parameters.ParameterError, match="'table'"):
        executor.execute(notebook, runs_dir / "api", {"table": {(ESCAPE,): 1}})
    with pytest.raises(sweeps.SweepError, match="'label'"):
        sweeps.sweep(notebook, {"label": ["fine", (ESCAPE,)]}, runs_dir=runs_dir)
    with pytest.raises(parameters.ParameterError, match=r"declares no parameter\(s\) \['x = 1; import os'\]"):
        executor.execute(notebook, runs_dir / "api", {"x = 1; import os": 1})  # a name is code too
    assert not (tmp_path / "PWNED").exists() and not runs_dir.exists()


def test_a_none_default_declares_str_or_none_not_anything(notebook, tmp_path):
    runs_dir = tmp_path / "runs"
    for wrong in (["a", "b"], 3, {"a": 1}):
        with pytest.raises(sweeps.SweepError, match=r"'data_path' expects str or None"):
            sweeps.sweep(notebook, {"data_path": ["fine", wrong]}, runs_dir=runs_dir)
    assert not runs_dir.exists()
    sweeps.check_grid(notebook, {"data_path": ["a/b.zip", None]})


def test_declared_types_follow_the_default_or_its_annotation(notebook):
    declared = parameters.declared_parameters(notebook)
    good = {
        "count": [0, -3],
        "rate": [1, 0.25],  # an int where a float is declared is fine
        "flag": [True],
        "names": [[], ["x", 1]],
        "table": [{}, {"k": [1, {"n": None}]}],
        "devices": [None, ["cpu", "cuda"]],
        "label": ["text"],
    }
    bad = {
        "count": [True, 1.0, "1", None],  # a bool is no int
        "rate": [False, "0.5"],
        "flag": [0, "True"],
        "names": [("x",), "x", None],
        "table": [["k"], None],
        "devices": ["cpu"],
        "label": [1, None, ["a"]],
    }
    for name, values in good.items():
        for value in values:
            parameters.check_value(declared[name], value)
    for name, values in bad.items():
        for value in values:
            with pytest.raises(parameters.ParameterError, match=f"parameter '{name}' (expects|is a)"):
                parameters.check_value(declared[name], value)


def test_command_line_values_parse_as_literals_or_stay_text():
    assert (
        parameters.parse_value("3") == 3
        and parameters.parse_value("0.5") == 0.5
        and parameters.parse_value("None") is None
    )
    assert parameters.parse_value("[1, 'a']") == [1, "a"] and parameters.parse_value("ml-1m") == "ml-1m"
    assert parameters.parse_value("'3'") == "3"
    deep = "[" * 100_000 + "]" * 100_000  # too deep for the parser: kept as text, then refused by type
    assert parameters.parse_value(deep) == deep


# Any Python literal papermill might be handed: JSON-like values and the types it does not escape.
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(max_size=5)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=3)
        | st.frozensets(st.text(max_size=5), max_size=2)
    ),
    max_leaves=8,
)
_LITERAL_NODES = (ast.Expression, ast.Constant, ast.List, ast.Dict, ast.UnaryOp, ast.USub, ast.Load)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_VALUES | st.sampled_from(HOSTILE_STRINGS))
def test_every_accepted_value_reaches_the_kernel_as_the_same_literal(value):
    """What the check lets through, papermill writes as a plain literal that evaluates to
    the same value: no name, call or statement can appear in the injected cell."""
    try:
        parameters.check_value(parameters.Declared("x", default="f()", types=None), value)
    except parameters.ParameterError:
        return
    source = PythonTranslator.translate(value)
    tree = ast.parse(source, mode="eval")
    assert all(isinstance(node, _LITERAL_NODES) for node in ast.walk(tree)), source
    assert ast.literal_eval(tree) == value
    json.dumps(value, allow_nan=False)  # and the same value is JSON, as the record stores it


def test_hostile_strings_arrive_in_the_kernel_unchanged_and_run_nothing(notebook, tmp_path):
    """One real papermill run: hostile strings at top level, inside a list, as dict values and keys."""
    values = {
        "label": HOSTILE_STRINGS[0],
        "data_path": HOSTILE_STRINGS[3],
        "names": HOSTILE_STRINGS,
        "table": {s: s for s in HOSTILE_STRINGS},
    }
    rec = executor.execute(notebook, tmp_path / "out", values)
    assert rec.status == "ok", rec.error
    recorded = rec.results["parameters"]
    assert {name: recorded[name] for name in values} == values
    assert not (notebook.parent / "PWNED").exists() and not (tmp_path / "PWNED").exists()

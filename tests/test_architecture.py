"""The package's layout: the layer contracts hold, no import hides inside a function to
dodge them, and every subpackage says what lives in it."""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"
SUBPACKAGES = sorted(p.parent for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE)


def test_the_layer_contracts_hold():
    """``lint-imports`` (the contracts in pyproject.toml) passes on the package as it is."""
    exe = shutil.which("lint-imports") or str(Path(__file__).resolve().parents[1] / ".venv/bin/lint-imports")
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install -e .[dev])")
    out = subprocess.run([exe], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def _function_local_workbench_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("workbench"):
                found.append(f"{path.name}:{node.lineno} from {node.module}")
            elif isinstance(node, ast.Import) and any(a.name.startswith("workbench") for a in node.names):
                found.append(f"{path.name}:{node.lineno} import workbench...")
    return found


def test_no_workbench_import_hides_inside_a_function():
    """Imports of the package's own modules sit at module level, where the layer check
    and a reader see them. The CLI is exempt: it is the top layer and imports per command
    so that ``workbench --help`` does not load torch."""
    hidden = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "cli.py" and path.parent == PACKAGE:
            continue
        hidden += _function_local_workbench_imports(path)
    assert not hidden, hidden


def test_the_check_sees_a_hidden_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from workbench.evaluation import topk\n    return topk\n")
    assert _function_local_workbench_imports(module) == ["m.py:2 from workbench.evaluation"]


@pytest.mark.parametrize("folder", SUBPACKAGES, ids=[str(p.relative_to(PACKAGE)) for p in SUBPACKAGES])
def test_every_subpackage_says_what_lives_there(folder: Path):
    name = "workbench." + ".".join(folder.relative_to(PACKAGE).parts)
    doc = importlib.import_module(name).__doc__
    assert doc and len(doc.split()) >= 20, f"{name} needs a docstring saying what lives there"

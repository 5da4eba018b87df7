"""environment.yml (conda) and pyproject.toml describe the same environment."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"torch": "pytorch", "redis": "redis-py"}  # PyPI name -> conda-forge name where they differ


def _split(req: str) -> tuple[str, str]:
    """``name>=1.0; marker  # comment`` -> (name, ">=1.0"): environment markers have no
    conda equivalent (conda-forge simply has no build where they exclude one)."""
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*([^;#]*?)\s*(;[^#]*)?(#.*)?$", req)
    return m.group(1).lower(), m.group(2).replace(" ", "")


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return dict(_split(r) for r in reqs)


def _environment() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        for req in dep["pip"] if isinstance(dep, dict) else [dep]:
            if req.startswith("-e"):
                continue
            name, spec = _split(req)
            out[name] = spec
    return out


def test_every_pyproject_dependency_is_in_environment_yml_with_the_same_bound():
    env = _environment()
    for name, spec in _pyproject().items():
        conda = CONDA_NAMES.get(name, name)
        assert conda in env, f"{name} is in pyproject.toml but not in environment.yml"
        assert env[conda] == spec, f"{name}: pyproject says {spec!r}, environment.yml says {env[conda]!r}"


def test_environment_yml_adds_nothing_beyond_python_and_pip():
    extra = set(_environment()) - {CONDA_NAMES.get(n, n) for n in _pyproject()} - {"python", "pip"}
    assert not extra, f"environment.yml has packages pyproject.toml lacks: {sorted(extra)}"


def test_python_floor_agrees():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _environment()["python"] == project["requires-python"]

"""The benchmarks are scripts, not a package: their folders go on ``sys.path`` here, so
the tests import them by module name (``import bench_peers``), as the scripts import
each other."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for folder in (ROOT / "benchmarks", ROOT / "benchmarks" / "peers"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

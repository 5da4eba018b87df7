"""What Ray costs on one machine: the same sweep on the local process pool and on a local
Ray cluster, side by side.

The sweep: ``--points`` points (default 8) of a notebook that records a score after
sleeping ``--sleep`` seconds (``tests/runs/fixtures/99_tiny.ipynb``: no heavy import, so
what is measured is the runner: kernel start, papermill, shipping and writing the
results), two at a time on each backend: ``jobs=2`` processes, or a Ray cluster of two
CPUs started here as its own process (``ray start --head --num-cpus 2 --block``, its
start timed apart; the sweep connects to it with ``--address`` as it would to a real one). Per-point overhead
is ``wall * 2 / points - sleep``: the seconds each point costs beyond its own work.
Prints the load average before and after (the machine may be shared: "busy" above the
core count). Run from the repository root:

    python benchmarks/bench_sweeps.py [--points 8] [--sleep 1.0]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from workbench.runs import sweeps

TINY = Path(__file__).resolve().parent.parent / "tests" / "runs" / "fixtures" / "99_tiny.ipynb"
SLOTS = 2


def _load() -> str:
    load = os.getloadavg()
    busy = " (busy)" if load[0] > (os.cpu_count() or 1) else ""
    return ", ".join(f"{x:.2f}" for x in load) + busy


def _timed_sweep(points: int, sleep: float, backend: sweeps.Backend, root: Path) -> dict:
    grid = {"x": [float(10 ** (i / 2)) for i in range(points)], "sleep": [sleep]}
    t0 = time.perf_counter()
    frame = sweeps.sweep(TINY, grid, runs_dir=root, backend=backend, retries=0)
    wall = time.perf_counter() - t0
    assert (frame["status"] == "ok").all() and len(frame) == points, frame[["path", "status"]]
    return {
        "backend": backend.name,
        "points": points,
        "wall s": wall,
        "overhead s/point": wall * SLOTS / points - sleep,
    }


def _start_ray(command: list[str], temp: Path) -> tuple[subprocess.Popen, str, float]:
    """A one-node Ray cluster of ``SLOTS`` CPUs in its own process; its address and start time."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    args = ["start", "--head", "--port", str(port), "--num-cpus", str(SLOTS), "--temp-dir", str(temp), "--block"]
    args += ["--include-dashboard=false", "--object-store-memory", str(100 * 2**20), "--disable-usage-stats"]
    log = temp / "head.log"
    t0 = time.perf_counter()
    with log.open("w") as out:
        head = subprocess.Popen([*command, *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    while "Ray runtime started" not in log.read_text():
        if head.poll() is not None:
            raise RuntimeError(f"ray start failed:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    address = re.search(r"--address='([^']+)'", log.read_text())[1]  # where Ray put the node (the machine's IP)
    return head, address, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=8, help="points of the sweep")
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds of work in each point")
    default_ray = str(Path(sys.executable).with_name("ray"))
    parser.add_argument("--ray", default=default_ray, help="the command that starts Ray (default: %(default)s)")
    args = parser.parse_args()
    print(f"{args.points} points of {args.sleep} s each, {SLOTS} at a time; {os.cpu_count()} CPUs")
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load average {_load()} at start")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-sweeps-") as tmp:
        rows.append(_timed_sweep(args.points, args.sleep, sweeps.Backend(jobs=SLOTS), Path(tmp) / "local"))
        temp = Path(tempfile.mkdtemp(prefix="wbray-", dir="/tmp"))  # short: Ray's socket paths live here
        head = None
        try:
            head, address, started = _start_ray(shlex.split(args.ray), temp)
            os.environ["RAY_AUTH_MODE"] = "disabled"
            backend = sweeps.Backend("ray", address=address)
            rows.append(_timed_sweep(args.points, args.sleep, backend, Path(tmp) / "ray"))
        finally:
            if head is not None:
                head.send_signal(signal.SIGTERM)
                head.wait(timeout=60)
            shutil.rmtree(temp, ignore_errors=True)
    table = pd.DataFrame(rows).set_index("backend")
    table["vs local"] = table["wall s"] / table.loc["local", "wall s"]
    print(table.round(2).to_string())
    print(f"Ray's own start (ray start --head of a {SLOTS}-CPU cluster), not in the table: {started:.1f} s")
    print(f"load average {_load()} at end")


if __name__ == "__main__":
    main()

"""Sweeps on a real two-node Ray cluster started here (head and a second node as separate
``ray start`` processes on this machine): points spread over both nodes, a killed
worker's point retried, Ctrl+C cancelling and the sweep resuming, and Ray absent."""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from workbench.cli import main
from workbench.runs import cluster, store, sweeps
from workbench.runs.records import read_run

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.serial  # ray start times out with other tests running beside it

TINY = Path(__file__).parent / "fixtures" / "99_tiny.ipynb"
RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT_S = 120
#: no usage report; no token authentication (a ``~/.ray/auth_token`` left by some
#: ``ray.init()`` would turn it on for the head and not for the node joining it); on a
#: loaded machine the raylet may wait longer than its default 15 s for the node's
#: dashboard agent (a Python process) to say its port
QUIET_START = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_agent_register_timeout_ms": "90000"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_node(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, **QUIET_START}
    small = ["--num-cpus", "1", "--object-store-memory", str(80 * 2**20), "--disable-usage-stats", "--block"]
    with log.open("w") as out:
        return subprocess.Popen([RAY, "start", *args, *small], stdout=out, stderr=subprocess.STDOUT, env=env)


def _wait_for(predicate, what: str, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.2)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _started(proc: subprocess.Popen, log: Path) -> bool:
    """True once ``ray start`` says the node runs; its log's tail raised if it gave up."""
    text = log.read_text()
    if proc.poll() is not None:
        raise RuntimeError(f"ray start exited with {proc.returncode} (a busy machine times Ray out):\n{text[-2000:]}")
    return "Ray runtime started" in text


class Cluster:
    """The two ``ray start --block`` processes, their temp dir and the address."""

    def __init__(self, head: subprocess.Popen, second: subprocess.Popen, temp: Path, address: str):
        self.head, self.second, self.temp, self.address = head, second, temp, address

    def kernels_on_second(self) -> list[psutil.Process]:
        """Notebook kernels running under the second node's processes."""
        try:
            tree = psutil.Process(self.second.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [p for p in tree if _is_kernel(p)]


def _is_kernel(proc: psutil.Process) -> bool:
    try:
        return any("ipykernel" in part for part in proc.cmdline())
    except psutil.Error:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM a ``ray start --block`` (it stops the node's processes), then kill whatever
    of its tree is left."""
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _, alive = psutil.wait_procs(tree, timeout=5)
    for p in alive:
        p.kill()


def _start_head(temp: Path) -> tuple[subprocess.Popen, int]:
    """``ray start --head``, tried twice: on a loaded machine Ray can give up waiting for
    its own raylet (a fixed 30 s)."""
    for attempt in (1, 2):
        port = _free_port()
        args = ["--head", "--port", str(port), "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp)]
        args += ["--include-dashboard=false", "--include-log-monitor=false"]
        if importlib.util.find_spec("grpc"):  # ray[client] installed: its server would take port 10001
            args += ["--ray-client-server-port", str(_free_port())]
        head = _start_node(args, temp / "head.log")
        try:
            _wait_for(lambda head=head: _started(head, temp / "head.log"), "the head to say it started")
            return head, port
        except RuntimeError:
            _stop(head)
            if attempt == 2:
                raise


@pytest.fixture(scope="module")
def ray_cluster():
    """A head (1 CPU) and a second node (1 CPU) on this machine; the test process is
    connected as the driver. Stopped, every process of both nodes gone, at the end.
    (Ray gives a node the machine's address even when asked for 127.0.0.1, by design:
    ``services.resolve_ip_for_localhost``; everything stays on this machine.)"""
    temp = Path(tempfile.mkdtemp(prefix="wbray-", dir="/tmp"))  # short: Ray's socket paths live here
    head = second = None
    before = {k: os.environ.get(k) for k in QUIET_START}
    os.environ.update(QUIET_START)  # this driver, and the drivers the tests start, likewise
    try:
        head, port = _start_head(temp)
        address = f"{ray._private.services.get_node_ip_address()}:{port}"
        second = _start_node(["--address", address, "--include-log-monitor=false"], temp / "second.log")
        _wait_for(lambda: _started(second, temp / "second.log"), "the second node to say it started")
        ray.init(address=address, log_to_driver=False)
        _wait_for(lambda: sum(n["Alive"] for n in ray.nodes()) == 2, "both nodes to join")
        yield Cluster(head, second, temp, address)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for proc in (second, head):
            if proc is not None:
                _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _backend(ray_cluster) -> sweeps.Backend:
    return sweeps.Backend("ray", address=ray_cluster.address)


def test_points_spread_over_both_nodes_and_land_in_the_store(ray_cluster, tmp_path):
    runs_dir = tmp_path / "runs"
    grid = {"x": [1.0, 10.0, 100.0, 1000.0], "sleep": [0.5]}
    frame = sweeps.sweep(TINY, grid, runs_dir=runs_dir, backend=_backend(ray_cluster))
    folder = runs_dir / sweeps.sweep_id(TINY, grid)
    rows = store.frame(runs_dir / store.DB_NAME).set_index("param.x")
    assert len(frame) == 4 and len(rows) == 4
    nodes = set()
    for x in grid["x"]:
        name = sweeps.point_name(TINY, {"x": x, "sleep": 0.5})
        rec = read_run(folder / f"{name}.json")
        assert rows.loc[x, "status"] == "ok" and rows.loc[x, "path"] == f"{folder.name}/{name}.json"
        assert rows.loc[x, "valid/score"] == pytest.approx(1 - (math.log10(x) - 2) ** 2 / 4)
        assert (folder / f"{name}.ipynb").stat().st_size > 0  # the executed notebook came back
        assert rec.context["backend"] == "ray" and rec.context["node"]["ip"]
        nodes.add(rec.context["node"]["node_id"])
    assert len(nodes) == 2, "the four points all ran on one node"
    assert not (folder / "attempts").exists()


def _kill_a_worker_of_the_second_node(ray_cluster, killed: list) -> None:
    """Once a kernel runs under the second node, SIGKILL its Ray worker (its parent) and it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not killed:
        for kernel in ray_cluster.kernels_on_second():
            worker = kernel.parent()
            for proc in (worker, kernel):
                proc.kill()
            killed.append(worker.pid)
            return
        time.sleep(0.1)


def test_a_killed_worker_leaves_its_attempt_and_the_point_runs_again(ray_cluster, tmp_path):
    runs_dir = tmp_path / "runs"
    grid = {"x": [2.0, 20.0, 200.0, 2000.0], "sleep": [2.0]}
    killed: list[int] = []
    killer = threading.Thread(target=_kill_a_worker_of_the_second_node, args=(ray_cluster, killed))
    killer.start()
    frame = sweeps.sweep(TINY, grid, runs_dir=runs_dir, backend=_backend(ray_cluster), retries=1)
    killer.join()
    assert killed, "no point ran on the second node"
    assert sorted(frame["param.x"]) == grid["x"] and (frame["status"] == "ok").all()  # each point exactly once
    folder = runs_dir / sweeps.sweep_id(TINY, grid)
    kept = sorted((folder / "attempts").glob("*.json"))
    assert len(kept) == 1
    attempt = read_run(kept[0])
    assert attempt.status == "failed" and attempt.error["ename"] in ("WorkerCrashedError", "NodeDiedError")
    assert attempt.context["node"]["pid"] == killed[0]  # the record names the worker that died
    assert len(store.frame(runs_dir / store.DB_NAME)) == 4  # the attempt is not in the store


def test_ctrl_c_cancels_the_running_points_and_the_sweep_resumes(ray_cluster, tmp_path):
    runs_dir = tmp_path / "runs"
    grid = {"x": [3.0, 30.0, 300.0, 3000.0], "sleep": [1.0]}
    cmd = [sys.executable, "-m", "workbench.cli", "sweep", str(TINY), "-p", "x", "3.0", "30.0", "300.0", "3000.0"]
    cmd += ["-p", "sleep", "1.0", "--backend", "ray", "--address", ray_cluster.address, "--runs-dir", str(runs_dir)]
    driver = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    try:
        for raw in driver.stderr:  # the live progress: queued, running on ..., ok (after the bar's \r)
            line = raw.rsplit("\r", 1)[-1]
            lines.append(line)
            if line.startswith("ok "):
                break
        driver.send_signal(signal.SIGINT)
        _, rest = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 130, "".join(lines) + rest
    assert any(line.startswith("running") and " on " in line for line in lines)
    assert "run the same command again to resume" in rest
    folder = runs_dir / sweeps.sweep_id(TINY, grid)
    done = {p: p.stat().st_mtime_ns for p in folder.glob("*.json")}
    assert 1 <= len(done) < 4
    _wait_for(lambda: not ray_cluster.kernels_on_second(), "the cancelled kernels to end", timeout=30)

    frame = sweeps.sweep(TINY, grid, runs_dir=runs_dir, backend=_backend(ray_cluster))
    assert sorted(frame["param.x"]) == grid["x"] and (frame["status"] == "ok").all()
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # finished points were not run again


def test_ray_absent_says_how_to_install_it_before_anything_is_made(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = main(["sweep", str(TINY), "-p", "x", "1.0", "--backend", "ray", "--runs-dir", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err
    assert "needs Ray" in err and "pip install -e .[ray]" in err
    assert not (tmp_path / "r").exists()
    with pytest.raises(cluster.RayMissing, match=r"pip install -e \.\[ray\]"):
        sweeps.Backend("ray").check()


def test_nothing_but_the_ray_backend_imports_ray(tmp_path):
    code = (
        "import sys; import workbench.cli, workbench.runs.sweeps, workbench.runs.search, workbench.runs.cluster\n"
        "from workbench.runs import sweeps\n"
        f"sweeps.sweep({str(TINY)!r}, {{'x': [5.0]}}, runs_dir={str(tmp_path)!r})\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True)

"""``workbench serve --workers 2 --state redis://...``: two replica processes behind one
port sharing a real Redis (started here on a free port, stopped after): both answer,
reads see every acknowledged update whichever replica took it, and killing one replica
under load loses nothing it acknowledged; plus the start-up errors of ``--workers``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from workbench.cli import main
from workbench.serving.load import served_process
from workbench.serving.replicas import RedisServer, free_port, without_workers

ROOT = Path(__file__).resolve().parents[2]
SERVE = ["serve", "--dataset", "synthetic", "--synthetic-size", "tiny", "--model", "ease", "--max-wait-ms", "0.5"]
needs_redis = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (Debian: apt-get install redis-server): replicas need a real one",
)


def test_without_workers_drops_the_option():
    assert without_workers(["serve", "--workers", "3", "--port", "1", "--workers=2"]) == ["serve", "--port", "1"]


def test_workers_need_a_shared_state_and_a_reachable_redis(capsys):
    assert main([*SERVE, "--workers", "2"]) == 2
    assert "--workers N needs --state redis://" in capsys.readouterr().err
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert main([*SERVE, "--workers", "2", "--state", url]) == 2
    assert f"{url} unreachable" in capsys.readouterr().err
    assert main([*SERVE, "--workers", "2", "--state", "redis://127.0.0.1:x/0"]) == 2
    assert "malformed Redis URL" in capsys.readouterr().err


@pytest.fixture
def replicas(tmp_path):
    """``workbench serve --workers 2`` on a free port with a fresh Redis; yields
    (url, supervisor process, replica pids); stops both."""
    with RedisServer(tmp_path / "redis") as redis_server:
        port = free_port()
        cmd = [sys.executable, "-m", "workbench.cli", *SERVE, "--workers", "2", "--port", str(port)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd += ["--state", redis_server.url]
        with served_process(cmd, port, replicas=2, timeout_s=90, cwd=ROOT, env=env) as (url, proc):
            yield url, proc, _pids(url, proc, want=2, timeout_s=5)


def _pids(url: str, proc: subprocess.Popen, *, want: int, timeout_s: float) -> set[int]:
    """Replica pids seen through fresh connections until ``want`` distinct ones answered."""
    seen, deadline = set(), time.monotonic() + timeout_s
    while len(seen) < want:
        assert proc.poll() is None, "the supervisor exited"
        assert time.monotonic() < deadline, f"only replicas {seen} answered"
        try:
            seen.add(httpx.get(f"{url}/health", timeout=2).json()["pid"])
        except httpx.TransportError:
            time.sleep(0.2)
    return seen


@needs_redis
def test_two_replicas_share_the_state_and_survive_one_killed_under_load(replicas):
    url, supervisor, pids = replicas
    health = httpx.get(f"{url}/health", timeout=5).json()
    assert health["state"]["backend"] == "redis" and health["status"] == "ok"
    users, acked, stale, failed, refused = list(range(1, 9)), {}, [], [], []
    stop = threading.Event()

    def client(offset: int) -> None:  # update then read, each on a fresh connection (either replica)
        i = 0
        while not stop.is_set():
            user, item = users[(offset + i) % len(users)], 1 + (offset * 7 + i) % 50  # ids from 1
            i += 1
            try:
                r = httpx.post(f"{url}/interactions", json={"user_id": user, "item_id": item}, timeout=5)
                if r.status_code != 200:
                    refused.append(r.status_code)
                    continue
                version = r.json()["user_version"]
                acked[user] = max(acked.get(user, 0), version)
                answer = httpx.get(f"{url}/recommend/{user}", params={"k": 5}, timeout=5).json()
                if answer["user_version"] < version:
                    stale.append((user, version, answer["user_version"]))
            except httpx.TransportError:  # in flight on the replica being killed
                failed.append("transport")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(2)
    os.kill(min(pids), signal.SIGKILL)  # one replica dies under load
    before = sum(acked.values())
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(20)
    assert sum(acked.values()) > before + 10  # the other replica kept answering
    assert stale == [] and refused == [] and len(failed) <= 4  # at most the requests in flight on the killed one
    for user in users:  # nothing acknowledged was lost (an update cut off mid-flight may have landed too)
        r = httpx.get(f"{url}/recommend/{user}", params={"k": 5}, timeout=5)
        assert acked[user] <= r.json()["user_version"] <= acked[user] + len(failed)
    replicas_now = {child.pid for child in psutil.Process(supervisor.pid).children()}
    assert len(replicas_now) == 2 and min(pids) not in replicas_now  # the supervisor started another

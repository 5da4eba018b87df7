"""Processes around the service: N ``workbench serve`` replicas behind one port, and a
``redis-server`` for them (tests, benchmarks, notebooks).

``workbench serve --workers N --state redis://...`` runs :class:`Replicas`: this process
binds the port once and starts N ``workbench serve --fd FD`` child processes that
inherit the listening socket; the kernel hands each new connection to whichever replica
accepts it first (uvicorn's own ``--workers`` does the same). Each replica loads (fits,
or reads the checkpoint of) the model once and keeps its own copy: model weights are
not shared between processes. Users' online state is shared through Redis (see
:mod:`.state`). A replica killed by a signal is restarted; one that exits on its own
(a bad option, Redis unreachable) stops them all with its exit code.

:class:`RedisServer` starts ``redis-server`` on 127.0.0.1 on a free port in a folder,
with the persistence the service relies on: ``appendonly yes`` and ``appendfsync
always`` (each acknowledged write is on disk before Redis answers, so a Redis crash or
restart loses no acknowledged update; ``everysec`` would lose up to a second of them).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

#: seconds a replica must have run for its death to be a crash worth a restart
SETTLED_S = 30.0
#: seconds replicas get to finish in-flight requests on shutdown before being killed
GRACE_S = 15.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (bound and released)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class RedisServer:
    """``with RedisServer(folder) as server: server.url`` -- ``redis-server`` on
    127.0.0.1 (``port`` 0: a free one), data and append-only file in ``folder``;
    :meth:`kill` (SIGKILL) and :meth:`start` again on the same port and folder model a
    crash and restart. Raises FileNotFoundError when ``redis-server`` is not installed."""

    def __init__(self, folder: str | Path, *, port: int = 0, appendfsync: str = "always") -> None:
        self.executable = shutil.which("redis-server")
        if self.executable is None:
            raise FileNotFoundError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.folder, self.port, self.appendfsync = Path(folder), port or free_port(), appendfsync
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout_s: float = 10.0) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        cmd = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        cmd += ["--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "", "--protected-mode", "yes"]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        while True:
            try:
                client.ping()
                client.close()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: a crash (no final save; the append-only file has every write)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        """SIGTERM (Redis saves and exits), SIGKILL after 10 s."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def without_workers(argv: list[str]) -> list[str]:
    """``workbench serve`` arguments with ``--workers N`` (or ``--workers=N``) removed."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


class Replicas:
    """N ``python -m workbench.cli serve ARGS --fd FD`` processes sharing one listening
    socket on ``host:port``; see the module docstring. :meth:`run` supervises them in the
    foreground until SIGINT or SIGTERM, then stops them gracefully."""

    def __init__(self, serve_args: list[str], n: int, *, host: str = "127.0.0.1", port: int = 8000) -> None:
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(f"workers must be a positive integer, got {n!r}")
        self.serve_args, self.n, self.host, self.port = list(serve_args), n, host, port
        self.processes: list[subprocess.Popen] = []
        self._started: list[float] = []
        self._sock: socket.socket | None = None
        self._stopping = False

    def start(self) -> Replicas:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, self.port))
        self._sock.listen(2048)
        self.port = self._sock.getsockname()[1]
        self._sock.set_inheritable(True)
        for _ in range(self.n):
            self._spawn(None)
        return self

    def _spawn(self, slot: int | None) -> None:
        fd = self._sock.fileno()
        cmd = [sys.executable, "-m", "workbench.cli", *self.serve_args, "--fd", str(fd)]
        # a session of its own: Ctrl+C reaches the supervisor only, which asks each replica once
        # (uvicorn takes a second SIGINT as "exit now", skipping the graceful drain)
        process = subprocess.Popen(cmd, pass_fds=(fd,), start_new_session=True)
        if slot is None:
            self.processes.append(process)
            self._started.append(time.monotonic())
        else:
            self.processes[slot], self._started[slot] = process, time.monotonic()

    def check(self) -> int | None:
        """Restart replicas killed by a signal (or crashed after :data:`SETTLED_S`);
        returns the exit code of one that exited on its own at start, else None."""
        for slot, process in enumerate(self.processes):
            code = process.poll()
            if code is None or self._stopping:
                continue
            if code < 0 or time.monotonic() - self._started[slot] > SETTLED_S:
                print(f"replica pid {process.pid} ended ({code}); starting another", file=sys.stderr, flush=True)
                self._spawn(slot)
            else:
                return code
        return None

    def run(self) -> int:
        """Supervise until SIGINT/SIGTERM (or a replica failing at start); stop all."""
        stop = []
        handlers = {sig: signal.signal(sig, lambda *_: stop.append(1)) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            code = None
            while not stop and code is None:
                code = self.check()
                time.sleep(0.2)
            return code or 0
        finally:
            self.stop()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """SIGINT to every replica (graceful), SIGKILL after :data:`GRACE_S`; close the socket."""
        self._stopping = True
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + GRACE_S
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Replicas:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

"""One process at a time in a folder: an operating-system file lock, and who holds it.

>>> with lock.hold(folder):          # FolderBusy, naming the holder's pid, if taken
...     run_the_sweep()

The lock itself is :class:`filelock.FileLock` (``flock`` on Linux and macOS): the kernel
releases it when its holder exits, however it exits, so a killed run never blocks the
next one. Beside it, :data:`INFO` records the holder's pid, host and start time, for the
message a second run gets. An info file found when the lock is free is what a killed run
left behind: the new holder says so (:class:`StaleLockWarning`) and takes over.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock, Timeout

from workbench.runs.records import atomic_write

LOCK = ".lock"
INFO = ".lock.json"


class FolderBusy(RuntimeError):
    """Another process holds the folder (the message names its pid)."""


class StaleLockWarning(UserWarning):
    """A run holding the folder ended without letting go of it (it was killed)."""


def _holder(folder: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((folder / INFO).read_bytes())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe(info: dict[str, Any] | None) -> str:
    if info is None:
        return "another process (it has not written its pid yet)"
    pid = info.get("pid")
    running = isinstance(pid, int) and psutil.pid_exists(pid)
    where = f"pid {pid} on host {info.get('host')}, started {info.get('started')}"
    return where if running else f"{where}; pid {pid} is no longer running"


@contextmanager
def hold(folder: str | Path, *, wait: bool = False) -> Iterator[None]:
    """Hold ``folder`` for the duration of the block. Another holder means
    :class:`FolderBusy` at once, or, with ``wait``, waiting until it lets go."""
    folder = Path(folder)
    file_lock = FileLock(folder / LOCK)
    try:
        file_lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        raise FolderBusy(
            f"{folder} is in use by {_describe(_holder(folder))}; wait for it to finish, "
            "or run again with --wait (wait=True) to start when it does"
        ) from None
    try:
        stale = _holder(folder)
        if stale is not None:
            warnings.warn(
                f"{folder}: the run that held it ({_describe(stale)}) ended without letting go (killed?); taking over",
                StaleLockWarning,
                stacklevel=3,
            )
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": datetime.now(timezone.utc).isoformat()}
        atomic_write(folder / INFO, json.dumps(me))
        yield
    finally:
        (folder / INFO).unlink(missing_ok=True)
        file_lock.release()

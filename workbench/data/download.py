"""Verified, bounded, atomic downloads into the data cache.

``fetch_archive`` streams a zip into a hidden temporary file within :class:`Limits` (an
overall deadline, a size cap), checks its MD5 against the expected checksum (pinned, or
the ``.md5`` file the server publishes beside the archive), extracts it into a hidden
temporary folder within the unpacked-size and compression-ratio caps, lets the caller
check the staged files (the data set's files are there and parse), writes a manifest
with the SHA-256 of every file, and only then renames the folder into place. Any failure
removes the temporaries, so an interrupted, oversized or bad download leaves nothing a
later run could mistake for data; temporaries left by a killed process (their names
carry its pid) are removed by the next run.

Redirects: at most 5 are followed, to any host (mirrors and CDNs move archives; the MD5
still decides what is accepted), but only over https -- or http as well where the first
URL is http. A redirect to another scheme (an https -> http downgrade, ``ftp://``,
``file://``) is refused. The ``.md5`` file is fetched under the same rules and deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
from tqdm.auto import tqdm

from workbench.data.schema import excerpt

MANIFEST = ".workbench-manifest.json"
CHUNK = 1 << 16
RATIO_FLOOR = 1 << 20  # members this small are not ratio-checked: tiny text compresses absurdly well
MAX_REDIRECTS = 5
_OWNER = re.compile(r"\.pid(\d+)\.")  # in the names of temporaries: ".tmp-ml-100k.pid4242.x1y2z3.zip.part"


class DownloadError(RuntimeError):
    """The archive could not be fetched, or what arrived is not the expected archive."""


class ConnectError(DownloadError):
    """The server could not be reached (no network, DNS failure, refused, timed out)."""


@dataclass(frozen=True)
class Limits:
    """Bounds on one download and its extraction; anything past them is refused."""

    deadline_s: float = 1800.0  # the whole transfer, checksum file included
    read_timeout_s: float = 60.0  # one read; a read that waits longer fails
    max_archive_bytes: int = 1 << 30  # the zip as downloaded (announced or counted)
    max_unpacked_bytes: int = 4 << 30  # all members extracted, counted while writing
    max_ratio: float = 100.0  # a member over RATIO_FLOOR expands at most this many times
    max_files: int = 10_000  # members in the zip


class _Clock:
    """The overall deadline of one fetch: each read may wait at most the time left."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.end = time.monotonic() + limits.deadline_s

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def timeout(self, url: str) -> float:
        """Seconds the next blocking call may wait; DownloadError once the deadline has passed."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise DownloadError(
                f"{url}: not finished within the {self.limits.deadline_s:g} s deadline "
                "(raise it with --deadline or WORKBENCH_DOWNLOAD_DEADLINE)"
            )
        return min(left, self.limits.read_timeout_s)


def allowed_schemes(url: str) -> frozenset[str]:
    """The schemes a download from ``url`` may use or be redirected to: https, plus http
    where ``url`` itself is http. DownloadError for any other URL."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadError(f"{excerpt(url)}: only http(s) URLs are downloaded")
    return frozenset({"https", scheme})


class RedirectGuard(urllib.request.HTTPRedirectHandler):
    """Follows at most MAX_REDIRECTS redirects, to any host, only over ``schemes``."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, schemes: frozenset[str]):
        super().__init__()
        self.schemes = schemes

    @classmethod
    def for_url(cls, url: str) -> RedirectGuard:
        return cls(allowed_schemes(url))

    def _check(self, req, fp, newurl: str) -> None:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in self.schemes:
            fp.close()
            raise DownloadError(
                f"{req.full_url}: refused a redirect to {excerpt(newurl)} "
                f"(only {' and '.join(sorted(self.schemes))} redirects are followed)"
            )

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self._check(req, fp, newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)

    def http_error_302(self, req, fp, code, msg, headers):
        # urllib refuses some schemes (file:) itself with a bare HTTPError: check first
        self._check(req, fp, urllib.parse.urljoin(req.full_url, headers.get("location") or headers.get("uri") or ""))
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _open(url: str, clock: _Clock):
    opener = urllib.request.build_opener(RedirectGuard.for_url(url))
    try:
        return opener.open(url, timeout=clock.timeout(url))
    except DownloadError:
        raise
    except urllib.error.HTTPError as err:
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        if clock.expired():
            clock.timeout(url)  # raises: say deadline, not "cannot connect"
        raise ConnectError(f"{url}: cannot connect ({err})") from err


def _length(resp) -> int | None:
    total = resp.headers.get("Content-Length")
    return int(total) if total and total.strip().isdigit() else None


def _stream(resp, url: str, clock: _Clock, cap: int, sink: Callable[[bytes], None]) -> int:
    """Pass the body of ``resp`` to ``sink`` chunk by chunk, within the deadline and at
    most ``cap`` bytes (announced or counted); returns the bytes received."""
    announced = _length(resp)
    if announced is not None and announced > cap:
        raise DownloadError(f"{url}: announces {announced:,} bytes, more than the {cap:,}-byte cap")
    received = 0
    while True:
        clock.timeout(url)  # read1 returns what has arrived: a dripping server meets the deadline here
        try:
            chunk = resp.read1(CHUNK)
        except OSError as err:  # connection reset mid-stream, or a read that timed out
            if clock.expired():
                clock.timeout(url)
            raise DownloadError(f"{url}: download interrupted after {received:,} bytes ({err})") from err
        if not chunk:
            return received
        received += len(chunk)
        if received > cap:
            raise DownloadError(f"{url}: more than the {cap:,}-byte cap for this data set; stopped there")
        sink(chunk)


def published_md5(url: str, *, limits: Limits | None = None, clock: _Clock | None = None) -> str:
    """Read the checksum file ``<url>.md5`` (``MD5 (name) = hex`` or ``hex  name``)."""
    clock = clock or _Clock(limits or Limits())
    parts: list[bytes] = []
    with _open(url + ".md5", clock) as resp:
        _stream(resp, url + ".md5", clock, 4096, parts.append)
    text = b"".join(parts).decode("ascii", errors="replace")
    found = re.search(r"\b([0-9a-fA-F]{32})\b", text)
    if not found:
        raise DownloadError(f"{url}.md5: no MD5 checksum in {text[:80]!r}")
    return found.group(1).lower()


def _download(url: str, dest: Path, *, clock: _Clock, cap: int) -> str:
    """Stream ``url`` into ``dest`` within ``clock`` and ``cap``; returns the MD5 hex
    digest; checks the length against Content-Length."""
    md5 = hashlib.md5()
    with _open(url, clock) as resp, open(dest, "wb") as out:
        total = _length(resp)
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], leave=False) as bar:

            def sink(chunk: bytes) -> None:
                out.write(chunk)
                md5.update(chunk)
                bar.update(len(chunk))

            received = _stream(resp, url, clock, cap, sink)
    if total is not None and received != total:
        raise DownloadError(f"{url}: truncated download, got {received} of {total} bytes")
    return md5.hexdigest()


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in 1 MiB chunks (Python 3.10 has no hashlib.file_digest)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_md5(path: Path) -> str:
    return file_digest(path, "md5")


def _sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def _write_manifest(folder: Path, source: str, archive_md5: str | None) -> None:
    files = {
        str(p.relative_to(folder)): _sha256(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST
    }
    payload = {"source": source, "archive_md5": archive_md5, "files": files}
    (folder / MANIFEST).write_text(json.dumps(payload, indent=1), encoding="utf-8")


def verify_cache(folder: Path) -> str | None:
    """None if ``folder`` matches its manifest, else a sentence saying what is wrong."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return f"{folder}: no manifest (incomplete or foreign folder)"
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError) as err:
        return f"{manifest}: unreadable manifest ({err})"
    for rel, digest in files.items():
        path = folder / rel
        if not path.is_file():
            return f"{path}: missing from the cache"
        if _sha256(path) != digest:
            return f"{path}: checksum differs from the manifest (corrupt or edited)"
    return None


def _checked_members(zf: zipfile.ZipFile, source: str, limits: Limits) -> list[zipfile.ZipInfo]:
    """The members, once their count, declared total size and ratios are within ``limits``."""
    members = zf.infolist()
    if len(members) > limits.max_files:
        raise DownloadError(f"{source}: {len(members):,} files in the zip, more than the cap of {limits.max_files:,}")
    declared = sum(m.file_size for m in members)
    if declared > limits.max_unpacked_bytes:
        raise DownloadError(
            f"{source}: expands to {declared:,} bytes, more than the {limits.max_unpacked_bytes:,}-byte cap"
        )
    for m in members:
        if m.file_size > RATIO_FLOOR and m.file_size > limits.max_ratio * max(m.compress_size, 1):
            raise DownloadError(
                f"{source}: {excerpt(m.filename)} expands {m.file_size / max(m.compress_size, 1):,.0f} times "
                f"(to {m.file_size:,} bytes), more than the {limits.max_ratio:g}x cap: a zip bomb?"
            )
    return members


def _extract(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], folder: Path, source: str, limits: Limits) -> None:
    """Write ``members`` under ``folder``, counting bytes: a member may not exceed the size
    its header declares, nor all of them ``limits.max_unpacked_bytes``."""
    root = folder.resolve()
    total = 0
    for m in members:
        target = (root / m.filename).resolve()
        if not target.is_relative_to(root) or target == root:
            raise DownloadError(f"{source}: unsafe path {excerpt(m.filename)} in the zip")
        if m.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with zf.open(m) as src, open(target, "wb") as out:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                written += len(chunk)
                total += len(chunk)
                if written > m.file_size or total > limits.max_unpacked_bytes:
                    raise DownloadError(f"{source}: {excerpt(m.filename)} expands past its declared size or the cap")
                out.write(chunk)


def extract_zip(
    archive: Path,
    dest: Path,
    *,
    source: str,
    archive_md5: str | None,
    limits: Limits | None = None,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Extract ``archive`` into ``dest`` atomically (replacing a bad ``dest``) within
    ``limits``; ``check(staged_folder)`` may refuse the files before they are committed."""
    limits = limits or Limits()
    remove_leftovers(dest.parent)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _checked_members(zf, source, limits)
            with _staged(dest, source, archive_md5, check) as tmp:
                _extract(zf, members, tmp, source, limits)
    except DownloadError:
        raise
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as err:
        # zlib: damaged deflate data; NotImplementedError: unknown compression; RuntimeError: encrypted
        raise DownloadError(f"{source}: not a valid zip archive, truncated or corrupt ({excerpt(str(err))})") from err
    except (EOFError, zipfile.LargeZipFile) as err:
        raise DownloadError(f"{source}: truncated zip archive ({err})") from err
    return dest


def fetch_archive(
    url: str,
    dest: Path,
    *,
    md5: str | None = None,
    limits: Limits | None = None,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Download the zip at ``url`` within ``limits``, verify it, and extract it atomically
    into ``dest`` (see the module docstring for what is checked and followed).

    ``md5`` pins the expected checksum; when None, ``<url>.md5`` must provide it.
    ``check(staged_folder)`` may refuse the extracted files before they are committed.
    """
    dest, limits = Path(dest), limits or Limits()
    allowed_schemes(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(dest.parent)
    clock = _Clock(limits)
    expected = md5.lower() if md5 else published_md5(url, clock=clock)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(dest), suffix=".zip.part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        got = _download(url, tmp, clock=clock, cap=limits.max_archive_bytes)
        if got != expected:
            raise DownloadError(f"{url}: checksum mismatch, MD5 {got} but expected {expected}")
        return extract_zip(tmp, dest, source=url, archive_md5=got, limits=limits, check=check)
    finally:
        tmp.unlink(missing_ok=True)


def import_folder(
    src: Path, dest: Path, *, required: tuple[str, ...], check: Callable[[Path], None] | None = None
) -> Path:
    """Copy a local data folder into the cache atomically, with a manifest;
    ``check(staged_folder)`` may refuse the copy before it is committed."""
    src = Path(src)
    missing = [f for f in required if not (src / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{src}: missing file(s) {missing}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(dest.parent)
    with _staged(dest, str(src), None, check) as tmp:
        for p in src.iterdir():
            if p.is_file() and p.name != MANIFEST:
                shutil.copy2(p, tmp / p.name)
    return dest


def _temp_prefix(dest: Path) -> str:
    return f".tmp-{dest.name}.pid{os.getpid()}."


def remove_leftovers(folder: Path) -> list[str]:
    """Remove the temporaries (``.tmp-*``) that a killed process left in ``folder``: those
    whose owner (the pid in the name) no longer runs, or that name none. Returns their names."""
    removed = []
    for path in folder.glob(".tmp-*") if folder.is_dir() else ():
        owner = _OWNER.search(path.name)
        if owner and psutil.pid_exists(int(owner.group(1))):
            continue  # a download still under way
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


@contextlib.contextmanager
def _staged(dest: Path, source: str, archive_md5: str | None, check: Callable[[Path], None] | None = None):
    """A hidden temporary folder next to ``dest`` to fill; when the block succeeds and
    ``check`` accepts it, it gets its manifest and replaces ``dest`` in one rename.
    Removed whatever happens."""
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(dest), dir=dest.parent))
    try:
        yield tmp
        if check is not None:
            check(tmp)
        _write_manifest(tmp, source, archive_md5)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

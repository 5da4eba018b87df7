"""Verified, atomic downloads into the data cache.

``fetch_archive`` streams a zip over HTTP(S) into a hidden temporary file, checks its
length and MD5 against the expected checksum (pinned, or the ``.md5`` file the server
publishes beside the archive), tests the zip, extracts it into a hidden temporary
folder, writes a manifest with the SHA-256 of every extracted file, and only then
renames the folder into place. Any failure removes the temporaries, so an interrupted
or bad download leaves nothing a later run could mistake for data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

from tqdm.auto import tqdm

MANIFEST = ".workbench-manifest.json"
CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """The archive could not be fetched, or what arrived is not the expected archive."""


def _open(url: str, timeout: float):
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as err:
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(f"{url}: cannot connect ({err})") from err


def published_md5(url: str, *, timeout: float = 30) -> str:
    """Read the checksum file ``<url>.md5`` (``MD5 (name) = hex`` or ``hex  name``)."""
    with _open(url + ".md5", timeout) as resp:
        text = resp.read(4096).decode("ascii", errors="replace")
    found = re.search(r"\b([0-9a-fA-F]{32})\b", text)
    if not found:
        raise DownloadError(f"{url}.md5: no MD5 checksum in {text[:80]!r}")
    return found.group(1).lower()


def _download(url: str, dest: Path, *, timeout: float) -> str:
    """Stream ``url`` into ``dest``; returns the MD5 hex digest; checks Content-Length."""
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"{url}: only http(s) URLs are downloaded")
    md5 = hashlib.md5()
    received = 0
    with _open(url, timeout) as resp, open(dest, "wb") as out:
        total = resp.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], leave=False) as bar:
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except OSError as err:  # connection reset mid-stream
                    raise DownloadError(f"{url}: download interrupted after {received} bytes ({err})") from err
                if not chunk:
                    break
                out.write(chunk)
                md5.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
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


def extract_zip(archive: Path, dest: Path, *, source: str, archive_md5: str | None) -> Path:
    """Test and extract ``archive`` into ``dest`` atomically (replacing a bad ``dest``)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise DownloadError(f"{source}: corrupt member {bad!r} in the zip")
            with _staged(dest, source, archive_md5) as tmp:
                for member in zf.infolist():  # refuse paths that escape the folder
                    target = (tmp / member.filename).resolve()
                    if not str(target).startswith(str(tmp.resolve())):
                        raise DownloadError(f"{source}: unsafe path {member.filename!r} in the zip")
                zf.extractall(tmp)
    except (zipfile.BadZipFile, zlib.error) as err:  # zlib: damaged deflate data in a member
        raise DownloadError(f"{source}: not a valid zip archive, truncated or corrupt ({err})") from err
    except (EOFError, zipfile.LargeZipFile) as err:
        raise DownloadError(f"{source}: truncated zip archive ({err})") from err
    return dest


def fetch_archive(url: str, dest: Path, *, md5: str | None = None, timeout: float = 60) -> Path:
    """Download the zip at ``url``, verify it, and extract it atomically into ``dest``.

    ``md5`` pins the expected checksum; when None, ``<url>.md5`` must provide it.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = md5.lower() if md5 else published_md5(url, timeout=timeout)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{dest.name}-", suffix=".zip.part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        got = _download(url, tmp, timeout=timeout)
        if got != expected:
            raise DownloadError(f"{url}: checksum mismatch, MD5 {got} but expected {expected}")
        return extract_zip(tmp, dest, source=url, archive_md5=got)
    finally:
        tmp.unlink(missing_ok=True)


def import_folder(src: Path, dest: Path, *, required: tuple[str, ...]) -> Path:
    """Copy a local data folder into the cache atomically, with a manifest."""
    src = Path(src)
    missing = [f for f in required if not (src / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{src}: missing file(s) {missing}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _staged(dest, str(src), None) as tmp:
        for p in src.iterdir():
            if p.is_file() and p.name != MANIFEST:
                shutil.copy2(p, tmp / p.name)
    return dest


@contextlib.contextmanager
def _staged(dest: Path, source: str, archive_md5: str | None):
    """A hidden temporary folder next to ``dest`` to fill; when the block succeeds it gets
    its manifest and replaces ``dest`` in one rename. Removed whatever happens."""
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=dest.parent))
    try:
        yield tmp
        _write_manifest(tmp, source, archive_md5)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

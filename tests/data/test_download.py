"""The real download path, against a local HTTP server serving archives built in the test.

Everything goes through ``workbench.datasets.load(name, base_url=..., cache_dir=...)``
except where a lower-level guarantee (unsafe zip paths, URL schemes) is checked directly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from workbench import cli
from workbench.data import datasets, download
from workbench.data.download import MANIFEST, DownloadError
from workbench.data.schema import SchemaError


def publish(server, fake, *, content: bytes | None = None, sidecar: str | None = "bsd") -> bytes:
    """Put ``<name>.zip`` (and its ``.md5`` sidecar, in GroupLens' format) on the server."""
    data = fake.zip_bytes() if content is None else content
    (server.root / f"{fake.name}.zip").write_bytes(data)
    digest = hashlib.md5(data).hexdigest()
    if sidecar == "bsd":
        (server.root / f"{fake.name}.zip.md5").write_text(f"MD5 ({fake.name}.zip) = {digest}\n")
    elif sidecar == "gnu":
        (server.root / f"{fake.name}.zip.md5").write_text(f"{digest}  {fake.name}.zip\n")
    return data


def pin(monkeypatch, name: str, md5: str | None) -> None:
    """Replace the pinned checksum of ``name`` for this test."""
    monkeypatch.setitem(datasets.SPECS, name, dataclasses.replace(datasets.SPECS[name], md5=md5))


def leftovers(cache: Path) -> list[str]:
    """Everything in the cache folder (it should be empty or absent after a failure)."""
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def load(server, name: str, cache: Path, **kwargs):
    return datasets.load(name, base_url=server.url, cache_dir=cache, **kwargs)


# --------------------------------------------------------------------------- success


@pytest.mark.parametrize("name", ["ml-100k", "ml-1m"])
def test_pinned_checksum_download_then_cache_reuse(local_http_server, fake_movielens, tmp_path, monkeypatch, name):
    fake = fake_movielens(name)
    publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, name, fake.md5)
    cache = tmp_path / "cache"

    first = load(local_http_server, name, cache)

    assert local_http_server.requests == [f"/{name}.zip"]  # pinned: the sidecar is not needed
    assert (cache / name / MANIFEST).is_file()
    assert leftovers(cache) == [name]  # no temporary files beside it
    manifest = json.loads((cache / name / MANIFEST).read_text())
    assert manifest["archive_md5"] == fake.md5
    assert set(manifest["files"]) == {f"{name}/{f}" for f in fake.files}

    second = load(local_http_server, name, cache)

    assert local_http_server.requests == [f"/{name}.zip"]  # no second request
    pd.testing.assert_frame_equal(first.interactions, second.interactions)
    pd.testing.assert_frame_equal(first.items, second.items)
    expected = datasets.load(name, path=fake.write_folder(tmp_path / "plain"), cache_dir=tmp_path / "unused")
    pd.testing.assert_frame_equal(first.interactions, expected.interactions)


@pytest.mark.parametrize("name", ["ml-100k", "ml-1m", "ml-latest-small"])
@pytest.mark.parametrize("sidecar", ["bsd", "gnu"])
def test_published_md5_is_used_when_nothing_is_pinned(
    local_http_server, fake_movielens, tmp_path, monkeypatch, name, sidecar
):
    fake = fake_movielens(name)
    publish(local_http_server, fake, sidecar=sidecar)
    pin(monkeypatch, name, None)
    cache = tmp_path / "cache"

    data = load(local_http_server, name, cache)

    assert local_http_server.requests == [f"/{name}.zip.md5", f"/{name}.zip"]
    assert len(data.interactions) == {"ml-100k": 12, "ml-1m": 6, "ml-latest-small": 8}[name]
    load(local_http_server, name, cache)
    assert len(local_http_server.requests) == 2


def test_environment_variables_choose_cache_and_mirror(local_http_server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-latest-small")
    publish(local_http_server, fake)
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "env-cache"))
    monkeypatch.setenv("WORKBENCH_DATA_URL", local_http_server.url + "/")

    datasets.load("ml-latest-small")

    assert (tmp_path / "env-cache" / "ml-latest-small" / MANIFEST).is_file()
    assert local_http_server.count("/ml-latest-small.zip") == 1


def test_download_ok_false_never_touches_the_network(local_http_server, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ml-1m is not in the cache"):
        load(local_http_server, "ml-1m", tmp_path / "cache", download_ok=False)
    assert local_http_server.requests == []


# --------------------------------------------------------------------------- bad archives


def test_wrong_pinned_checksum_names_url_and_both_md5s(local_http_server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-100k")
    publish(local_http_server, fake, sidecar=None)
    expected = "0123456789abcdef0123456789abcdef"
    pin(monkeypatch, "ml-100k", expected)
    cache = tmp_path / "cache"

    with pytest.raises(DownloadError) as err:
        load(local_http_server, "ml-100k", cache)

    message = str(err.value)
    assert f"{local_http_server.url}/ml-100k.zip" in message
    assert fake.md5 in message and expected in message
    assert leftovers(cache) == []


def test_wrong_published_checksum_is_refused(local_http_server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-latest-small")
    publish(local_http_server, fake)
    other = "f" * 32
    (local_http_server.root / "ml-latest-small.zip.md5").write_text(f"MD5 (ml-latest-small.zip) = {other}\n")
    cache = tmp_path / "cache"

    with pytest.raises(DownloadError, match="checksum mismatch") as err:
        load(local_http_server, "ml-latest-small", cache)

    assert fake.md5 in str(err.value) and other in str(err.value)
    assert leftovers(cache) == []


def test_content_length_lie_is_a_truncated_download(local_http_server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-100k")
    publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, "ml-100k", fake.md5)
    local_http_server.extra_length["/ml-100k.zip"] = 1000
    cache = tmp_path / "cache"

    with pytest.raises(DownloadError, match="truncated download") as err:
        load(local_http_server, "ml-100k", cache)

    size = len(fake.zip_bytes())
    assert f"got {size} of {size + 1000} bytes" in str(err.value)
    assert "/ml-100k.zip" in str(err.value)
    assert leftovers(cache) == []


def test_zip_cut_in_half_with_honest_length_is_refused(local_http_server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-100k")
    whole = fake.zip_bytes()
    half = publish(local_http_server, fake, content=whole[: len(whole) // 2])  # sidecar matches the half
    pin(monkeypatch, "ml-100k", None)
    cache = tmp_path / "cache"

    with pytest.raises(DownloadError, match="not a valid zip archive, truncated or corrupt") as err:
        load(local_http_server, "ml-100k", cache)

    assert f"{local_http_server.url}/ml-100k.zip" in str(err.value)
    assert local_http_server.count("/ml-100k.zip") == 1 and len(half) < len(whole)
    assert leftovers(cache) == []


def test_corrupt_compressed_member_is_a_clear_error(local_http_server, fake_movielens, tmp_path, monkeypatch):
    """Damaged deflate data inside an intact zip (a bad mirror whose .md5 matches it)."""
    fake = fake_movielens("ml-100k")
    fake.files["u.data"] = (
        b"".join(b"%d\t%d\t3\t88%07d\n" % (u, i, u * i) for u in range(1, 5) for i in range(1, 6)) * 40
    )
    data = bytearray(fake.zip_bytes())
    start = data.index(b"ml-100k/u.data") + len("ml-100k/u.data")  # first member's local header
    for j in range(start + 40, start + 80):
        data[j] ^= 0xFF
    publish(local_http_server, fake, content=bytes(data))
    pin(monkeypatch, "ml-100k", None)
    cache = tmp_path / "cache"

    with pytest.raises(DownloadError, match="corrupt") as err:
        load(local_http_server, "ml-100k", cache)

    assert "/ml-100k.zip" in str(err.value)
    assert leftovers(cache) == []


def test_http_500_reports_the_status(local_http_server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-1m")
    publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, "ml-1m", fake.md5)
    local_http_server.status["/ml-1m.zip"] = 500
    cache = tmp_path / "cache"

    with pytest.raises(DownloadError, match=r"HTTP 500") as err:
        load(local_http_server, "ml-1m", cache)

    assert f"{local_http_server.url}/ml-1m.zip" in str(err.value)
    assert leftovers(cache) == []


def test_http_500_on_the_checksum_file(local_http_server, fake_movielens, tmp_path):
    fake = fake_movielens("ml-latest-small")
    publish(local_http_server, fake)
    local_http_server.status["/ml-latest-small.zip.md5"] = 500

    with pytest.raises(DownloadError, match=r"ml-latest-small\.zip\.md5: HTTP 500"):
        load(local_http_server, "ml-latest-small", tmp_path / "cache")

    assert local_http_server.count("/ml-latest-small.zip") == 0


def test_missing_md5_when_nothing_is_pinned_downloads_nothing(local_http_server, fake_movielens, tmp_path):
    fake = fake_movielens("ml-latest-small")
    publish(local_http_server, fake, sidecar=None)
    cache = tmp_path / "cache"

    with pytest.raises(DownloadError, match=r"ml-latest-small\.zip\.md5: HTTP 404"):
        load(local_http_server, "ml-latest-small", cache)

    assert local_http_server.requests == ["/ml-latest-small.zip.md5"]
    assert leftovers(cache) == []


def test_md5_file_without_a_checksum(local_http_server, fake_movielens, tmp_path):
    fake = fake_movielens("ml-latest-small")
    publish(local_http_server, fake, sidecar=None)
    (local_http_server.root / "ml-latest-small.zip.md5").write_text("<html>Not here</html>")

    with pytest.raises(DownloadError, match=r"\.md5: no MD5 checksum in '<html>Not here</html>'"):
        load(local_http_server, "ml-latest-small", tmp_path / "cache")


def test_unreachable_server_is_a_download_error(tmp_path):
    with socket.socket() as s:  # a port nobody listens on once this block closes it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=r"cannot connect"):
        datasets.load("ml-latest-small", base_url=f"http://127.0.0.1:{port}", cache_dir=tmp_path)


def test_only_http_urls_are_downloaded(tmp_path, fake_movielens):
    archive = fake_movielens("ml-1m").write_zip(tmp_path / "src")
    with pytest.raises(DownloadError, match="only http"):
        download.fetch_archive(archive.as_uri(), tmp_path / "cache" / "ml-1m", md5="0" * 32)
    assert leftovers(tmp_path / "cache") == []


def test_zip_with_escaping_path_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "1::1::5::978300760\n")
        zf.writestr("../evil.txt", "gotcha")
    archive = tmp_path / "evil.zip"
    archive.write_bytes(buf.getvalue())
    cache = tmp_path / "cache"
    cache.mkdir()

    with pytest.raises(DownloadError, match=r"unsafe path '\.\./evil\.txt'"):
        download.extract_zip(archive, cache / "ml-1m", source=str(archive), archive_md5=None)

    assert not (tmp_path / "evil.txt").exists()
    assert leftovers(cache) == []


# --------------------------------------------------------------------------- the cache


def _cached_ml100k(server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-100k")
    publish(server, fake, sidecar=None)
    pin(monkeypatch, "ml-100k", fake.md5)
    cache = tmp_path / "cache"
    good = load(server, "ml-100k", cache)
    return cache, good


def test_edited_cached_file_is_downloaded_again(local_http_server, fake_movielens, tmp_path, monkeypatch):
    cache, good = _cached_ml100k(local_http_server, fake_movielens, tmp_path, monkeypatch)
    u_data = cache / "ml-100k" / "ml-100k" / "u.data"
    u_data.write_text(u_data.read_text().replace("\t5\t", "\t1\t"))  # a silent edit

    with pytest.warns(UserWarning, match=r"ignoring the cached ml-100k: .*u\.data: checksum differs"):
        again = load(local_http_server, "ml-100k", cache)

    assert local_http_server.count("/ml-100k.zip") == 2
    pd.testing.assert_frame_equal(again.interactions, good.interactions)
    assert download.verify_cache(cache / "ml-100k") is None
    assert leftovers(cache) == ["ml-100k"]


def test_deleted_cached_file_is_downloaded_again(local_http_server, fake_movielens, tmp_path, monkeypatch):
    cache, good = _cached_ml100k(local_http_server, fake_movielens, tmp_path, monkeypatch)
    (cache / "ml-100k" / "ml-100k" / "u.item").unlink()

    with pytest.warns(UserWarning, match=r"u\.item: missing from the cache"):
        again = load(local_http_server, "ml-100k", cache)

    assert local_http_server.count("/ml-100k.zip") == 2
    pd.testing.assert_frame_equal(again.items, good.items)


def test_folder_without_manifest_is_not_trusted(local_http_server, fake_movielens, tmp_path, monkeypatch):
    """A folder left by a copy that never finished has no manifest: download again."""
    fake = fake_movielens("ml-100k")
    publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, "ml-100k", fake.md5)
    cache = tmp_path / "cache"
    partial = fake_movielens("ml-100k")
    partial.files["u.data"] = partial.files["u.data"][:20]
    partial.write_folder(cache / "ml-100k")

    with pytest.warns(UserWarning, match="no manifest"):
        data = load(local_http_server, "ml-100k", cache)

    assert len(data.interactions) == 12
    assert local_http_server.count("/ml-100k.zip") == 1


# --------------------------------------------------------------------------- interruptions


def test_connection_dropped_mid_body_leaves_nothing(local_http_server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-100k")
    publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, "ml-100k", fake.md5)
    local_http_server.drop_after["/ml-100k.zip"] = 300
    cache = tmp_path / "cache"

    with pytest.raises(DownloadError, match=r"truncated|interrupted") as err:
        load(local_http_server, "ml-100k", cache)
    assert "/ml-100k.zip" in str(err.value)
    assert leftovers(cache) == []

    del local_http_server.drop_after["/ml-100k.zip"]  # the network is back
    data = load(local_http_server, "ml-100k", cache)
    assert len(data.interactions) == 12
    assert local_http_server.count("/ml-100k.zip") == 2


def test_ctrl_c_mid_download_leaves_nothing(local_http_server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-100k")
    fake.files["README"] = random.randbytes(20_000)  # incompressible: the zip spans many chunks
    publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, "ml-100k", fake.md5)
    monkeypatch.setattr(download, "CHUNK", 1024)
    cache = tmp_path / "cache"
    real_md5 = hashlib.md5
    chunks = []

    class InterruptOnSecondChunk:
        """Stands in for hashlib.md5 in the download loop; Ctrl-C arrives mid-body."""

        def __init__(self):
            self._h = real_md5()

        def update(self, chunk):
            chunks.append(len(chunk))
            if len(chunks) == 2:
                raise KeyboardInterrupt
            self._h.update(chunk)

        def hexdigest(self):
            return self._h.hexdigest()

    monkeypatch.setattr(download.hashlib, "md5", InterruptOnSecondChunk)
    with pytest.raises(KeyboardInterrupt):
        load(local_http_server, "ml-100k", cache)
    assert len(chunks) == 2
    assert leftovers(cache) == []

    monkeypatch.setattr(download.hashlib, "md5", real_md5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load(local_http_server, "ml-100k", cache)
    assert not [w for w in caught if "cached" in str(w.message)]  # nothing stale was found
    assert len(data.interactions) == 12
    assert (cache / "ml-100k" / "ml-100k" / "README").read_bytes() == fake.files["README"]


def test_leftovers_of_a_killed_run_are_not_mistaken_for_data(local_http_server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-100k")
    publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, "ml-100k", fake.md5)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".tmp-ml-100k-abc.zip.part").write_bytes(fake.zip_bytes()[:100])
    fake.write_folder(cache / ".tmp-ml-100k-xyz")

    data = load(local_http_server, "ml-100k", cache)

    assert local_http_server.count("/ml-100k.zip") == 1
    assert data.source == str(cache / "ml-100k")


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("target", ["ftp://127.0.0.1:1/ml-100k.zip", "file:///etc/passwd"])
def test_redirect_to_another_scheme_is_refused(local_http_server, fake_movielens, tmp_path, monkeypatch, target):
    fake = fake_movielens("ml-100k")
    publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, "ml-100k", fake.md5)
    local_http_server.redirect["/ml-100k.zip"] = target
    cache = tmp_path / "cache"

    with pytest.raises(DownloadError, match="refused a redirect") as err:
        load(local_http_server, "ml-100k", cache)

    assert target in str(err.value) and f"{local_http_server.url}/ml-100k.zip" in str(err.value)
    assert leftovers(cache) == []


def test_redirect_of_the_checksum_file_is_checked_too(local_http_server, fake_movielens, tmp_path):
    fake = fake_movielens("ml-latest-small")
    publish(local_http_server, fake)
    local_http_server.redirect["/ml-latest-small.zip.md5"] = "ftp://127.0.0.1:1/ml-latest-small.zip.md5"

    with pytest.raises(DownloadError, match=r"ml-latest-small\.zip\.md5: refused a redirect to 'ftp://"):
        load(local_http_server, "ml-latest-small", tmp_path / "cache")

    assert local_http_server.count("/ml-latest-small.zip") == 0


def test_redirect_over_the_same_scheme_is_followed_to_another_host(
    local_http_server, fake_movielens, tmp_path, monkeypatch
):
    fake = fake_movielens("ml-100k")
    fake.write_zip(local_http_server.root / "mirror")
    pin(monkeypatch, "ml-100k", fake.md5)
    local_http_server.redirect["/ml-100k.zip"] = f"http://localhost:{local_http_server.port}/mirror/ml-100k.zip"

    data = load(local_http_server, "ml-100k", tmp_path / "cache")

    assert local_http_server.requests == ["/ml-100k.zip", "/mirror/ml-100k.zip"]
    assert len(data.interactions) == 12


def test_https_download_refuses_a_downgrade_redirect_to_http():
    """No TLS server here: the redirect handler itself is asked, as urllib would ask it."""
    https_guard = download.RedirectGuard.for_url("https://files.example/ml-100k.zip")
    http_guard = download.RedirectGuard.for_url("http://mirror.example/ml-100k.zip")
    req = urllib.request.Request("https://files.example/ml-100k.zip")

    for target in ("http://files.example/ml-100k.zip", "ftp://files.example/ml-100k.zip"):
        with pytest.raises(DownloadError, match="refused a redirect"):
            https_guard.redirect_request(req, io.BytesIO(), 302, "Found", {}, target)
    followed = https_guard.redirect_request(req, io.BytesIO(), 302, "Found", {}, "https://cdn.example/ml-100k.zip")
    assert followed.full_url == "https://cdn.example/ml-100k.zip"
    assert http_guard.schemes == {"http", "https"} and https_guard.schemes == {"https"}
    with pytest.raises(DownloadError, match="only http"):
        download.RedirectGuard.for_url("ftp://files.example/ml-100k.zip")


# --------------------------------------------------------------------------- deadline and size cap


def _in_thread(fn, seconds: float):
    """Run ``fn`` in a daemon thread; (finished, exception raised or None)."""
    outcome: dict = {}

    def target():
        try:
            fn()
        except BaseException as err:  # reported to the test
            outcome["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    return not thread.is_alive(), outcome.get("error")


def test_dripping_server_is_cut_off_at_the_overall_deadline(local_http_server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-100k")
    publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, "ml-100k", fake.md5)
    local_http_server.drip["/ml-100k.zip"] = 0.05  # one byte each 50 ms: no read ever times out
    monkeypatch.setenv("WORKBENCH_DOWNLOAD_DEADLINE", "1")
    cache = tmp_path / "cache"

    started = time.monotonic()
    finished, error = _in_thread(lambda: load(local_http_server, "ml-100k", cache), seconds=8)

    assert finished, "still downloading 8 s into a 1 s deadline"
    assert time.monotonic() - started < 4
    assert isinstance(error, DownloadError) and "deadline" in str(error), error
    assert leftovers(cache) == []


def test_response_without_length_is_cut_off_at_the_size_cap(local_http_server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-100k")
    big = publish(local_http_server, fake, content=random.randbytes(3 << 20))
    pin(monkeypatch, "ml-100k", hashlib.md5(big).hexdigest())
    local_http_server.no_length.add("/ml-100k.zip")
    monkeypatch.setenv("WORKBENCH_DOWNLOAD_MAX_MB", "1")
    cache = tmp_path / "cache"
    written = []
    real_open = open

    def watching_open(path, mode="r", *args, **kwargs):  # the .part file's size when it is closed
        f = real_open(path, mode, *args, **kwargs)
        if str(path).endswith(".zip.part") and "w" in mode:
            real_close = f.close
            f.close = lambda: (written.append(f.tell()), real_close())[1]
        return f

    monkeypatch.setattr("builtins.open", watching_open)
    with pytest.raises(DownloadError, match=r"more than the 1,048,576-byte cap") as err:
        load(local_http_server, "ml-100k", cache)
    monkeypatch.undo()

    assert "/ml-100k.zip" in str(err.value)
    assert written and max(written) <= 1 << 20
    assert leftovers(cache) == []


def test_announced_length_over_the_cap_is_refused_before_the_body(
    local_http_server, fake_movielens, tmp_path, monkeypatch
):
    fake = fake_movielens("ml-100k")
    big = publish(local_http_server, fake, content=random.randbytes(2 << 20))
    pin(monkeypatch, "ml-100k", hashlib.md5(big).hexdigest())
    cache = tmp_path / "cache"
    limits = datasets.limits_for("ml-100k", max_archive_mb=1)

    with pytest.raises(DownloadError, match=r"announces 2,097,152 bytes, more than the 1,048,576-byte cap"):
        load(local_http_server, "ml-100k", cache, limits=limits)
    assert leftovers(cache) == []


def test_every_data_set_has_a_size_cap_and_deadline_with_margin(monkeypatch):
    known = {  # GroupLens' archive sizes
        "ml-100k": 4_924_029,
        "ml-1m": 5_917_549,
        "ml-latest-small": 978_202,
        "ml-20m": 198_702_078,
        "ml-25m": 261_978_986,
    }
    monkeypatch.delenv("WORKBENCH_DOWNLOAD_DEADLINE", raising=False)
    monkeypatch.delenv("WORKBENCH_DOWNLOAD_MAX_MB", raising=False)
    for name, size in known.items():
        limits = datasets.limits_for(name)
        assert 2 * size <= limits.max_archive_bytes <= 25 * size
        assert limits.max_archive_bytes < limits.max_unpacked_bytes <= 200 * size
        assert 0 < limits.deadline_s <= 3600 and limits.read_timeout_s <= limits.deadline_s

    assert datasets.limits_for("ml-1m", deadline_s=5, max_archive_mb=50).deadline_s == 5
    assert datasets.limits_for("ml-1m", max_archive_mb=50).max_archive_bytes == 50 << 20
    monkeypatch.setenv("WORKBENCH_DOWNLOAD_DEADLINE", "7.5")
    monkeypatch.setenv("WORKBENCH_DOWNLOAD_MAX_MB", "3")
    assert datasets.limits_for("ml-1m").deadline_s == 7.5
    assert datasets.limits_for("ml-1m").max_archive_bytes == 3 << 20
    assert datasets.limits_for("ml-1m", deadline_s=9).deadline_s == 9  # an argument beats the environment
    monkeypatch.setenv("WORKBENCH_DOWNLOAD_DEADLINE", "soon")
    with pytest.raises(ValueError, match=r"WORKBENCH_DOWNLOAD_DEADLINE='soon'"):
        datasets.limits_for("ml-1m")


# --------------------------------------------------------------------------- zip bombs and junk archives


def test_zip_bomb_is_refused_before_it_reaches_the_cache(local_http_server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-100k")
    fake.files["u.extra"] = bytes(30 << 20)  # 30 MB of zeros: about 30 KB deflated, a ratio near 1000
    archive = publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, "ml-100k", fake.md5)
    cache = tmp_path / "cache"
    assert len(archive) < 200_000

    for attempt in (1, 2):  # a rejected archive is never reused: the second load asks again
        with pytest.raises(DownloadError, match=r"u\.extra.* expands .* times") as err:
            load(local_http_server, "ml-100k", cache)
        assert "/ml-100k.zip" in str(err.value)
        assert leftovers(cache) == []
        assert local_http_server.count("/ml-100k.zip") == attempt


def test_archive_expanding_past_the_unpacked_cap_is_refused(local_http_server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-100k")
    fake.files["README"] = random.randbytes(300_000)  # incompressible: only the total size gives it away
    publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, "ml-100k", fake.md5)
    cache = tmp_path / "cache"
    limits = dataclasses.replace(datasets.limits_for("ml-100k"), max_unpacked_bytes=200_000)

    with pytest.raises(DownloadError, match=r"expands to \d[\d,]* bytes, more than the 200,000-byte cap"):
        load(local_http_server, "ml-100k", cache, limits=limits)
    assert leftovers(cache) == []


def test_local_zip_bomb_is_refused_too(fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-1m")
    fake.files["ratings.dat"] += bytes(20 << 20)
    archive = fake.write_zip(tmp_path / "zips")
    pin(monkeypatch, "ml-1m", fake.md5)
    cache = tmp_path / "cache"

    with pytest.raises(DownloadError, match=r"ratings\.dat.* expands"):
        datasets.load("ml-1m", path=archive, cache_dir=cache)
    assert leftovers(cache) == []


def test_archive_without_the_expected_files_is_not_cached(local_http_server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-100k")
    del fake.files["u.item"], fake.files["u.genre"]
    publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, "ml-100k", fake.md5)
    cache = tmp_path / "cache"

    with pytest.raises(DownloadError, match=r"ml-100k\.zip: does not contain the ml-100k files") as err:
        load(local_http_server, "ml-100k", cache)

    assert "nothing was cached" in str(err.value) and ".tmp-" not in str(err.value)
    assert leftovers(cache) == []


def test_archive_whose_files_do_not_parse_is_not_cached(local_http_server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_movielens("ml-100k")
    fake.files["u.data"] = fake.files["u.data"].replace(b"3\t2\t5\t", b"3\tx\t5\t", 1)
    publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, "ml-100k", fake.md5)
    cache = tmp_path / "cache"

    for attempt in (1, 2):
        with pytest.raises(SchemaError, match=r"ml-100k\.zip: ml-100k/u\.data: .*item_id.* line 8: 'x'") as err:
            load(local_http_server, "ml-100k", cache)
        assert "nothing was cached" in str(err.value) and ".tmp-" not in str(err.value)
        assert leftovers(cache) == []
        assert local_http_server.count("/ml-100k.zip") == attempt


@pytest.mark.parametrize(
    ("name", "fname", "make_junk"),
    [
        ("ml-latest-small", "ratings.csv", lambda: ",".join(f"c{i}" for i in range(50_000)).encode() + b"\n1,2,3,4\n"),
        ("ml-100k", "u.data", lambda: b"1\t1\t5\t874965758\n" + b"x" * 200_000 + b"\t1\t5\t1\n"),
        ("ml-100k", "u.item", lambda: b"7" * 100_000 + b"|" + b"|".join([b"t"] * 23) + b"\n"),
        ("ml-latest-small", "ratings.csv", lambda: b"userId,movieId,rating,timestamp\n1,1," + b"9" * 100_000 + b",1\n"),
        ("ml-1m", "ratings.dat", lambda: b"1::1::5::978300760\n" + b"y" * 100_000 + b"\n"),
    ],
)
def test_parse_errors_quote_only_a_short_excerpt(fake_movielens, tmp_path, name, fname, make_junk):
    fake = fake_movielens(name)
    fake.files[fname] = make_junk()

    with pytest.raises(SchemaError) as err:
        datasets.load(name, path=fake.write_folder(tmp_path / "src"), cache_dir=tmp_path / "cache")

    message = str(err.value)
    assert fname in message
    assert len(message) < 400 + len(str(tmp_path)), message[:1000]


# --------------------------------------------------------------------------- offline, and leftovers of killed runs


def test_offline_download_says_how_to_import_a_local_copy(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=r"cannot connect") as err:
        datasets.load("ml-100k", base_url=f"http://127.0.0.1:{port}", cache_dir=tmp_path)
    assert "workbench download ml-100k --from" in str(err.value)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_partial_files_of_a_killed_download_are_removed_by_the_next_run(
    local_http_server, fake_movielens, tmp_path, monkeypatch
):
    fake = fake_movielens("ml-100k")
    publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, "ml-100k", fake.md5)
    cache = tmp_path / "cache"
    cache.mkdir()
    dead, alive = _dead_pid(), os.getppid()
    (cache / f".tmp-ml-100k.pid{dead}.k2j4h1x0.zip.part").write_bytes(fake.zip_bytes()[:100])
    (cache / f".tmp-ml-1m.pid{dead}.a8s7d6f5.zip.part").write_bytes(b"x" * 100)
    fake.write_folder(cache / f".tmp-ml-100k.pid{dead}.q1w2e3r4")
    (cache / ".tmp-ml-100k-abc.zip.part").write_bytes(b"x")  # an older layout that names no process
    (cache / f".tmp-ml-100k.pid{alive}.z9x8c7v6.zip.part").write_bytes(b"x")  # a download still running

    load(local_http_server, "ml-100k", cache)

    assert leftovers(cache) == [f".tmp-ml-100k.pid{alive}.z9x8c7v6.zip.part", "ml-100k"]


# --------------------------------------------------------------------------- ml-20m and ml-25m


def fake_large(fake_movielens, name: str):
    """A tiny archive in the ml-20m / ml-25m layout: ml-latest-small's CSV files under a
    ``<name>/`` folder, plus the tag-genome files those releases ship."""
    fake = fake_movielens("ml-latest-small")
    fake.name = name
    fake.files["genome-tags.csv"] = b"tagId,tag\n1,007\n2,funny\n"
    fake.files["genome-scores.csv"] = b"movieId,tagId,relevance\n1,1,0.025\n1,2,0.9\n"
    return fake


@pytest.mark.parametrize("name", ["ml-20m", "ml-25m"])
def test_large_movielens_downloads_parses_and_is_reused(local_http_server, fake_movielens, tmp_path, monkeypatch, name):
    fake = fake_large(fake_movielens, name)
    publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, name, fake.md5)
    cache = tmp_path / "cache"

    data = load(local_http_server, name, cache)
    again = load(local_http_server, name, cache)

    assert local_http_server.requests == [f"/{name}.zip"]  # pinned, then served from the cache
    assert data.name == name and len(data.interactions) == 8 and data.interactions["rating"].min() == 0.5
    assert set(data.items["item_id"]) == {1, 11, 4973, 171749, 176601}
    assert data.tags is not None and sorted(data.tags["tag"]) == ["Funny", "funny", "pixar", "politics, romance"]
    pd.testing.assert_frame_equal(data.interactions, again.interactions)


@pytest.mark.parametrize("name", ["ml-20m", "ml-25m"])
def test_large_movielens_archive_must_match_the_pinned_grouplens_md5(local_http_server, fake_movielens, tmp_path, name):
    fake = fake_large(fake_movielens, name)
    publish(local_http_server, fake)  # a matching .md5 beside it is not enough: the pin decides
    cache = tmp_path / "cache"

    with pytest.raises(DownloadError, match="checksum mismatch") as err:
        load(local_http_server, name, cache)

    assert datasets.SPECS[name].md5 in str(err.value) and fake.md5 in str(err.value)
    assert local_http_server.requests == [f"/{name}.zip"]
    assert leftovers(cache) == []


def test_large_movielens_truncated_archive_is_refused(local_http_server, fake_movielens, tmp_path, monkeypatch):
    fake = fake_large(fake_movielens, "ml-20m")
    whole = fake.zip_bytes()
    cut = whole[: len(whole) * 2 // 3]
    publish(local_http_server, fake, content=cut)
    pin(monkeypatch, "ml-20m", hashlib.md5(cut).hexdigest())  # a mirror serving a cut copy under its own MD5
    cache = tmp_path / "cache"

    with pytest.raises(DownloadError, match=r"ml-20m\.zip: not a valid zip archive, truncated or corrupt"):
        load(local_http_server, "ml-20m", cache)
    assert leftovers(cache) == []


@pytest.mark.parametrize(
    ("fname", "header", "missing"),
    [
        ("ratings.csv", b"userId,movieId,rating,timestamp", "timestamp"),
        ("movies.csv", b"movieId,title,genres", "title"),
    ],
)
def test_large_movielens_missing_column_is_refused(
    local_http_server, fake_movielens, tmp_path, monkeypatch, fname, header, missing
):
    fake = fake_large(fake_movielens, "ml-25m")
    fake.files[fname] = fake.files[fname].replace(header, header.replace(missing.encode(), b"other"), 1)
    publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, "ml-25m", fake.md5)
    cache = tmp_path / "cache"

    with pytest.raises(SchemaError, match=rf"ml-25m/{fname}.*{missing}") as err:
        load(local_http_server, "ml-25m", cache)
    assert "nothing was cached" in str(err.value)
    assert leftovers(cache) == []


def test_download_command_fetches_ml_20m(local_http_server, fake_movielens, tmp_path, monkeypatch, capsys):
    fake = fake_large(fake_movielens, "ml-20m")
    publish(local_http_server, fake, sidecar=None)
    pin(monkeypatch, "ml-20m", fake.md5)
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WORKBENCH_DATA_URL", local_http_server.url)

    assert cli.main(["download", "ml-20m"]) == 0

    assert capsys.readouterr().out.strip() == f"ml-20m: {tmp_path / 'cache' / 'ml-20m'}"
    assert download.verify_cache(tmp_path / "cache" / "ml-20m") is None

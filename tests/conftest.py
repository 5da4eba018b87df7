"""Shared fixtures: seeding, a local HTTP server, fake MovieLens archives, the real ml-100k,
and a tiny random BERT checkpoint.

Only the seeding fixture is autouse; everything else is asked for by name.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning
# workers slowed small torch calls from ~40 us to ~1 ms. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hashlib
import http.server
import io
import random
import signal
import socket
import struct
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

try:
    import torch
except ImportError:  # the data and metrics tests do not need it
    torch = None

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 0


def pytest_configure(config):
    """Tests Ctrl+C the processes they start (a sweep driver, a server). A test run started
    in the background by a non-interactive shell (``cmd &``) inherits SIGINT *ignored*, its
    children with it, and a Python child then never raises KeyboardInterrupt: two CI runs
    started that way failed the Ctrl+C tests. With a handler here instead, every child starts
    with SIGINT at its default (a handler, unlike "ignored", does not survive exec)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's tests (``pytestmark =
    pytest.mark.usefixtures("one_torch_thread")``): their tensors are tiny, so threads
    gain nothing, and on a busy shared machine OpenMP's spin-waiting makes two threads
    many times slower than one. Restores the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed_everything():
    """Seed ``random``, numpy's global RNG and torch (CPU and CUDA) before every test."""
    random.seed(SEED)
    np.random.seed(SEED)
    if torch is not None:
        torch.manual_seed(SEED)  # seeds every CUDA device too
    yield


# --------------------------------------------------------------------------- HTTP server


@dataclass
class LocalServer:
    """A static file server on 127.0.0.1 with switchable faults.

    Files are served from ``root``. ``requests`` lists every requested path in order.
    Faults, keyed by URL path (``"/ml-100k.zip"``):

    - ``status[path] = 500`` -- answer with that HTTP status instead of the file;
    - ``extra_length[path] = n`` -- announce ``n`` bytes more in Content-Length than the
      body holds, then close (a truncated transfer);
    - ``drop_after[path] = n`` -- announce the true length, send ``n`` bytes, then reset
      the connection (a transfer interrupted mid-body);
    - ``redirect[path] = location`` -- answer ``302 Found`` with that ``Location``;
    - ``drip[path] = seconds`` -- announce the true length, then send one byte every
      ``seconds`` (a server that never times a read out), for at most 20 s;
    - ``no_length`` -- paths sent without Content-Length, the end marked by closing.
    """

    root: Path
    port: int = 0
    requests: list[str] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    extra_length: dict[str, int] = field(default_factory=dict)
    drop_after: dict[str, int] = field(default_factory=dict)
    redirect: dict[str, str] = field(default_factory=dict)
    drip: dict[str, float] = field(default_factory=dict)
    no_length: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, path: str) -> int:
        """How many times ``path`` was requested."""
        return self.requests.count(path)


def _handler_for(server: LocalServer):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(server.root), **kwargs)

        def log_message(self, format, *args):  # keep test output clean
            pass

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            server.requests.append(path)
            if path in server.status:
                self.send_error(server.status[path])
                return
            if path in server.redirect:
                self.send_response(302)
                self.send_header("Location", server.redirect[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            file = server.root / path.lstrip("/")
            faults = (server.extra_length, server.drop_after, server.drip, server.no_length)
            if not file.is_file() or not any(path in fault for fault in faults):
                super().do_GET()
                return
            body = file.read_bytes()
            announced = len(body) + server.extra_length.get(path, 0)
            sent = body[: server.drop_after[path]] if path in server.drop_after else body
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            if path not in server.no_length:
                self.send_header("Content-Length", str(announced))
            self.end_headers()
            if path in server.drip:
                self._drip(sent, server.drip[path])
                return
            self.wfile.write(sent)
            self.wfile.flush()
            self.close_connection = True
            if path in server.drop_after:
                time.sleep(0.2)  # let the client read the headers and start on the body
                # close with SO_LINGER 0: the peer gets a reset (RST), not an orderly end (FIN)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                os.close(self.connection.detach())

        def _drip(self, body: bytes, seconds: float) -> None:
            stop = time.monotonic() + 20
            for byte in body:
                if time.monotonic() > stop:
                    break
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:  # the client gave up
                    break
                time.sleep(seconds)
            self.close_connection = True

    return Handler


@pytest.fixture
def local_http_server(tmp_path_factory):
    """A :class:`LocalServer` serving a fresh temp folder on 127.0.0.1 (free port)."""
    state = LocalServer(root=tmp_path_factory.mktemp("www"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="local-http-server", daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- fake MovieLens

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip


def _flags(*names: str) -> str:
    return "|".join("1" if g in names else "0" for g in ML100K_GENRES)


def _ml_100k_files() -> dict[str, bytes]:
    genre = "".join(f"{g}|{i}\n" for i, g in enumerate(ML100K_GENRES)) + "\n"
    items = [
        "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|"
        + _flags("Animation", "Children's", "Comedy"),
        "2|Café (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Caf%E9|" + _flags("Comedy", "Romance"),
        "3|Star Wars (1977)|01-Jan-1977||http://us.imdb.com/M/title-exact?Star%20Wars%20(1977)|"
        + _flags("Action", "Adventure", "Romance", "Sci-Fi", "War"),
        "4|unknown||||" + _flags("unknown"),
        "5|Misérables, Les (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Mis%E9rables|" + _flags("Drama"),
    ]
    users = ["1|24|M|technician|85711", "2|53|F|other|94043", "3|23|M|writer|01002", "4|33|F|educator|T8H1N"]
    ratings = [
        (1, 1, 5, 874965758),
        (1, 2, 3, 876893171),
        (1, 3, 4, 878542960),
        (1, 5, 1, 875071561),
        (2, 1, 4, 888550871),
        (2, 3, 2, 888551150),
        (2, 4, 3, 888552084),
        (3, 2, 5, 889237269),
        (3, 3, 4, 889236939),
        (3, 5, 2, 889237455),
        (4, 1, 3, 892002353),
        (4, 3, 5, 892003052),
    ]
    return {
        "u.data": "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings).encode("ascii"),
        "u.item": ("\n".join(items) + "\n").encode("latin-1"),
        "u.genre": genre.encode("latin-1"),
        "u.user": ("\n".join(users) + "\n").encode("latin-1"),
    }


def _ml_1m_files() -> dict[str, bytes]:
    movies = [
        "1::Toy Story (1995)::Animation|Children's|Comedy",
        "2::Cité des enfants perdus, La (City of Lost Children, The) (1995)::Adventure|Sci-Fi",
        "3::Star Trek: Generations (1994)::Action|Adventure|Sci-Fi",
    ]
    users = ["1::F::1::10::48067", "2::M::56::16::70072", "3::M::25::15::02460"]
    ratings = [
        (1, 1, 5, 978300760),
        (1, 2, 3, 978302109),
        (2, 1, 4, 978298413),
        (2, 3, 1, 978299000),
        (3, 2, 2, 978220179),
        (3, 3, 5, 978199279),
    ]
    return {
        "ratings.dat": "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in ratings).encode("latin-1"),
        "movies.dat": ("\n".join(movies) + "\n").encode("latin-1"),
        "users.dat": ("\n".join(users) + "\n").encode("latin-1"),
    }


def _ml_latest_small_files() -> dict[str, bytes]:
    movies = (
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\n'
        '4973,"Amélie (Fabuleux destin d\'Amélie Poulain, Le) (2001)",Comedy|Romance\n'
        "171749,Death Note: Desu nôto (2006–2007),(no genres listed)\n"
        "176601,Black Mirror,(no genres listed)\n"
    )
    ratings = (
        "userId,movieId,rating,timestamp\n"
        "1,1,4.0,964982703\n1,11,3.5,964981247\n1,4973,0.5,964982224\n"
        "2,1,5.0,1445714835\n2,171749,4.5,1445715340\n2,176601,2.5,1445714980\n"
        "3,11,1.0,1306463578\n3,4973,4.5,1306464275\n"
    )
    tags = (
        "userId,movieId,tag,timestamp\n"
        "1,1,pixar,1139045764\n2,1,funny,1445714994\n3,1,Funny ,1306464100\n"
        '2,11,"politics, romance",1445715000\n'
    )
    links = "movieId,imdbId,tmdbId\n1,0114709,862\n11,0112346,9087\n"
    return {
        "ratings.csv": ratings.encode("utf-8"),
        "movies.csv": movies.encode("utf-8"),
        "tags.csv": tags.encode("utf-8"),
        "links.csv": links.encode("utf-8"),
    }


FAKE_FILES = {"ml-100k": _ml_100k_files, "ml-1m": _ml_1m_files, "ml-latest-small": _ml_latest_small_files}


@dataclass
class FakeMovieLens:
    """A small data set in one GroupLens layout; edit ``files`` to make it bad."""

    name: str
    files: dict[str, bytes]

    def zip_bytes(self) -> bytes:
        """The archive as GroupLens builds it: every file under a ``<name>/`` folder. The
        same bytes on every call (a fixed timestamp): ``md5`` matches a later ``write_zip``."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for fname, content in self.files.items():
                member = zipfile.ZipInfo(f"{self.name}/{fname}", date_time=(2020, 1, 1, 0, 0, 0))
                zf.writestr(member, content, compress_type=zipfile.ZIP_DEFLATED)
        return buf.getvalue()

    @property
    def md5(self) -> str:
        return hashlib.md5(self.zip_bytes()).hexdigest()

    def write_zip(self, folder: Path) -> Path:
        """Write ``folder/<name>.zip`` and return its path."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.zip"
        path.write_bytes(self.zip_bytes())
        return path

    def write_folder(self, folder: Path) -> Path:
        """Write the files into ``folder/<name>/`` (an unzipped archive) and return it."""
        root = folder / self.name
        root.mkdir(parents=True, exist_ok=True)
        for fname, content in self.files.items():
            (root / fname).write_bytes(content)
        return root


@pytest.fixture
def fake_movielens():
    """Factory: ``fake_movielens("ml-100k" | "ml-1m" | "ml-latest-small") -> FakeMovieLens``."""

    def make(name: str) -> FakeMovieLens:
        return FakeMovieLens(name, FAKE_FILES[name]())

    return make


@pytest.fixture
def shared_ml100k() -> Path:
    """The real ml-100k files in ``../shared/data/ml-100k``; skips when absent."""
    path = (REPO_ROOT / ".." / "shared" / "data" / "ml-100k").resolve()
    if not (path / "u.data").is_file():
        pytest.skip(f"real ml-100k not found at {path}")
    return path


# --------------------------------------------------------------------------- tiny encoder


def save_random_encoder(folder: Path, *, hidden_size: int = 32, layers: int = 2, heads: int = 2, seed: int = 0) -> Path:
    """Write a tiny randomly initialised BERT (safetensors) with the default tokenizer,
    loadable with ``load_encoder(folder)`` like any local checkpoint: for tests where the
    pretrained weights are not the point."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from workbench.models.text.encoder import default_encoder_path

    tok = AutoTokenizer.from_pretrained(str(default_encoder_path()), local_files_only=True)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden_size,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder_path(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT checkpoint folder (see :func:`save_random_encoder`)."""
    return save_random_encoder(tmp_path_factory.mktemp("tiny-bert"), hidden_size=32, layers=2, heads=2)


# --------------------------------------------------------------------------- a sequence log


@pytest.fixture
def sequence_log():
    """Nine interactions in shuffled input order. User 1: 10 -> 11 -> 12 -> 13 (12 and 13
    tie in time: input order decides); user 2: 20 -> 21 -> 22; user 3 has 2 rows only."""
    rows = [
        (1, 11, 5, 200),
        (2, 21, 4, 20),
        (1, 10, 4, 100),
        (1, 12, 3, 300),
        (1, 13, 3, 300),
        (2, 20, 4, 10),
        (2, 22, 1, 30),
        (3, 30, 5, 1),
        (3, 31, 5, 2),
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])

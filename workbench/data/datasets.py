"""Data sets by name: MovieLens from GroupLens (verified, cached) and the synthetic generator.

>>> data = load("ml-100k")                      # downloads once into data/, then reuses it
>>> data = load("ml-100k", path="~/ml-100k")    # a local folder or zip (air-gapped)
>>> data = load("synthetic", size="tiny", seed=0)

The cache lives in ``data/`` (``WORKBENCH_DATA_DIR`` overrides); the download base URL
is ``WORKBENCH_DATA_URL`` or the ``base_url`` argument (mirrors, tests). A cached folder
whose files no longer match their manifest is downloaded again, never used. Nothing
enters the cache before its files are found and parse; each download runs within the
data set's :func:`limits_for` (a deadline, archive and unpacked size caps).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.data import download, movielens, synthetic
from workbench.data.schema import ITEM, RATING, TIMESTAMP, USER, SchemaError

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens"
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data"  # the checkout's data/ folder


@dataclass(frozen=True)
class Spec:
    """How to fetch and parse one named data set."""

    name: str
    files: tuple[str, ...]  # required files, used to find and check the folder
    parser: Callable
    rating_range: tuple[float, float]
    md5: str | None = None  # pinned archive checksum; None -> use the published .md5
    limits: download.Limits = field(default_factory=download.Limits)  # deadline and size caps of its download


MB = 1 << 20
ENV_DEADLINE = "WORKBENCH_DOWNLOAD_DEADLINE"  # seconds for a whole download
ENV_MAX_MB = "WORKBENCH_DOWNLOAD_MAX_MB"  # the archive's size cap, in MiB


def _caps(archive_mb: float, unpacked_mb: float) -> download.Limits:
    return download.Limits(max_archive_bytes=int(archive_mb * MB), max_unpacked_bytes=int(unpacked_mb * MB))


SPECS = {
    "ml-100k": Spec(
        "ml-100k",
        ("u.data", "u.item", "u.genre", "u.user"),
        movielens.parse_ml_100k,
        (1, 5),
        md5="0e33842e24a9c977be4e0107933c0723",
        limits=_caps(20, 80),  # the zip is 4.9 MB, 16 MB unpacked
    ),
    "ml-1m": Spec(
        "ml-1m",
        ("ratings.dat", "movies.dat", "users.dat"),
        movielens.parse_ml_1m,
        (1, 5),
        md5="c4d9eecfca2ab87c1945afe126590906",
        limits=_caps(24, 100),  # 5.9 MB, 25 MB unpacked
    ),
    # "latest" is republished from time to time: trust the .md5 GroupLens serves with it
    "ml-latest-small": Spec(
        "ml-latest-small",
        ("ratings.csv", "movies.csv"),
        movielens.parse_movielens_csv,
        (0.5, 5),
        limits=_caps(10, 40),  # 1.0 MB, 3.3 MB unpacked; room to grow
    ),
    # frozen releases: the MD5s below are the ones GroupLens publishes in ml-20m.zip.md5 and
    # ml-25m.zip.md5 (as other loaders pin them, beside the same ml-100k/ml-1m values as ours)
    "ml-20m": Spec(
        "ml-20m",
        ("ratings.csv", "movies.csv"),
        movielens.parse_movielens_csv,
        (0.5, 5),
        md5="cd245b17a1ae2cc31bb14903e1204af3",
        limits=dataclasses.replace(_caps(400, 2000), deadline_s=3600.0),  # 190 MiB, 833 MiB unpacked
    ),
    "ml-25m": Spec(
        "ml-25m",
        ("ratings.csv", "movies.csv"),
        movielens.parse_movielens_csv,
        (0.5, 5),
        md5="6b51fb2759a8657d3bfcbfc42b592ada",
        limits=dataclasses.replace(_caps(600, 2500), deadline_s=3600.0),  # 250 MiB, 1.1 GiB unpacked
    ),
}
NAMES = (*SPECS, "synthetic")


@dataclass
class Dataset:
    """Interactions, items and (where present) users in the canonical schema."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame | None = None
    source: str = ""
    info: dict = field(default_factory=dict)
    # user tags (user_id, item_id, tag, timestamp) where the data set has them; never in
    # items["text"] by themselves: workbench.data.text.with_tags builds text from a split
    tags: pd.DataFrame | None = None

    def summary(self) -> dict:
        """Sizes, density, rating scale and time span -- what notebook 01 records."""
        df = self.interactions
        n_u, n_i = df[USER].nunique(), df[ITEM].nunique()
        ts = pd.to_datetime(df[TIMESTAMP], unit="s")
        return {
            "dataset": self.name,
            "source": self.source,
            "n_users": int(n_u),
            "n_items": int(n_i),
            "n_catalogue_items": len(self.items),
            "n_interactions": len(df),
            "density": float(len(df) / (n_u * n_i)),
            "rating_mean": float(df[RATING].mean()),
            "rating_values": sorted(float(v) for v in df[RATING].unique())[:12],
            "min_per_user": int(df.groupby(USER).size().min()),
            "first_interaction": str(ts.min().date()),
            "last_interaction": str(ts.max().date()),
        }


def data_dir() -> Path:
    return Path(os.environ.get("WORKBENCH_DATA_DIR", DEFAULT_DATA_DIR)).expanduser()


def _env_number(name: str) -> float | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{name}={text!r}: expected a positive number")
    return value


def limits_for(name: str, *, deadline_s: float | None = None, max_archive_mb: float | None = None) -> download.Limits:
    """The download limits of data set ``name``: its own caps (its known archive size
    with margin), overridden by ``WORKBENCH_DOWNLOAD_DEADLINE`` (seconds) and
    ``WORKBENCH_DOWNLOAD_MAX_MB`` from the environment, then by the arguments. Raising
    the archive cap raises the unpacked cap in proportion."""
    if name not in SPECS:
        raise ValueError(f"unknown data set {name!r}; choose one of {list(SPECS)}")
    limits = SPECS[name].limits
    deadline_s = deadline_s or _env_number(ENV_DEADLINE)
    max_archive_mb = max_archive_mb or _env_number(ENV_MAX_MB)
    if deadline_s:
        limits = dataclasses.replace(
            limits, deadline_s=deadline_s, read_timeout_s=min(limits.read_timeout_s, deadline_s)
        )
    if max_archive_mb:
        archive = int(max_archive_mb * MB)
        unpacked = max(limits.max_unpacked_bytes, archive * limits.max_unpacked_bytes // limits.max_archive_bytes)
        limits = dataclasses.replace(limits, max_archive_bytes=archive, max_unpacked_bytes=unpacked)
    return limits


def _find_root(folder: Path, spec: Spec) -> Path:
    for candidate in (folder, folder / spec.name, *[p for p in folder.iterdir() if p.is_dir()]):
        if all((candidate / f).is_file() for f in spec.files):
            return candidate
    raise FileNotFoundError(f"{folder}: does not contain the {spec.name} files {list(spec.files)}")


def _read(spec: Spec, root: Path, source: str) -> Dataset:
    """Parse the files in ``root`` into a Dataset; SchemaError when they do not hold up."""
    interactions, items, users = spec.parser(root, rating_range=spec.rating_range)
    unknown = np.setdiff1d(interactions[ITEM].unique(), items[ITEM].to_numpy())
    if len(unknown):
        raise SchemaError(
            f"{root}: {len(unknown)} rated item id(s) missing from the item table, e.g. {unknown[:5].tolist()}"
        )
    return Dataset(spec.name, interactions, items, users, source=source, tags=movielens.read_tags(root))


def _checker(spec: Spec, source: str) -> Callable[[Path], None]:
    """What a staged copy must pass before it may enter the cache: the data set's files
    are there and parse. Errors name ``source`` and the file in it, not the staging folder."""

    def check(staged: Path) -> None:
        def rebased(err: Exception) -> str:
            text = str(err).replace(f"{staged}{os.sep}", f"{source}: ").replace(str(staged), source)
            return f"{text} (rejected: nothing was cached)"

        try:
            _read(spec, _find_root(staged, spec), source)
        except FileNotFoundError as err:
            raise download.DownloadError(rebased(err)) from None
        except SchemaError as err:
            raise SchemaError(rebased(err)) from None

    return check


def _cached(
    spec: Spec, *, cache: Path, base_url: str | None, download_ok: bool, limits: download.Limits | None
) -> Path:
    folder = cache / spec.name
    if folder.exists():
        problem = download.verify_cache(folder)
        if problem is None:
            return folder
        warnings.warn(f"ignoring the cached {spec.name}: {problem}; downloading it again", stacklevel=3)
    if not download_ok:
        raise FileNotFoundError(f"{spec.name} is not in the cache {cache} and download=False")
    url = f"{(base_url or os.environ.get('WORKBENCH_DATA_URL') or GROUPLENS_URL).rstrip('/')}/{spec.name}.zip"
    limits = limits or limits_for(spec.name)
    try:
        return download.fetch_archive(url, folder, md5=spec.md5, limits=limits, check=_checker(spec, url))
    except download.ConnectError as err:
        raise download.ConnectError(
            f"{err}. Offline? Import a local copy: workbench download {spec.name} --from PATH "
            "(the unzipped folder or the zip)"
        ) from err


def _from_zip(spec: Spec, archive: Path, cache: Path, limits: download.Limits | None) -> Path:
    if spec.md5:
        got = download.file_md5(archive)
        if got != spec.md5:
            raise download.DownloadError(f"{archive}: checksum mismatch, MD5 {got} but expected {spec.md5}")
    cache.mkdir(parents=True, exist_ok=True)
    return download.extract_zip(
        archive,
        cache / spec.name,
        source=str(archive),
        archive_md5=spec.md5,
        limits=limits or limits_for(spec.name),
        check=_checker(spec, str(archive)),
    )


def load(
    name: str,
    *,
    path: str | Path | None = None,
    size: str = "tiny",
    seed: int = 0,
    base_url: str | None = None,
    cache_dir: str | Path | None = None,
    download_ok: bool = True,
    limits: download.Limits | None = None,
) -> Dataset:
    """Load a data set by name: ``ml-100k``, ``ml-1m``, ``ml-latest-small``, ``ml-20m``,
    ``ml-25m`` or ``synthetic``.

    ``path``: a local folder holding the files, or the official zip (checked against
    the pinned checksum when one is known). ``size``/``seed`` apply to ``synthetic``
    (sizes: see :data:`workbench.data.synthetic.SIZES`). ``limits`` bound a download or
    a zip's extraction (default: :func:`limits_for` the data set).
    """
    if name == "synthetic":
        inter, items, users = synthetic.generate(synthetic.config_for(size, seed))
        items["text"] = [
            movielens.item_text(t, y, g) for t, y, g in zip(items["title"], items["year"], items["genres"])
        ]
        return Dataset(
            "synthetic",
            inter,
            items,
            users,
            source=f"synthetic(size={size!r}, seed={seed})",
            info={"size": size, "seed": seed},
            tags=synthetic.tags(inter, items, seed=seed),
        )
    if name not in SPECS:
        raise ValueError(f"unknown data set {name!r}; choose one of {list(NAMES)}")
    spec = SPECS[name]
    cache = Path(cache_dir).expanduser() if cache_dir else data_dir()
    if path is not None:
        path = Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        folder = _from_zip(spec, path, cache, limits) if path.is_file() else path
        source = str(path)
    else:
        folder = _cached(spec, cache=cache, base_url=base_url, download_ok=download_ok, limits=limits)
        source = str(folder)
    return _read(spec, _find_root(folder, spec), source)


def import_local(
    name: str, path: str | Path, *, cache_dir: str | Path | None = None, limits: download.Limits | None = None
) -> Path:
    """Copy a local copy of a data set -- its folder (or a parent of it) or the official
    zip -- into the cache, for machines without internet. Nothing is cached unless the
    files are all there and parse."""
    if name not in SPECS:
        raise ValueError(f"unknown data set {name!r}; choose one of {list(SPECS)}")
    spec = SPECS[name]
    cache = Path(cache_dir).expanduser() if cache_dir else data_dir()
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_file():
        return _from_zip(spec, path, cache, limits)
    root = _find_root(path, spec)
    return download.import_folder(root, cache / name, required=spec.files, check=_checker(spec, str(root)))

"""Data sets by name: MovieLens from GroupLens (verified, cached) and the synthetic generator.

>>> data = load("ml-100k")                      # downloads once into data/, then reuses it
>>> data = load("ml-100k", path="~/ml-100k")    # a local folder or zip (air-gapped)
>>> data = load("synthetic", size="tiny", seed=0)

The cache lives in ``data/`` (``WORKBENCH_DATA_DIR`` overrides); the download base URL
is ``WORKBENCH_DATA_URL`` or the ``base_url`` argument (mirrors, tests). A cached folder
whose files no longer match their manifest is downloaded again, never used.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.data import download, movielens, synthetic
from workbench.data.schema import ITEM, RATING, TIMESTAMP, USER, SchemaError, validate_interactions

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


SPECS = {
    "ml-100k": Spec(
        "ml-100k",
        ("u.data", "u.item", "u.genre", "u.user"),
        movielens.parse_ml_100k,
        (1, 5),
        md5="0e33842e24a9c977be4e0107933c0723",
    ),
    "ml-1m": Spec(
        "ml-1m",
        ("ratings.dat", "movies.dat", "users.dat"),
        movielens.parse_ml_1m,
        (1, 5),
        md5="c4d9eecfca2ab87c1945afe126590906",
    ),
    # "latest" is republished from time to time: trust the .md5 GroupLens serves with it
    "ml-latest-small": Spec(
        "ml-latest-small", ("ratings.csv", "movies.csv"), movielens.parse_ml_latest_small, (0.5, 5)
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


def _find_root(folder: Path, spec: Spec) -> Path:
    for candidate in (folder, folder / spec.name, *[p for p in folder.iterdir() if p.is_dir()]):
        if all((candidate / f).is_file() for f in spec.files):
            return candidate
    raise FileNotFoundError(f"{folder}: does not contain the {spec.name} files {list(spec.files)}")


def _cached(spec: Spec, *, cache: Path, base_url: str | None, download_ok: bool) -> Path:
    folder = cache / spec.name
    if folder.exists():
        problem = download.verify_cache(folder)
        if problem is None:
            return folder
        warnings.warn(f"ignoring the cached {spec.name}: {problem}; downloading it again", stacklevel=3)
    if not download_ok:
        raise FileNotFoundError(f"{spec.name} is not in the cache {cache} and download=False")
    url = f"{(base_url or os.environ.get('WORKBENCH_DATA_URL') or GROUPLENS_URL).rstrip('/')}/{spec.name}.zip"
    return download.fetch_archive(url, folder, md5=spec.md5)


def _from_zip(spec: Spec, archive: Path, cache: Path) -> Path:
    if spec.md5:
        got = download.file_md5(archive)
        if got != spec.md5:
            raise download.DownloadError(f"{archive}: checksum mismatch, MD5 {got} but expected {spec.md5}")
    cache.mkdir(parents=True, exist_ok=True)
    return download.extract_zip(archive, cache / spec.name, source=str(archive), archive_md5=spec.md5)


def load(
    name: str,
    *,
    path: str | Path | None = None,
    size: str = "tiny",
    seed: int = 0,
    base_url: str | None = None,
    cache_dir: str | Path | None = None,
    download_ok: bool = True,
) -> Dataset:
    """Load a data set by name: ``ml-100k``, ``ml-1m``, ``ml-latest-small`` or ``synthetic``.

    ``path``: a local folder holding the files, or the official zip (checked against
    the pinned checksum when one is known). ``size``/``seed`` apply to ``synthetic``
    (sizes: see :data:`workbench.data.synthetic.SIZES`).
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
        folder = _from_zip(spec, path, cache) if path.is_file() else path
        source = str(path)
    else:
        folder = _cached(spec, cache=cache, base_url=base_url, download_ok=download_ok)
        source = str(folder)
    root = _find_root(folder, spec)
    ratings, items, users = spec.parser(root)
    interactions = validate_interactions(ratings, source=str(root / spec.files[0]), rating_range=spec.rating_range)
    unknown = np.setdiff1d(interactions[ITEM].unique(), items[ITEM].to_numpy())
    if len(unknown):
        raise SchemaError(
            f"{root}: {len(unknown)} rated item id(s) missing from the item table, e.g. {unknown[:5].tolist()}"
        )
    return Dataset(name, interactions, items, users, source=source, tags=movielens.read_tags(root))


def import_local(name: str, folder: str | Path, *, cache_dir: str | Path | None = None) -> Path:
    """Copy a local copy of a data set into the cache (for machines without internet)."""
    if name not in SPECS:
        raise ValueError(f"unknown data set {name!r}; choose one of {list(SPECS)}")
    spec = SPECS[name]
    cache = Path(cache_dir).expanduser() if cache_dir else data_dir()
    root = _find_root(Path(folder).expanduser(), spec)
    return download.import_folder(root, cache / name, required=spec.files)

"""A deterministic, MovieLens-shaped synthetic data set with planted structure.

What is planted (so each model family has real signal to find):

- **Latent factors.** Every item has a factor vector near the centroid of its primary
  genre; every user mixes one or two genre centroids. Who rates what is drawn from
  ``softmax(affinity * <user, item> + popularity_bias)`` without replacement
  (Gumbel top-k), so collaborative filtering can recover the factors.
- **Long tails.** Item popularity bias is Zipf-like (``-popularity * log(1 + rank)``) and
  user activity is log-normal with a floor of ``min_per_user`` (MovieLens keeps users
  with >= 20 ratings), so both distributions are long-tailed.
- **Ratings.** ``round(3.5 + 1.2 * z(<user, item>) + noise)`` clipped to 1..5.
- **Text signal.** Titles are built from words tied to the item's factors: one word
  from its primary genre's vocabulary and one "topic" word chosen by the nearest of
  16 topic directions in factor space, so a text encoder can predict CF neighbours.
- **Sequential signal.** About a quarter of items form series (2-4 parts, titles
  "Stem", "Stem II", ...). A user who picks part one watches the later parts right
  after it with probability ``series_follow``. Each user's other items are ordered by
  a drift in taste (projection on a per-user direction plus noise), so the next item
  resembles the previous one.
- **Time.** Each user starts within a 7-month window (as ml-100k does) and rates with
  exponential gaps, in the order above.

**Scale.** Scoring every item for every user is exact but quadratic; above
:data:`EXACT_PAIRS` user-item pairs (the ``ml-5m`` and ``ml-20m`` presets, 10^5-10^6-item
catalogues) the generator draws each user's Gumbel top-k from a candidate pool instead
(the 2,000 most popular items, draws by popularity, the user's genres, uniform draws):
linear in the interactions. On this 2-core machine, under a load of 4-5: ``ml-5m`` (5.5M
interactions) in 37 s and 0.9 GB; 100k users x 10^6 items x 30 in 101 s. Lower
``popularity`` (e.g. 0.5) spreads a large catalogue's interactions over more items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.data.schema import ITEM, RATING, TIMESTAMP, USER

GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
    "Western",
)  # fmt: skip
_GENRE_WORDS = {
    "Action": "Strike Fury Blast Force Bullet Chase Raid Impact Rampage Siege",
    "Adventure": "Quest Voyage Journey Expedition Treasure Island Odyssey Frontier Trail Safari",
    "Animation": "Toon Sketch Pixel Doodle Cartoon Puppet Clay Sprite Canvas Inkwell",
    "Children's": "Puppy Kitten Treehouse Playground Lullaby Teddy Balloon Candy Pony Toybox",
    "Comedy": "Blunder Mixup Prank Giggle Caper Hijinks Goof Wisecrack Farce Punchline",
    "Crime": "Heist Mobster Racket Alibi Con Gangland Hitman Smuggler Vice Getaway",
    "Documentary": "Chronicle Record Witness Archive Portrait Report Testament Survey Truth Inquiry",
    "Drama": "Sorrow Promise Letters Silence Winter Family Memory Tears Reckoning Grace",
    "Fantasy": "Wizard Dragon Spell Realm Enchanted Elf Sorcery Rune Faerie Oracle",
    "Film-Noir": "Shadow Dame Smoke Nightfall Dagger Rain Neon Doublecross Fog Midnight",
    "Horror": "Scream Haunting Blood Crypt Zombie Nightmare Curse Ghoul Terror Grave",
    "Musical": "Melody Rhythm Chorus Dance Serenade Ballad Harmony Encore Tango Waltz",
    "Mystery": "Clue Riddle Enigma Secret Puzzle Cipher Vanishing Detective Suspect Key",
    "Romance": "Love Kiss Heart Passion Sweetheart Wedding Desire Valentine Romance Embrace",
    "Sci-Fi": "Galaxy Robot Android Planet Cosmos Starship Quantum Cyborg Nebula Orbit",
    "Thriller": "Conspiracy Hostage Trap Pursuit Deadline Paranoia Target Ransom Edge Threat",
    "War": "Battle Soldier Trench Platoon Frontline Bomber Regiment Sniper Armistice Fleet",
    "Western": "Outlaw Saloon Sheriff Canyon Rustler Stagecoach Gunslinger Ranch Prairie Mesa",
}
_TOPIC_WORDS = [
    "Red", "Blue", "Golden", "Silver", "Dark", "Bright", "Lost", "Last",
    "First", "Secret", "Wild", "Silent", "Broken", "Hidden", "Iron", "Crystal",
]  # fmt: skip
_ROMAN = ("", " II", " III", " IV")
_OCCUPATIONS = ("student", "engineer", "educator", "programmer", "writer", "artist", "other")

#: preset sizes: (n_users, n_items, mean interactions per user, min per user); ``ml-5m`` and
#: ``ml-20m`` have ML-20M's users/items ratio and mean history (138,493 users, 26,744 items,
#: 20.0M ratings) at a quarter and at full size
SIZES = {
    "tiny": (150, 300, 40, 10),
    "small": (943, 1682, 106, 20),
    "ml-1m": (6040, 3706, 165, 20),
    "ml-5m": (34_623, 13_372, 144, 20),
    "ml-20m": (138_493, 26_744, 144, 20),
}

#: above this many (user, item) pairs the generator samples from candidate pools instead of
#: scoring every item for every user (see :func:`generate`)
EXACT_PAIRS = 50_000_000
_T0 = 874_724_710  # 1997-09-20, the start of ml-100k
#: users scored at once by the pooled sampler
_CHUNK = 4096


@dataclass(frozen=True)
class SyntheticConfig:
    """Settings of the generator; ``size`` presets fill the first four."""

    n_users: int = 943
    n_items: int = 1682
    mean_per_user: float = 106.0
    min_per_user: int = 20
    n_factors: int = 16
    n_genres: int = 18
    affinity: float = 2.5
    popularity: float = 1.5
    series_fraction: float = 0.25
    series_follow: float = 0.8
    seed: int = 0
    #: "exact" scores every item for every user; "pooled" draws from per-user candidate
    #: pools (linear in interactions, for ML-20M-size logs and 10^5-10^6-item catalogues);
    #: "auto" picks "pooled" above :data:`EXACT_PAIRS` user-item pairs
    sampler: str = "auto"

    def __post_init__(self) -> None:
        if self.sampler not in ("auto", "exact", "pooled"):
            raise ValueError(f"sampler must be 'auto', 'exact' or 'pooled', got {self.sampler!r}")
        if self.n_users < 1 or self.n_items < 2 or self.min_per_user < 1:
            raise ValueError(
                f"need n_users >= 1, n_items >= 2 and min_per_user >= 1, got {self.n_users}, {self.n_items}, "
                f"{self.min_per_user}"
            )

    @property
    def pooled(self) -> bool:
        return self.sampler == "pooled" or (self.sampler == "auto" and self.n_users * self.n_items > EXACT_PAIRS)


def config_for(size: str = "tiny", seed: int = 0) -> SyntheticConfig:
    if size not in SIZES:
        raise ValueError(f"unknown synthetic size {size!r}; choose one of {sorted(SIZES)}")
    n_users, n_items, mean, floor = SIZES[size]
    return SyntheticConfig(n_users=n_users, n_items=n_items, mean_per_user=mean, min_per_user=floor, seed=seed)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _items(cfg: SyntheticConfig, rng: np.random.Generator):
    d, g = cfg.n_factors, cfg.n_genres
    centroids = _unit(rng.normal(size=(g, d)))  # (G, d)
    genre_weight = rng.dirichlet(np.full(g, 1.0))
    primary = rng.choice(g, size=cfg.n_items, p=genre_weight)
    factors = centroids[primary] + 0.6 * rng.normal(size=(cfg.n_items, d)) / np.sqrt(d)
    # series: runs of consecutive items sharing a genre and (nearly) a factor vector
    series_id = np.full(cfg.n_items, -1)
    part = np.zeros(cfg.n_items, dtype=int)
    i, sid = 0, 0
    while i < cfg.n_items:
        if rng.random() < cfg.series_fraction / 2.5:
            length = min(int(rng.integers(2, 5)), cfg.n_items - i)
            series_id[i : i + length] = sid
            part[i : i + length] = np.arange(length)
            primary[i : i + length] = primary[i]
            factors[i : i + length] = factors[i] + 0.1 * rng.normal(size=(length, d)) / np.sqrt(d)
            i, sid = i + length, sid + 1
        else:
            i += 1
    sims = factors @ centroids.T  # (n_items, G)
    sims[np.arange(cfg.n_items), primary] = -np.inf
    second = sims.argmax(1)
    has_second = rng.random(cfg.n_items) < 0.4
    topics = _unit(rng.normal(size=(len(_TOPIC_WORDS), d)))
    residual = factors - centroids[primary]
    topic = (residual @ topics.T).argmax(1)
    return centroids, factors, primary, second, has_second, series_id, part, topic


def _titles(cfg, rng, primary, series_id, part, topic) -> list[str]:
    names = list(GENRES[: cfg.n_genres])
    titles, stems = [], {}
    for i in range(cfg.n_items):
        if series_id[i] >= 0 and part[i] > 0:
            titles.append(stems[series_id[i]] + _ROMAN[part[i]])
            continue
        words = _GENRE_WORDS[names[primary[i]]].split()
        if rng.random() > 0.85:  # some titles borrow a word from another genre
            words = _GENRE_WORDS[names[rng.integers(cfg.n_genres)]].split()
        stem = f"{_TOPIC_WORDS[topic[i]]} {words[rng.integers(len(words))]}"
        if rng.random() < 0.3:
            stem = "The " + stem
        stems[series_id[i]] = stem
        titles.append(stem)
    return titles


def _exact_histories(cfg, rng, user_f, factors, bias, series_id, part, n_per_user):
    """Every user scores every item: Gumbel top-k over ``(n_users, n_items)`` logits."""
    next_part = {}
    for i in np.flatnonzero(series_id >= 0):
        if i + 1 < cfg.n_items and series_id[i + 1] == series_id[i]:
            next_part[i] = i + 1

    affinity = user_f @ factors.T  # (n_users, n_items)
    logits = cfg.affinity * affinity / affinity.std() + bias
    z = affinity
    rows_u, rows_i, rows_t = [], [], []
    for u in range(cfg.n_users):
        noisy = logits[u] + rng.gumbel(size=cfg.n_items)
        picked = list(np.argpartition(-noisy, n_per_user[u])[: n_per_user[u]])
        chosen = set(picked)
        drift = rng.normal(size=cfg.n_factors)
        key = {i: float(factors[i] @ drift) + 0.3 * rng.normal() for i in picked}
        for i in list(picked):  # watch the sequels right after the first part
            if part[i] == 0 and series_id[i] >= 0 and rng.random() < cfg.series_follow:
                j, step = i, 1
                while j in next_part:
                    j = next_part[j]
                    if j not in chosen:
                        chosen.add(j)
                    key[j] = key[i] + 1e-3 * step
                    step += 1
        order = sorted(chosen, key=key.__getitem__)
        start = _T0 + rng.integers(0, 210 * 86400)
        gaps = rng.exponential(3600 * 6, size=len(order)).astype(np.int64) + 1
        rows_u.append(np.full(len(order), u + 1))
        rows_i.append(np.asarray(order) + 1)
        rows_t.append(start + np.cumsum(gaps))
    item_idx = np.concatenate(rows_i) - 1
    user_idx = np.concatenate(rows_u) - 1
    return user_idx, item_idx, np.concatenate(rows_t).astype(np.int64), z[user_idx, item_idx]


def _pooled_histories(cfg, rng, user_f, factors, bias, tastes, primary, series_id, part, n_per_user):
    """Gumbel top-k over a per-user candidate pool instead of the whole catalogue: the
    most popular items (scored for every user, in blocks of users), items drawn in
    proportion to popularity, items of the user's two taste genres and uniform draws.
    Linear in the interactions, so ML-20M-size logs and 10^6-item catalogues take
    minutes, not hours. An approximation of the exact sampler: an item outside every
    pool of a user cannot be picked by that user."""
    by_popularity = np.argsort(-bias, kind="stable")
    cum = np.cumsum(np.exp(bias[by_popularity] - bias.max()))
    head = by_popularity[: min(cfg.n_items, 2000)]
    in_head = np.zeros(cfg.n_items, dtype=bool)
    in_head[head] = True
    by_genre = [np.flatnonzero(primary == g) for g in range(cfg.n_genres)]
    scale = cfg.affinity / _affinity_std(user_f, factors, rng)
    rows_u, rows_i, rows_t = [], [], []
    for start in range(0, cfg.n_users, _CHUNK):
        users = np.arange(start, min(start + _CHUNK, cfg.n_users))
        head_logits = scale * (user_f[users] @ factors[head].T) + bias[head]  # (chunk, H)
        for row, u in enumerate(users):
            m = int(n_per_user[u])
            pool = np.concatenate(
                [
                    by_popularity[np.searchsorted(cum, rng.random(2 * m) * cum[-1])],
                    *(rng.choice(by_genre[g], m) for g in tastes[u] if len(by_genre[g])),
                    rng.integers(0, cfg.n_items, 2 * m),
                ]
            )
            extra = np.sort(pool[~in_head[pool]])
            extra = extra[np.r_[True, extra[1:] != extra[:-1]][: len(extra)]]  # unique (np.unique: 10x slower)
            candidates = np.concatenate([head, extra])
            logits = np.concatenate([head_logits[row], scale * (factors[extra] @ user_f[u]) + bias[extra]])
            m = min(m, len(candidates) - 1)
            picked = candidates[np.argpartition(-(logits + rng.gumbel(size=len(candidates))), m)[:m]]
            order = _watch_order(cfg, rng, factors, series_id, part, picked)
            gaps = rng.exponential(3600 * 6, size=len(order)).astype(np.int64) + 1
            rows_u.append(np.full(len(order), u))
            rows_i.append(order)
            rows_t.append(_T0 + rng.integers(0, 210 * 86400) + np.cumsum(gaps))
    return np.concatenate(rows_u), np.concatenate(rows_i), np.concatenate(rows_t).astype(np.int64)


def _watch_order(cfg, rng, factors, series_id, part, picked) -> np.ndarray:
    """``picked`` items in watching order: by taste drift, each followed series watched
    part after part right after its first part (vectorised :func:`_exact_histories`)."""
    key = factors[picked] @ rng.normal(size=cfg.n_factors) + 0.3 * rng.normal(size=len(picked))
    firsts = np.flatnonzero((part[picked] == 0) & (series_id[picked] >= 0))
    firsts = firsts[rng.random(len(firsts)) < cfg.series_follow]
    items, keys = [picked], [key]
    for step in (1, 2, 3):  # series have at most 4 parts, stored next to each other
        nxt = picked[firsts] + step
        ok = nxt < cfg.n_items
        ok[ok] = series_id[nxt[ok]] == series_id[picked[firsts][ok]]
        items.append(nxt[ok])
        keys.append(key[firsts][ok] + 1e-3 * step)
    items, keys = np.concatenate(items), np.concatenate(keys)
    by_item = np.argsort(items, kind="stable")  # the last copy of an item is its sequel key: it wins
    ordered = items[by_item]
    last = by_item[np.r_[ordered[1:] != ordered[:-1], True]]
    items, keys = items[last], keys[last]
    return items[np.argsort(keys, kind="stable")]


def _affinity_std(user_f, factors, rng) -> float:
    """Standard deviation of ``<user, item>`` over a sample of pairs (the exact sampler
    takes it over the whole matrix)."""
    users = rng.choice(len(user_f), size=min(len(user_f), 512), replace=False)
    items = rng.choice(len(factors), size=min(len(factors), 4096), replace=False)
    return float((user_f[users] @ factors[items].T).std())


def _pair_affinity(user_f, factors, user_idx, item_idx, block: int = 1 << 20) -> np.ndarray:
    """``<user_f[u], factors[i]>`` for each rated pair, in blocks (no (n, d) copies of 20M rows)."""
    out = np.empty(len(user_idx))
    for s in range(0, len(user_idx), block):
        u, i = user_idx[s : s + block], item_idx[s : s + block]
        out[s : s + block] = np.einsum("nd,nd->n", user_f[u], factors[i])
    return out


def generate(cfg: SyntheticConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Return ``(interactions, items, users)`` in the canonical schema (ids from 1)."""
    rng = np.random.default_rng(cfg.seed)
    centroids, factors, primary, second, has_second, series_id, part, topic = _items(cfg, rng)
    pop_rank = rng.permutation(cfg.n_items)
    bias = -cfg.popularity * np.log1p(pop_rank)  # Zipf-like popularity

    g = cfg.n_genres
    tastes = rng.choice(g, size=(cfg.n_users, 2))
    mix = rng.random(cfg.n_users)[:, None]
    user_f = mix * centroids[tastes[:, 0]] + (1 - mix) * centroids[tastes[:, 1]]
    user_f = user_f + 0.3 * rng.normal(size=user_f.shape) / np.sqrt(cfg.n_factors)
    activity = rng.lognormal(mean=0.0, sigma=0.8, size=cfg.n_users)
    activity = cfg.min_per_user + activity / activity.mean() * max(cfg.mean_per_user - cfg.min_per_user, 1)
    n_per_user = np.minimum(activity.astype(int), cfg.n_items // 2)

    if cfg.pooled:
        user_idx, item_idx, times = _pooled_histories(
            cfg, rng, user_f, factors, bias, tastes, primary, series_id, part, n_per_user
        )
        rated = _pair_affinity(user_f, factors, user_idx, item_idx)
    else:
        user_idx, item_idx, times, rated = _exact_histories(
            cfg, rng, user_f, factors, bias, series_id, part, n_per_user
        )
    noise = 0.6 * rng.normal(size=len(item_idx))
    zc = (rated - rated.mean()) / rated.std()  # standardise over what was rated
    rating = np.clip(np.round(3.5 + 0.9 * zc + noise), 1, 5)
    interactions = pd.DataFrame(
        {
            USER: user_idx.astype(np.int64) + 1,
            ITEM: item_idx.astype(np.int64) + 1,
            RATING: rating.astype(np.float64),
            TIMESTAMP: times,
        }
    )
    names = list(GENRES[:g])
    genres = [(names[p], names[s]) if hs else (names[p],) for p, s, hs in zip(primary, second, has_second)]
    titles = _titles(cfg, rng, primary, series_id, part, topic)
    years = np.clip(1998 - rng.exponential(12, size=cfg.n_items).astype(int), 1930, 1998)
    items = pd.DataFrame(
        {
            ITEM: np.arange(1, cfg.n_items + 1, dtype=np.int64),
            "title": titles,
            "year": pd.array(years, dtype="Int64"),
            "genres": genres,
        }
    )
    users = pd.DataFrame(
        {
            USER: np.arange(1, cfg.n_users + 1, dtype=np.int64),
            "age": rng.integers(16, 70, size=cfg.n_users),
            "gender": rng.choice(["M", "F"], size=cfg.n_users, p=[0.7, 0.3]),
            "occupation": rng.choice(_OCCUPATIONS, size=cfg.n_users),
        }
    )
    return interactions, items, users


def tags(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    *,
    seed: int = 0,
    content_rate: float = 0.1,
    self_naming_users: float = 0.03,
) -> pd.DataFrame:
    """User tags in ``tags.csv``'s shape (``user_id, item_id, tag, timestamp``), planted two ways.

    - **Content tags**: a share ``content_rate`` of interactions carries a word of the item's
      primary genre, lower-cased (what the item is about; fair for any evaluation).
    - **Self-naming tags**: a share ``self_naming_users`` of users tag every item they
      interact with ``"user<id>"``, a signature no one else writes, as one ml-latest-small
      user wrote "in netflix queue" 131 times. Such a tag names its author: on a held-out
      item it leaks who interacted with it.

    Each tag is written a minute after its interaction. Separate random stream: the
    interactions are the same with or without tags.
    """
    rng = np.random.default_rng([seed, 20])
    primary = items.set_index(ITEM)["genres"].map(lambda g: g[0])
    content = interactions[rng.random(len(interactions)) < content_rate]
    words = [_GENRE_WORDS[primary[i]].split() for i in content[ITEM]]
    content_tags = [w[rng.integers(len(w))].lower() for w in words]
    users = interactions[USER].unique()
    namers = rng.choice(users, size=max(1, round(self_naming_users * len(users))), replace=False)
    named = interactions[interactions[USER].isin(namers)]
    frame = pd.concat(
        [
            content[[USER, ITEM, TIMESTAMP]].assign(tag=content_tags),
            named[[USER, ITEM, TIMESTAMP]].assign(tag=[f"user{u}" for u in named[USER]]),
        ]
    )
    frame[TIMESTAMP] = frame[TIMESTAMP] + 60
    return frame[[USER, ITEM, "tag", TIMESTAMP]].sort_values([TIMESTAMP, USER, ITEM]).reset_index(drop=True)

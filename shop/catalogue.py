"""Products: which leaf, brand, price, attributes, launch date and hidden embedding each has.

Everything the simulation needs is kept as numpy arrays indexed by product number, so the
session stage can score thousands of sessions against a category's items in one matrix product.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from recsys.columns import ATTRIBUTE_SEPARATOR, SKIN_TYPE
from shop.scales import MS_PER_DAY, Period
from shop.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

EMBEDDING_DIM = 16
NEW_PRODUCT_DAYS = 90  # launched in the last three months of the period
MAX_CLEAN_PRICE = 50_000.0
MIN_PER_LEAF = 2


@dataclass(frozen=True)
class Catalogue:
    """The products of the shop, as arrays indexed by product number."""

    leaf: np.ndarray  # int16
    brand: np.ndarray  # int16
    price: np.ndarray  # float64
    log_price_ratio: np.ndarray  # log(price / leaf median price)
    popularity: np.ndarray  # float64, long-tailed base popularity
    embedding: np.ndarray  # float32 (n, EMBEDDING_DIM)
    created_ms: np.ndarray  # int64
    in_stock: np.ndarray  # bool
    is_new: np.ndarray  # bool
    avoid_mask: np.ndarray  # int32 bits over Taxonomy.avoidable
    skin_mask: np.ndarray  # int32 bits over Taxonomy.skin_types
    titles: list[str]
    descriptions: list[str]
    attributes: list[str | None]  # None when a product has no attributes
    by_leaf: tuple[np.ndarray, ...]  # product numbers per leaf, sorted by launch time
    leaf_centroids: np.ndarray  # float32 (n_leaves, EMBEDDING_DIM)

    @property
    def size(self) -> int:
        return len(self.leaf)


def _leaf_counts(rng: np.random.Generator, tax: Taxonomy, n: int) -> np.ndarray:
    """Departments get products by their weight; every leaf gets at least a couple."""
    weights = np.array(
        [
            tax.departments[leaf.department].weight / len(tax.departments[leaf.department].leaves)
            for leaf in tax.leaves
        ]
    )
    weights = weights * rng.lognormal(0.0, 0.3, len(weights))
    spare = max(n - MIN_PER_LEAF * len(weights), 0)
    return MIN_PER_LEAF + rng.multinomial(spare, weights / weights.sum())


def _launch_times(rng: np.random.Generator, n: int, period: Period) -> np.ndarray:
    """~70% before the period, ~22% in its first nine months, ~8% in the last three."""
    new_from = period.end_ms - NEW_PRODUCT_DAYS * MS_PER_DAY
    bucket = rng.choice(3, size=n, p=[0.70, 0.22, 0.08])
    lo = np.select(
        [bucket == 0, bucket == 1],
        [period.start_ms - 3 * 365 * MS_PER_DAY, period.start_ms],
        new_from,
    )
    hi = np.select([bucket == 0, bucket == 1], [period.start_ms, new_from], period.end_ms)
    return lo + (rng.random(n) * (hi - lo)).astype(np.int64)


def _describe(
    tax: Taxonomy,
    leaf_id: int,
    brand: str,
    adjective: str,
    word: str,
    tokens: list[str],
    phrases: tuple[str, str],
) -> tuple[str, str]:
    leaf = tax.leaves[leaf_id]
    title = f"{brand} {adjective} {word} {leaf.name}"
    parts = [f"{adjective} {word.lower()} {leaf.name.lower()} from {brand}.", *phrases]
    skins = [t.split(":", 1)[1] for t in tokens if t.startswith(f"{SKIN_TYPE}:")]
    concerns = [t.split(":", 1)[1] for t in tokens if t.startswith("concern:")]
    plain = [t for t in tokens if ":" not in t]
    if skins:
        parts.append(f"For {' and '.join(skins)} skin.")
    if concerns:
        parts.append(f"Targets {' and '.join(concerns)}.")
    if plain:
        parts.append(f"Features: {', '.join(plain)}.")
    return title, " ".join(parts)


def build_catalogue(rng: np.random.Generator, tax: Taxonomy, n: int, period: Period) -> Catalogue:
    """Draw ``n`` products; ``n`` is met exactly (each leaf keeps at least two products)."""
    counts = _leaf_counts(rng, tax, n)
    leaf = np.repeat(np.arange(len(tax.leaves), dtype=np.int16), counts)
    leaf = leaf[rng.permutation(len(leaf))][:n]
    n = len(leaf)
    dept = np.array([lf.department for lf in tax.leaves])[leaf]

    # brand: uniform within the department, weighted by quality
    brand = np.empty(n, dtype=np.int16)
    for d in tax.departments:
        rows = np.flatnonzero(dept == d.index)
        quality = np.array([tax.brands[b].quality for b in d.brands])
        brand[rows] = np.array(d.brands)[
            rng.choice(len(d.brands), len(rows), p=quality / quality.sum())
        ]
    tier = np.array([b.price_factor for b in tax.brands])[brand]
    quality = np.array([b.quality for b in tax.brands])[brand]

    typical = np.array([lf.price for lf in tax.leaves])[leaf]
    raw_price = typical * tier * rng.lognormal(0.0, 0.3, n)
    price = np.clip(np.maximum(np.round(raw_price) - 0.01, 0.49), 0.49, MAX_CLEAN_PRICE)
    median = np.array(
        [np.median(price[leaf == i]) if np.any(leaf == i) else 1.0 for i in range(len(tax.leaves))]
    )
    log_price_ratio = np.log(price / median[leaf])

    popularity = rng.lognormal(0.0, 1.1, n) * quality**2

    leaf_centroids = rng.normal(0.0, 1.0, (len(tax.leaves), EMBEDDING_DIM)).astype(np.float32)
    brand_centroids = rng.normal(0.0, 1.0, (len(tax.brands), EMBEDDING_DIM)).astype(np.float32)
    embedding = (
        0.5 * leaf_centroids[leaf]
        + 0.35 * brand_centroids[brand]
        + 0.25 * rng.normal(0.0, 1.0, (n, EMBEDDING_DIM))
    ).astype(np.float32)

    created_ms = _launch_times(rng, n, period)
    in_stock = rng.random(n) < 0.95
    is_new = created_ms >= period.end_ms - NEW_PRODUCT_DAYS * MS_PER_DAY

    avoid_index = {token: i for i, token in enumerate(tax.avoidable)}
    avoid_mask = np.zeros(n, dtype=np.int32)
    skin_mask = np.zeros(n, dtype=np.int32)
    tokens: list[list[str]] = [[] for _ in range(n)]
    for lf in tax.leaves:
        rows = np.flatnonzero(leaf == lf.index)
        if len(rows) == 0:
            continue
        draws = rng.random((len(rows), len(lf.attributes)))
        for j, (token, p) in enumerate(lf.attributes):
            has = rows[draws[:, j] < p]
            for r in has:
                tokens[r].append(token)
            if token in avoid_index:
                avoid_mask[has] |= 1 << avoid_index[token]
        if lf.skin:
            n_skin = rng.integers(1, 3, len(rows))
            picks = np.argsort(rng.random((len(rows), len(tax.skin_types))), axis=1)
            n_concern = rng.integers(1, 3, len(rows))
            concern_picks = np.argsort(rng.random((len(rows), len(tax.concerns))), axis=1)
            for k, r in enumerate(rows):
                skins = sorted(picks[k, : n_skin[k]])
                for s in skins:
                    skin_mask[r] |= 1 << int(s)
                    tokens[r].append(f"{SKIN_TYPE}:{tax.skin_types[s]}")
                tokens[r].extend(
                    f"concern:{tax.concerns[c]}" for c in sorted(concern_picks[k, : n_concern[k]])
                )

    adjective_pick = rng.integers(0, 1 << 30, n)  # modulo the vocabulary size per product
    word_pick = rng.integers(0, 1 << 30, n)
    phrase_pick = rng.integers(0, 1 << 30, (n, 2))
    titles: list[str] = []
    descriptions: list[str] = []
    for i in range(n):
        lf = tax.leaves[int(leaf[i])]
        d = tax.departments[lf.department]
        phrases = d.phrases
        first = int(phrase_pick[i, 0]) % len(phrases)
        second = (first + 1 + int(phrase_pick[i, 1]) % (len(phrases) - 1)) % len(phrases)
        adjective = d.adjectives[int(adjective_pick[i]) % len(d.adjectives)]
        word = lf.words[int(word_pick[i]) % len(lf.words)]
        if word == adjective:
            word = lf.words[(int(word_pick[i]) + 1) % len(lf.words)]
        title, description = _describe(
            tax,
            lf.index,
            tax.brands[int(brand[i])].name,
            adjective,
            word,
            tokens[i],
            (phrases[first], phrases[second]),
        )
        titles.append(title)
        descriptions.append(description)
    attributes = [ATTRIBUTE_SEPARATOR.join(t) if t else None for t in tokens]

    order = np.lexsort((np.arange(n), created_ms, leaf))
    starts = np.searchsorted(leaf[order], np.arange(len(tax.leaves) + 1))
    by_leaf = tuple(order[starts[i] : starts[i + 1]] for i in range(len(tax.leaves)))
    logger.debug("catalogue: %d products, %.1f%% new", n, 100 * is_new.mean())
    return Catalogue(
        leaf=leaf,
        brand=brand,
        price=price,
        log_price_ratio=log_price_ratio,
        popularity=popularity,
        embedding=embedding,
        created_ms=created_ms,
        in_stock=in_stock,
        is_new=is_new,
        avoid_mask=avoid_mask,
        skin_mask=skin_mask,
        titles=titles,
        descriptions=descriptions,
        attributes=attributes,
        by_leaf=by_leaf,
        leaf_centroids=leaf_centroids,
    )

"""A repeat-purchase shop: grocery baskets every few days, the same staples again and again.

The general shop is about discovery (most purchases are of items the user never bought). A
grocery shop is the opposite: most lines of a basket are the user's own staples, each bought
on a personal cycle (milk every basket, coffee every third week), plus a little exploration,
some of which becomes a new staple. A recommender that ignores the user's own past loses to
"your most-bought items" there, so this shop is where the repurchase policy, the ``repeat``
candidate source and the next-basket benchmark are judged.

Everything is drawn from the seed, one random stream per stage, and written in the same data
contract as the general shop (events with one ``session_id`` per basket, products, users) with
the hidden truth (each user's staples and cycles) in ``ground_truth/``. No noise rows: this
shop judges recommendations, not cleaning.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from recsys import columns as col
from recsys.errors import RecsysError
from shop.events import PURCHASE_CODE, VIEW_CODE, EventBlock
from shop.scales import DEFAULT_PERIOD, MS_PER_DAY
from shop.tables import events_table
from shop.timeline import HOUR_PROFILE
from shop.users import COUNTRIES, COUNTRY_WEIGHTS, DEVICES, GENDER_WEIGHTS, GENDERS
from shop.writer import float_lists, id_strings, timestamps, write_json, write_table

logger = logging.getLogger(__name__)

STREAMS = ("catalogue", "users", "baskets", "events")


@dataclass(frozen=True)
class GroceryScale:
    """How big a grocery shop is: about as many events as the general scale of the same name."""

    name: str
    users: int
    products: int
    days: int


GROCERY_SCALES: dict[str, GroceryScale] = {
    "tiny": GroceryScale("tiny", users=150, products=200, days=120),
    "small": GroceryScale("small", users=1_500, products=1_500, days=120),
    "full": GroceryScale("full", users=15_000, products=6_000, days=120),
}

# aisle -> (shelves, typical price, weight in an average household's trolley)
AISLES: dict[str, tuple[tuple[str, ...], float, float]] = {
    "Produce": (("Fruit", "Vegetables", "Herbs"), 1.8, 3.0),
    "Dairy & Eggs": (("Milk", "Yogurt", "Cheese", "Eggs", "Butter"), 2.2, 3.0),
    "Bakery": (("Bread", "Pastries"), 2.0, 1.5),
    "Meat & Fish": (("Chicken", "Beef", "Fish"), 6.0, 1.5),
    "Pantry": (("Pasta", "Rice", "Canned Goods", "Sauces", "Cereal", "Baking"), 2.0, 2.0),
    "Frozen": (("Frozen Meals", "Ice Cream", "Frozen Vegetables"), 3.5, 1.0),
    "Snacks": (("Crisps", "Chocolate", "Nuts", "Biscuits"), 2.0, 1.5),
    "Beverages": (("Coffee", "Tea", "Juice", "Soft Drinks", "Water"), 3.0, 1.8),
    "Household": (("Cleaning", "Paper Goods", "Laundry"), 4.0, 0.8),
    "Personal Care": (("Oral Care", "Hair Care", "Soap"), 3.5, 0.6),
    "Baby": (("Nappies", "Baby Food"), 6.0, 1.5),
    "Pet": (("Cat Food", "Dog Food"), 5.0, 1.2),
}
# aisles only some households shop in at all
AISLE_HOUSEHOLD_SHARE = {"Baby": 0.2, "Pet": 0.35}
BRANDS = ("Daily Farm", "Green Valley", "Hearth & Home", "Northfield", "Sunny Acres", "Value")
VARIANTS = ("Classic", "Organic", "Light", "Family Size", "Fresh", "Wholegrain", "Original")

BASKET_DAYS_MEDIAN = 6.5  # a household's typical days between baskets
BASKET_DAYS_SIGMA = 0.45
BASKET_DAYS_RANGE = (2.5, 30.0)
GAP_SHAPE = 3.0  # gamma shape of the gaps around a household's own interval
STAPLES_MIN, STAPLES_EXTRA, MAX_STAPLES = 5, 9.0, 40
CYCLE_MEDIAN_BASKETS = 1.8  # a staple's cycle, in the household's own basket intervals
CYCLE_SIGMA = 0.5
CYCLE_MAX_DAYS = 60.0
DUE_STEEPNESS = 5.0  # how sharply a staple becomes likely once its cycle is over
REGULARITY = 0.92  # at most this likely even when overdue: people skip a week now and then
STAPLE_POPULARITY_POWER = 0.7  # staples follow popularity less than exploration does
EXPLORE_MEAN_RANGE = (0.5, 3.0)  # new items per basket, per household
MAX_EXPLORE = 6
ADOPT_PROBABILITY = 0.1  # a tried item becomes a staple
RETIRE_PROBABILITY = 0.01  # per basket, a staple is dropped for good
BROWSE_VIEWS = 1.0  # items looked at and not bought, per basket
QUANTITIES, QUANTITY_P = (1, 2, 3), (0.72, 0.2, 0.08)
DISCOUNT_SHARE = 0.1


@dataclass(frozen=True)
class Products:
    """The grocery catalogue as arrays indexed by product number."""

    aisle: np.ndarray  # int16 into AISLES
    shelf: np.ndarray  # int16 into shelf_names
    shelf_names: list[str]  # "Aisle > Shelf"
    brand: np.ndarray  # int16 into BRANDS
    price: np.ndarray  # float64
    popularity: np.ndarray  # float64, long-tailed
    titles: list[str]
    created_ms: np.ndarray  # int64, all before the period

    @property
    def size(self) -> int:
        return len(self.aisle)


@dataclass(frozen=True)
class Households:
    """The shoppers: demographics and their hidden rhythm and staples."""

    age: np.ndarray
    gender: np.ndarray
    country: np.ndarray
    device: np.ndarray
    signup_ms: np.ndarray
    interval_days: np.ndarray  # float64, typical days between baskets
    explore_mean: np.ndarray  # float64, new items per basket
    aisle_pref: np.ndarray  # float64 (n, n_aisles), rows sum to 1
    staple_item: np.ndarray  # int32 (n, MAX_STAPLES), -1 for a free slot
    staple_cycle: np.ndarray  # float64 (n, MAX_STAPLES) days
    staple_since: np.ndarray  # int64 (n, MAX_STAPLES) ms the staple was adopted

    @property
    def size(self) -> int:
        return len(self.age)


@dataclass(frozen=True)
class Lines:
    """What the households did, basket by basket: one row per line or look."""

    user: np.ndarray  # int32
    item: np.ndarray  # int32
    basket: np.ndarray  # int64, global basket number
    basket_ms: np.ndarray  # int64 start of the basket's session
    kind: np.ndarray  # int8: LINE_STAPLE, LINE_EXPLORE, LINE_BROWSE


LINE_STAPLE, LINE_EXPLORE, LINE_BROWSE = 0, 1, 2


def resolve_grocery_scale(name: str) -> GroceryScale:
    try:
        return GROCERY_SCALES[name]
    except KeyError:
        raise RecsysError(f"unknown scale {name!r}; allowed: {', '.join(GROCERY_SCALES)}") from None


def build_products(rng: np.random.Generator, n: int, period_start_ms: int) -> Products:
    """``n`` products over every shelf (at least one each), long-tailed popularity."""
    shelves = [(a, s) for a, (names, _, _) in enumerate(AISLES.values()) for s in names]
    shelf_names = [f"{list(AISLES)[a]}{col.CATEGORY_SEPARATOR}{s}" for a, s in shelves]
    if n < len(shelves):
        raise RecsysError(f"a grocery shop needs at least {len(shelves)} products, got {n}")
    shelf = np.concatenate(
        [np.arange(len(shelves)), rng.integers(0, len(shelves), n - len(shelves))]
    ).astype(np.int16)
    shelf = shelf[rng.permutation(n)]
    aisle = np.array([a for a, _ in shelves], dtype=np.int16)[shelf]
    typical = np.array([p for _, p, _ in AISLES.values()])[aisle]
    price = np.maximum(np.round(typical * rng.lognormal(0.0, 0.35, n), 1) - 0.01, 0.29)
    brand = rng.integers(0, len(BRANDS), n).astype(np.int16)
    variant = rng.integers(0, len(VARIANTS), n)
    titles = [
        f"{BRANDS[b]} {VARIANTS[v]} {shelves[s][1]}"
        for b, v, s in zip(brand, variant, shelf, strict=True)
    ]
    created = period_start_ms - (rng.random(n) * 2 * 365 * MS_PER_DAY).astype(np.int64)
    return Products(
        aisle=aisle,
        shelf=shelf,
        shelf_names=shelf_names,
        brand=brand,
        price=price,
        popularity=rng.lognormal(0.0, 1.2, n),
        titles=titles,
        created_ms=created,
    )


def _gumbel_top(rng: np.random.Generator, log_weight: np.ndarray, k: int) -> np.ndarray:
    """``k`` distinct columns per row, drawn without replacement in proportion to weight."""
    keys = log_weight + rng.gumbel(size=log_weight.shape)
    return np.argsort(-keys, axis=1, kind="stable")[:, :k]


def build_households(
    rng: np.random.Generator, products: Products, n: int, start_ms: int, end_ms: int
) -> Households:
    """Demographics, basket rhythm, aisle tastes and each household's staples with cycles."""
    n_aisles = len(AISLES)
    age = np.clip(np.round(rng.gamma(5.0, 7.5, n) + 16), 18, 85).astype(np.int32)
    gender = rng.choice(len(GENDERS), n, p=GENDER_WEIGHTS).astype(np.int8)
    country = rng.choice(len(COUNTRIES), n, p=COUNTRY_WEIGHTS).astype(np.int8)
    device = rng.choice(len(DEVICES), n, p=(0.6, 0.3, 0.1)).astype(np.int8)
    # most households were customers before the period; some join during its first half
    joins = rng.random(n) < 0.25
    signup = np.where(
        joins,
        start_ms + (rng.random(n) * (end_ms - start_ms) / 2).astype(np.int64),
        start_ms - (rng.random(n) * 2 * 365 * MS_PER_DAY).astype(np.int64),
    )
    interval = np.clip(
        BASKET_DAYS_MEDIAN * rng.lognormal(0.0, BASKET_DAYS_SIGMA, n), *BASKET_DAYS_RANGE
    )
    explore = rng.uniform(*EXPLORE_MEAN_RANGE, n)

    weight = np.array([w for _, _, w in AISLES.values()])
    pref = rng.gamma(1.5, 1.0, (n, n_aisles)) * weight
    for name, share in AISLE_HOUSEHOLD_SHARE.items():
        pref[:, list(AISLES).index(name)] *= rng.random(n) < share
    pref /= pref.sum(axis=1, keepdims=True)

    n_staples = np.minimum(STAPLES_MIN + rng.poisson(STAPLES_EXTRA, n), MAX_STAPLES // 2)
    log_item = STAPLE_POPULARITY_POWER * np.log(products.popularity)
    staple = np.full((n, MAX_STAPLES), -1, dtype=np.int32)
    with np.errstate(divide="ignore"):
        log_pref = np.log(pref)
    for lo in range(0, n, 2048):
        rows = slice(lo, min(lo + 2048, n))
        top = _gumbel_top(rng, log_pref[rows][:, products.aisle] + log_item, MAX_STAPLES // 2)
        slots = np.arange(MAX_STAPLES // 2)[None, :] < n_staples[rows][:, None]
        staple[rows, : MAX_STAPLES // 2] = np.where(slots, top, -1)
    cycle = _cycles(rng, interval[:, None], (n, MAX_STAPLES))
    since = np.broadcast_to(signup[:, None], (n, MAX_STAPLES)).copy()
    return Households(
        age=age,
        gender=gender,
        country=country,
        device=device,
        signup_ms=signup,
        interval_days=interval,
        explore_mean=explore,
        aisle_pref=pref,
        staple_item=staple,
        staple_cycle=cycle,
        staple_since=since,
    )


def _cycles(rng: np.random.Generator, interval: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Personal repurchase cycles: a few basket intervals, never shorter than one."""
    raw = interval * CYCLE_MEDIAN_BASKETS * rng.lognormal(0.0, CYCLE_SIGMA, shape)
    return np.clip(raw, interval * 0.9, CYCLE_MAX_DAYS)


def _draw_by_aisle(
    rng: np.random.Generator, products: Products, pref: np.ndarray, width: int
) -> np.ndarray:
    """``width`` items per row: an aisle by the row's taste, then an item by popularity."""
    aisle_cdf = np.cumsum(pref, axis=1)
    aisle = (aisle_cdf[:, None, :] < rng.random((len(pref), width, 1))).sum(axis=2)
    aisle = np.minimum(aisle, pref.shape[1] - 1)
    order = np.argsort(products.aisle, kind="stable")
    bounds = np.searchsorted(products.aisle[order], np.arange(pref.shape[1] + 1))
    cum = np.zeros(len(order) + 1)
    cum[1:] = np.cumsum(products.popularity[order])
    lo, hi = cum[bounds[aisle]], cum[bounds[aisle + 1]]
    u = lo + rng.random(aisle.shape) * (hi - lo)
    at = np.clip(np.searchsorted(cum, u, side="right") - 1, bounds[aisle], bounds[aisle + 1] - 1)
    return order[at].astype(np.int32)


def simulate_baskets(
    rng: np.random.Generator, products: Products, homes: Households, start_ms: int, end_ms: int
) -> tuple[Lines, Households]:
    """Basket after basket for every household at once, until each one's next is past the end.

    A staple is due when its cycle has passed since it was last bought: the chance to put it in
    the basket rises steeply around that point (``DUE_STEEPNESS``) up to ``REGULARITY``.
    Tried items sometimes become staples, and staples are now and then dropped, so tastes move;
    the households come back with their staples as they are at the end.
    """
    n = homes.size
    staple = homes.staple_item.copy()
    cycle = homes.staple_cycle.copy()
    since = homes.staple_since.copy()
    day = float(MS_PER_DAY)
    first = np.maximum(homes.signup_ms, start_ms)
    now = first + (rng.random(n) * homes.interval_days * day).astype(np.int64)
    last = now[:, None] - (rng.random((n, MAX_STAPLES)) * cycle * day).astype(np.int64)
    parts: list[tuple[np.ndarray, ...]] = []
    basket_no = 0
    rounds = 0
    while True:
        active = np.flatnonzero(now < end_ms)
        if len(active) == 0:
            break
        rounds += 1
        t = now[active]
        held = staple[active] >= 0
        elapsed = (t[:, None] - last[active]) / day / cycle[active]
        p_due = REGULARITY / (1.0 + np.exp(-DUE_STEEPNESS * (elapsed - 1.0)))
        take = held & (rng.random(held.shape) < p_due)
        n_explore = np.minimum(rng.poisson(homes.explore_mean[active]), MAX_EXPLORE)
        n_explore = np.maximum(n_explore, (~take.any(axis=1)).astype(np.int64))
        tried = _draw_by_aisle(rng, products, homes.aisle_pref[active], MAX_EXPLORE)
        tried_ok = np.arange(MAX_EXPLORE)[None, :] < n_explore[:, None]
        n_browse = np.minimum(rng.poisson(BROWSE_VIEWS, len(active)), 3)
        looked = _draw_by_aisle(rng, products, homes.aisle_pref[active], 3)
        looked_ok = np.arange(3)[None, :] < n_browse[:, None]

        basket = basket_no + np.arange(len(active), dtype=np.int64)
        basket_no += len(active)
        for items, ok, kind in (
            (staple[active], take, LINE_STAPLE),
            (tried, tried_ok, LINE_EXPLORE),
            (looked, looked_ok, LINE_BROWSE),
        ):
            r, s = np.nonzero(ok)
            parts.append(
                (
                    active[r].astype(np.int32),
                    items[r, s].astype(np.int32),
                    basket[r],
                    t[r],
                    np.full(len(r), kind, dtype=np.int8),
                )
            )
        # bought staples restart their cycle; so does a tried item that is a staple already
        rows, slots = np.nonzero(take)
        last[active[rows], slots] = t[rows]
        in_staples = (tried[:, :, None] == staple[active][:, None, :]) & tried_ok[:, :, None]
        r, _, s = np.nonzero(in_staples)
        last[active[r], s] = t[r]
        new = tried_ok & ~in_staples.any(axis=2)
        _adopt(rng, homes, active, t, tried, new, staple, cycle, since, last)
        retire = (staple[active] >= 0) & (rng.random(held.shape) < RETIRE_PROBABILITY)
        r, s = np.nonzero(retire)
        staple[active[r], s] = -1
        gap = rng.gamma(GAP_SHAPE, homes.interval_days[active] / GAP_SHAPE) * day
        now[active] = t + np.maximum(gap, day).astype(np.int64)
    logger.info("grocery: %d baskets over %d rounds", basket_no, rounds)
    user, item, basket, basket_ms, kind = (np.concatenate(p) for p in zip(*parts, strict=True))
    lines = Lines(user=user, item=item, basket=basket, basket_ms=basket_ms, kind=kind)
    return lines, replace(homes, staple_item=staple, staple_cycle=cycle, staple_since=since)


def _adopt(
    rng: np.random.Generator,
    homes: Households,
    active: np.ndarray,
    t: np.ndarray,
    tried: np.ndarray,
    new: np.ndarray,
    staple: np.ndarray,
    cycle: np.ndarray,
    since: np.ndarray,
    last: np.ndarray,
) -> None:
    """At most one tried item per basket becomes a staple, in the household's first free slot."""
    adopt = new & (rng.random(new.shape) < ADOPT_PROBABILITY)
    has = adopt.any(axis=1)
    free = staple[active] < 0
    rows = np.flatnonzero(has & free.any(axis=1))
    if len(rows) == 0:
        return
    which = np.argmax(adopt[rows], axis=1)
    slot = np.argmax(free[rows], axis=1)
    users = active[rows]
    staple[users, slot] = tried[rows, which]
    cycle[users, slot] = _cycles(rng, homes.interval_days[users], len(rows))
    since[users, slot] = t[rows]
    last[users, slot] = t[rows]


def _rank_within(sorted_keys: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """For rows sorted by key: how many masked rows of the same key come before each row."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64)
    start = np.ones(len(sorted_keys), dtype=bool)
    start[1:] = sorted_keys[1:] != sorted_keys[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(len(sorted_keys)), 0))
    before = np.concatenate([[0], np.cumsum(mask)])
    return before[np.arange(len(sorted_keys))] - before[first]


def lines_to_events(
    rng: np.random.Generator, products: Products, homes: Households, lines: Lines
) -> EventBlock:
    """Each basket is one session: looks at tried and browsed items, then one checkout.

    Staples are bought straight from the user's list (a purchase, no view); an item tried for
    the first time is viewed first. An item is bought at most once per basket.
    """
    order = np.lexsort((lines.kind, lines.basket))
    lines = Lines(*(getattr(lines, f)[order] for f in Lines.__dataclass_fields__))
    key = lines.basket * products.size + lines.item
    buy = lines.kind != LINE_BROWSE
    bought = np.zeros(len(key), dtype=bool)
    _, first = np.unique(np.where(buy, key, -1), return_index=True)
    bought[first] = True
    bought &= buy
    viewed = np.zeros(len(key), dtype=bool)
    _, first = np.unique(np.where(lines.kind != LINE_STAPLE, key, -1), return_index=True)
    viewed[first] = True
    viewed &= lines.kind != LINE_STAPLE

    baskets, at = np.unique(lines.basket, return_inverse=True)
    first_ms = lines.basket_ms[np.searchsorted(lines.basket, baskets)]
    hour = rng.choice(24, len(baskets), p=HOUR_PROFILE / HOUR_PROFILE.sum())
    start = (
        first_ms // MS_PER_DAY * MS_PER_DAY
        + hour * 3_600_000
        + rng.integers(0, 3_000_000, len(baskets))
    )[at]
    view_pos = _rank_within(lines.basket, viewed)
    view_ms = start + (view_pos + 1) * 40_000 + rng.integers(0, 20_000, len(key))
    n_views = np.bincount(at, weights=viewed, minlength=len(baskets))[at]
    buy_pos = _rank_within(lines.basket, bought)
    checkout = start + (n_views.astype(np.int64) + 2) * 40_000 + 60_000
    buy_ms = checkout + buy_pos * 1_000

    discount = np.where(rng.random(len(key)) < DISCOUNT_SHARE, 0.8, 1.0)
    price = np.round(products.price[lines.item] * discount, 2)
    quantity = rng.choice(QUANTITIES, len(key), p=QUANTITY_P).astype(np.int32)
    parts = []
    for code, mask, ts in ((VIEW_CODE, viewed, view_ms), (PURCHASE_CODE, bought, buy_ms)):
        u = lines.user[mask]
        parts.append(
            EventBlock(
                user=u,
                item=lines.item[mask],
                etype=np.full(int(mask.sum()), code, dtype=np.int8),
                ts=ts[mask].astype(np.int64),
                session=lines.basket[mask],
                price=price[mask],
                quantity=np.where(code == VIEW_CODE, 1, quantity[mask]).astype(np.int32),
                device=homes.device[u],
                country=homes.country[u],
            )
        )
    return EventBlock.concat(parts)


def products_table(products: Products, item_ids: list[str]) -> pa.Table:
    return pa.table(
        {
            col.ITEM_ID: pa.array(item_ids, type=pa.string()),
            col.TITLE: pa.array(products.titles, type=pa.string()),
            col.CATEGORY: pa.array(products.shelf_names, type=pa.string()).take(
                pa.array(products.shelf, type=pa.int64())
            ),
            col.BRAND: pa.array(BRANDS, type=pa.string()).take(
                pa.array(products.brand, type=pa.int64())
            ),
            col.PRICE: pa.array(products.price, type=pa.float64()),
            col.CREATED_AT: timestamps(products.created_ms),
            col.IN_STOCK: pa.array(np.ones(products.size, dtype=bool), type=pa.bool_()),
        }
    )


def users_table(homes: Households, user_ids: list[str]) -> pa.Table:
    return pa.table(
        {
            col.USER_ID: pa.array(user_ids, type=pa.string()),
            col.SIGNUP_AT: timestamps(homes.signup_ms),
            col.AGE: pa.array(homes.age, type=pa.int32()),
            col.GENDER: pa.array(GENDERS, type=pa.string()).take(
                pa.array(homes.gender, type=pa.int64())
            ),
            col.COUNTRY: pa.array(COUNTRIES, type=pa.string()).take(
                pa.array(homes.country, type=pa.int64())
            ),
        }
    )


def _item_lists(ids: list[str], matrix: np.ndarray, held: np.ndarray) -> pa.Array:
    return pa.array(
        [[ids[i] for i in row[ok]] for row, ok in zip(matrix, held, strict=True)],
        type=pa.list_(pa.string()),
    )


def ground_truth_users(homes: Households, user_ids: list[str], item_ids: list[str]) -> pa.Table:
    """Each household's rhythm and its staples as they stand at the end, with their cycles."""
    held = homes.staple_item >= 0
    return pa.table(
        {
            col.USER_ID: pa.array(user_ids, type=pa.string()),
            "basket_interval_days": pa.array(homes.interval_days, type=pa.float64()),
            "explore_per_basket": pa.array(homes.explore_mean, type=pa.float64()),
            "aisle_preference": float_lists(homes.aisle_pref),
            "staples": _item_lists(item_ids, homes.staple_item, held),
            "staple_cycle_days": pa.array(
                [
                    row[ok].round(2).tolist()
                    for row, ok in zip(homes.staple_cycle, held, strict=True)
                ],
                type=pa.list_(pa.float64()),
            ),
            "staple_since": pa.array(
                [row[ok].tolist() for row, ok in zip(homes.staple_since, held, strict=True)],
                type=pa.list_(pa.timestamp("ms", tz="UTC")),
            ),
        }
    )


def ground_truth_products(products: Products, item_ids: list[str]) -> pa.Table:
    return pa.table(
        {
            col.ITEM_ID: pa.array(item_ids, type=pa.string()),
            col.CATEGORY: pa.array(products.shelf_names, type=pa.string()).take(
                pa.array(products.shelf, type=pa.int64())
            ),
            "popularity": pa.array(products.popularity, type=pa.float64()),
        }
    )


def shop_json(scale: GroceryScale, seed: int, start_ms: int, end_ms: int) -> dict[str, Any]:
    """The shop's fixed design, so a reader of ground_truth/ knows what was drawn and how."""

    def iso(ms: int) -> str:
        return str(np.datetime64(ms, "ms")) + "Z"

    return {
        "kind": "grocery",
        "seed": seed,
        "scale": asdict(scale),
        "period": {"start": iso(start_ms), "end": iso(end_ms)},
        "aisles": {name: list(shelves) for name, (shelves, _, _) in AISLES.items()},
        "design": {
            "basket_days_median": BASKET_DAYS_MEDIAN,
            "staples_per_household": [STAPLES_MIN, STAPLES_MIN + STAPLES_EXTRA],
            "cycle_median_baskets": CYCLE_MEDIAN_BASKETS,
            "regularity": REGULARITY,
            "explore_per_basket": list(EXPLORE_MEAN_RANGE),
            "adopt_probability": ADOPT_PROBABILITY,
            "retire_probability": RETIRE_PROBABILITY,
        },
    }


def generate_grocery(
    out_dir: Path, scale: str, seed: int, fmt: str
) -> tuple[dict[str, Path], EventBlock, int, int, int]:
    """Draw and write a grocery shop: files written, events, sessions, users and products.

    The caller (``shop.generate.generate_shop``) has checked ``seed`` and ``fmt``, made
    ``out_dir/ground_truth`` and writes the manifest.
    """
    spec = resolve_grocery_scale(scale)
    streams = dict(zip(STREAMS, np.random.default_rng(seed).spawn(len(STREAMS)), strict=True))
    end_ms = DEFAULT_PERIOD.end_ms
    start_ms = end_ms - spec.days * MS_PER_DAY
    products = build_products(streams["catalogue"], spec.products, start_ms)
    homes = build_households(streams["users"], products, spec.users, start_ms, end_ms)
    lines, homes = simulate_baskets(streams["baskets"], products, homes, start_ms, end_ms)
    events = lines_to_events(streams["events"], products, homes, lines)

    user_ids = id_strings("u", homes.size, len(str(homes.size - 1)))
    item_ids = id_strings("p", products.size, len(str(products.size - 1)))
    events = events.take(np.lexsort((events.user, events.ts)))
    unique, first = np.unique(events.session, return_index=True)
    rank = np.empty(len(unique), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(unique))
    events = events.replace(session=rank[np.searchsorted(unique, events.session)])
    session_ids = id_strings("s", len(unique), len(str(max(len(unique) - 1, 0))))
    gt_dir = out_dir / "ground_truth"
    files = {
        col.EVENTS: write_table(
            events_table(events, user_ids, item_ids, session_ids), out_dir, col.EVENTS, fmt
        ),
        col.PRODUCTS: write_table(products_table(products, item_ids), out_dir, col.PRODUCTS, fmt),
        col.USERS: write_table(users_table(homes, user_ids), out_dir, col.USERS, fmt),
        "ground_truth_users": write_table(
            ground_truth_users(homes, user_ids, item_ids), gt_dir, col.USERS, "parquet"
        ),
        "ground_truth_products": write_table(
            ground_truth_products(products, item_ids), gt_dir, col.PRODUCTS, "parquet"
        ),
        "ground_truth_shop": write_json(
            shop_json(spec, seed, start_ms, end_ms), gt_dir / "shop.json"
        ),
    }
    return files, events, len(unique), homes.size, products.size

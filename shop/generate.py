"""Generate a whole shop with known ground truth: the entry point the CLI calls.

Stages run in a fixed order, each with its own random stream spawned from the seed, so the same
seed always gives byte-identical data files, and changing one stage does not reshuffle others.
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys import columns as col
from recsys.errors import RecsysError
from shop import noise as nz
from shop.catalogue import EMBEDDING_DIM, Catalogue, build_catalogue
from shop.events import (
    VIEW_CODE,
    EventBlock,
    assemble,
    cap_daily_purchases,
    clip_to_period,
    replenish,
    trim_views,
)
from shop.scales import DEFAULT_PERIOD, Scale, check_format, resolve_scale
from shop.sessions import simulate_sessions
from shop.tables import (
    events_table,
    ground_truth_products,
    ground_truth_users,
    products_table,
    users_table,
)
from shop.taxonomy import Taxonomy, load_taxonomy
from shop.timeline import Timeline, build_timeline
from shop.users import Population, build_population
from shop.writer import id_strings, write_json, write_table

logger = logging.getLogger(__name__)

GROUND_TRUTH_DIR = "ground_truth"
MANIFEST = "manifest.json"
EVENTS_PER_VIEW = 1.29  # carts, purchases and repeat purchases per view, measured
MARGIN = 1.03
MAX_ATTEMPTS = 4
UNDERSHOOT_TOLERANCE = 0.01
STREAMS = ("catalogue", "users", "sessions", "noise", "trim")
KINDS = ("general", "grocery")


@dataclass(frozen=True)
class ShopSummary:
    """What was written: counts, files (relative to ``out_dir``) and seconds per stage."""

    out_dir: str
    scale: str
    seed: int
    fmt: str
    events: int
    clean_events: int
    users: int
    products: int
    sessions: int
    event_types: dict[str, int]
    noise: dict[str, int]
    files: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (plain dicts, ints, floats and strings)."""
        return asdict(self)


class _Stages:
    """Times each stage and logs it, so slow stages are visible in normal runs."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        logger.info("stage %s ...", name)
        begin = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - begin, 3)
        logger.info("stage %s done in %.2f s", name, self.seconds[name])


def _simulate_clean(
    rng: np.random.Generator,
    tax: Taxonomy,
    cat: Catalogue,
    pop: Population,
    timeline: Timeline,
    target: int,
) -> tuple[EventBlock, int]:
    """Clean events, exactly ``target`` rows when possible; returns them and the session count.

    Sessions are planned for slightly more views than needed and the surplus trimmed; if a
    draw falls short, it is redone with proportionally more.
    """
    target_views = target / EVENTS_PER_VIEW * MARGIN
    events: EventBlock | None = None
    total_sessions = 0
    for attempt, stream in enumerate(rng.spawn(MAX_ATTEMPTS)):
        sessions, browsing = simulate_sessions(stream, tax, cat, pop, timeline, target_views)
        events = assemble(stream, tax, cat, pop, sessions, browsing)
        repeats = replenish(stream, tax, cat, pop, timeline, events, sessions.size)
        total_sessions = sessions.size + (
            int(repeats.session.max()) + 1 - sessions.size if len(repeats) else 0
        )
        events = EventBlock.concat([events, repeats])
        events = cap_daily_purchases(clip_to_period(events, timeline))
        views = int(np.count_nonzero(events.etype == VIEW_CODE))
        logger.info(
            "  attempt %d: %d sessions -> %d clean events, %.3f events per view (target %d)",
            attempt + 1,
            total_sessions,
            len(events),
            len(events) / max(views, 1),
            target,
        )
        if len(events) >= target:
            return trim_views(stream, events, target), total_sessions
        target_views *= target / max(len(events), 1) * MARGIN
    assert events is not None
    if len(events) < target * (1 - UNDERSHOOT_TOLERANCE):
        raise RuntimeError(f"simulated {len(events)} clean events, wanted {target}")
    return events, total_sessions


def _user_sort_key(user_ids: list[str]) -> np.ndarray:
    """Rank of each user id in string order, so rows sort by timestamp then user id."""
    order = np.argsort(np.array(user_ids, dtype=object), kind="stable")
    rank = np.empty(len(user_ids), dtype=np.int64)
    rank[order] = np.arange(len(user_ids))
    return rank


def _renumber_sessions(session: np.ndarray) -> tuple[np.ndarray, int]:
    """Session numbers in order of first appearance in the sorted log."""
    unique, first = np.unique(session, return_index=True)
    rank = np.empty(len(unique), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(unique))
    return rank[np.searchsorted(unique, session)], len(unique)


def _shop_json(
    tax: Taxonomy,
    scale: Scale,
    seed: int,
    noise_counts: dict[str, int],
    noise_users: nz.NoiseUsers,
    user_ids: list[str],
) -> dict[str, Any]:
    period = DEFAULT_PERIOD

    def iso(ms: int) -> str:
        return str(np.datetime64(ms, "ms")) + "Z"

    paths = [leaf.path for leaf in tax.leaves]
    return {
        "seed": seed,
        "scale": asdict(scale),
        "period": {"start": iso(period.start_ms), "end": iso(period.end_ms)},
        "shift_start": iso(period.shift_ms),
        "shift_ramp_days": tax.shift.ramp_days,
        "trending_categories": [paths[i] for i in tax.shift.trending],
        "declining_categories": [paths[i] for i in tax.shift.declining],
        "shift_multipliers": {"trending": tax.shift.gain, "declining": tax.shift.loss},
        "categories": paths,
        "season_profiles": {name: list(v) for name, v in tax.seasons.items()},
        "category_seasons": {leaf.path: leaf.season for leaf in tax.leaves if leaf.season},
        "follow_ups": {
            leaf.path: [paths[j] for j in leaf.follow_ups] for leaf in tax.leaves if leaf.follow_ups
        },
        "consumables": {leaf.path: leaf.repurchase_days for leaf in tax.leaves if leaf.consumable},
        "avoidable_attributes": list(tax.avoidable),
        "embedding_dim": EMBEDDING_DIM,
        "noise": noise_counts,
        "noise_users": {
            nz.BULK_RESELLER: [user_ids[i] for i in noise_users.reseller_index],
            nz.TEST_ACCOUNT: list(noise_users.test_ids),
        },
    }


def generate_shop(
    out_dir: Path, scale: str = "small", seed: int = 0, fmt: str = "parquet", kind: str = "general"
) -> ShopSummary:
    """Write a generated shop (data contract + ground truth + manifest) into ``out_dir``.

    ``kind`` is the shop's trade: ``general`` (a department store, discovery-heavy) or
    ``grocery`` (baskets every few days, mostly the household's own staples; shop.grocery).
    """
    if kind not in KINDS:
        raise RecsysError(f"unknown shop kind {kind!r}; allowed: {', '.join(KINDS)}")
    spec = resolve_scale(scale)
    check_format(fmt)
    try:
        valid = not isinstance(seed, bool) and operator.index(seed) >= 0
    except TypeError:
        valid = False
    if not valid:
        raise RecsysError(f"seed must be a non-negative integer, got {seed!r}")
    seed = operator.index(seed)
    out_dir = Path(out_dir)
    try:
        (out_dir / GROUND_TRUTH_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecsysError(f"{out_dir}: cannot create output folder ({exc})") from None
    if kind == "grocery":
        return _generate_grocery(out_dir, scale, seed, fmt)
    streams = dict(zip(STREAMS, np.random.default_rng(seed).spawn(len(STREAMS)), strict=True))
    stages = _Stages()
    logger.info("generating %s shop (seed %d, %s) into %s", scale, seed, fmt, out_dir)

    with stages.stage("catalogue"):
        tax = load_taxonomy()
        timeline = build_timeline(tax, DEFAULT_PERIOD)
        cat = build_catalogue(streams["catalogue"], tax, spec.products, DEFAULT_PERIOD)
    with stages.stage("users"):
        pop = build_population(streams["users"], tax, spec.users, DEFAULT_PERIOD)

    plan = nz.NoisePlan.for_events(spec.events)
    noise_rng = streams["noise"]
    noise_users = nz.noise_users(noise_rng, pop.size, timeline)
    resellers = nz.reseller_events(noise_rng, cat, timeline, noise_users, spec.events, 0)
    target = (
        spec.events
        - plan.test_rows
        - len(resellers)
        - plan.impossible_rows
        - plan.negative_rows
        - plan.duplicate_rows
    )

    with stages.stage("sessions"):
        clean, n_sessions = _simulate_clean(streams["sessions"], tax, cat, pop, timeline, target)

    with stages.stage("noise"):
        tests = nz.test_account_events(
            noise_rng, cat, timeline, noise_users, plan.test_rows, n_sessions
        )
        resellers = resellers.replace(session=resellers.session + n_sessions + plan.test_rows)
        impossible, negative = nz.price_noise(
            noise_rng, clean, plan.impossible_rows, plan.negative_rows, DEFAULT_PERIOD.end_ms
        )
        dups = nz.duplicates(noise_rng, clean, plan.duplicate_rows)
        parts = {
            "clean": clean,
            nz.TEST_ACCOUNT: tests,
            nz.BULK_RESELLER: resellers,
            nz.IMPOSSIBLE_PRICE: impossible,
            nz.NEGATIVE_PRICE: negative,
            nz.DUPLICATE: dups,
        }
        noise_counts = {kind: len(parts[kind]) for kind in nz.KINDS}
        events = EventBlock.concat(list(parts.values()))

    with stages.stage("write"):
        n_accounts = pop.size + len(noise_users.reseller_index)
        width = max(spec.user_width, len(str(n_accounts - 1)))
        user_ids = id_strings("u", n_accounts, width) + list(noise_users.test_ids)
        item_ids = id_strings("p", cat.size, spec.product_width)
        order = np.lexsort((_user_sort_key(user_ids)[events.user], events.ts))
        events = events.take(order)
        session, total_sessions = _renumber_sessions(events.session)
        events = events.replace(session=session)
        session_ids = id_strings("s", total_sessions, len(str(max(total_sessions - 1, 0))))
        fmt_files = {
            col.EVENTS: write_table(
                events_table(events, user_ids, item_ids, session_ids), out_dir, col.EVENTS, fmt
            ),
            col.PRODUCTS: write_table(
                products_table(tax, cat, item_ids), out_dir, col.PRODUCTS, fmt
            ),
            col.USERS: write_table(
                users_table(tax, pop, noise_users, user_ids), out_dir, col.USERS, fmt
            ),
        }
        gt_dir = out_dir / GROUND_TRUTH_DIR
        fmt_files["ground_truth_users"] = write_table(
            ground_truth_users(tax, pop, user_ids), gt_dir, col.USERS, "parquet"
        )
        fmt_files["ground_truth_products"] = write_table(
            ground_truth_products(tax, cat, item_ids), gt_dir, col.PRODUCTS, "parquet"
        )
        fmt_files["ground_truth_shop"] = write_json(
            _shop_json(tax, spec, seed, noise_counts, noise_users, user_ids), gt_dir / "shop.json"
        )

    type_counts = np.bincount(events.etype, minlength=3)
    summary = ShopSummary(
        out_dir=str(out_dir),
        scale=scale,
        seed=seed,
        fmt=fmt,
        events=len(events),
        clean_events=len(clean),
        users=len(user_ids),
        products=cat.size,
        sessions=total_sessions,
        event_types={
            name: int(c)
            for name, c in zip((col.VIEW, col.CART, col.PURCHASE), type_counts, strict=True)
        },
        noise=noise_counts,
        files={k: str(p.relative_to(out_dir)) for k, p in fmt_files.items()}
        | {"manifest": MANIFEST},
        seconds=stages.seconds,
    )
    write_json(summary.to_dict(), out_dir / MANIFEST)
    logger.info(
        "shop written: %d events, %d users, %d products in %.1f s",
        summary.events,
        summary.users,
        summary.products,
        sum(stages.seconds.values()),
    )
    return summary


def _generate_grocery(out_dir: Path, scale: str, seed: int, fmt: str) -> ShopSummary:
    """The grocery shop, summarised like the general one (it has no noise rows)."""
    from shop.grocery import generate_grocery

    logger.info("generating %s grocery shop (seed %d, %s) into %s", scale, seed, fmt, out_dir)
    began = time.perf_counter()
    files, events, sessions, users, products = generate_grocery(out_dir, scale, seed, fmt)
    type_counts = np.bincount(events.etype, minlength=3)
    summary = ShopSummary(
        out_dir=str(out_dir),
        scale=scale,
        seed=seed,
        fmt=fmt,
        events=len(events),
        clean_events=len(events),
        users=users,
        products=products,
        sessions=sessions,
        event_types={
            name: int(c)
            for name, c in zip((col.VIEW, col.CART, col.PURCHASE), type_counts, strict=True)
        },
        noise={},
        files={k: str(p.relative_to(out_dir)) for k, p in files.items()} | {"manifest": MANIFEST},
        seconds={"grocery": round(time.perf_counter() - began, 3)},
    )
    write_json(summary.to_dict() | {"kind": "grocery"}, out_dir / MANIFEST)
    logger.info(
        "grocery shop written: %d events (%d baskets), %d users, %d products",
        summary.events,
        sessions,
        users,
        products,
    )
    return summary

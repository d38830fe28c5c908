"""Dirty rows a real event log has, injected on purpose so ingestion has something to remove.

Every kind is made so that ingestion's default rules catch it and clean rows never look like it:
test accounts (ids starting ``test-``/``qa_``), bulk resellers (quantity 25-200, more than 25
purchases a day), impossible prices (0 or above 1,000,000), negative prices and exact duplicate
rows. Each noise row belongs to exactly one kind and is counted once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from shop.catalogue import Catalogue
from shop.events import PURCHASE_CODE, VIEW_CODE, EventBlock
from shop.scales import MS_PER_DAY
from shop.timeline import Timeline
from shop.users import COUNTRIES, DEVICES, GENDERS

logger = logging.getLogger(__name__)

TEST_ACCOUNT = "test_account"
BULK_RESELLER = "bulk_reseller"
IMPOSSIBLE_PRICE = "impossible_price"
NEGATIVE_PRICE = "negative_price"
DUPLICATE = "duplicate"
KINDS = (TEST_ACCOUNT, BULK_RESELLER, IMPOSSIBLE_PRICE, NEGATIVE_PRICE, DUPLICATE)

TEST_SHARE = 0.003
IMPOSSIBLE_SHARE = 0.0005
NEGATIVE_SHARE = 0.0002
DUPLICATE_SHARE = 0.005
N_RESELLERS = 10
N_TEST_ACCOUNTS = 12
RESELLER_DAILY_PURCHASES = (26, 45)
RESELLER_QUANTITY = (25, 200)
IMPOSSIBLE_HIGH = (1_000_001.0, 9_999_999.0)


@dataclass(frozen=True)
class NoiseUsers:
    """Accounts that exist only to make noise: resellers (normal ids) and test accounts."""

    reseller_index: np.ndarray  # user numbers, continuing after the clean users
    test_ids: tuple[str, ...]  # their user numbers follow the resellers'
    age: np.ndarray
    gender: np.ndarray
    country: np.ndarray
    signup_ms: np.ndarray


@dataclass(frozen=True)
class NoisePlan:
    """How many rows of each kind the shop will contain, fixed before simulating."""

    test_rows: int
    impossible_rows: int
    negative_rows: int
    duplicate_rows: int

    @classmethod
    def for_events(cls, n_events: int) -> NoisePlan:
        return cls(
            test_rows=round(TEST_SHARE * n_events),
            impossible_rows=max(1, round(IMPOSSIBLE_SHARE * n_events)),
            negative_rows=max(1, round(NEGATIVE_SHARE * n_events)),
            duplicate_rows=round(DUPLICATE_SHARE * n_events),
        )


def noise_users(rng: np.random.Generator, first_index: int, timeline: Timeline) -> NoiseUsers:
    """Resellers look like normal customers in the user table; test accounts have no profile."""
    n = N_RESELLERS + N_TEST_ACCOUNTS
    half = N_TEST_ACCOUNTS // 2
    test_ids = tuple(
        [f"test-{i:03d}" for i in range(1, half + 1)]
        + [f"qa_{i:03d}" for i in range(1, N_TEST_ACCOUNTS - half + 1)]
    )
    start = timeline.period.start_ms
    return NoiseUsers(
        reseller_index=np.arange(first_index, first_index + N_RESELLERS, dtype=np.int32),
        test_ids=test_ids,
        age=rng.integers(25, 60, n).astype(np.int32),
        gender=rng.integers(0, len(GENDERS) - 1, n).astype(np.int8),
        country=rng.integers(0, len(COUNTRIES), n).astype(np.int8),
        signup_ms=start - rng.integers(30, 700, n) * MS_PER_DAY,
    )


def reseller_events(
    rng: np.random.Generator,
    cat: Catalogue,
    timeline: Timeline,
    users: NoiseUsers,
    n_events: int,
    first_session: int,
) -> EventBlock:
    """A few days per reseller with 26-45 bulk purchases each, spread over 1-3 sessions."""
    period = timeline.period
    max_days = max(1, round(n_events / 500_000))
    blocks = []
    session = first_session
    cheap = np.flatnonzero(cat.price < np.median(cat.price))
    for r, user in enumerate(users.reseller_index):
        for day in rng.choice(period.days - 1, rng.integers(1, max_days + 1), replace=False):
            day_start = period.start_ms + int(day) * MS_PER_DAY
            pool = cheap[cat.created_ms[cheap] < day_start]
            n = int(rng.integers(RESELLER_DAILY_PURCHASES[0], RESELLER_DAILY_PURCHASES[1] + 1))
            basket = rng.choice(pool, int(rng.integers(3, 8)), replace=False)
            item = rng.choice(basket, n)
            ts = np.sort(day_start + rng.integers(8 * 3_600_000, 20 * 3_600_000, n))
            n_sessions = int(rng.integers(1, 4))
            sess = session + np.minimum(np.arange(n) * n_sessions // n, n_sessions - 1)
            session += n_sessions
            blocks.append(
                EventBlock(
                    user=np.full(n, user, dtype=np.int32),
                    item=item.astype(np.int32),
                    etype=np.full(n, PURCHASE_CODE, dtype=np.int8),
                    ts=ts.astype(np.int64),
                    session=sess.astype(np.int64),
                    price=np.round(cat.price[item], 2),
                    quantity=rng.integers(RESELLER_QUANTITY[0], RESELLER_QUANTITY[1] + 1, n).astype(
                        np.int32
                    ),
                    device=np.full(n, 1, dtype=np.int8),
                    country=np.full(n, users.country[r], dtype=np.int8),
                )
            )
    return EventBlock.concat(blocks)


def test_account_events(
    rng: np.random.Generator,
    cat: Catalogue,
    timeline: Timeline,
    users: NoiseUsers,
    n_rows: int,
    first_session: int,
) -> EventBlock:
    """QA clicking around: short sessions on random launched items, clean prices."""
    period = timeline.period
    n_sessions = max(1, n_rows // 4)
    session = rng.integers(0, n_sessions, n_rows)
    session_start = period.start_ms + (
        rng.random(n_sessions) * (period.end_ms - period.start_ms - 3_600_000)
    )
    ts = (session_start[session] + rng.integers(0, 600_000, n_rows)).astype(np.int64)
    account = rng.integers(0, len(users.test_ids), n_sessions)[session]
    launched = np.argsort(cat.created_ms, kind="stable")
    n_launched = np.searchsorted(cat.created_ms[launched], ts, side="right")
    item = launched[(rng.random(n_rows) * n_launched).astype(np.int64)]
    etype = rng.choice(3, n_rows, p=[0.7, 0.2, 0.1]).astype(np.int8)
    first_test = users.reseller_index[-1] + 1
    return EventBlock(
        user=(first_test + account).astype(np.int32),
        item=item.astype(np.int32),
        etype=etype,
        ts=ts,
        session=first_session + session.astype(np.int64),
        price=np.round(cat.price[item], 2),
        quantity=np.ones(n_rows, dtype=np.int32),
        device=rng.integers(0, len(DEVICES), n_rows).astype(np.int8),
        country=users.country[N_RESELLERS + account],
    )


def price_noise(
    rng: np.random.Generator, clean: EventBlock, n_impossible: int, n_negative: int, end_ms: int
) -> tuple[EventBlock, EventBlock]:
    """Copies of clean views whose price got corrupted (0, absurdly high, or negative)."""
    views = np.flatnonzero(clean.etype == VIEW_CODE)
    source = clean.take(rng.choice(views, n_impossible + n_negative, replace=False))
    jitter = rng.integers(1_000, 30_000, len(source)).astype(np.int64)
    source = source.replace(ts=np.minimum(source.ts + jitter, end_ms - 1))
    impossible = source.take(np.arange(n_impossible))
    zero = rng.random(n_impossible) < 0.5
    high = np.round(rng.uniform(*IMPOSSIBLE_HIGH, n_impossible), 2)
    impossible = impossible.replace(price=np.where(zero, 0.0, high))
    negative = source.take(np.arange(n_impossible, len(source)))
    negative = negative.replace(price=-negative.price)
    return impossible, negative


def duplicates(rng: np.random.Generator, clean: EventBlock, n_rows: int) -> EventBlock:
    """At-least-once delivery: exact copies of clean rows."""
    return clean.take(np.sort(rng.choice(len(clean), n_rows, replace=False)))

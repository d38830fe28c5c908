"""Turning sessions into event rows: timestamps, prices, quantities, repeat purchases.

Rows are kept as parallel numpy arrays (an ``EventBlock``) with integer codes for users, items,
event types, devices and countries; strings are only made when the tables are written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import numpy as np

from shop.catalogue import Catalogue
from shop.funnel import Browsing
from shop.scales import MS_PER_DAY
from shop.sessions import Sessions
from shop.taxonomy import Taxonomy
from shop.timeline import Timeline
from shop.users import Population

logger = logging.getLogger(__name__)

VIEW_CODE, CART_CODE, PURCHASE_CODE = 0, 1, 2
MAX_PURCHASES_PER_DAY = 15  # well under the 20 a day that flags a reseller, even with duplicates
DISCOUNT_SHARE = 0.08
REPEAT_PROBABILITY = 0.55
MAX_REPEAT_ROUNDS = 12
CONSUMABLE_QUANTITIES = (1, 2, 3)
CONSUMABLE_QUANTITY_P = (0.7, 0.2, 0.1)


@dataclass(frozen=True)
class EventBlock:
    """Event rows as parallel arrays; ``session`` numbers are local until offset."""

    user: np.ndarray  # int32
    item: np.ndarray  # int32
    etype: np.ndarray  # int8
    ts: np.ndarray  # int64 ms
    session: np.ndarray  # int64
    price: np.ndarray  # float64
    quantity: np.ndarray  # int32
    device: np.ndarray  # int8
    country: np.ndarray  # int8

    def __len__(self) -> int:
        return len(self.user)

    def take(self, index: np.ndarray) -> EventBlock:
        return EventBlock(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def replace(self, **changes: np.ndarray) -> EventBlock:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return EventBlock(**values)

    @staticmethod
    def concat(blocks: list[EventBlock]) -> EventBlock:
        return EventBlock(
            **{
                f.name: np.concatenate([getattr(b, f.name) for b in blocks])
                for f in fields(EventBlock)
            }
        )


def consumable_days(tax: Taxonomy) -> np.ndarray:
    """Repurchase interval per leaf in days, 0 where the leaf is not consumable."""
    return np.array([leaf.repurchase_days or 0 for leaf in tax.leaves], dtype=np.float64)


def _prices(rng: np.random.Generator, cat: Catalogue, item: np.ndarray) -> np.ndarray:
    """Catalogue price, with an occasional small discount."""
    discount = np.where(
        rng.random(len(item)) < DISCOUNT_SHARE, rng.uniform(0.05, 0.3, len(item)), 0.0
    )
    return np.maximum(np.round(cat.price[item] * (1.0 - discount), 2), 0.01)


def _quantities(rng: np.random.Generator, consumable: np.ndarray) -> np.ndarray:
    draw = rng.choice(CONSUMABLE_QUANTITIES, len(consumable), p=CONSUMABLE_QUANTITY_P)
    return np.where(consumable, draw, 1).astype(np.int32)


def assemble(
    rng: np.random.Generator,
    tax: Taxonomy,
    cat: Catalogue,
    pop: Population,
    sessions: Sessions,
    browsing: Browsing,
) -> EventBlock:
    """Give every view, cart and purchase slot a time, price and quantity; session = row."""
    n, k = browsing.items.shape
    valid = browsing.items >= 0
    gaps = (rng.exponential(45_000.0, (n, k)) + 3_000).astype(np.int64)
    view_t = sessions.start_ms[:, None] + np.cumsum(gaps, axis=1)
    cart_t = view_t + 2_000 + rng.exponential(20_000.0, (n, k)).astype(np.int64)
    last = np.maximum(valid.sum(axis=1) - 1, 0)
    last_view = view_t[np.arange(n), last]
    buy_t = last_view[:, None] + 15_000 + rng.exponential(60_000.0, (n, k)).astype(np.int64)
    buy_t = np.maximum(buy_t, cart_t + 1_000)

    rows, slots = np.nonzero(valid)
    item = browsing.items[rows, slots]
    price = _prices(rng, cat, item)
    is_consumable = consumable_days(tax)[cat.leaf[item]] > 0
    quantity = _quantities(rng, is_consumable)
    carted = browsing.carted[rows, slots]
    bought = browsing.bought[rows, slots]

    parts = []
    for code, mask, times in (
        (VIEW_CODE, np.ones(len(rows), dtype=bool), view_t),
        (CART_CODE, carted, cart_t),
        (PURCHASE_CODE, bought, buy_t),
    ):
        r, s = rows[mask], slots[mask]
        u = sessions.user[r]
        parts.append(
            EventBlock(
                user=u,
                item=item[mask],
                etype=np.full(len(r), code, dtype=np.int8),
                ts=times[r, s],
                session=r.astype(np.int64),
                price=price[mask],
                quantity=np.where(code == VIEW_CODE, 1, quantity[mask]).astype(np.int32),
                device=sessions.device[r],
                country=pop.country[u],
            )
        )
    return EventBlock.concat(parts)


def replenish(
    rng: np.random.Generator,
    tax: Taxonomy,
    cat: Catalogue,
    pop: Population,
    timeline: Timeline,
    events: EventBlock,
    first_session: int,
) -> EventBlock:
    """Repeat purchases of consumables: view, cart and buy the same item about one interval on."""
    days = consumable_days(tax)
    blocks: list[EventBlock] = []
    source = events.take(
        np.flatnonzero((events.etype == PURCHASE_CODE) & (days[cat.leaf[events.item]] > 0))
    )
    next_session = first_session
    for _ in range(MAX_REPEAT_ROUNDS):
        leaf = cat.leaf[source.item]
        interval = days[leaf] * source.quantity**0.7
        delay = (interval * rng.lognormal(0.0, 0.2, len(source)) * MS_PER_DAY).astype(np.int64)
        start = source.ts + delay
        # out of season, people stop restocking (no sunscreen refills in December)
        season = np.exp(timeline.season[timeline.month_of(start), leaf])
        again = rng.random(len(source)) < REPEAT_PROBABILITY * np.minimum(season, 1.0)
        keep = again & (start < timeline.period.end_ms)
        src, start = source.take(np.flatnonzero(keep)), start[keep]
        if len(src) == 0:
            break
        m = len(src)
        session = next_session + np.arange(m, dtype=np.int64)
        next_session += m
        view_t = start
        cart_t = view_t + 5_000 + rng.exponential(30_000.0, m).astype(np.int64)
        buy_t = cart_t + 10_000 + rng.exponential(60_000.0, m).astype(np.int64)
        price = _prices(rng, cat, src.item)
        quantity = _quantities(rng, np.ones(m, dtype=bool))
        device = pop.device[src.user]
        round_blocks = [
            EventBlock(
                user=src.user,
                item=src.item,
                etype=np.full(m, code, dtype=np.int8),
                ts=t,
                session=session,
                price=price,
                quantity=q,
                device=device,
                country=src.country,
            )
            for code, t, q in (
                (VIEW_CODE, view_t, np.ones(m, dtype=np.int32)),
                (CART_CODE, cart_t, quantity),
                (PURCHASE_CODE, buy_t, quantity),
            )
        ]
        blocks.extend(round_blocks)
        source = round_blocks[-1]
    if not blocks:
        return events.take(np.zeros(0, dtype=np.int64))
    return EventBlock.concat(blocks)


def clip_to_period(events: EventBlock, timeline: Timeline) -> EventBlock:
    """Sessions that start just before the end lose the rows that would fall after it."""
    return events.take(np.flatnonzero(events.ts < timeline.period.end_ms))


def cap_daily_purchases(events: EventBlock) -> EventBlock:
    """Clean shoppers buy at most MAX_PURCHASES_PER_DAY times per UTC day; drop the rest."""
    purchase = np.flatnonzero(events.etype == PURCHASE_CODE)
    day = events.ts[purchase] // MS_PER_DAY
    order = np.lexsort((events.ts[purchase], day, events.user[purchase]))
    key_u, key_d = events.user[purchase][order], day[order]
    new_group = np.ones(len(order), dtype=bool)
    new_group[1:] = (key_u[1:] != key_u[:-1]) | (key_d[1:] != key_d[:-1])
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))
    rank = np.arange(len(order)) - group_start
    drop = purchase[order[rank >= MAX_PURCHASES_PER_DAY]]
    if len(drop):
        logger.debug("dropping %d purchases over the daily cap", len(drop))
    keep = np.ones(len(events), dtype=bool)
    keep[drop] = False
    return events.take(np.flatnonzero(keep))


def trim_views(rng: np.random.Generator, events: EventBlock, target: int) -> EventBlock:
    """Drop random views (never one that led to a cart) until exactly ``target`` rows remain."""
    excess = len(events) - target
    if excess <= 0:
        return events
    n_items = np.int64(events.item.max()) + 1
    key = events.session * n_items + events.item
    carted = key[events.etype == CART_CODE]
    droppable = np.flatnonzero((events.etype == VIEW_CODE) & ~np.isin(key, carted))
    if len(droppable) < excess:
        raise RuntimeError(f"cannot trim {excess} views, only {len(droppable)} droppable")
    drop = rng.choice(droppable, excess, replace=False)
    keep = np.ones(len(events), dtype=bool)
    keep[drop] = False
    return events.take(np.flatnonzero(keep))

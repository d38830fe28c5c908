"""What happens inside a session: which items are viewed, carted and bought.

Items are picked by Gumbel-top-k on a score that mixes hidden taste, popularity, price and skin
type, one category at a time and in blocks of sessions, so the work is a few matrix products
rather than a Python loop over sessions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from shop.catalogue import Catalogue
from shop.users import Population

logger = logging.getLogger(__name__)

MAX_VIEWS = 10
BLOCK = 2048
SKIN_BONUS = 1.5
TEMPERATURE = 1.0
BASE_CART = 0.15
TOP_ITEM_CART_BOOST = 1.4


@dataclass(frozen=True)
class Browsing:
    """Per session and view slot: the item viewed (-1 for none), and whether carted or bought."""

    items: np.ndarray  # int32 (n_sessions, MAX_VIEWS)
    carted: np.ndarray  # bool
    bought: np.ndarray  # bool

    @classmethod
    def empty(cls, n_sessions: int) -> Browsing:
        return cls(
            items=np.full((n_sessions, MAX_VIEWS), -1, dtype=np.int32),
            carted=np.zeros((n_sessions, MAX_VIEWS), dtype=bool),
            bought=np.zeros((n_sessions, MAX_VIEWS), dtype=bool),
        )

    def bought_any(self) -> np.ndarray:
        return self.bought.any(axis=1)


def browse(
    rng: np.random.Generator,
    cat: Catalogue,
    pop: Population,
    user: np.ndarray,
    start_ms: np.ndarray,
    intent: np.ndarray,
    n_views: np.ndarray,
    boost: np.ndarray,
    sessions: np.ndarray,
    out: Browsing,
) -> None:
    """Fill ``out`` for the session numbers in ``sessions`` (their earlier rows are replaced).

    ``boost`` multiplies the cart probability per session: a visit that follows up on a
    purchase (phone case after phone) comes with a stronger intent to buy.
    """
    if len(sessions) == 0:
        return
    order = sessions[np.argsort(intent[sessions], kind="stable")]
    bounds = np.searchsorted(intent[order], np.arange(len(cat.by_leaf) + 1))
    done, next_report = 0, 0.2
    for leaf, items in enumerate(cat.by_leaf):
        group = order[bounds[leaf] : bounds[leaf + 1]]
        if len(group) == 0:
            continue
        _browse_leaf(rng, cat, pop, items, user, start_ms, n_views, boost, group, out)
        done += len(group)
        if len(sessions) > 50_000 and done / len(sessions) >= next_report:
            logger.info(
                "  browsing: %3.0f%% of %d sessions", 100 * done / len(sessions), len(sessions)
            )
            next_report += 0.2


def _browse_leaf(
    rng: np.random.Generator,
    cat: Catalogue,
    pop: Population,
    items: np.ndarray,
    user: np.ndarray,
    start_ms: np.ndarray,
    n_views: np.ndarray,
    boost: np.ndarray,
    group: np.ndarray,
    out: Browsing,
) -> None:
    created = cat.created_ms[items]
    embedding = cat.embedding[items].T
    base = np.log(cat.popularity[items]).astype(np.float32)
    ratio = cat.log_price_ratio[items].astype(np.float32)
    skin_bits = cat.skin_mask[items]
    avoid_bits = cat.avoid_mask[items]
    has_skin = bool(skin_bits.any())
    k = min(MAX_VIEWS, len(items))
    cols = np.arange(len(items))
    for lo in range(0, len(group), BLOCK):
        rows = group[lo : lo + BLOCK]
        u = user[rows]
        launched = np.searchsorted(created, start_ms[rows], side="right")
        score = pop.taste[u] @ embedding + base
        score -= pop.price_sensitivity[u][:, None] * ratio
        if has_skin:
            skin = pop.skin_type[u].astype(np.int32)
            match = (skin_bits[None, :] >> np.maximum(skin, 0)[:, None]) & 1
            score += SKIN_BONUS * (match * (skin >= 0)[:, None])
        score = score / TEMPERATURE + rng.gumbel(size=score.shape).astype(np.float32)
        score[cols[None, :] >= launched[:, None]] = -np.inf
        top = (
            np.argpartition(-score, k - 1, axis=1)[:, :k]
            if k < len(items)
            else np.broadcast_to(cols, (len(rows), k)).copy()
        )
        top_score = np.take_along_axis(score, top, axis=1)
        top = np.take_along_axis(top, np.argsort(-top_score, axis=1, kind="stable"), axis=1)
        top_score = np.take_along_axis(score, top, axis=1)
        slots = np.arange(k)[None, :]
        valid = (slots < n_views[rows][:, None]) & np.isfinite(top_score)
        chosen = np.where(valid, items[top], -1).astype(np.int32)

        ps = pop.price_sensitivity[u][:, None]
        p_cart = BASE_CART * np.exp(-0.5 * ps * np.maximum(ratio[top], 0.0))
        p_cart = np.where(slots == 0, p_cart * TOP_ITEM_CART_BOOST, p_cart)
        p_cart = p_cart * boost[rows][:, None]
        allowed = (avoid_bits[top] & pop.avoid_mask[u][:, None]) == 0
        carted = valid & allowed & (rng.random(top.shape) < p_cart)
        p_buy = np.clip(0.75 - 0.2 * ps, 0.2, 0.8)
        bought = carted & (rng.random(top.shape) < p_buy)

        out.items[rows] = -1
        out.carted[rows] = False
        out.bought[rows] = False
        out.items[rows, :k] = chosen
        out.carted[rows, :k] = carted
        out.bought[rows, :k] = bought

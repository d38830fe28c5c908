"""Who visits when, with what in mind: session planning, intents and follow-up purchases.

A session's intent category comes from the user's preferences, the season and the late shift;
after a purchase, the next session often goes to a follow-up category (Cleanser -> Toner), and
the pass is repeated so that chains of three or more appear.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from shop.catalogue import Catalogue
from shop.funnel import MAX_VIEWS, Browsing, browse
from shop.taxonomy import Taxonomy
from shop.timeline import Timeline, draw_times
from shop.users import DEVICES, Population

logger = logging.getLogger(__name__)

MIN_GAP_MS = 45 * 60_000
PREFERRED_DEVICE_SHARE = 0.8
FOLLOW_PROBABILITY = 0.7
FOLLOW_CART_BOOST = 3.0
FOLLOW_PASSES = 4
VIEWS_GEOMETRIC_P = 0.3
INTENT_CHUNK = 32_768
PLANNING_VIEWS_PER_SESSION = 1.5  # fewer than any scale has, so planning over-shoots


@dataclass(frozen=True)
class Sessions:
    """Sessions sorted by user then start; ``intent`` is final after the follow-up passes."""

    user: np.ndarray  # int32
    start_ms: np.ndarray  # int64
    device: np.ndarray  # int8
    intent: np.ndarray  # int16
    n_views: np.ndarray  # int8

    @property
    def size(self) -> int:
        return len(self.user)


def plan_sessions(
    rng: np.random.Generator, pop: Population, timeline: Timeline, n_sessions: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Share ``n_sessions`` among users by activity and time since signup; place them in time."""
    period = timeline.period
    first_day = np.clip(
        timeline.day_of(np.maximum(pop.signup_ms, period.start_ms)), 0, len(timeline.traffic) - 1
    )
    exposure = timeline.cumulative[-1] - timeline.cumulative[first_day]
    weight = pop.activity * exposure
    counts = rng.poisson(n_sessions * weight / weight.sum())
    user = np.repeat(np.arange(pop.size, dtype=np.int32), counts)
    start = draw_times(rng, timeline, pop.signup_ms[user])
    order = np.lexsort((start, user))
    user, start = user[order], start[order]
    # keep sessions of one user at least MIN_GAP_MS apart (grouped running maximum)
    group_start = np.searchsorted(user, user, side="left")
    pos = np.arange(len(user)) - group_start
    rel = start - period.start_ms - pos * MIN_GAP_MS
    offset = user.astype(np.int64) * 10**12
    start = np.maximum.accumulate(rel + offset) - offset + pos * MIN_GAP_MS + period.start_ms
    keep = start < period.end_ms
    user, start = user[keep], start[keep]
    device = np.where(
        rng.random(len(user)) < PREFERRED_DEVICE_SHARE,
        pop.device[user],
        rng.integers(0, len(DEVICES), len(user)),
    ).astype(np.int8)
    n_views = np.clip(rng.geometric(VIEWS_GEOMETRIC_P, len(user)), 1, MAX_VIEWS).astype(np.int8)
    return user, start, device, n_views


def draw_intents(
    rng: np.random.Generator,
    pop: Population,
    timeline: Timeline,
    user: np.ndarray,
    start_ms: np.ndarray,
) -> np.ndarray:
    """Gumbel-max over log(preference) + log(season) + log(shift), in chunks of sessions."""
    intent = np.empty(len(user), dtype=np.int16)
    for lo in range(0, len(user), INTENT_CHUNK):
        u, t = user[lo : lo + INTENT_CHUNK], start_ms[lo : lo + INTENT_CHUNK]
        logits = np.log(pop.preference[u]) + timeline.intent_log_weights(t)
        logits += rng.gumbel(size=logits.shape).astype(np.float32)
        intent[lo : lo + INTENT_CHUNK] = np.argmax(logits, axis=1)
    return intent


def _follow_table(tax: Taxonomy) -> tuple[np.ndarray, np.ndarray]:
    width = max(1, max(len(leaf.follow_ups) for leaf in tax.leaves))
    table = np.zeros((len(tax.leaves), width), dtype=np.int16)
    count = np.zeros(len(tax.leaves), dtype=np.int64)
    for leaf in tax.leaves:
        count[leaf.index] = len(leaf.follow_ups)
        table[leaf.index, : len(leaf.follow_ups)] = leaf.follow_ups
    return table, count


def effective_views(
    cat: Catalogue, intent: np.ndarray, start_ms: np.ndarray, n_views: np.ndarray
) -> np.ndarray:
    """Views a session can have: its wish, capped by the items already launched in its leaf."""
    launched = np.zeros(len(intent), dtype=np.int64)
    for leaf, items in enumerate(cat.by_leaf):
        rows = np.flatnonzero(intent == leaf)
        launched[rows] = np.searchsorted(cat.created_ms[items], start_ms[rows], side="right")
    return np.minimum(n_views, launched)


def simulate_sessions(
    rng: np.random.Generator,
    tax: Taxonomy,
    cat: Catalogue,
    pop: Population,
    timeline: Timeline,
    target_views: float,
) -> tuple[Sessions, Browsing]:
    """Plan sessions for about ``target_views`` views, browse, then re-route follow-ups.

    More sessions than needed are planned, then a uniform random share is kept so that the
    views they can have (cheap to count before browsing) match the target; keeping a random
    share of sessions is the same as planning fewer, so no pattern is distorted.
    """
    planned = max(int(target_views / PLANNING_VIEWS_PER_SESSION), 1)
    user, start, device, n_views = plan_sessions(rng, pop, timeline, planned)
    base_intent = draw_intents(rng, pop, timeline, user, start)
    possible = effective_views(cat, base_intent, start, n_views)
    share = min(1.0, target_views / max(int(possible.sum()), 1))
    keep = np.flatnonzero(rng.random(len(user)) < share)
    user, start, device = user[keep], start[keep], device[keep]
    n_views, base_intent = n_views[keep], base_intent[keep]
    intent = base_intent.copy()
    browsing = Browsing.empty(len(user))
    logger.info(
        "  %d sessions planned, %d kept (%.0f%%); browsing", planned, len(user), 100 * share
    )
    boost = np.ones(len(user), dtype=np.float32)
    browse(rng, cat, pop, user, start, intent, n_views, boost, np.arange(len(user)), browsing)

    table, count = _follow_table(tax)
    has_prev = np.zeros(len(user), dtype=bool)
    has_prev[1:] = user[1:] == user[:-1]
    prev = np.maximum(np.arange(len(user)) - 1, 0)
    follows = rng.random(len(user)) < FOLLOW_PROBABILITY
    pick = rng.random(len(user))
    for n_pass in range(FOLLOW_PASSES):
        prev_intent = intent[prev]
        routed = has_prev & follows & browsing.bought_any()[prev] & (count[prev_intent] > 0)
        choice = (pick * np.maximum(count[prev_intent], 1)).astype(np.int64)
        target = np.where(routed, table[prev_intent, choice], base_intent)
        changed = np.flatnonzero(target != intent)
        logger.info("  follow-up pass %d: %d sessions re-routed", n_pass + 1, len(changed))
        if len(changed) == 0:
            break
        intent[changed] = target[changed]
        boost[changed] = np.where(routed[changed], FOLLOW_CART_BOOST, 1.0)
        browse(rng, cat, pop, user, start, intent, n_views, boost, changed, browsing)
    sessions = Sessions(user=user, start_ms=start, device=device, intent=intent, n_views=n_views)
    return sessions, browsing

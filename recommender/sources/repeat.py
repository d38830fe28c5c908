"""The user's own past items: recently viewed ones, and bought ones where people rebuy.

Whether bought items may come back is the model's ``repurchase`` policy (decided on
validation or fixed by configuration); viewed-but-not-bought items are always fair game.
"""

import logging

import numpy as np
import pandas as pd

from recommender.config import RepeatConfig
from recommender.state import (
    ITEM,
    KIND,
    PURCHASED,
    REQ,
    TS,
    WEIGHT,
    Batch,
    Exclusions,
    best_kept,
    group_positions,
    pair_key,
    proposal_frame,
)
from recsys import columns as c

logger = logging.getLogger(__name__)
DAY = 86_400.0


class RepeatSource:
    name = "repeat"

    def __init__(self, config: RepeatConfig) -> None:
        self.config = config
        self.interval = np.zeros(0, dtype=np.float32)  # median days between rebuys, NaN if none

    def fit(self, events: pd.DataFrame, n_items: int) -> None:
        bought = events[events[KIND] == PURCHASED][[c.USER_ID, ITEM, TS]]
        bought = bought.sort_values([c.USER_ID, ITEM, TS], kind="stable")
        gap = bought.groupby([c.USER_ID, ITEM], sort=False)[TS].diff() / DAY
        gaps = pd.DataFrame({ITEM: bought[ITEM].to_numpy(), "gap": gap.to_numpy()}).dropna()
        median = gaps.groupby(ITEM)["gap"].median()
        self.interval = np.full(n_items, np.nan, dtype=np.float32)
        self.interval[median.index.to_numpy()] = median.to_numpy()
        logger.info("repeat: %d items bought again by the same user", len(median))

    def grow(self, n_items: int) -> None:
        extra = n_items - len(self.interval)
        if extra > 0:
            self.interval = np.concatenate([self.interval, np.full(extra, np.nan, np.float32)])

    def _per_pair(self, batch: Batch) -> dict[str, np.ndarray]:
        """Each (request, item) of the history, in order of first appearance: its views,
        carts and buys, the days and the events since its last event, and its decayed
        weight (``score``)."""
        return batch.remember(self, "per_pair", lambda: self._aggregate(batch))

    def _aggregate(self, batch: Batch) -> dict[str, np.ndarray]:
        hist = batch.history
        reqs, items = hist[REQ].to_numpy(), hist[ITEM].to_numpy()
        kind = hist[KIND].to_numpy()
        age = (batch.requests[TS].to_numpy()[reqs] - hist[TS].to_numpy()) / DAY
        recency = (hist[WEIGHT].to_numpy() * 0.5 ** (age / 14.0)).astype(np.float64)
        _, firsts, group = np.unique(pair_key(reqs, items), return_index=True, return_inverse=True)
        # pairs numbered in order of their first row, as a group-by without sorting does
        appearance = np.argsort(firsts)
        number = np.empty_like(appearance)
        number[appearance] = np.arange(len(appearance))
        group, firsts, n = number[group.ravel()], firsts[appearance], len(firsts)
        out = {REQ: reqs[firsts], ITEM: items[firsts]}
        for name, k in (("user_item_views", 0), ("user_item_carts", 1), ("user_item_buys", 2)):
            out[name] = np.bincount(group, weights=kind == k, minlength=n).astype(np.float32)
        days = np.full(n, np.nan)
        np.fmin.at(days, group, age)
        out["user_item_days"] = days
        # events of the past after the item's last one (0: the newest): recency in clicks,
        # which a session given without times has as much as a logged one
        position, size = group_positions(reqs)
        steps = np.full(n, np.inf)
        np.minimum.at(steps, group, (size - position - 1).astype(np.float64))
        out["user_item_steps_back"] = steps
        out["score"] = _kahan_sums(group, recency, n)
        return out

    def propose(self, batch: Batch, exclusions: Exclusions) -> pd.DataFrame:
        return proposal_frame(*self.proposals(batch, exclusions))

    def proposals(self, batch: Batch, exclusions: Exclusions) -> tuple[np.ndarray, ...]:
        """``propose`` as arrays: the past items that may be shown, most weight first."""
        per = self._per_pair(batch)
        ok = exclusions.keep(per[REQ], per[ITEM])
        return best_kept(per[REQ], per[ITEM], per["score"], ok, self.config.candidates)

    def features(self, batch: Batch, pairs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.feature_columns(batch, pairs), index=pairs.index)

    def feature_columns(self, batch: Batch, pairs: pd.DataFrame) -> dict[str, np.ndarray]:
        per = self._per_pair(batch)
        wanted = pair_key(pairs[REQ].to_numpy(), pairs[ITEM].to_numpy())
        at = _positions(pair_key(per[REQ], per[ITEM]), wanted)
        found = at >= 0
        out = {}
        for name in (
            "user_item_views",
            "user_item_carts",
            "user_item_buys",
            "user_item_days",
            "user_item_steps_back",
        ):
            values = per[name]
            column = np.full(len(pairs), np.nan, dtype=values.dtype)
            column[found] = values[at[found]]
            out[name] = column
        bought = pair_key(batch.bought[REQ].to_numpy(), batch.bought[ITEM].to_numpy())
        out["ever_bought"] = np.isin(wanted, bought).astype(np.float64)
        for name in ("user_item_views", "user_item_carts", "user_item_buys"):
            out[name][~found] = 0.0
        interval = self.interval[pairs[ITEM].to_numpy()]
        out["rebuy_interval_days"] = interval
        out["rebuy_due"] = out["user_item_days"] / np.where(interval > 0, interval, np.nan)
        return out


def _positions(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Position of each wanted key among ``keys`` (distinct), -1 where absent."""
    if len(keys) == 0:
        return np.full(len(wanted), -1, dtype=np.int64)
    order = np.argsort(keys)
    at = np.minimum(np.searchsorted(keys, wanted, sorter=order), len(keys) - 1)
    return np.where(keys[order[at]] == wanted, order[at], -1)


def _kahan_sums(group: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-group sums of ``values`` in array order with Kahan's compensation, exactly as
    pandas' ``groupby().sum()`` adds them (a plain sum may differ in the last bit, and the
    sums order the proposals). One step per value of the largest group, across all groups."""
    sums, compensation = np.zeros(n), np.zeros(n)
    position, size = group_positions(group)
    for step in range(int(size.max()) if len(size) else 0):
        at = (position == step) & ~np.isnan(values)  # (a missing value is skipped)
        g, value = group[at], values[at]
        y = value - compensation[g]
        t = sums[g] + y
        c = (t - sums[g]) - y
        compensation[g] = np.where(c != c, 0.0, c)  # an infinite value: no compensation
        sums[g] = t
    return sums

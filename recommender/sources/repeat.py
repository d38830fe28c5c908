"""The user's own past items: recently viewed ones, and bought ones where people rebuy.

Whether bought items may come back is the model's ``repurchase`` policy (decided on
validation or fixed by configuration); viewed-but-not-bought items are always fair game.
"""

import logging

import numpy as np
import pandas as pd

from recommender.config import RepeatConfig
from recommender.state import ITEM, KIND, PURCHASED, REQ, TS, WEIGHT, Batch, Exclusions
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

    def _per_pair(self, batch: Batch) -> pd.DataFrame:
        hist = batch.history
        at = batch.requests.set_index(REQ)[TS]
        h = hist.assign(
            age=(hist[REQ].map(at).to_numpy() - hist[TS].to_numpy()) / DAY,
            views=(hist[KIND] == 0).astype(np.float32),
            carts=(hist[KIND] == 1).astype(np.float32),
            buys=(hist[KIND] == 2).astype(np.float32),
        )
        h["recency"] = h[WEIGHT] * 0.5 ** (h["age"] / 14.0)
        agg = h.groupby([REQ, ITEM], sort=False).agg(
            user_item_views=("views", "sum"),
            user_item_carts=("carts", "sum"),
            user_item_buys=("buys", "sum"),
            user_item_days=("age", "min"),
            score=("recency", "sum"),
        )
        return agg.reset_index()

    def propose(self, batch: Batch, exclusions: Exclusions) -> pd.DataFrame:
        found = exclusions.filter(self._per_pair(batch))
        found = found.sort_values([REQ, "score"], ascending=[True, False], kind="stable")
        return found.groupby(REQ, sort=False).head(self.config.candidates)[[REQ, ITEM, "score"]]

    def features(self, batch: Batch, pairs: pd.DataFrame) -> pd.DataFrame:
        per = self._per_pair(batch).drop(columns="score")
        out = pairs[[REQ, ITEM]].merge(per, on=[REQ, ITEM], how="left")
        bought = batch.bought.assign(ever_bought=1.0)
        out = out.merge(bought, on=[REQ, ITEM], how="left")
        cols = ["user_item_views", "user_item_carts", "user_item_buys", "ever_bought"]
        out[cols] = out[cols].fillna(0.0)
        interval = self.interval[pairs[ITEM].to_numpy()]
        out["rebuy_interval_days"] = interval
        out["rebuy_due"] = out["user_item_days"].to_numpy() / np.where(
            interval > 0, interval, np.nan
        )
        out.index = pairs.index
        return out.drop(columns=[REQ, ITEM])

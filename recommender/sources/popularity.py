"""Popularity by segment and context: what sells now, to people like this, in this season.

Shares of recent, decayed interest per item: overall, per country, per age band and gender,
per device, and per month of the year (over all the data, so last year's season counts).
New users with only demographics get their segment's list instead of the global top list.
"""

import logging

import numpy as np
import pandas as pd

from recommender.config import PopularityConfig
from recommender.state import (
    ITEM,
    REQ,
    SEGMENTS,
    TS,
    UNKNOWN,
    WEIGHT,
    Batch,
    Exclusions,
)
from recsys import columns as c

logger = logging.getLogger(__name__)
DAY = 86_400.0
SEASON_WEIGHT = 0.5
TASTE_WEIGHT = 3.0
TASTE_PRIOR = 20.0


def joint_segment(demo: pd.Series, country: pd.Series) -> pd.Series:
    """Age band, gender and country in one label."""
    d = demo.astype(object).where(demo.notna(), UNKNOWN).astype(str)
    k = country.astype(object).where(country.notna(), UNKNOWN).astype(str)
    return pd.Series(d.to_numpy() + "|" + k.to_numpy())


def joint_segment_of(request: pd.Series) -> str:
    return f"{request['demo']}|{request[c.COUNTRY]}"


def _shares(items: np.ndarray, weights: np.ndarray, n_items: int) -> np.ndarray:
    counts = np.bincount(items, weights=weights, minlength=n_items).astype(np.float32)
    total = counts.sum()
    return counts / total if total > 0 else counts


def month_of(ts: np.ndarray) -> np.ndarray:
    return pd.to_datetime(ts, unit="s", utc=True).month.to_numpy() - 1


class PopularitySource:
    name = "popularity"

    def __init__(self, config: PopularityConfig) -> None:
        self.config = config
        self.overall = np.zeros(0, dtype=np.float32)
        self.total = np.zeros(0, dtype=np.float32)
        self.by: dict[str, dict[str, np.ndarray]] = {}
        self.months = np.zeros((12, 0), dtype=np.float32)

    def fit(
        self,
        events: pd.DataFrame,
        segments: pd.DataFrame,
        n_items: int,
        categories: np.ndarray | None = None,
    ) -> None:
        """``events``: an event frame; ``segments``: user_id -> demo (and country);
        ``categories``: each item's category (for segment tastes by category)."""
        cfg = self.config
        end = events[TS].max()
        recent = events[events[TS] >= end - cfg.window_days * DAY]
        decay = 0.5 ** ((end - recent[TS].to_numpy()) / (cfg.half_life_days * DAY))
        w = recent[WEIGHT].to_numpy() * decay
        items = recent[ITEM].to_numpy()
        self.overall = _shares(items, w, n_items)
        self.total = np.log1p(
            np.bincount(events[ITEM].to_numpy(), minlength=n_items).astype(np.float32)
        )
        frame = recent.merge(segments[[c.USER_ID, "demo"]], on=c.USER_ID, how="left")
        self.by = {}
        for column in SEGMENTS:
            if column not in frame:
                continue
            values = frame[column].astype(object).where(frame[column].notna(), UNKNOWN)
            self.by[column] = {
                str(value): _shares(items[idx], w[idx], n_items)
                for value, idx in values.groupby(values.to_numpy()).indices.items()
                if value != UNKNOWN
            }
        self._fit_tastes(events, segments, n_items, categories, items, w)
        month = month_of(events[TS].to_numpy())
        all_items, all_w = events[ITEM].to_numpy(), events[WEIGHT].to_numpy()
        self.months = np.stack(
            [_shares(all_items[month == m], all_w[month == m], n_items) for m in range(12)]
        )
        logger.info("popularity: segments %s", {k: len(v) for k, v in self.by.items()})

    def _fit_tastes(self, events, segments, n_items, categories, recent_items, recent_w) -> None:
        """P(category | age band, gender, country) from all events, smoothed toward the whole
        shop, times P(item | category) from recent interest: tastes of people like this,
        spread over what sells now in each category. The cold-start list of new users."""
        cats = np.asarray(
            categories if categories is not None else np.zeros(n_items, dtype=object), dtype=object
        )
        cats = np.where(pd.isna(cats), "", cats).astype(str)
        codes, names = pd.factorize(cats)
        self.item_category = codes.astype(np.int32)
        n_cat = len(names)
        frame = events[[c.USER_ID, ITEM, WEIGHT]].merge(
            segments[[c.USER_ID, "demo", "user_country"]], on=c.USER_ID, how="left"
        )
        key = joint_segment(frame["demo"], frame["user_country"])
        cat_of = self.item_category[frame[ITEM].to_numpy()]
        weight = frame[WEIGHT].to_numpy(dtype=np.float64)
        overall = np.bincount(cat_of, weights=weight, minlength=n_cat)
        overall = overall / max(overall.sum(), 1e-9)
        self.tastes = {}
        for value, idx in pd.Series(key).groupby(key).indices.items():
            counts = np.bincount(cat_of[idx], weights=weight[idx], minlength=n_cat)
            self.tastes[str(value)] = (
                (counts + TASTE_PRIOR * overall) / (counts.sum() + TASTE_PRIOR)
            ).astype(np.float32)
        self.tastes[UNKNOWN] = overall.astype(np.float32)
        in_cat = np.bincount(recent_items, weights=recent_w, minlength=n_items) + 1e-3
        totals = np.bincount(self.item_category, weights=in_cat, minlength=n_cat)
        self.within = (in_cat / totals[self.item_category]).astype(np.float32)

    def taste(self, segment: str) -> np.ndarray:
        """Each item's share for a segment: P(category | segment) x P(item | category)."""
        cats = self.tastes.get(segment, self.tastes[UNKNOWN])
        return cats[self.item_category] * self.within

    def grow(self, n_items: int) -> None:
        extra = n_items - len(self.overall)
        if extra <= 0:
            return
        pad = np.zeros(extra, dtype=np.float32)
        self.overall = np.concatenate([self.overall, pad])
        self.total = np.concatenate([self.total, pad])
        self.months = np.hstack([self.months, np.zeros((12, extra), dtype=np.float32)])
        self.item_category = np.concatenate([self.item_category, np.zeros(extra, np.int32)])
        self.within = np.concatenate([self.within, pad])
        for values in self.by.values():
            for key in values:
                values[key] = np.concatenate([values[key], pad])

    def _segment(self, column: str, value: object) -> np.ndarray:
        return self.by.get(column, {}).get(str(value), self.overall)

    def _blend(self, request: pd.Series) -> np.ndarray:
        score = self.overall.copy()
        for column in SEGMENTS:
            score += self._segment(column, request[column])
        score += SEASON_WEIGHT * self.months[month_of(np.array([request[TS]]))[0]]
        score += TASTE_WEIGHT * self.taste(joint_segment_of(request))
        return score

    def propose(self, batch: Batch, exclusions: Exclusions) -> pd.DataFrame:
        n = max(self.config.candidates, self.config.cold_candidates)
        reqs = batch.requests.copy()
        # the only source with anything to say about a request without a past gets more room
        cold = ~reqs[REQ].isin(batch.history[REQ].unique())
        room = np.where(cold, self.config.cold_candidates, self.config.candidates)
        reqs["_month"] = month_of(reqs[TS].to_numpy())
        parts = []
        keys = [*SEGMENTS, "_month"]  # demo and country make the joint segment too
        for _, group in reqs.groupby(keys, sort=False, dropna=False):
            score = exclusions.restrict(self._blend(group.iloc[0]))
            top = np.argsort(-score, kind="stable")[: n * 3]
            top = top[score[top] > 0]
            pairs = pd.DataFrame(
                {
                    REQ: np.repeat(group[REQ].to_numpy(), len(top)),
                    ITEM: np.tile(top, len(group)),
                    "score": np.tile(score[top], len(group)),
                }
            )
            parts.append(pairs)
        if not parts:
            return pd.DataFrame({REQ: [], ITEM: [], "score": []})
        found = exclusions.filter(pd.concat(parts, ignore_index=True))
        found = found.sort_values([REQ, "score"], ascending=[True, False], kind="stable")
        order = found.groupby(REQ, sort=False).cumcount().to_numpy()
        return found[order < room[found[REQ].to_numpy()]]

    def features(self, batch: Batch, pairs: pd.DataFrame) -> pd.DataFrame:
        item = pairs[ITEM].to_numpy()
        reqs = batch.requests.set_index(REQ).loc[pairs[REQ].to_numpy()]
        out = {"pop_overall": self.overall[item], "pop_total": self.total[item]}
        for column in SEGMENTS:
            col = np.zeros(len(pairs), dtype=np.float32)
            values = reqs[column].to_numpy()
            for value in pd.unique(values):
                at = values == value
                col[at] = self._segment(column, value)[item[at]]
            out[f"pop_{column}"] = col
        out["pop_month"] = self.months[month_of(reqs[TS].to_numpy()), item]
        joint = joint_segment(reqs["demo"], reqs[c.COUNTRY]).to_numpy()
        col = np.zeros(len(pairs), dtype=np.float32)
        for value in pd.unique(joint):
            at = joint == value
            col[at] = self.taste(value)[item[at]]
        out["pop_segment_taste"] = col
        return pd.DataFrame(out, index=pairs.index)

    def top(self, request: pd.Series, n: int) -> np.ndarray:
        """The segment's n best items, for a request with nothing else to go on."""
        score = self._blend(request)
        return np.argsort(-score, kind="stable")[:n]

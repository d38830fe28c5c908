"""Popularity by segment and context: what sells now, to people like this, in this season.

Shares of recent, decayed interest per item: overall, per country, per age band and gender,
per device, and per month of the year (over all the data, so last year's season counts).
New users with only demographics get their segment's tastes (``taste``) instead of the global
top list.
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
# the segment's tastes outweigh the plain shares of the blend: for a new user they are the one
# signal (new-user requests of four validation windows: NDCG@10 best from about 10 on)
TASTE_WEIGHT = 10.0
TASTE_PRIOR = 20.0  # users' worth of the parent's shares mixed into a segment's
TASTE_HALF_LIFE_DAYS = 30.0


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
        """P(category | age band, gender, country) x P(item | category): what people like this
        buy, the cold-start list of new users.

        A segment's category shares average its users' own shares (each user counts once: a new
        user resembles the segment's people, not its heaviest clicker), smoothed toward its age
        band and gender and that toward the whole shop (``TASTE_PRIOR`` users' worth), then
        tilted by each category's recent share over its all-time one (season, trends). Within a
        category, interest decays with a month's half-life: long enough to find the items people
        settle on, short enough for launches."""
        cats = np.asarray(
            categories if categories is not None else np.zeros(n_items, dtype=object), dtype=object
        )
        cats = np.where(pd.isna(cats), "", cats).astype(str)
        codes, names = pd.factorize(cats)
        self.item_category = codes.astype(np.int32)
        n_cat = len(names)
        item_cat = self.item_category[events[ITEM].to_numpy()]
        interest = events[[c.USER_ID, WEIGHT]].assign(cat=item_cat)
        per_user = interest.groupby([c.USER_ID, "cat"], sort=False)[WEIGHT].sum().reset_index()
        per_user[WEIGHT] /= per_user.groupby(c.USER_ID)[WEIGHT].transform("sum")
        per_user = per_user.merge(
            segments[[c.USER_ID, "demo", "user_country"]], on=c.USER_ID, how="left"
        )
        cat_of, share = per_user["cat"].to_numpy(), per_user[WEIGHT].to_numpy(dtype=np.float64)
        shop = np.bincount(cat_of, weights=share, minlength=n_cat) / max(share.sum(), 1e-9)

        def smoothed(keys: pd.Series, parent) -> dict[str, np.ndarray]:
            # each user's shares sum to 1: a segment's total is its number of users
            out = {}
            for value, idx in keys.groupby(keys.to_numpy()).indices.items():
                counts = np.bincount(cat_of[idx], weights=share[idx], minlength=n_cat)
                prior = parent(str(value))
                out[str(value)] = (counts + TASTE_PRIOR * prior) / (counts.sum() + TASTE_PRIOR)
            return out

        demo = per_user["demo"].astype(object).where(per_user["demo"].notna(), UNKNOWN)
        by_demo = smoothed(demo.astype(str), lambda _: shop)
        joint = joint_segment(per_user["demo"], per_user["user_country"])
        by_joint = smoothed(joint, lambda key: by_demo.get(key.rsplit("|", 1)[0], shop))
        recent = np.bincount(self.item_category[recent_items], weights=recent_w, minlength=n_cat)
        ever = np.bincount(item_cat, weights=events[WEIGHT].to_numpy(), minlength=n_cat)
        lift = (recent / max(recent.sum(), 1e-9) + 1e-6) / (ever / max(ever.sum(), 1e-9) + 1e-6)
        self.tastes = {}
        for key, value in {**by_demo, **by_joint, UNKNOWN: shop}.items():
            tilted = value * lift
            self.tastes[key] = (tilted / max(tilted.sum(), 1e-12)).astype(np.float32)
        decay = 0.5 ** ((events[TS].max() - events[TS].to_numpy()) / (TASTE_HALF_LIFE_DAYS * DAY))
        in_cat = (
            np.bincount(events[ITEM].to_numpy(), weights=events[WEIGHT] * decay, minlength=n_items)
            + 1e-3
        )
        totals = np.bincount(self.item_category, weights=in_cat, minlength=n_cat)
        self.within = (in_cat / totals[self.item_category]).astype(np.float32)

    def taste(self, segment: str) -> np.ndarray:
        """Each item's share for a segment (``age band|gender|country``; its age band and
        gender when the country is unknown to the model): P(category | segment) x
        P(item | category)."""
        cats = self.tastes.get(segment)
        if cats is None:
            cats = self.tastes.get(segment.rsplit("|", 1)[0], self.tastes[UNKNOWN])
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

"""Popularity by segment and context: what sells now, to people like this, in this season.

Shares of recent, decayed interest per item: overall, per country, per age band and gender,
per device, and per month of the year (over all the data, so last year's season counts).
New users with only a profile get their segment's tastes (``taste``) instead of the global
top list: the categories people of their age band, gender and country buy, tilted by what
their free attributes (``skin_type``, any categorical column of the users table) say, and
within a category the items whose attribute tokens name the user's value
(``skin_type:oily``) when such users prefer them.
"""

import logging

import numpy as np
import pandas as pd

from recommender.config import PopularityConfig
from recommender.state import (
    ATTRIBUTE_PREFIX,
    ITEM,
    NO_PROPOSALS,
    REQ,
    SEGMENTS,
    TS,
    UNKNOWN,
    WEIGHT,
    Batch,
    Exclusions,
    attribute_columns,
    group_positions,
    order_by_request_and_score,
    proposal_frame,
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
# how far a free attribute's category lift moves the demographic segment's tastes (1: as
# naive Bayes would, each attribute independent of the demographics given the category)
ATTRIBUTE_EXPONENT = 1.0
# users' worth of everyone's interest mixed into a value's share of the items that carry
# its token, when learning how much more such users want those items
TOKEN_PRIOR = 20.0


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
    """Month of the year (0 = January) of epoch seconds; numpy's calendar months when every
    instant is finite (20x faster than pandas' datetime accessor, same months)."""
    ts = np.asarray(ts, dtype=np.float64)
    if np.isfinite(ts).all():
        months = np.floor(ts).astype(np.int64).astype("datetime64[s]").astype("datetime64[M]")
        return months.astype(np.int64) % 12
    return pd.to_datetime(ts, unit="s", utc=True).month.to_numpy() - 1


def top_stable(score: np.ndarray, m: int) -> np.ndarray:
    """``np.argsort(-score, kind="stable")[:m]`` without sorting every item: a partition finds
    the m-th best score, the items above it and the first of those equal to it (by position,
    as the stable sort keeps them) are sorted alone."""
    if m >= len(score):
        return np.argsort(-score, kind="stable")
    if m <= 0:
        return np.zeros(0, dtype=np.int64)
    threshold = score[np.argpartition(-score, m - 1)[m - 1]]
    above = np.flatnonzero(score > threshold)
    ties = np.flatnonzero(score == threshold)[: m - len(above)]
    found = np.concatenate([above, ties])
    return found[np.lexsort((found, -score[found]))]


def _tokens(attributes: np.ndarray | None, n_items: int) -> pd.Series:
    """Each item's ``;``-separated attribute tokens, exploded: item row -> token."""
    if attributes is None:
        return pd.Series([], dtype=object)
    text = pd.Series(np.asarray(attributes, dtype=object)[:n_items])
    tokens = text.where(text.notna(), "").astype(str).str.split(c.ATTRIBUTE_SEPARATOR).explode()
    tokens = tokens.str.strip()
    return tokens[tokens != ""]


def _allowed(exclusions, reqs: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Which (request, item) pairs may be shown: ``Exclusions.keep``, or the ``filter`` of any
    object that only filters frames."""
    if hasattr(exclusions, "keep"):
        return exclusions.keep(reqs, items) if len(reqs) else np.zeros(0, dtype=bool)
    kept = exclusions.filter(pd.DataFrame({REQ: reqs, ITEM: items}))
    mask = np.zeros(len(reqs), dtype=bool)
    mask[kept.index.to_numpy()] = True
    return mask


class PopularitySource:
    name = "popularity"

    def __init__(self, config: PopularityConfig) -> None:
        self.config = config
        self.overall = np.zeros(0, dtype=np.float32)
        self.total = np.zeros(0, dtype=np.float32)
        self.by: dict[str, dict[str, np.ndarray]] = {}
        self.months = np.zeros((12, 0), dtype=np.float32)
        self.attributes: list[str] = []
        # per free attribute and value: P(category | value) / P(category)
        self.attribute_lift: dict[str, dict[str, np.ndarray]] = {}
        # per free attribute and value: within-category multiplier of each item
        self.token_boost: dict[str, dict[str, np.ndarray]] = {}

    def fit(
        self,
        events: pd.DataFrame,
        segments: pd.DataFrame,
        n_items: int,
        categories: np.ndarray | None = None,
        attributes: np.ndarray | None = None,
    ) -> None:
        """``events``: an event frame; ``segments``: the user profiles (``user_segments``:
        user_id -> demo, user_country, free attributes); ``categories``: each item's category
        (segment tastes by category); ``attributes``: each item's ``;``-separated tokens
        (a free attribute's value named by an item: ``skin_type:oily``)."""
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
        self.attributes = attribute_columns(segments.columns)
        self._fit_tastes(events, segments, n_items, categories, items, w)
        self._fit_token_boost(events, segments, n_items, attributes)
        month = month_of(events[TS].to_numpy())
        all_items, all_w = events[ITEM].to_numpy(), events[WEIGHT].to_numpy()
        self.months = np.stack(
            [_shares(all_items[month == m], all_w[month == m], n_items) for m in range(12)]
        )
        logger.info(
            "popularity: segments %s, free attributes %s",
            {k: len(v) for k, v in self.by.items()},
            {k: sorted(v) for k, v in self.attribute_lift.items()},
        )

    def _fit_tastes(self, events, segments, n_items, categories, recent_items, recent_w) -> None:
        """P(category | age band, gender, country) x P(item | category): what people like this
        buy, the cold-start list of new users.

        A segment's category shares average its users' own shares (each user counts once: a new
        user resembles the segment's people, not its heaviest clicker), smoothed toward its age
        band and gender and that toward the whole shop (``TASTE_PRIOR`` users' worth), then
        tilted by each category's recent share over its all-time one (season, trends). Within a
        category, interest decays with a month's half-life: long enough to find the items people
        settle on, short enough for launches.

        Each free attribute's values get their category shares the same way (smoothed toward
        the shop's); their ratio to the shop's is the value's lift, multiplied into a user's
        segment tastes (``taste``)."""
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
            segments[[c.USER_ID, "demo", "user_country", *self.attributes]],
            on=c.USER_ID,
            how="left",
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
        self.attribute_lift = {}
        for column in self.attributes:
            values = per_user[column].astype(object).where(per_user[column].notna(), UNKNOWN)
            by_value = smoothed(values.astype(str), lambda _: shop)
            self.attribute_lift[column] = {
                value: (shares / np.maximum(shop, 1e-12)).astype(np.float32)
                for value, shares in by_value.items()
                if value != UNKNOWN  # users the profile table does not hold: no lift
            }
        decay = 0.5 ** ((events[TS].max() - events[TS].to_numpy()) / (TASTE_HALF_LIFE_DAYS * DAY))
        in_cat = (
            np.bincount(events[ITEM].to_numpy(), weights=events[WEIGHT] * decay, minlength=n_items)
            + 1e-3
        )
        totals = np.bincount(self.item_category, weights=in_cat, minlength=n_cat)
        self.within = (in_cat / totals[self.item_category]).astype(np.float32)

    def _fit_token_boost(self, events, segments, n_items, attributes) -> None:
        """Within a category, how much more users with a free attribute's value want the items
        whose attribute tokens name it (``skin_type:oily`` for ``skin_type = oily``), learned
        from the events, and each item's multiplier (``token_boost``; 1 for the others).

        The boost is the value's users' share of interest, among the categories holding such
        items, that goes to them, over everyone's share (``TOKEN_PRIOR`` users' worth of
        everyone's mixed in); a product launched later carries its tokens as well, so a new
        user is matched to new products too. Each category's multipliers are then scaled to
        keep its total: the category lift says how much the value wants the category."""
        self.token_boost = {}
        tokens = _tokens(attributes, n_items)
        if not len(tokens) or not self.attributes:
            return
        item_of_event = events[ITEM].to_numpy()
        weight = events[WEIGHT].to_numpy(dtype=np.float64)
        profile = segments.set_index(c.USER_ID)
        totals = np.bincount(self.item_category, weights=self.within)
        for column in self.attributes:
            name = column[len(ATTRIBUTE_PREFIX) :]
            named = tokens[tokens.str.startswith(name + ":")]
            if not len(named):
                continue
            user_value = events[c.USER_ID].map(profile[column]).to_numpy(dtype=object)
            boosts = {}
            for value, rows in named.groupby(named.str[len(name) + 1 :]).groups.items():
                carries = np.zeros(n_items, dtype=bool)
                carries[np.asarray(rows, dtype=np.int64)] = True
                in_scope = np.isin(self.item_category, np.unique(self.item_category[carries]))
                scope = in_scope[item_of_event]
                hit = carries[item_of_event]
                mine = user_value == value
                everyone = weight[scope & hit].sum() / max(weight[scope].sum(), 1e-9)
                share = (weight[mine & scope & hit].sum() + TOKEN_PRIOR * everyone) / (
                    weight[mine & scope].sum() + TOKEN_PRIOR
                )
                boost = np.where(carries, share / max(everyone, 1e-9), 1.0)
                # keep each category's total (the lift already weighs the category)
                boosted = np.bincount(self.item_category, weights=self.within * boost)
                scale = totals / np.maximum(boosted, 1e-12)
                boosts[str(value)] = (boost * scale[self.item_category]).astype(np.float32)
                logger.info("popularity: items naming %s:%s, boost %.2f", name, value, boost.max())
            self.token_boost[column] = boosts

    def taste(self, segment: str, attributes: dict[str, str] | None = None) -> np.ndarray:
        """Each item's share for a segment (``age band|gender|country``; its age band and
        gender when the country is unknown to the model) and a user's free attributes
        (column -> value): P(category | segment) x the values' lifts, x P(item | category)
        x the values' token boosts."""
        cats = self.tastes.get(segment)
        if cats is None:
            cats = self.tastes.get(segment.rsplit("|", 1)[0], self.tastes[UNKNOWN])
        within = self.within
        for column, value in (attributes or {}).items():
            lift = self.attribute_lift.get(column, {}).get(str(value))
            if lift is not None:
                cats = cats * lift**ATTRIBUTE_EXPONENT
            boost = self.token_boost.get(column, {}).get(str(value))
            if boost is not None:
                within = within * boost
        if attributes:
            cats = cats / max(float(cats.sum()), 1e-12)
        return cats[self.item_category] * within

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
        for boosts in getattr(self, "token_boost", {}).values():
            for key in boosts:
                boosts[key] = np.concatenate([boosts[key], np.ones(extra, dtype=np.float32)])

    def _segment(self, column: str, value: object) -> np.ndarray:
        return self.by.get(column, {}).get(str(value), self.overall)

    def _attributes_of(self, request) -> dict[str, str]:
        """A request's free attributes (those the model learned), ``?`` when not known."""
        return {
            column: UNKNOWN if pd.isna(request[column]) else str(request[column])
            for column in getattr(self, "attributes", [])
            if column in request
        }

    def _attribute_values(self, requests: pd.DataFrame) -> dict[str, np.ndarray]:
        """The requests' free attributes the model learned, as columns, ``?`` when missing
        (a user the users table does not hold)."""
        out = {}
        for column in getattr(self, "attributes", []):
            if column in requests:
                values = requests[column].to_numpy(dtype=object)
                out[column] = np.where(pd.isna(values), UNKNOWN, values)
        return out

    def _taste(self, segment: str, attributes: dict[str, str], batch: Batch | None) -> np.ndarray:
        """``taste``, computed once per batch that reuses what it derives (proposing and then
        describing a request's candidates both need it)."""
        if batch is None:
            return self.taste(segment, attributes)
        key = ("taste", segment, *attributes.items())
        return batch.remember(self, key, lambda: self.taste(segment, attributes))

    def _blend(self, request, batch: Batch | None = None) -> np.ndarray:
        """One request's score of every item (``request``: a row or a dict of its values)."""
        score = self.overall.copy()
        for column in SEGMENTS:
            score += self._segment(column, request[column])
        score += SEASON_WEIGHT * self.months[month_of(np.array([request[TS]]))[0]]
        segment = f"{request['demo']}|{request[c.COUNTRY]}"
        score += TASTE_WEIGHT * self._taste(segment, self._attributes_of(request), batch)
        return score

    def _groups(self, requests: pd.DataFrame) -> dict[tuple, list[int]]:
        """Requests that get the same scores: same segments, free attributes and month (in
        order of first appearance; a dict, as a groupby costs more than one request's work)."""
        columns = [requests[k].to_numpy(dtype=object) for k in SEGMENTS]
        columns += self._attribute_values(requests).values()
        columns.append(month_of(requests[TS].to_numpy()))
        groups: dict[tuple, list[int]] = {}
        for row, key in enumerate(zip(*columns, strict=True)):
            groups.setdefault(key, []).append(row)
        return groups

    def proposals(self, batch: Batch, exclusions: Exclusions) -> tuple[np.ndarray, ...]:
        """``propose`` as arrays (requests, items, scores)."""
        n = max(self.config.candidates, self.config.cold_candidates)
        reqs = batch.requests
        # the only source with anything to say about a request without a past gets more room
        has_past = np.zeros(len(reqs), dtype=bool)
        has_past[batch.history[REQ].to_numpy()] = True
        room = np.where(has_past, self.config.candidates, self.config.cold_candidates)
        req_ids = reqs[REQ].to_numpy()
        values = {k: reqs[k].to_numpy(dtype=object) for k in (*SEGMENTS, TS)}
        values.update(self._attribute_values(reqs))
        parts_req, parts_item, parts_score = [], [], []
        for rows in self._groups(reqs).values():
            first = {k: values[k][rows[0]] for k in values}
            score = exclusions.restrict(self._blend(first, batch))
            top = top_stable(score, n * 3)
            top = top[score[top] > 0]
            parts_req.append(np.repeat(req_ids[rows], len(top)))
            parts_item.append(np.tile(top, len(rows)))
            parts_score.append(np.tile(score[top], len(rows)))
        if not parts_req:
            return NO_PROPOSALS
        found_req = np.concatenate(parts_req).astype(np.int64)
        found_item = np.concatenate(parts_item).astype(np.int64)
        found_score = np.concatenate(parts_score)
        keep = _allowed(exclusions, found_req, found_item)
        found_req, found_item, found_score = found_req[keep], found_item[keep], found_score[keep]
        order = order_by_request_and_score(found_req, found_score)
        found_req, found_item, found_score = found_req[order], found_item[order], found_score[order]
        within = group_positions(found_req)[0] < room[found_req]
        return found_req[within], found_item[within], found_score[within]

    def propose(self, batch: Batch, exclusions: Exclusions) -> pd.DataFrame:
        return proposal_frame(*self.proposals(batch, exclusions))

    def feature_columns(self, batch: Batch, pairs: pd.DataFrame) -> dict[str, np.ndarray]:
        item = pairs[ITEM].to_numpy()
        at = pairs[REQ].to_numpy()
        reqs = batch.requests
        position = np.empty(int(reqs[REQ].max()) + 1 if len(reqs) else 0, dtype=np.int64)
        position[reqs[REQ].to_numpy()] = np.arange(len(reqs))
        row = position[at] if len(at) else at
        out = {"pop_overall": self.overall[item], "pop_total": self.total[item]}
        for column in SEGMENTS:
            col = np.zeros(len(pairs), dtype=np.float32)
            values = reqs[column].to_numpy(dtype=object)[row]
            for value in pd.unique(values):
                where = values == value
                col[where] = self._segment(column, value)[item[where]]
            out[f"pop_{column}"] = col
        out["pop_month"] = self.months[month_of(reqs[TS].to_numpy()[row]), item]
        col = np.zeros(len(pairs), dtype=np.float32)
        values = {k: reqs[k].to_numpy(dtype=object) for k in SEGMENTS}
        attributes = self._attribute_values(reqs)
        values.update(attributes)
        taste_of_req = np.zeros(len(reqs), dtype=np.int64)
        tastes = {}
        for rows in self._groups(reqs).values():
            first = {k: values[k][rows[0]] for k in values}
            key = (f"{first['demo']}|{first[c.COUNTRY]}", *(first[a] for a in attributes))
            if key not in tastes:
                tastes[key] = len(tastes), self._taste(key[0], self._attributes_of(first), batch)
            taste_of_req[rows] = tastes[key][0]
        per_pair = taste_of_req[row] if len(at) else at
        for index, values in tastes.values():
            where = per_pair == index
            col[where] = values[item[where]]
        out["pop_segment_taste"] = col
        return out

    def features(self, batch: Batch, pairs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.feature_columns(batch, pairs), index=pairs.index)

    def top(self, request: pd.Series, n: int) -> np.ndarray:
        """The segment's n best items, for a request with nothing else to go on."""
        return top_stable(self._blend(request), n)

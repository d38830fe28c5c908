"""The answering path gives the same lists for one request as for thousands, and the same as
the straightforward pandas implementation it replaced.

``Recommender.batch`` and ``recommend_batch`` serve a single HTTP request and the evaluation
of thousands alike, so they are written with numpy rather than pandas merges and group-bys on
tiny frames. The pandas implementation they replaced is kept below, in this test only, as the
reference: on a model fitted on the tiny generated shop (with a ranker fitted on random
labels), every stage must give exactly what the reference gives (the same batch frames, the
same candidates in the same order, the same features with the same dtypes, the same scores),
and a request answered alone must get exactly its rows of a batch of many.

Where the old implementation answered a request alone otherwise than within a batch, the
batch's answer is the reference and the one-by-one answer was changed to it: a user asked
twice in a batch no longer sees the other request's session; co-visitation ranks ties in the
order scipy adds the score matrices of a batch (``ref_sum``), not in the order of its
shortcut for matrices whose rows are all sorted (a lone request's often are). One
difference is kept for speed: ALS and content score a lone request by a matrix-vector
product, which BLAS rounds otherwise than a block in the last bits (``state.block_scores``:
equal to float32 rounding; a near-tie may be ordered otherwise, which this tiny shop does not
have).
"""

from dataclasses import dataclass
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix

from features import names as n
from features.context import CONTEXT_FEATURES, MOBILE_DEVICES, context_features, season_of
from features.online import OnlineRead
from features.session import SEPARATOR
from recommender.catalog import Catalog
from recommender.config import AlsConfig, ModelConfig, RankerConfig
from recommender.features_source import NoFeatures, OnlineFeatures, with_context
from recommender.model import Recommender
from recommender.ranker import Ranker
from recommender.segments import batch_segments
from recommender.state import (
    ITEM,
    KIND,
    PURCHASED,
    REQ,
    SEGMENTS,
    TS,
    UNKNOWN,
    WEIGHT,
    Batch,
    age_band,
    batch_from_events,
    demo_segment,
    event_frame,
    proposal_frame,
    top_n_arrays,
    user_segments,
)
from recommender.stored import ranker_inputs
from recsys import columns as c
from shop.generate import generate_shop
from training.evaluate import ranker_and_sources

pytestmark = pytest.mark.unit

DAY = 86_400.0
NOT_PROPOSED = 1_000.0
CONFIG = ModelConfig(als=AlsConfig(factors=8, iterations=3), candidates=40)


# =====================================================================================
# The reference: the pandas implementation as it was before the numpy rewrite.
# =====================================================================================
def ref_attach_segments(reqs: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    merged = reqs.drop(columns=["demo"], errors="ignore").merge(segments, on=c.USER_ID, how="left")
    country = merged[c.COUNTRY].astype(object)
    merged[c.COUNTRY] = country.where(country.notna(), merged["user_country"])
    merged = merged.drop(columns=["user_country"])
    for column in SEGMENTS:
        merged[column] = merged[column].astype(object).where(merged[column].notna(), UNKNOWN)
    return merged.sort_values(REQ).reset_index(drop=True)


def ref_batch_from_events(requests, events, users, user_vocab, history_items) -> Batch:
    reqs = requests.reset_index(drop=True).copy()
    reqs[REQ] = np.arange(len(reqs))
    reqs["user"] = user_vocab.rows(reqs[c.USER_ID].astype(str))
    past = events.merge(reqs[[REQ, c.USER_ID, TS]].rename(columns={TS: "_at"}), on=c.USER_ID)
    past = past[past[TS] < past["_at"]]
    past = past.sort_values([REQ, TS], kind="stable")
    bought = past.loc[past[KIND] == PURCHASED, [REQ, ITEM]].drop_duplicates()
    history = past.groupby(REQ, sort=False).tail(history_items)[[REQ, ITEM, TS, KIND, WEIGHT]]
    last = past.groupby(REQ).tail(1).set_index(REQ)
    for column in (c.DEVICE, c.COUNTRY):
        given = reqs[column] if column in reqs else pd.Series(None, index=reqs.index)
        known = reqs[REQ].map(last[column]) if column in last else given
        reqs[column] = given.astype(object).where(given.notna(), known)
    reqs = ref_attach_segments(reqs, user_segments(users))
    touched = past[[REQ, ITEM]].drop_duplicates().reset_index(drop=True)
    return Batch(reqs, history.reset_index(drop=True), bought.reset_index(drop=True), touched)


def ref_model_batch(model: Recommender, requests: pd.DataFrame) -> Batch:
    reqs = requests.reset_index(drop=True).copy()
    reqs[c.USER_ID] = reqs[c.USER_ID].astype(str)
    if TS not in reqs:
        reqs[TS] = model.data_end + 1.0
    users = pd.unique(reqs[c.USER_ID].to_numpy(dtype=object))
    past = model.past[model.past[c.USER_ID].isin(users)]
    if "session_item_ids" in reqs:
        rows = []
        for uid, ts, items in zip(reqs[c.USER_ID], reqs[TS], reqs["session_item_ids"], strict=True):
            items = list(items) if items is not None else []
            for i, item in enumerate(items):
                rows.append((uid, item, float(ts) - (len(items) - i) * model.click_seconds))
        if rows:
            extra = pd.DataFrame(rows, columns=[c.USER_ID, c.ITEM_ID, TS])
            extra[ITEM] = model.catalog.items.rows(extra[c.ITEM_ID])
            extra = extra[extra[ITEM] >= 0].drop(columns=c.ITEM_ID)
            extra[KIND], extra["weight"] = 0, model.config.events.view
            past = pd.concat([past, extra], ignore_index=True)
            past = past.sort_values([c.USER_ID, TS], kind="stable")
        reqs = reqs.drop(columns="session_item_ids")
    built = ref_batch_from_events(
        reqs, past, pd.DataFrame({c.USER_ID: []}), model.users, model.config.history_items
    )
    requests = ref_attach_segments(
        built.requests.drop(columns=["demo"], errors="ignore"),
        model.segments[model.segments[c.USER_ID].isin(users)],
    )
    if c.AGE in reqs or c.GENDER in reqs:
        given = demo_segment(
            reqs.get(c.AGE, pd.Series(np.nan, index=reqs.index)),
            reqs.get(c.GENDER, pd.Series(None, index=reqs.index)),
        ).to_numpy()
        unknown = (requests["demo"] == UNKNOWN).to_numpy()
        requests.loc[unknown, "demo"] = given[requests[REQ].to_numpy()][unknown]
    known = requests[[REQ, c.USER_ID]].merge(model.touched, on=c.USER_ID)
    touched = pd.concat([known[[REQ, ITEM]], built.touched]).drop_duplicates()
    return Batch(requests, built.history, built.bought, touched.reset_index(drop=True))


def ref_subset(batch: Batch, reqs: np.ndarray) -> Batch:
    mapping = pd.Series(np.arange(len(reqs)), index=reqs)

    def pick(frame: pd.DataFrame) -> pd.DataFrame:
        part = frame[frame[REQ].isin(reqs)].copy()
        part[REQ] = mapping.loc[part[REQ].to_numpy()].to_numpy()
        return part.reset_index(drop=True)

    touched = pick(batch.touched) if batch.touched is not None else None
    return Batch(pick(batch.requests), pick(batch.history), pick(batch.bought), touched)


class RefExclusions:
    def __init__(self, batch, catalog, allow_rebuy, allowed=None) -> None:
        self.ts = batch.requests[TS].to_numpy(dtype=np.float64)
        self.created = catalog.created
        self.bought = batch.bought if not allow_rebuy else batch.bought.iloc[0:0]
        self.allowed = allowed

    def restrict(self, scores):
        if self.allowed is None:
            return scores
        n_items = scores.shape[-1]
        keep = np.zeros(n_items, dtype=bool)
        upto = min(n_items, len(self.allowed))
        keep[:upto] = self.allowed[:upto]
        if isinstance(scores, np.ndarray):
            return np.where(keep, scores, 0)
        from scipy.sparse import diags

        out = (scores @ diags(keep.astype(scores.dtype))).tocsr()
        out.eliminate_zeros()
        return out

    def mask_dense(self, scores, offset=0) -> None:
        n_items = scores.shape[1]
        ts = self.ts[offset : offset + len(scores)]
        created = self.created[:n_items]
        scores[created[None, :] > ts[:, None]] = -np.inf
        if self.allowed is not None:
            scores[:, ~self.allowed[:n_items]] = -np.inf
        rows = self.bought[REQ].to_numpy() - offset
        ok = (rows >= 0) & (rows < len(scores))
        items = self.bought[ITEM].to_numpy()[ok]
        keep = items < n_items
        scores[rows[ok][keep], items[keep]] = -np.inf

    def filter(self, pairs):
        if len(pairs) == 0:
            return pairs
        launched = self.created[pairs[ITEM].to_numpy()] <= self.ts[pairs[REQ].to_numpy()]
        pairs = pairs[launched]
        if self.allowed is not None:
            pairs = pairs[self.allowed[pairs[ITEM].to_numpy()]]
        if len(self.bought):
            key = pairs[REQ].to_numpy().astype(np.int64) * (1 << 32) + pairs[ITEM].to_numpy()
            banned = (
                self.bought[REQ].to_numpy().astype(np.int64) * (1 << 32)
                + self.bought[ITEM].to_numpy()
            )
            pairs = pairs[~np.isin(key, banned)]
        return pairs


def ref_top_n(scores, n, offset=0):
    n = min(n, scores.shape[1])
    if n <= 0 or scores.size == 0:
        return pd.DataFrame({REQ: [], ITEM: [], "score": []})
    # each row's n best cells, best first, equal scores by item
    part = np.stack([np.lexsort((np.arange(len(row)), -row))[:n] for row in scores])
    vals = np.take_along_axis(scores, part, axis=1)
    rows = np.repeat(np.arange(len(scores)) + offset, n)
    frame = pd.DataFrame({REQ: rows, ITEM: part.ravel(), "score": vals.ravel()})
    return frame[np.isfinite(frame["score"].to_numpy())]


def ref_top_n_sparse(matrix, n, offset=0):
    matrix = matrix.tocsr()
    reqs, items, vals = [], [], []
    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    for row in range(matrix.shape[0]):
        lo, hi = indptr[row], indptr[row + 1]
        if hi == lo:
            continue
        d = data[lo:hi]
        pick = np.argpartition(-d, n - 1)[:n] if hi - lo > n else np.arange(hi - lo)
        reqs.append(np.full(len(pick), row + offset))
        items.append(indices[lo:hi][pick])
        vals.append(d[pick])
    if not reqs:
        return pd.DataFrame({REQ: [], ITEM: [], "score": []})
    return pd.DataFrame(
        {REQ: np.concatenate(reqs), ITEM: np.concatenate(items), "score": np.concatenate(vals)}
    )


def ref_seed_matrix(batch, n_items, recent, decay, by_weight=True):
    hist = batch.history
    last = hist.drop_duplicates([REQ, ITEM], keep="last")
    last = last.groupby(REQ, sort=False).tail(recent)
    age = last.groupby(REQ, sort=False).cumcount(ascending=False).to_numpy()
    w = decay ** age.astype(np.float64)
    if by_weight:
        w = w * np.sqrt(last[WEIGHT].to_numpy(dtype=np.float64))
    return csr_matrix(
        (w, (last[REQ].to_numpy(), last[ITEM].to_numpy())), shape=(len(batch), n_items)
    )


def ref_last_item_matrix(batch, n_items):
    last = batch.history.groupby(REQ, sort=False).tail(1)
    return csr_matrix(
        (np.ones(len(last)), (last[REQ].to_numpy(), last[ITEM].to_numpy())),
        shape=(len(batch), n_items),
    )


def ref_gather(matrix, pairs):
    if len(pairs) == 0:
        return np.zeros(0)
    return np.asarray(matrix[pairs[REQ].to_numpy(), pairs[ITEM].to_numpy()]).ravel()


# ------------------------------------------------------------------------ sources
def ref_als_vectors(src, batch):
    users = batch.requests["user"].to_numpy()
    vectors = np.zeros((len(batch), src.item_factors.shape[1]), dtype=np.float32)
    known = (users >= 0) & (users < len(src.user_factors))
    vectors[known] = src.user_factors[users[known]]
    unknown = np.flatnonzero(~known)
    if len(unknown):
        hist = batch.history[batch.history[REQ].isin(unknown)]
        for req, rows in hist.groupby(REQ, sort=False):
            items, weights = rows[ITEM].to_numpy(), rows[WEIGHT].to_numpy()
            y = src.item_factors[items].astype(np.float64)
            conf = src.config.alpha * weights.astype(np.float64)
            a = src._gram + (y.T * conf) @ y + src.config.regularization * np.eye(y.shape[1])
            b = y.T @ (1.0 + conf)
            vectors[req] = np.linalg.solve(a, b).astype(np.float32)
    return vectors


def ref_als_propose(src, batch, exclusions):
    n = src.config.candidates
    vectors = ref_als_vectors(src, batch)
    has = np.abs(vectors).sum(axis=1) > 0
    parts = []
    for start in range(0, len(batch), 1024):
        block = vectors[start : start + 1024] @ src.item_factors.T
        block[~has[start : start + 1024]] = -np.inf
        exclusions.mask_dense(block, start)
        parts.append(ref_top_n(block, n, start))
    return pd.concat(parts, ignore_index=True) if parts else ref_top_n(np.zeros((0, 0)), 0)


def ref_als_features(src, batch, pairs):
    vectors = ref_als_vectors(src, batch)
    u = vectors[pairs[REQ].to_numpy()]
    v = src.item_factors[pairs[ITEM].to_numpy()]
    return pd.DataFrame({"als_score": np.einsum("ij,ij->i", u, v)}, index=pairs.index)


def ref_content_profiles(src, batch):
    seeds = ref_seed_matrix(batch, len(src.embeddings), 20, 0.8)
    prof = np.asarray(seeds @ src.embeddings, dtype=np.float32)
    return prof / (np.linalg.norm(prof, axis=1, keepdims=True) + 1e-9)


def ref_content_propose(src, batch, exclusions):
    cfg = src.config
    prof = ref_content_profiles(src, batch)
    has = np.abs(prof).sum(axis=1) > 0
    created = exclusions.created[: len(src.embeddings)]
    parts = []
    for start in range(0, len(batch), 1024):
        # equal embeddings scored once, so they tie exactly (as in ContentSource)
        unique, inverse = np.unique(src.embeddings, axis=0, return_inverse=True)
        block = (prof[start : start + 1024] @ unique.T)[:, inverse.reshape(-1)]
        block[~has[start : start + 1024]] = -np.inf
        exclusions.mask_dense(block, start)
        parts.append(ref_top_n(block, cfg.candidates, start))
        ts = exclusions.ts[start : start + len(block)]
        old = created[None, :] < (ts[:, None] - cfg.new_days * DAY)
        block[old] = -np.inf
        parts.append(ref_top_n(block, cfg.new_candidates, start))
    found = pd.concat(parts, ignore_index=True)
    return found.drop_duplicates([REQ, ITEM])


def ref_content_features(src, batch, pairs):
    prof = ref_content_profiles(src, batch)
    items = src.embeddings[pairs[ITEM].to_numpy()]
    last = batch.history.groupby(REQ, sort=False).tail(1).set_index(REQ)[ITEM]
    last_item = pairs[REQ].map(last)
    known = last_item.notna().to_numpy()
    sim_last = np.full(len(pairs), np.nan, dtype=np.float32)
    if known.any():
        lv = src.embeddings[last_item[known].astype(int).to_numpy()]
        sim_last[known] = np.einsum("ij,ij->i", lv, items[known])
    return pd.DataFrame(
        {
            "content_score": np.einsum("ij,ij->i", prof[pairs[REQ].to_numpy()], items),
            "content_last": sim_last,
        },
        index=pairs.index,
    )


def ref_covisit_scores(src, batch):
    cfg = src.config
    n_items = src.matrices["follow"].shape[0]
    seeds = ref_seed_matrix(batch, n_items, cfg.recent_items, cfg.decay)
    last = ref_last_item_matrix(batch, n_items)
    out = {name: (seeds @ m).tocsr() for name, m in src.matrices.items()}
    out["follow_last"] = (last @ src.matrices["follow"]).tocsr()
    return out


def ref_sum(parts):
    """scipy's ``a + b + c + d`` as it adds rows within a batch. scipy merges two matrices
    whose every row is sorted otherwise than it adds any other (the order of a row's values
    differs, which decides between equal scores): a request alone, whose few rows may all be
    sorted, would rank ties otherwise than within a batch. A row that is not sorted, stacked
    under each operand and dropped after, keeps every request on the batch's way."""
    from scipy.sparse import vstack

    n_items = parts[0].shape[1]
    unsorted = csr_matrix((np.ones(2), np.array([1, 0]), np.array([0, 2])), shape=(1, n_items))
    stacked = [vstack([p, unsorted], format="csr") for p in parts]
    total = stacked[0]
    for p in stacked[1:]:
        total = total + p
    return total[: parts[0].shape[0]]


def ref_covisit_propose(src, batch, exclusions):
    scores = ref_covisit_scores(src, batch)
    blend = ref_sum([scores[name] for name in ("follow", "session", "knn", "follow_last")])
    blend = exclusions.restrict(blend)
    found = ref_top_n_sparse(blend, src.config.candidates * 2)
    found = exclusions.filter(found)
    found = found.sort_values(["req", "score"], ascending=[True, False], kind="stable")
    return found.groupby("req", sort=False).head(src.config.candidates)


def ref_covisit_features(src, batch, pairs):
    scores = ref_covisit_scores(src, batch)
    return pd.DataFrame(
        {f"covisit_{name}": ref_gather(m, pairs) for name, m in scores.items()},
        index=pairs.index,
    )


def ref_sknn_scores(src, batch):
    n_items = src.voting.shape[1]
    last = batch.history.drop_duplicates([REQ, ITEM], keep="last")
    last = last.groupby(REQ, sort=False).tail(src.config.recent_items)
    size = last.groupby(REQ, sort=False)[ITEM].transform("size").to_numpy()
    w = (last.groupby(REQ, sort=False).cumcount().to_numpy() + 1) / size
    query = csr_matrix(
        (w, (last[REQ].to_numpy(), last[ITEM].to_numpy())), shape=(len(batch), n_items)
    )
    similar = (query @ src.by_item).tocsr()
    near = ref_top_n_sparse(similar, src.config.neighbours)
    near = csr_matrix(
        (near["score"].to_numpy(), (near[REQ].to_numpy(), near[ITEM].to_numpy())),
        shape=similar.shape,
    )
    return (near @ src.voting).tocsr()  # (the sessions' items, times their IDF)


def ref_sknn_propose(src, batch, exclusions):
    scores = exclusions.restrict(ref_sknn_scores(src, batch))
    found = ref_top_n_sparse(scores, src.config.candidates * 2)
    found = exclusions.filter(found[found["score"] > 0])
    found = found.sort_values(["req", "score"], ascending=[True, False], kind="stable")
    return found.groupby("req", sort=False).head(src.config.candidates)


def ref_sknn_features(src, batch, pairs):
    return pd.DataFrame(
        {"sknn_score": ref_gather(ref_sknn_scores(src, batch), pairs)}, index=pairs.index
    )


def ref_repeat_per_pair(src, batch):
    hist = batch.history
    at = batch.requests.set_index(REQ)[TS]
    h = hist.assign(
        age=(hist[REQ].map(at).to_numpy() - hist[TS].to_numpy()) / DAY,
        views=(hist[KIND] == 0).astype(np.float32),
        carts=(hist[KIND] == 1).astype(np.float32),
        buys=(hist[KIND] == 2).astype(np.float32),
    )
    h["recency"] = h[WEIGHT] * 0.5 ** (h["age"] / 14.0)
    h["steps"] = (h.groupby(REQ)[ITEM].transform("size") - h.groupby(REQ).cumcount() - 1).astype(
        np.float64
    )
    agg = h.groupby([REQ, ITEM], sort=False).agg(
        user_item_views=("views", "sum"),
        user_item_carts=("carts", "sum"),
        user_item_buys=("buys", "sum"),
        user_item_days=("age", "min"),
        user_item_steps_back=("steps", "min"),
        score=("recency", "sum"),
    )
    return agg.reset_index()


def ref_repeat_propose(src, batch, exclusions):
    found = exclusions.filter(ref_repeat_per_pair(src, batch))
    found = found.sort_values([REQ, "score"], ascending=[True, False], kind="stable")
    return found.groupby(REQ, sort=False).head(src.config.candidates)[[REQ, ITEM, "score"]]


def ref_repeat_features(src, batch, pairs):
    per = ref_repeat_per_pair(src, batch).drop(columns="score")
    out = pairs[[REQ, ITEM]].merge(per, on=[REQ, ITEM], how="left")
    bought = batch.bought.assign(ever_bought=1.0)
    out = out.merge(bought, on=[REQ, ITEM], how="left")
    cols = ["user_item_views", "user_item_carts", "user_item_buys", "ever_bought"]
    out[cols] = out[cols].fillna(0.0)
    interval = src.interval[pairs[ITEM].to_numpy()]
    out["rebuy_interval_days"] = interval
    out["rebuy_due"] = out["user_item_days"].to_numpy() / np.where(interval > 0, interval, np.nan)
    out.index = pairs.index
    return out.drop(columns=[REQ, ITEM])


REF_PROPOSE = {
    "als": ref_als_propose,
    "content": ref_content_propose,
    "covisit": ref_covisit_propose,
    "sknn": ref_sknn_propose,
    "repeat": ref_repeat_propose,
    "popularity": lambda src, batch, ex: src.propose(batch, ex),
}
REF_FEATURES = {
    "als": ref_als_features,
    "content": ref_content_features,
    "covisit": ref_covisit_features,
    "sknn": ref_sknn_features,
    "repeat": ref_repeat_features,
    "popularity": lambda src, batch, pairs: src.features(batch, pairs),
}


def ref_generate(sources, batch, exclusions, limit):
    ranked = []
    for source in sources:
        found = REF_PROPOSE[source.name](source, batch, exclusions)
        if len(found) == 0:
            continue
        found = found.sort_values([REQ, "score"], ascending=[True, False], kind="stable")
        found = found.assign(rank=found.groupby(REQ, sort=False).cumcount() + 1.0)
        ranked.append(
            found[[REQ, ITEM, "rank"]]
            .astype({REQ: np.int64, ITEM: np.int64})
            .rename(columns={"rank": f"{source.name}_rank"})
        )
    if not ranked:
        return pd.DataFrame(
            {REQ: pd.Series([], dtype=np.int64), ITEM: pd.Series([], dtype=np.int64)}
        )
    merged = ranked[0]
    for part in ranked[1:]:
        merged = merged.merge(part, on=[REQ, ITEM], how="outer")
    rank_cols = [f"{s.name}_rank" for s in sources]
    for col in rank_cols:
        if col not in merged:
            merged[col] = np.nan
    merged["n_sources"] = merged[rank_cols].notna().sum(axis=1).astype(np.float32)
    merged[rank_cols] = merged[rank_cols].fillna(NOT_PROPOSED)
    merged["best_rank"] = merged[rank_cols].min(axis=1)
    merged = merged.sort_values([REQ, "best_rank", "n_sources"], ascending=[True, True, False])
    merged = merged.groupby(REQ, sort=False).head(limit).drop(columns="best_rank")
    return merged.reset_index(drop=True)


def ref_candidates(model, batch, sources=None, limit=None, allowed=None):
    exclusions = RefExclusions(batch, model.catalog, model.allow_rebuy, allowed)
    return ref_generate(
        sources or model.sources, batch, exclusions, limit or model.config.candidates
    )


# ------------------------------------------------------------------------ stored features
def ref_context_features(inputs: pd.DataFrame) -> pd.DataFrame:
    ts = pd.to_numeric(inputs[n.REQUEST_TS], errors="coerce").astype("float64")
    when = pd.to_datetime(ts, unit="s", utc=True)
    out = pd.DataFrame(index=inputs.index)
    out["hour"] = when.dt.hour.fillna(0).astype("int64")
    out["weekday"] = when.dt.weekday.fillna(0).astype("int64")
    out["month"] = when.dt.month.fillna(1).astype("int64")
    out["season"] = season_of(out["month"])
    out["is_weekend"] = (out["weekday"] >= 5).astype("int64")
    device = inputs[n.REQUEST_DEVICE].astype("string").str.lower()
    out["is_mobile"] = device.isin(MOBILE_DEVICES).fillna(False).astype("int64")

    def column(name: str) -> pd.Series:
        if name not in inputs:
            return pd.Series(np.nan, index=inputs.index)
        return pd.to_numeric(inputs[name], errors="coerce").astype("float64")

    mean_price = column("mean_price")
    out["price_vs_user_mean"] = column("price") / mean_price.where(mean_price > 0)
    out["product_age_days"] = (ts - column("created_epoch")) / DAY
    out["days_since_last_event"] = (ts - column("last_event_epoch")) / DAY
    return out[list(CONTEXT_FEATURES)]


def ref_request_frame(batch, pairs, catalog):
    cats = catalog.facts[c.CATEGORY].astype(object)
    cats = cats.where(cats.notna(), "").to_numpy()
    reqs = batch.requests.set_index(REQ)
    at = reqs[TS].to_numpy(dtype=np.float64)[pairs[REQ].to_numpy()]
    device = reqs[c.DEVICE].astype(object).to_numpy()[pairs[REQ].to_numpy()]
    return pd.DataFrame(
        {
            c.USER_ID: reqs[c.USER_ID].astype(str).to_numpy()[pairs[REQ].to_numpy()],
            c.ITEM_ID: catalog.items.ids[pairs[ITEM].to_numpy()],
            c.CATEGORY: cats[pairs[ITEM].to_numpy()],
            n.REQUEST_TS: at.astype(np.int64),
            n.REQUEST_DEVICE: np.where(device == "?", "unknown", device).astype(str),
        },
        index=pairs.index,
    )


def ref_with_context(frame):
    inputs = pd.DataFrame(
        {
            n.REQUEST_TS: frame[n.REQUEST_TS],
            n.REQUEST_DEVICE: frame[n.REQUEST_DEVICE],
            "price": frame.get(f"{n.PRODUCT_CATALOG}__price"),
            "created_epoch": frame.get(f"{n.PRODUCT_CATALOG}__created_epoch"),
            "mean_price": frame.get(f"{n.USER_ACTIVITY}__mean_price"),
            "last_event_epoch": frame.get(f"{n.USER_ACTIVITY}__last_event_epoch"),
        },
        index=frame.index,
    )
    context = ref_context_features(inputs).add_prefix(f"{n.REQUEST_CONTEXT}__")
    return pd.concat([frame, context], axis=1)


def ref_ranker_inputs(stored, item_ids):
    now = pd.to_numeric(stored[n.REQUEST_TS], errors="coerce").to_numpy(dtype=np.float64)
    out = {}
    timing = {f"{n.SESSION}__session_start_epoch", f"{n.SESSION}__session_last_epoch"}
    for column in stored.columns:
        if "__" not in column or column in timing:  # (a given session has no times)
            continue
        values = stored[column]
        if column.endswith("_epoch"):
            out[column.replace("_epoch", "_days_ago")] = (
                now - pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
            ) / DAY
        elif pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            out[column] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)

    def col(view, feature):
        name = f"{view}__{feature}"
        return stored[name] if name in stored else pd.Series(None, index=stored.index)

    def overlap(left, right, sep):
        res = np.zeros(len(left), dtype=np.float32)
        lv, rv = left.to_numpy(dtype=object), right.to_numpy(dtype=object)
        for i, (a, b) in enumerate(zip(lv, rv, strict=True)):
            if isinstance(a, str) and a and isinstance(b, str) and b:
                res[i] = len(set(a.split(sep)) & set(b.split(sep)))
        return res

    cat = col(n.PRODUCT_CATALOG, "category").astype(object)
    brand = col(n.PRODUCT_CATALOG, "brand").astype(object)
    out["is_favourite_category"] = (
        (cat == col(n.USER_ACTIVITY, "favourite_category").astype(object)) & cat.notna()
    ).to_numpy(dtype=np.float32)
    out["is_favourite_brand"] = (
        (brand == col(n.USER_ACTIVITY, "favourite_brand").astype(object)) & brand.notna()
    ).to_numpy(dtype=np.float32)
    out["avoided_attributes"] = overlap(
        col(n.USER_PROFILE, "avoid_attributes"),
        col(n.PRODUCT_CATALOG, "attributes"),
        c.ATTRIBUTE_SEPARATOR,
    )
    session = col(n.SESSION, "session_item_ids").to_numpy(dtype=object)
    ids = item_ids.to_numpy(dtype=object)
    out["in_last_session"] = np.array(
        [isinstance(s, str) and i in s.split(SEPARATOR) for s, i in zip(session, ids, strict=True)],
        dtype=np.float32,
    )
    frame = pd.DataFrame(out, index=stored.index)
    return frame.drop(columns=[n.REQUEST_TS], errors="ignore")


class RefNoFeatures:
    def fetch(self, batch, pairs, catalog):
        return ref_with_context(ref_request_frame(batch, pairs, catalog))


class RefOnlineFeatures(OnlineFeatures):
    """``OnlineFeatures.fetch`` as it was: rows of Python values, its own item cache."""

    def _cached_items(self, item_ids):
        store = self.__dict__.setdefault("_items", {})
        now = self._clock()
        held, missing = {}, []
        for item in item_ids:
            found = store.get(item)
            if found is not None and now - found[0] < self.item_ttl:
                held[item] = found[1]
            else:
                missing.append(item)
        return held, list(dict.fromkeys(missing))

    def fetch(self, batch, pairs, catalog):
        rows = ref_request_frame(batch, pairs, catalog)
        if len(rows) == 0:
            return rows
        user_ids = batch.requests[c.USER_ID].astype(str).to_numpy()
        item_ids = rows[c.ITEM_ID].to_numpy(dtype=object)
        held, missing = self._cached_items(item_ids)
        categories = sorted({x for x in rows[c.CATEGORY].to_numpy() if x})
        read = self.reader.read(user_ids[0], missing, categories)
        now = self._clock()
        names = [name for name, _ in self.item_columns]
        fresh = read.items
        values = [fresh[name].to_numpy(dtype=object) for name in names]
        missing_set = set(read.missing_items)
        for i, item in enumerate(missing):
            row = tuple(col[i] for col in values) if item not in missing_set else None
            held[item] = row
            self._items[item] = (now, row)
        empty = (None,) * len(names)
        table = [held[item] or empty for item in item_ids]
        columns = list(zip(*table, strict=True)) if table else [() for _ in names]
        out = {
            full: np.asarray(col, dtype=object)
            for (_, full), col in zip(self.item_columns, columns, strict=True)
        }
        for name, full in self.user_columns.items():
            out[full] = np.full(len(rows), read.user.get(name), dtype=object)
        cats = rows[c.CATEGORY].to_numpy()
        for name, full in self.affinity_columns:
            out[full] = np.array(
                [read.affinity.get(cat, {}).get(name) for cat in cats], dtype=object
            )
        for name in self.numeric.intersection(out):
            out[name] = pd.to_numeric(out[name], errors="coerce")
        stored = pd.DataFrame(out, index=rows.index)
        return ref_with_context(pd.concat([rows, stored], axis=1))


def ref_features(model, batch, pairs, feature_source):
    parts = [pairs]
    for source in model.sources:
        parts.append(REF_FEATURES[source.name](source, batch, pairs))
    described = pd.concat(parts, axis=1)
    stored = feature_source.fetch(batch, pairs, model.catalog)
    item_ids = pd.Series(model.catalog.items.ids[pairs[ITEM].to_numpy()], index=pairs.index)
    inputs = ref_ranker_inputs(stored, item_ids)
    return pd.concat([described, inputs], axis=1)


def ref_recommend_batch(model, batch, k, feature_source, sources=None, allowed=None, limit=None):
    out = []
    for start in range(0, len(batch), 2_000):
        stop = min(start + 2_000, len(batch))
        part = ref_subset(batch, np.arange(start, stop))
        pairs = ref_candidates(model, part, sources, limit, allowed)
        rank_cols = [col for col in pairs.columns if col.endswith("_rank")]
        if model.ranker is not None and sources is None and len(pairs):
            scores = model.ranker.score(ref_features(model, part, pairs, feature_source))
            if model.cold_by_popularity and "popularity_rank" in pairs:
                cold = ~pairs[REQ].isin(part.history[REQ].unique()).to_numpy()
                scores = np.where(cold, -pairs["popularity_rank"].to_numpy(), scores)
            n_past = pairs[REQ].map(part.history.groupby(REQ).size()).fillna(0).to_numpy()
            unknown = part.requests.set_index(REQ)["user"].reindex(pairs[REQ]).to_numpy() < 0
            segment = np.select(
                [(n_past == 0) | unknown, n_past <= 5, n_past >= 30],
                ["new_users", "light_users", "heavy_users"],
                "regular_users",
            )
            inputs = ref_features(model, part, pairs, feature_source)
            for name, order in model.segment_orders.items():
                mine = segment == name
                if f"{order}_rank" in pairs:
                    scores = np.where(mine, -pairs[f"{order}_rank"].to_numpy(), scores)
                else:
                    scores = np.where(mine, inputs[order].fillna(-1e9).to_numpy(), scores)
            nth = pairs.groupby(REQ, sort=False).cumcount().to_numpy()
            scores = scores.astype(np.float64) - 1e-10 * nth
        else:
            scores = -pairs[rank_cols].min(axis=1).to_numpy(dtype=np.float64)
        ranked = pairs[[REQ, ITEM, *rank_cols]].assign(score=scores)
        ranked = ranked.sort_values([REQ, "score"], ascending=[True, False], kind="stable")
        ranked = ranked.groupby(REQ, sort=False).head(k)
        ranked["rank"] = ranked.groupby(REQ, sort=False).cumcount() + 1
        ranked[REQ] += start
        out.append(ranked)
    return (
        pd.concat(out, ignore_index=True)
        if out
        else pd.DataFrame({REQ: [], "rank": [], ITEM: [], "score": []})
    )


# =====================================================================================
# A model fitted on the tiny shop, a ranker on random labels, an online store in memory.
# =====================================================================================
@dataclass
class Shop:
    model: Recommender
    frame: pd.DataFrame  # the event frame the model was fitted on
    users: pd.DataFrame
    requests: pd.DataFrame  # requests as the service sends them, of every kind


def _requests(model: Recommender, rng: np.random.Generator) -> pd.DataFrame:
    """Known users (some twice, some asked before their last events), new users, sessions
    (with an unknown item), given and missing devices, countries and demographics."""
    ids = model.catalog.items.ids
    known = list(rng.choice(model.users.ids, 24, replace=False))
    users = known + known[:3] + ["new-a", "new-b", "new-c", "new-d"]
    rows = []
    for i, user in enumerate(users):
        session = []
        if i % 4 == 1 and i < 24:  # (a user asked twice has a session once)
            session = list(rng.choice(ids, 1 + i % 3, replace=False))
        if i % 9 == 2:
            session.append("no-such-item")
        rows.append(
            {
                c.USER_ID: user,
                TS: model.data_end + 3_600.0 * (i % 5) - (30 * DAY if i in (3, 24) else 0.0),
                c.DEVICE: [None, "mobile", "Desktop", "tablet"][i % 4],
                c.COUNTRY: [None, "DE", None][i % 3],
                "session_item_ids": session,
                c.AGE: [None, 31.0, None, 62.0][i % 4],
                c.GENDER: [None, "F", "M"][i % 3],
            }
        )
    return pd.DataFrame(rows)


def _fit_ranker(model: Recommender, requests: pd.DataFrame, extra: list[str]) -> Ranker:
    """A small ranker over every feature (``extra``: stored ones NoFeatures lacks), fitted on
    random labels: its scores depend on every input, so any change of one shows."""
    rng = np.random.default_rng(7)
    batch = ref_model_batch(model, requests)
    pairs = ref_candidates(model, batch)
    x = ref_features(model, batch, pairs, RefNoFeatures())
    names = [col for col in x.columns if col not in (REQ, ITEM)] + extra
    for name in extra:
        x[name] = rng.normal(size=len(x))
    labels = (rng.random(len(x)) < 0.2).astype(np.float32)
    qid = pairs[REQ].to_numpy()
    ranker = Ranker(names)
    config = RankerConfig(n_estimators=25, max_depth=4, early_stopping_rounds=25, min_rounds=25)
    ranker.fit((x, labels, qid), (x, labels, qid), (x, labels, qid), config, seed=3)
    return ranker


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    folder = tmp_path_factory.mktemp("paths") / "shop"
    generate_shop(folder, scale="tiny", seed=0)
    events = pd.read_parquet(folder / "events.parquet")
    products = pd.read_parquet(folder / "products.parquet")
    users = pd.read_parquet(folder / "users.parquet")
    catalog = Catalog.build(products, events)
    frame = event_frame(events, catalog, CONFIG.events)
    model = Recommender.fit(frame, catalog, users, CONFIG)
    requests = _requests(model, np.random.default_rng(0))
    store = FakeReader(model)
    model.ranker = _fit_ranker(model, requests, store.ranker_extra())
    return Shop(model, frame, users, requests)


class FakeReader:
    """The online store's reader over values derived from the catalogue: strings, numbers,
    missing products and categories without affinity, as ``OnlineReader.read`` returns them."""

    USER: ClassVar[dict] = {
        n.USER_ACTIVITY: [
            ("views_7d", "Int64"),
            ("mean_price", "Float64"),
            ("last_event_epoch", "Int64"),
            ("favourite_category", "String"),
            ("favourite_brand", "String"),
        ],
        n.USER_PROFILE: [("age", "Int64"), ("avoid_attributes", "String")],
        n.SESSION: [("session_events", "Int64"), ("session_item_ids", "String")],
    }
    ITEMS: ClassVar[dict] = {
        n.PRODUCT_ACTIVITY: [("views_7d", "Int64"), ("trend", "Float64")],
        n.PRODUCT_CATALOG: [
            ("created_epoch", "Int64"),
            ("price", "Float64"),
            ("category", "String"),
            ("brand", "String"),
            ("attributes", "String"),
            ("in_stock", "Int64"),
        ],
    }
    AFFINITY: ClassVar[dict] = {
        n.USER_CATEGORY: [("affinity_30d", "Float64"), ("share_total", "Float64")]
    }

    def __init__(self, model: Recommender) -> None:
        def group(views):
            return SimpleNamespace(
                views=[
                    SimpleNamespace(
                        name=name,
                        features=[SimpleNamespace(name=f, dtype=d) for f, d in fields],
                    )
                    for name, fields in views.items()
                ]
            )

        self.groups = {
            "user": group(self.USER),
            "item": group(self.ITEMS),
            "affinity": group(self.AFFINITY),
        }
        self.model = model
        self.reads = 0

    def ranker_extra(self) -> list[str]:
        """Ranker inputs the online store gives beyond NoFeatures' columns."""
        out = [
            f"{n.USER_ACTIVITY}__views_7d",
            f"{n.USER_ACTIVITY}__mean_price",
            f"{n.USER_ACTIVITY}__last_event_days_ago",
            f"{n.USER_PROFILE}__age",
            f"{n.SESSION}__session_events",
            f"{n.PRODUCT_ACTIVITY}__views_7d",
            f"{n.PRODUCT_ACTIVITY}__trend",
            f"{n.PRODUCT_CATALOG}__created_days_ago",
            f"{n.PRODUCT_CATALOG}__price",
            f"{n.PRODUCT_CATALOG}__in_stock",
            f"{n.USER_CATEGORY}__affinity_30d",
            f"{n.USER_CATEGORY}__share_total",
        ]
        return out

    def read(self, user_id, item_ids, categories=None) -> OnlineRead:
        self.reads += 1
        facts = self.model.catalog.facts
        rows = self.model.catalog.items.rows(list(item_ids))
        h = sum(map(ord, user_id))
        found = [row >= 0 and row % 7 != 3 for row in rows]
        cols = {}
        for key, values in (
            ("views_7d", [int(r % 11) for r in rows]),
            ("trend", [float(r % 5) / 4 - 0.3 for r in rows]),
            ("created_epoch", [facts["created_epoch"].iloc[r] for r in rows]),
            ("price", [facts[c.PRICE].iloc[r] for r in rows]),
            ("category", [facts[c.CATEGORY].iloc[r] for r in rows]),
            ("brand", [facts[c.BRAND].iloc[r] for r in rows]),
            ("attributes", [facts[c.ATTRIBUTES].iloc[r] for r in rows]),
            ("in_stock", [int(r % 13 != 0) for r in rows]),
        ):
            values = [
                v if ok and not (isinstance(v, float) and not np.isfinite(v)) else None
                for v, ok in zip(values, found, strict=True)
            ]
            cols[key] = np.asarray(values, dtype=object)
        items = pd.DataFrame({c.ITEM_ID: list(item_ids), **cols})
        known = user_id in set(self.model.users.ids)
        cat_values = facts[c.CATEGORY].dropna().to_numpy()
        user = {
            "views_7d": h % 9 if known else None,
            "mean_price": 20.0 + h % 40 if known else None,
            "last_event_epoch": int(self.model.data_end - (h % 10) * DAY) if known else None,
            "favourite_category": cat_values[h % len(cat_values)] if known else None,
            "favourite_brand": facts[c.BRAND].dropna().iloc[h % 50] if known else None,
            "age": 20 + h % 50 if known else None,
            "avoid_attributes": ["vegan;wooden", None, "fragrance"][h % 3],
            "session_events": 3 if h % 2 else None,
            "session_item_ids": SEPARATOR.join(self.model.catalog.items.ids[h % 40 :: 37][:4])
            if h % 2
            else None,
        }
        # as materialised: rows only for categories the user touched (some without values)
        touched = self.model.touched
        mine = touched[ITEM].to_numpy()[touched[c.USER_ID].astype(str).to_numpy() == user_id]
        had = set(facts[c.CATEGORY].to_numpy()[mine])
        affinity = {
            cat: {"affinity_30d": (len(cat) % 7) / 7.0, "share_total": None}
            for cat in (categories or [])
            if cat in had and len(cat) % 3 != 0
        }
        missing = tuple(i for i, ok in zip(item_ids, found, strict=True) if not ok)
        return OnlineRead(user=user, items=items, affinity=affinity, missing_items=missing)


# =====================================================================================
# Checks
# =====================================================================================
def _same_frame(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Same columns in the same order, same dtypes, same values (NaN equals NaN)."""
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), want.reset_index(drop=True), check_exact=True
    )


def _same_batch(got: Batch, want: Batch) -> None:
    """The same frames; the history's kind and weight may be wider integers and floats where
    a session was added (pandas' concatenation chose them by which frames were empty)."""
    for name in ("requests", "bought", "touched"):
        _same_frame(getattr(got, name), getattr(want, name))
    pd.testing.assert_frame_equal(
        got.history.reset_index(drop=True),
        want.history.reset_index(drop=True),
        check_exact=True,
        check_dtype=False,
    )


def _same_lists(got: pd.DataFrame, want: pd.DataFrame, by_name: bool = False) -> None:
    """Exactly the same requests, items, ranks and source ranks; scores within 1e-6.
    ``by_name``: the columns in any order (a source that proposed nothing to a request has
    its rank column last, so a request alone may list them otherwise than a batch)."""
    if by_name:
        got, want = got[sorted(got.columns)], want[sorted(want.columns)]
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for column in got.columns:
        if column == "score":
            np.testing.assert_allclose(
                got[column].to_numpy(dtype=np.float64),
                want[column].to_numpy(dtype=np.float64),
                rtol=0,
                atol=1e-6,
            )
        else:
            np.testing.assert_array_equal(got[column].to_numpy(), want[column].to_numpy())


def _allowed(model: Recommender, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(len(model.catalog)) < 0.8


def test_batch_equals_the_reference(shop: Shop) -> None:
    # given requests of every kind; when they are built into a batch, alone and together
    model = shop.model
    _same_batch(model.batch(shop.requests), ref_model_batch(model, shop.requests))
    for i in range(len(shop.requests)):
        one = shop.requests.iloc[[i]]
        _same_batch(model.batch(one), ref_model_batch(model, one))
    # and without the optional columns
    bare = shop.requests[[c.USER_ID]]
    _same_batch(model.batch(bare), ref_model_batch(model, bare))


def test_batch_from_the_event_log_equals_the_reference(shop: Shop) -> None:
    # given requests as training builds them: users asked several times, at instants that
    # fall between, on and after their events, some with a device, and a user nobody knows
    frame, model = shop.frame, shop.model
    rng = np.random.default_rng(1)
    users = [*rng.choice(model.users.ids, 40, replace=False), "nobody"]
    at = frame.groupby(c.USER_ID)[TS].median()
    rows = []
    for i, user in enumerate(users * 2):
        ts = float(at.get(user, model.data_end)) + (i % 3 - 1) * DAY
        if i % 7 == 0:  # exactly at one of the user's events: that event is not before it
            mine = frame.loc[frame[c.USER_ID] == user, TS]
            ts = float(mine.iloc[len(mine) // 2]) if len(mine) else ts
        rows.append({c.USER_ID: user, TS: ts, c.DEVICE: "mobile" if i % 5 == 0 else None})
    requests = pd.DataFrame(rows)
    for reqs in (requests, requests[[c.USER_ID, TS]]):
        got = batch_from_events(reqs, frame, shop.users, model.users, 30)
        want = ref_batch_from_events(reqs, frame, shop.users, model.users, 30)
        _same_batch(got, want)


def test_candidates_and_features_equal_the_reference(shop: Shop) -> None:
    model = shop.model
    batch = model.batch(shop.requests)
    for limit, allowed in ((None, None), (300, _allowed(model, 2)), (1_000_000, None)):
        pairs = model.candidates(batch, limit=limit, allowed=allowed)
        _same_frame(pairs, ref_candidates(model, batch, limit=limit, allowed=allowed))
        got = model.features(batch, pairs, NoFeatures())
        _same_frame(got, ref_features(model, batch, pairs, RefNoFeatures()))
    # a sample of the candidates, in another order (training asks for such subsets)
    sample = pairs.sample(frac=0.3, random_state=4)
    got = model.features(batch, sample, NoFeatures())
    _same_frame(got, ref_features(model, batch, sample, RefNoFeatures()))
    assert got.index.equals(sample.index)
    for source in model.sources:
        alone = model.candidates(batch, sources=[source])
        _same_frame(alone, ref_candidates(model, batch, sources=[source]))


def test_online_features_equal_the_reference(shop: Shop) -> None:
    # given the online store read for one request at a time, twice (the second time the
    # products come from the in-process cache)
    model = shop.model
    reader = FakeReader(model)
    online, reference = OnlineFeatures(reader), RefOnlineFeatures(FakeReader(model))
    for _ in range(2):
        for i in range(len(shop.requests)):
            batch = model.batch(shop.requests.iloc[[i]])
            pairs = model.candidates(batch, limit=300)
            got = online.fetch(batch, pairs, model.catalog)
            want = reference.fetch(batch, pairs, model.catalog)
            _same_frame(got, want)
            item_ids = pd.Series(model.catalog.items.ids[pairs[ITEM].to_numpy()])
            _same_frame(ranker_inputs(got, item_ids), ref_ranker_inputs(want, item_ids))
            _same_frame(
                model.features(batch, pairs, online),
                ref_features(model, batch, pairs, reference),
            )


def test_context_features_equal_the_reference_on_odd_inputs() -> None:
    # given what Feast or a store may hand over: missing instants, devices of any case or
    # none, numbers as objects, a missing column, a non-positive mean price
    inputs = pd.DataFrame(
        {
            n.REQUEST_TS: [1_750_000_000, np.nan, 1_700_003_599.5, 0, 1_750_000_000],
            n.REQUEST_DEVICE: ["Mobile", None, "desktop", "TABLET", "unknown"],
            "price": np.array([10.0, None, "3", 4.0, 5.0], dtype=object),
            "created_epoch": [1_700_000_000, None, None, 5, np.nan],
            "mean_price": [5.0, 0.0, -1.0, np.nan, 2.5],
        },
        index=[10, 11, 12, 13, 14],
    )
    _same_frame(context_features(inputs), ref_context_features(inputs))
    assert context_features(inputs).index.equals(inputs.index)
    frame = pd.DataFrame({n.REQUEST_TS: [1_750_000_000] * 3, n.REQUEST_DEVICE: ["x", "y", "z"]})
    _same_frame(with_context(frame), ref_with_context(frame))


SEGMENT_ORDERS = {
    "light_users": "covisit_follow_last",
    "regular_users": "als",
    "heavy_users": "repeat",
}


@pytest.mark.parametrize("cold_by_popularity", [False, True])
@pytest.mark.parametrize("allow_rebuy", [False, True])
@pytest.mark.parametrize("segment_orders", [{}, SEGMENT_ORDERS], ids=["ranker", "by-segment"])
def test_recommend_batch_equals_the_reference(
    shop: Shop, cold_by_popularity: bool, allow_rebuy: bool, segment_orders: dict
) -> None:
    model = shop.model
    model.cold_by_popularity, model.allow_rebuy = cold_by_popularity, allow_rebuy
    model.segment_orders = dict(segment_orders)
    try:
        batch = model.batch(shop.requests)
        allowed = _allowed(model, 5)
        for k, limit, mask in ((10, 300, allowed), (5, None, None)):
            got = model.recommend_batch(batch, k, NoFeatures(), allowed=mask, limit=limit)
            want = ref_recommend_batch(model, batch, k, RefNoFeatures(), allowed=mask, limit=limit)
            _same_lists(got, want)
        for source in model.sources:
            got = model.recommend_batch(batch, 7, None, sources=[source])
            _same_lists(got, ref_recommend_batch(model, batch, 7, None, sources=[source]))
    finally:
        model.cold_by_popularity, model.allow_rebuy = False, CONFIG.repeat.repurchase == "allow"
        model.segment_orders = {}


@pytest.mark.parametrize("kind", ["distinct", "ties", "sparse", "empty_rows"])
def test_top_n_of_a_wide_block_equals_the_reference(kind: str) -> None:
    # given blocks as wide as a catalogue (the sampled-threshold path): distinct scores, many
    # equal ones (templated embeddings), rows with few finite cells, rows with none
    rng = np.random.default_rng(7)
    scores = rng.standard_normal((40, 24_000)).astype(np.float32)
    if kind == "ties":
        scores = np.round(scores * 4) / 4
    elif kind == "sparse":
        scores[rng.random(scores.shape) < 0.995] = -np.inf
    elif kind == "empty_rows":
        scores[::3] = -np.inf
    for best in (1, 30, 300):
        # when the best of each row are taken, then they are the reference's, in its order
        got = proposal_frame(*top_n_arrays(scores, best, offset=5))
        want = ref_top_n(scores, best, offset=5).reset_index(drop=True)
        _same_frame(got, want)


def test_one_generation_answers_the_ranker_and_each_source_alone(shop: Shop) -> None:
    # given the test-window evaluation's question: the ranker's top k and each source's own
    model = shop.model
    batch = model.batch(shop.requests)
    names = tuple(source.name for source in model.sources)
    # when one candidate generation answers them all
    k = CONFIG.candidates // len(names)  # (few enough that every source's k are candidates)
    lists = ranker_and_sources(model, batch, k, NoFeatures(), names)
    # then each list is what asking the ranker, or the source alone, gives
    assert set(lists) == {"ranker", *names}
    want = model.recommend_batch(batch, k, NoFeatures())
    _same_lists(lists["ranker"], want)
    for source in model.sources:
        alone = model.recommend_batch(batch, k, None, sources=[source])
        got = lists[source.name]
        assert len(got) == len(alone) > 0
        for column in (REQ, ITEM, "rank"):
            np.testing.assert_array_equal(got[column].to_numpy(), alone[column].to_numpy())


def test_a_segment_served_by_a_source_gets_that_sources_order(shop: Shop) -> None:
    # given a model whose regular users are served by ALS's own order
    model = shop.model
    batch = model.batch(shop.requests)
    segment = batch_segments(batch)
    regular = np.flatnonzero(segment == "regular_users")
    assert len(regular) and (segment != "regular_users").any()
    ranked = model.recommend_batch(batch, 5, NoFeatures())
    model.segment_orders = {"regular_users": "als"}
    try:
        got = model.recommend_batch(batch, 5, NoFeatures())
    finally:
        model.segment_orders = {}
    # then those requests get ALS's candidates in ALS's order, the others the ranker's list
    for req in range(len(batch)):
        mine = got[got[REQ] == req]
        if req in regular:
            assert (np.diff(mine["als_rank"].to_numpy()) > 0).all(), req
            assert mine["als_rank"].iloc[0] == 1, req
        else:
            before = ranked[ranked[REQ] == req]
            assert mine[ITEM].tolist() == before[ITEM].tolist(), req


def test_one_request_gets_its_rows_of_a_batch_of_many(shop: Shop) -> None:
    # given every request answered in one batch (as evaluation does)
    model = shop.model
    allowed = _allowed(model, 6)
    together = model.recommend_batch(
        model.batch(shop.requests), 10, NoFeatures(), allowed=allowed, limit=300
    )
    # when each is answered alone (as the service does), then it gets exactly its rows
    for i in range(len(shop.requests)):
        batch = model.batch(shop.requests.iloc[[i]])
        alone = model.recommend_batch(batch, 10, NoFeatures(), allowed=allowed, limit=300)
        mine = together[together[REQ] == i].assign(**{REQ: 0})
        _same_lists(alone, mine, by_name=True)
        assert len(alone) == 10


def test_the_service_path_with_online_features_equals_the_reference(shop: Shop) -> None:
    model = shop.model
    online, reference = OnlineFeatures(FakeReader(model)), RefOnlineFeatures(FakeReader(model))
    allowed = _allowed(model, 8)
    for i in range(len(shop.requests)):
        one = shop.requests.iloc[[i]]
        got = model.recommend_batch(model.batch(one), 10, online, allowed=allowed, limit=300)
        want = ref_recommend_batch(
            model, ref_model_batch(model, one), 10, reference, allowed=allowed, limit=300
        )
        _same_lists(got, want)


def test_the_service_path_with_a_prefetched_user_equals_the_reference(shop: Shop) -> None:
    # given the service's order: the user and its affinities read first, then candidates
    model = shop.model
    reader = FakeReader(model)
    online, reference = OnlineFeatures(reader), RefOnlineFeatures(FakeReader(model))
    allowed = _allowed(model, 8)
    for rounds in range(2):
        reads = reader.reads
        for i in range(len(shop.requests)):
            one = shop.requests.iloc[[i]]
            user_id = str(one[c.USER_ID].iloc[0])
            categories = model.touched_categories(user_id)
            read = reader.read(user_id, [], categories)
            source = online.prefetched(read.user, read.affinity, categories)
            got = model.recommend_batch(model.batch(one), 10, source, allowed=allowed, limit=300)
            want = ref_recommend_batch(
                model, ref_model_batch(model, one), 10, reference, allowed=allowed, limit=300
            )
            # then the lists are the reference's
            _same_lists(got, want)
        if rounds == 1:
            # and once the products are held, a request without a session needs no read
            # beyond its first (a session may add categories the model never saw the user in)
            with_session = sum(bool(s) for s in shop.requests.get("session_item_ids", []))
            assert reader.reads - reads <= len(shop.requests) + with_session


def test_an_empty_batch_and_a_request_without_candidates(shop: Shop) -> None:
    model = shop.model
    nothing = np.zeros(len(model.catalog), dtype=bool)
    batch = model.batch(shop.requests.iloc[:2])
    got = model.recommend_batch(batch, 10, NoFeatures(), allowed=nothing, limit=300)
    want = ref_recommend_batch(model, batch, 10, RefNoFeatures(), allowed=nothing, limit=300)
    assert len(got) == 0 and list(got.columns) == list(want.columns)


def test_a_session_belongs_to_its_own_request(shop: Shop) -> None:
    # given one user asked twice in a batch, the earlier request with a live session
    model = shop.model
    user = shop.requests[c.USER_ID].iloc[0]
    items = list(model.catalog.items.ids[[3, 4]])
    requests = pd.DataFrame(
        {
            c.USER_ID: [user, user],
            TS: [model.data_end + 10.0, model.data_end + 3_600.0],
            "session_item_ids": [items, []],
        }
    )
    # when both are answered together and each alone
    batch = model.batch(requests)
    together = model.recommend_batch(batch, 10, NoFeatures(), limit=300)
    # then the later request's past holds none of the earlier one's session (the stored
    # histories of the model do not, and neither does a request answered alone)
    later = batch.history[batch.history[REQ] == 1]
    alone = model.batch(requests.iloc[[1]])
    pd.testing.assert_frame_equal(
        later.assign(**{REQ: 0}).reset_index(drop=True), alone.history, check_dtype=False
    )
    for i in range(2):
        one = model.recommend_batch(model.batch(requests.iloc[[i]]), 10, NoFeatures(), limit=300)
        _same_lists(one, together[together[REQ] == i].assign(**{REQ: 0}), by_name=True)


@pytest.mark.parametrize("restricted", [False, True])
def test_the_blend_of_covisitation_scores_is_scipys_sum_row_for_row(restricted: bool) -> None:
    # given four sparse score blocks whose rows are not sorted (sparse products leave them
    # so), with cells in one, some or all of them, and rules that forbid some items
    from scipy.sparse import diags

    from recommender.sources.covisit import _blend

    rng = np.random.default_rng(11)
    n_rows, n_items = 7, 40
    parts = []
    for _ in range(4):
        dense = np.where(rng.random((n_rows, n_items)) < 0.2, rng.random((n_rows, n_items)), 0)
        m = csr_matrix(dense)
        for row in range(n_rows):  # shuffle each row's stored order
            lo, hi = m.indptr[row], m.indptr[row + 1]
            order = lo + rng.permutation(hi - lo)
            m.indices[lo:hi], m.data[lo:hi] = m.indices[order], m.data[order]
        m.has_sorted_indices = False
        parts.append(m)
    allowed = rng.random(n_items) < 0.7 if restricted else None
    # when blended
    indptr, items, scores = _blend(parts, allowed, n_rows, n_items)
    # then exactly scipy's sum (and restriction), values and their stored order
    want = parts[0] + parts[1] + parts[2] + parts[3]
    if restricted:
        want = want @ diags(allowed.astype(np.float64))
        want.eliminate_zeros()
    np.testing.assert_array_equal(indptr, want.indptr)
    np.testing.assert_array_equal(items, want.indices)
    np.testing.assert_array_equal(scores, want.data)


def test_kept_entries_are_scipys_product_with_the_rules_diagonal() -> None:
    # given a sparse score block with unsorted rows, empty rows, explicit zeros, and rules
    # that forbid some items
    from scipy.sparse import diags

    from recommender.state import kept_entries

    rng = np.random.default_rng(5)
    n_rows, n_items = 9, 60
    dense = np.where(rng.random((n_rows, n_items)) < 0.25, rng.random((n_rows, n_items)), 0)
    dense[3] = 0  # an empty row
    m = csr_matrix(dense)
    m.data[::7] = 0.0  # explicit zeros
    for row in range(n_rows):
        lo, hi = m.indptr[row], m.indptr[row + 1]
        order = lo + rng.permutation(hi - lo)
        m.indices[lo:hi], m.data[lo:hi] = m.indices[order], m.data[order]
    m.has_sorted_indices = False
    keep = rng.random(n_items) < 0.6
    # when the forbidden and zero cells are dropped
    got = kept_entries(m, keep)
    # then exactly what the product with the rules' diagonal gives, cell order included
    want = (m @ diags(keep.astype(m.dtype))).tocsr()
    want.eliminate_zeros()
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.data, want.data)


def ref_age_band(age: pd.Series) -> pd.Series:
    bands = pd.cut(
        pd.to_numeric(age, errors="coerce"),
        bins=[0, 25, 35, 45, 55, 200],
        right=False,
        labels=["<25", "25-34", "35-44", "45-54", "55+"],
    )
    return bands.astype(object).where(bands.notna(), UNKNOWN)


def test_age_bands_are_pd_cuts_bands() -> None:
    odd = pd.Series(
        [None, np.nan, -1, -0.0, 0, 24.999, 25, 34, 35, 44.5, 45, 54, 55, 199.99, 200, 1e9, "31"],
        index=range(100, 117),
        dtype=object,
    )
    pd.testing.assert_series_equal(age_band(odd), ref_age_band(odd))
    floats = pd.Series(np.random.default_rng(3).uniform(-10, 220, 1000))
    pd.testing.assert_series_equal(age_band(floats), ref_age_band(floats))
    whole = pd.Series(np.arange(-5, 210), dtype="Int64")
    pd.testing.assert_series_equal(age_band(whole), ref_age_band(whole))


def test_a_row_alone_is_scored_as_within_a_block() -> None:
    # given user vectors and item factors of the sizes of a real model
    from recommender.state import block_scores

    rng = np.random.default_rng(12)
    users = rng.normal(size=(300, 64)).astype(np.float32)
    factors = rng.normal(size=(5_000, 64)).astype(np.float32)
    # when scored in one block, and one by one, then the same to float32 rounding (bit for
    # bit depends on the BLAS build's kernels)
    block = block_scores(users, factors)
    for row in range(0, 300, 23):
        alone = block_scores(users[row : row + 1], factors)
        assert alone.shape == (1, 5_000) and alone.dtype == np.float32
        np.testing.assert_allclose(alone[0], block[row], rtol=1e-5, atol=1e-5)


# =====================================================================================
# The service's shortcuts: the same values as the library calls they replace
# =====================================================================================
def test_redis_keys_are_the_bytes_feast_writes() -> None:
    # given entities of one and of two join keys (Feast sorts the keys), non-ASCII values
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from features.online import entity_key_bytes

    cases = [
        (["user_id"], ("u-1",)),
        (["item_id"], ("Crème > Rosé",)),
        (["user_id", "category"], ("u-1", "Skin Care > Toners")),
        (["user_id", "category"], ("", "")),
    ]
    for keys, values in cases:
        # when built directly and by Feast (version 3, then the project's name)
        entity = EntityKey(join_keys=keys, entity_values=[Value(string_val=v) for v in values])
        want = serialize_entity_key(entity, entity_key_serialization_version=3) + b"shop"
        # then the same bytes
        assert entity_key_bytes(keys, values, b"shop") == want


def test_affinity_keys_are_the_bytes_feast_writes() -> None:
    # given the Redis layout of a project, and a user's categories (one asked twice)
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from features.online import _RedisLayout

    client = SimpleNamespace(register_script=lambda script: None)
    config = SimpleNamespace(project="shop", entity_key_serialization_version=3)
    fields = {"user": [], "item": [], "affinity": []}
    layout = _RedisLayout(None, config, client, fields, fields)
    categories = ["Skin Care > Toners", "Rosé", "Skin Care > Toners", ""]
    # when their keys are made for two users
    for user in ("u-1", "ü-22"):
        got = layout.affinity_keys(user, categories)
        # then each is Feast's key of (user_id, category) followed by the project
        want = [
            serialize_entity_key(
                EntityKey(
                    join_keys=[c.USER_ID, c.CATEGORY],
                    entity_values=[Value(string_val=user), Value(string_val=cat)],
                ),
                entity_key_serialization_version=3,
            )
            + b"shop"
            for cat in categories
        ]
        assert got == want


def test_online_numbers_are_typed_as_pandas_types_them() -> None:
    # given feature values as the online store decodes them
    from recommender.features_source import numeric

    cases = [
        (1.5, None, 2.0),
        (None, None),
        (3, 4, 5),
        (3, None, 4.5),
        (True, None),
        ("7", None, 1.0),
        ("x", 2.0),
        (2**60, None),
        (2**63, 1),
        (np.float64(2.5), None),
        (),
    ]
    for values in cases:
        # when typed directly and by pandas
        got = numeric(values)
        want = pd.to_numeric(np.asarray(values, dtype=object), errors="coerce")
        # then the same type and values (NaN where missing)
        assert got.dtype == want.dtype, values
        np.testing.assert_array_equal(got, want)
    # (and the plain cases exactly)
    np.testing.assert_array_equal(numeric((3, None, 4.5)), np.array([3.0, np.nan, 4.5]))
    assert numeric((3, 4, 5)).dtype == np.int64


def test_the_rankers_block_is_the_full_frames_matrix() -> None:
    # given features of three candidates of every kind the columns come in, and a ranker
    # that also wants a feature nobody gave
    from recommender.stored import ranker_frame

    columns = {
        "req": np.array([0, 0, 0]),
        "count": np.array([1, 2, 16_777_217], dtype=np.int64),
        "score": np.array([0.1, np.nan, 1e-40]),
        "flag": np.array([True, False, True]),
        "maybe": np.array([1.25, None, 3], dtype=object),
    }
    names = ["score", "missing", "count", "flag", "maybe"]
    # when the ranker's block is made directly
    got = ranker_frame(columns, names, pd.RangeIndex(3))
    # then it is what the ranker takes from the frame of every feature
    want = Ranker(names).matrix(pd.DataFrame(columns))
    np.testing.assert_array_equal(got.to_numpy(), want)
    assert list(got.columns) == names and got.to_numpy().dtype == np.float32
    np.testing.assert_array_equal(got["count"].to_numpy(), [1.0, 2.0, 16_777_216.0])
    assert np.isnan(got["missing"]).all()


def test_stored_inputs_of_columns_equal_those_of_a_frame() -> None:
    # given one request's stored features as columns, and as a frame
    stored = {
        n.REQUEST_TS: np.array([864_000, 864_000]),
        f"{n.USER_ACTIVITY}__last_event_epoch": np.array([777_600.0, np.nan]),
        f"{n.USER_ACTIVITY}__views_7d": np.array([3, 4]),
        f"{n.USER_ACTIVITY}__favourite_category": np.array(["a", "a"], dtype=object),
        f"{n.PRODUCT_CATALOG}__category": np.array(["a", None], dtype=object),
        f"{n.SESSION}__session_item_ids": np.array([f"i1{SEPARATOR}i2"] * 2, dtype=object),
    }
    item_ids = np.array(["i2", "i3"], dtype=object)
    # when turned into the ranker's inputs from either
    from recommender.stored import ranker_input_columns

    got = ranker_input_columns(stored, item_ids)
    want = ranker_input_columns(pd.DataFrame(stored), pd.Series(item_ids))
    # then the same columns, values and types
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
        assert got[name].dtype == want[name].dtype
    np.testing.assert_array_equal(got[f"{n.USER_ACTIVITY}__last_event_days_ago"], [1.0, np.nan])
    np.testing.assert_array_equal(got["is_favourite_category"], [1.0, 0.0])
    np.testing.assert_array_equal(got["in_last_session"], [1.0, 0.0])


def test_the_anchor_block_is_scipys_slice() -> None:
    # given an item x item matrix and a user's history rows and the final items' columns
    # (one asked twice, one with no cell)
    from serving.reasons import _block

    matrix = csr_matrix(
        np.array(
            [
                [0.0, 0.5, 0.0, 0.25],
                [0.1, 0.0, 0.0, 0.0],
                [0.0, 0.3, 0.2, 0.0],
            ]
        )
    )
    rows, columns = np.array([0, 2]), np.array([3, 1, 2, 1, 0])
    # when the block is read from the rows' cells
    got = _block(matrix, rows, columns)
    # then it is scipy's dense slice
    want = np.array([[0.25, 0.5, 0.0, 0.5, 0.0], [0.0, 0.3, 0.2, 0.3, 0.0]])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, matrix[rows][:, columns].toarray())

"""Judging ranked lists: the ranker and the baselines, on the same requests, by segment."""

import logging

import numpy as np
import pandas as pd

from recommender.model import Recommender
from recommender.segments import batch_segments
from recommender.state import ITEM, REQ, TS, Batch
from recsys import columns as c
from recsys import metrics

logger = logging.getLogger(__name__)
DAY = 86_400.0


def as_lists(model: Recommender, ranked: pd.DataFrame, requests: pd.DataFrame) -> pd.DataFrame:
    """``request_id, item_id, rank`` from a batch answer (rows of ``requests`` = batch reqs)."""
    return pd.DataFrame(
        {
            metrics.REQUEST_ID: requests[metrics.REQUEST_ID].to_numpy()[ranked[REQ].to_numpy()],
            c.ITEM_ID: model.catalog.items.ids[ranked[ITEM].to_numpy()],
            metrics.RANK: ranked["rank"].to_numpy(dtype=np.int64),
        }
    )


def ranker_and_sources(
    model: Recommender, batch: Batch, k: int, features, names: tuple[str, ...]
) -> dict[str, pd.DataFrame]:
    """The ranker's top ``k`` and each named source's own top ``k`` (a baseline alone).

    One candidate generation answers all of them: every item a source ranks in its top ``k``
    is among the candidates whenever they number at least ``k`` per source (each source's
    best ``k`` have a best rank of at most ``k``), and a source alone orders by its own rank
    under the same exclusions. Otherwise each source is asked alone."""
    present = [name for name in names if any(s.name == name for s in model.sources)]
    if model.config.candidates < k * len(model.sources):
        lists = {"ranker": model.recommend_batch(batch, k, features)}
        for name in present:
            lists[name] = model.recommend_batch(batch, k, None, sources=[model.source(name)])
        return lists
    ranked = model.recommend_batch(batch, model.config.candidates, features)
    lists = {"ranker": ranked[ranked["rank"] <= k].reset_index(drop=True)}
    for name in present:
        mine = ranked[ranked[f"{name}_rank"] <= k]
        mine = mine.sort_values([REQ, f"{name}_rank"], kind="stable")
        lists[name] = pd.DataFrame(
            {
                REQ: mine[REQ].to_numpy(),
                ITEM: mine[ITEM].to_numpy(),
                "rank": mine[f"{name}_rank"].to_numpy(dtype=np.int64),
            }
        )
    return lists


def popular(model: Recommender, batch: Batch, k: int) -> pd.DataFrame:
    """Global popularity of the fitted window: the same list for everyone (what is available)."""
    overall = model.source("popularity").overall
    order = np.argsort(-overall, kind="stable")[: k * 4 + 200]
    pairs = pd.DataFrame(
        {REQ: np.repeat(np.arange(len(batch)), len(order)), ITEM: np.tile(order, len(batch))}
    )
    pairs["score"] = np.tile(overall[order], len(batch))
    pairs = model.exclusions(batch).filter(pairs)
    pairs = pairs.groupby(REQ, sort=False).head(k)
    return pairs.assign(rank=pairs.groupby(REQ, sort=False).cumcount() + 1)


def random_lists(model: Recommender, batch: Batch, k: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_items = len(model.catalog)
    draws = rng.integers(0, n_items, size=(len(batch), k * 3))
    pairs = pd.DataFrame({REQ: np.repeat(np.arange(len(batch)), k * 3), ITEM: draws.ravel()})
    pairs = model.exclusions(batch).filter(pairs.drop_duplicates())
    pairs = pairs.groupby(REQ, sort=False).head(k)
    return pairs.assign(score=0.0, rank=pairs.groupby(REQ, sort=False).cumcount() + 1)


def segments(model: Recommender, batch: Batch, requests: pd.DataFrame) -> pd.Series:
    """new users (no event before the request), light and heavy users by their past events."""
    return pd.Series(batch_segments(batch), index=requests[metrics.REQUEST_ID].to_numpy())


def new_product_targets(
    model: Recommender, requests: pd.DataFrame, targets: pd.DataFrame, new_days: float
) -> pd.DataFrame:
    """Targets that were new products at request time (launched within ``new_days``)."""
    created = model.catalog.created
    rows = model.catalog.items.rows(targets[c.ITEM_ID])
    at = targets[metrics.REQUEST_ID].map(requests.set_index(metrics.REQUEST_ID)[TS]).to_numpy()
    age = (at - np.where(rows >= 0, created[rows], -np.inf)) / DAY
    return targets[(rows >= 0) & (age <= new_days) & (age >= 0)]


def item_context(
    model: Recommender, frame: pd.DataFrame, before: float
) -> tuple[pd.Series, pd.Series]:
    """What ``judge`` weighs items by: each item's interactions before ``before`` (epoch
    seconds of the event frame, for novelty) and its catalogue price (expected revenue), both
    indexed by item id."""
    popularity = frame[frame[TS] < before].groupby(ITEM).size()
    popularity.index = model.catalog.items.ids[popularity.index.to_numpy()]
    prices = pd.Series(model.catalog.facts[c.PRICE].to_numpy(), index=model.catalog.items.ids)
    return popularity, prices


def judge(
    lists: dict[str, pd.DataFrame],
    model: Recommender,
    batch: Batch,
    requests: pd.DataFrame,
    targets: pd.DataFrame,
    ks: tuple[int, ...],
    popularity: pd.Series,
    prices: pd.Series,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, dict[str, float]]]]:
    """Overall metrics per model, and per segment per model."""
    overall, by_segment = {}, {}
    seg = segments(model, batch, requests)
    new_items = new_product_targets(model, requests, targets, model.config.content.new_days)
    for name, recs in lists.items():
        overall[name] = metrics.summarise(
            recs,
            targets,
            ks=ks,
            catalogue_size=len(model.catalog),
            item_popularity=popularity,
            prices=prices,
        )
        per = metrics.per_request(recs, targets, ks=ks, prices=prices)
        by_segment[name] = metrics.by_segment(per, seg)
        if len(new_items):
            per_new = metrics.per_request(recs, new_items, ks=ks, prices=prices)
            by_segment[name]["new_products"] = metrics.by_segment(
                per_new, pd.Series("new_products", index=per_new.index)
            )["new_products"]
    return overall, by_segment

"""``recsys train``: lake to registered model version, with honest evaluation on the way.

Stages, each timed:
1. split the lake in time: train | validation | test windows;
2. fit the candidate sources on train; build validation requests and their candidates;
3. fetch their stored features with Feast point-in-time retrieval; fit the ranker
   (early stopping on held-out validation requests); decide the repurchase policy;
4. refit the sources on train + validation; judge ranker and baselines once on test;
5. log everything to MLflow and register the model with alias ``candidate``.
"""

import logging
import resource
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recommender import candidates as cand
from recommender.catalog import Catalog
from recommender.features_source import OfflineFeatures
from recommender.model import Recommender
from recommender.ranker import Ranker
from recommender.state import ITEM, REQ, Batch, batch_from_events, event_frame
from recsys import columns as c
from recsys import metrics
from recsys.errors import RecsysError
from recsys.splits import split_last_days
from recsys.workspace import Workspace
from training import evaluate
from training.config import TrainConfig
from training.requests import window_requests

logger = logging.getLogger(__name__)
SOURCE_NAMES = ("als", "covisit", "content", "popularity", "repeat")


@dataclass
class Stages:
    """Seconds and peak memory (GB, whole process so far) per stage."""

    rows: list[dict[str, object]] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str):
        logger.info("stage %s ...", name)
        started = time.perf_counter()
        yield
        seconds = round(time.perf_counter() - started, 2)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        self.rows.append({"stage": name, "seconds": seconds, "peak_gb": round(peak, 3)})
        logger.info("stage %s done in %.1fs (peak %.2f GB)", name, seconds, peak)


@dataclass
class TrainResult:
    model: Recommender
    metrics: dict[str, object]
    stages: list[dict[str, object]]
    importance: pd.Series
    curve: dict[str, list[float]]
    lake_version: str


def labelled(
    pairs: pd.DataFrame, requests: pd.DataFrame, targets: pd.DataFrame, model
) -> np.ndarray:
    key = pd.MultiIndex.from_arrays(
        [
            requests[metrics.REQUEST_ID].to_numpy()[pairs[REQ].to_numpy()],
            model.catalog.items.ids[pairs[ITEM].to_numpy()],
        ]
    )
    wanted = pd.MultiIndex.from_frame(targets[[metrics.REQUEST_ID, c.ITEM_ID]])
    return key.isin(wanted).astype(np.float32)


def source_recall(
    model: Recommender, batch: Batch, requests: pd.DataFrame, targets: pd.DataFrame
) -> tuple[dict[str, float], pd.DataFrame]:
    """Recall of each source's own proposals and of the merged candidates (validation).

    One generation without the cap gives every source's proposals (its rank column); the
    capped candidates are its first ``config.candidates`` rows per request.
    """
    everything = model.candidates(batch, limit=1_000_000)
    out = {}
    for source in model.sources:
        mine = everything[everything[f"{source.name}_rank"] < cand.NOT_PROPOSED]
        out[f"recall@all/{source.name}"] = _recall(
            evaluate.as_lists(model, mine.assign(rank=1), requests), targets
        )
    merged = everything.groupby(REQ, sort=False).head(model.config.candidates)
    out["recall@all/merged"] = _recall(
        evaluate.as_lists(model, merged.assign(rank=1), requests), targets
    )
    out["candidates_per_request"] = float(len(merged) / max(len(batch), 1))
    return out, merged.reset_index(drop=True)


def _recall(lists: pd.DataFrame, targets: pd.DataFrame) -> float:
    hits = lists.merge(targets, on=[metrics.REQUEST_ID, c.ITEM_ID])
    per = hits.groupby(metrics.REQUEST_ID).size() / targets.groupby(metrics.REQUEST_ID).size()
    return float(per.reindex(targets[metrics.REQUEST_ID].unique()).fillna(0).mean())


def cold_start_choice(
    model: Recommender,
    ranker: Ranker,
    events: pd.DataFrame,
    past: pd.DataFrame,
    users: pd.DataFrame,
    window: tuple[pd.Timestamp, pd.Timestamp],
    target_events: tuple[str, ...],
    features,
) -> dict[str, float]:
    """NDCG@10 of every request without a past in the validation ``window``, ordered by the
    ranker and by the popularity source alone: the better order answers such requests.

    Every such request of the window, not those of the ranker's sample: new users are a small
    share of requests and their lists rarely hit, so it takes all of them (hundreds) to tell the
    two orders apart. The ranker learned on none of them (see ``train``)."""
    # no more requests than events: all of them, none drawn
    requests, targets = window_requests(events, *window, target_events, len(events), seed=0)
    batch = batch_from_events(requests, past, users, model.users, model.config.history_items)
    cold = ~batch.requests[REQ].isin(batch.history[REQ].unique()).to_numpy()
    out = {"cold_requests": float(cold.sum())}
    if cold.sum() < 20:
        return out
    requests = requests[cold].reset_index(drop=True)
    targets = targets[targets[metrics.REQUEST_ID].isin(requests[metrics.REQUEST_ID])]
    batch = batch_from_events(requests, past, users, model.users, model.config.history_items)
    pairs = model.candidates(batch)
    orders = {
        "ranker": ranker.score(model.features(batch, pairs, features)),
        "popularity": -pairs["popularity_rank"].to_numpy(),
    }
    for name, order in orders.items():
        ranked = pairs[[REQ, ITEM]].assign(score=order)
        ranked = ranked.sort_values([REQ, "score"], ascending=[True, False], kind="stable")
        ranked = ranked.assign(rank=ranked.groupby(REQ, sort=False).cumcount() + 1)
        lists = evaluate.as_lists(model, ranked, requests)
        out[name] = float(metrics.per_request(lists, targets, ks=(10,))["ndcg@10"].mean())
    return out


def rebuy_share(batch: Batch, requests: pd.DataFrame, targets: pd.DataFrame, model) -> float:
    """Share of validation targets the user had already bought: do people here rebuy?"""
    bought = pd.DataFrame(
        {
            metrics.REQUEST_ID: requests[metrics.REQUEST_ID].to_numpy()[
                batch.bought[REQ].to_numpy()
            ],
            c.ITEM_ID: model.catalog.items.ids[batch.bought[ITEM].to_numpy()],
        }
    )
    again = targets.merge(bought, on=[metrics.REQUEST_ID, c.ITEM_ID])
    return float(len(again) / max(len(targets), 1))


def train(workspace: Workspace, config: TrainConfig) -> TrainResult:
    from features.build import read_lake

    stages = Stages()
    cfg = config.model
    with stages.stage("load"):
        events, products, users, lake_version = read_lake(workspace)
        split = split_last_days(events, config.split.validation_days, config.split.test_days)
        catalog = Catalog.build(products, events)
        frame = event_frame(events, catalog, cfg.events)
        val_ts = split.validation_start.timestamp()
        test_ts = split.test_start.timestamp()
        end_ts = split.end.timestamp()
        logger.info(
            "split: train < %s <= validation < %s <= test < %s (%s / %s / %s events)",
            split.validation_start,
            split.test_start,
            split.end,
            f"{len(split.train):,}",
            f"{len(split.validation):,}",
            f"{len(split.test):,}",
        )
    features = OfflineFeatures(workspace)

    with stages.stage("fit sources (train window)"):
        model = Recommender.fit(frame[frame["ts"] < val_ts], catalog, users, cfg)
    with stages.stage("validation candidates"):
        limit = config.requests.train + config.requests.early_stopping
        requests, targets = window_requests(
            events,
            split.validation_start,
            split.test_start,
            config.requests.target_events,
            limit,
            cfg.seed,
        )
        if len(requests) < 20:
            raise RecsysError(
                f"only {len(requests)} users have a target event in the validation window: "
                "widen split.validation_days"
            )
        past = frame[frame["ts"] < test_ts]
        batch = batch_from_events(requests, past, users, model.users, cfg.history_items)
        share = rebuy_share(batch, requests, targets, model)
        policy = cfg.repeat.repurchase
        model.allow_rebuy = policy == "allow" or (
            policy == "auto" and share >= cfg.repeat.auto_min_share
        )
        logger.info(
            "rebuys are %.1f%% of targets: rebuy %s",
            100 * share,
            "allowed" if model.allow_rebuy else "excluded",
        )
        recall, pairs = source_recall(model, batch, requests, targets)
        logger.info("validation recall of candidates: %s", recall)
        pairs["label"] = labelled(pairs, requests, targets, model)
    with stages.stage("ranker features (Feast point-in-time)"):
        rng = np.random.default_rng(cfg.seed)
        reqs = np.arange(len(requests))
        rng.shuffle(reqs)
        stop_reqs = np.sort(reqs[: min(config.requests.early_stopping, len(reqs) // 4)])
        is_stop = pairs[REQ].isin(stop_reqs).to_numpy()
        # requests without a past are left to the cold-start choice, which judges the ranker on
        # them: it must not have learned or stopped on any
        has_past = pairs[REQ].isin(batch.history[REQ].unique()).to_numpy()
        learn = pairs[~is_stop & has_past]
        positive = learn.groupby(REQ)["label"].transform("max") > 0
        learn = learn[positive]
        negatives = learn[learn["label"] == 0]
        keep_neg = negatives.groupby(REQ, group_keys=False).apply(
            lambda g: g.sample(min(len(g), cfg.ranker.negatives_per_request), random_state=cfg.seed)
        )
        learn = pd.concat([learn[learn["label"] > 0], keep_neg]).sort_index()
        stop = pairs[is_stop & has_past]
        stop = stop[stop.groupby(REQ)["label"].transform("max") > 0]
        x_learn = model.features(batch, learn.drop(columns="label"), features)
        x_stop = model.features(batch, stop.drop(columns="label"), features)
        logger.info(
            "ranker rows: %s to learn, %s to stop early", f"{len(learn):,}", f"{len(stop):,}"
        )
    with stages.stage("fit ranker"):
        names = [col for col in x_learn.columns if col not in (REQ, ITEM)]
        ranker = Ranker(names)
        ranker.fit(
            (x_learn, learn["label"].to_numpy(), learn[REQ].to_numpy()),
            (x_stop, stop["label"].to_numpy(), stop[REQ].to_numpy()),
            cfg.ranker,
            cfg.seed,
        )
    with stages.stage("cold-start choice (validation)"):
        cold = cold_start_choice(
            model,
            ranker,
            events,
            past,
            users,
            (split.validation_start, split.test_start),
            config.requests.target_events,
            features,
        )
        cold_by_popularity = cold.get("popularity", 0.0) > cold.get("ranker", 0.0)
        logger.info(
            "requests without a past (validation): %s -> %s",
            cold,
            "popularity order" if cold_by_popularity else "ranker order",
        )
    with stages.stage("refit sources (train + validation)"):
        final = Recommender.fit(frame[frame["ts"] < test_ts], catalog, users, cfg)
        final.ranker = ranker
        final.allow_rebuy = model.allow_rebuy
        final.cold_by_popularity = cold_by_popularity
    with stages.stage("test evaluation"):
        requests, targets = window_requests(
            events,
            split.test_start,
            split.end,
            config.requests.target_events,
            config.requests.test,
            cfg.seed + 1,
        )
        past = frame[frame["ts"] < end_ts]
        batch = batch_from_events(requests, past, users, final.users, cfg.history_items)
        k = max(config.ks)
        lists = {"ranker": final.recommend_batch(batch, k, features)}
        lists["random"] = evaluate.random_lists(final, batch, k, cfg.seed)
        lists["popular"] = evaluate.popular(final, batch, k)
        for name in ("als", "covisit", "content"):
            lists[name] = final.recommend_batch(batch, k, None, sources=[final.source(name)])
        lists = {name: evaluate.as_lists(final, ranked, requests) for name, ranked in lists.items()}
        popularity, prices = evaluate.item_context(final, frame, test_ts)
        overall, by_segment = evaluate.judge(
            lists, final, batch, requests, targets, tuple(config.ks), popularity, prices
        )
    report = {
        "split": {
            "validation_start": str(split.validation_start),
            "test_start": str(split.test_start),
            "end": str(split.end),
            "test_requests": len(requests),
            "test_targets": len(targets),
        },
        "models": overall,
        "segments": by_segment,
        "candidates": recall,
        "rebuy": {"share": share, "allowed": final.allow_rebuy},
        "cold_start": {**cold, "by_popularity": cold_by_popularity},
        "ranker": {"best_iteration": ranker.best_iteration, "features": len(names)},
    }
    final.meta = {"lake_version": lake_version, "data_end": str(split.end)}
    return TrainResult(final, report, stages.rows, ranker.importance(), ranker.curve, lake_version)

"""``recsys train``: lake to registered model version, with honest evaluation on the way.

Stages, each timed:
1. split the lake in time: train | validation | test windows;
2. fit the candidate sources on train; build validation requests and their candidates;
3. fetch their stored features with Feast point-in-time retrieval; fit the ranker
   (early stopping on held-out validation requests); decide the repurchase policy;
4. refit the sources on train + validation; judge ranker and baselines once on test;
5. refit the sources and stored histories on every event (train + validation + test),
   keeping the ranker and the choices made on validation: the test figures judge the
   procedure, and the deployed artefact is that procedure applied to all the shop knows;
6. log everything to MLflow and register the model with alias ``candidate``.
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
from recsys.splits import choose_window_days, split_last_days
from recsys.workspace import Workspace
from training import evaluate
from training.config import TrainConfig
from training.requests import window_requests
from training.segment_orders import segment_orders

logger = logging.getLogger(__name__)
# the sources judged alone on test, beside the ranker
SOURCE_BASELINES = ("als", "covisit", "sknn", "content")


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


def learning_rows(pairs: pd.DataFrame, negatives: int, seed: int) -> pd.DataFrame:
    """The labelled candidates of the requests with a positive among them: every positive and
    at most ``negatives`` negatives drawn per request."""
    learn = pairs[pairs.groupby(REQ)["label"].transform("max") > 0]
    negative = learn[learn["label"] == 0]
    # each request's negatives in a random order (drawn with the seed), its first kept
    shuffled = negative.iloc[
        np.lexsort((np.random.default_rng(seed).random(len(negative)), negative[REQ].to_numpy()))
    ]
    kept = shuffled[(shuffled.groupby(REQ, sort=False).cumcount() < negatives).to_numpy()]
    return pd.concat([learn[learn["label"] > 0], kept]).sort_index()


def features_of(model: Recommender, batch: Batch, rows: pd.DataFrame, features) -> pd.DataFrame:
    """``model.features`` of some rows, computed on a batch of only their requests: a
    source's per-request work (seed products, scores) is done for those alone, not for every
    request of the window (most have no positive candidate and teach nothing)."""
    reqs = np.unique(rows[REQ].to_numpy())
    renumbered = rows.drop(columns="label").assign(**{REQ: np.searchsorted(reqs, rows[REQ])})
    x = model.features(batch.subset(reqs), renumbered, features)
    return x.assign(**{REQ: rows[REQ].to_numpy()}) if REQ in x else x


# request numbers of an earlier window start here, so no two windows share one
WINDOW_OFFSET = 100_000_000


def earlier_window(
    back: int,
    split,
    frame: pd.DataFrame,
    events: pd.DataFrame,
    users: pd.DataFrame,
    catalog: Catalog,
    config: TrainConfig,
    content_from: Recommender,
    features,
    target_events: tuple[str, ...],
    next_click: bool,
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Ranker rows from the window ``back`` lengths before validation, answered by sources fit
    on the events before that window only: as point-in-time as the validation window's, so
    the ranker learns from several windows' requests without any leak. ``None`` when the
    window has too little before or in it."""
    cfg = config.model
    length = split.test_start - split.validation_start
    start = split.validation_start - back * length
    end = start + length
    start_ts, end_ts = start.timestamp(), end.timestamp()
    before = frame[frame["ts"] < start_ts]
    requests, targets = window_requests(
        events,
        start,
        end,
        target_events,
        config.requests.train,
        cfg.seed + back,
        every_session=config.requests.every_session,
        next_click=next_click,
    )
    if len(requests) < 20 or before[c.USER_ID].nunique() < 20:
        logger.info("earlier window %d (%s to %s): too little data, not used", back, start, end)
        return None
    # content embeds the catalogue alone, whatever the window: the validation model's serves
    names = tuple(source.name for source in content_from.sources)
    model = Recommender.fit(
        before, catalog, users, cfg, only=tuple(n for n in names if n != "content")
    )
    if "content" in names:
        model.sources.insert(names.index("content"), content_from.source("content"))
    model.allow_rebuy = content_from.allow_rebuy
    past = frame[frame["ts"] < end_ts]
    batch = batch_from_events(requests, past, users, model.users, cfg.history_items)
    pairs = model.candidates(batch)
    pairs["label"] = labelled(pairs, requests, targets, model)
    has_past = pairs[REQ].isin(batch.history[REQ].unique()).to_numpy()
    rows = learning_rows(pairs[has_past], cfg.ranker.negatives_per_request, cfg.seed + back)
    x = features_of(model, batch, rows, features)
    rows = rows.assign(**{REQ: rows[REQ].to_numpy() + back * WINDOW_OFFSET})
    return x.reset_index(drop=True), rows.reset_index(drop=True)


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


def chosen_targets(events: pd.DataFrame, config: TrainConfig) -> tuple[tuple[str, ...], str]:
    """The configured target events, or carts and purchases, or views where the shop logs
    neither (a click log): a request is judged on what the shop's users are seen to want."""
    given = config.requests.target_events
    if given is not None:
        return tuple(given), "configured"
    wanted = (c.CART, c.PURCHASE)
    if events[c.EVENT_TYPE].isin(wanted).any():
        return wanted, "carts and purchases (the default)"
    logger.warning(
        "the lake holds no cart or purchase events: training learns from next views "
        "(set requests.target_events to choose otherwise)"
    )
    return (c.VIEW,), "views: the lake holds no cart or purchase events"


def chosen_requests(target_events: tuple[str, ...], config: TrainConfig) -> tuple[bool, str]:
    """Whether requests are next clicks inside sessions (configured, or where the targets are
    views alone: in a click log the next click is what a visitor wants, and an anonymous
    visitor's request carries only its session), and why."""
    given = config.requests.next_click
    if given is not None:
        return given, "configured"
    if tuple(target_events) == (c.VIEW,):
        logger.info("requests: the next click inside sessions (the targets are views)")
        return True, "the next click inside sessions: the targets are views (a click log)"
    return False, "session starts, judged on every target event after them"


def chosen_windows(events: pd.DataFrame, config: TrainConfig) -> dict[str, object]:
    """The configured window lengths, or those the data suggests where the config leaves them
    out (logged, and written to the report with the reason)."""
    given = config.split
    if given.validation_days is not None and given.test_days is not None:
        return {
            "validation_days": given.validation_days,
            "test_days": given.test_days,
            "windows": "configured",
        }
    choice = choose_window_days(events)
    out = {
        "validation_days": given.validation_days or choice.validation_days,
        "test_days": given.test_days or choice.test_days,
        "windows": f"chosen from the data: {choice.reason}",
    }
    logger.info(
        "split windows %s: validation %d days, test %d days",
        out["windows"],
        out["validation_days"],
        out["test_days"],
    )
    return out


def train(workspace: Workspace, config: TrainConfig) -> TrainResult:
    from features.build import read_lake

    stages = Stages()
    cfg = config.model
    with stages.stage("load"):
        events, products, users, lake_version = read_lake(workspace)
        windows = chosen_windows(events, config)
        target_events, targets_why = chosen_targets(events, config)
        next_click, next_click_why = chosen_requests(target_events, config)
        split = split_last_days(events, windows["validation_days"], windows["test_days"])
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
            target_events,
            limit,
            cfg.seed,
            every_session=config.requests.every_session,
            next_click=next_click,
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
        held_out = reqs[: min(config.requests.early_stopping, len(reqs) // 4)]
        # half the held-out requests watch early stopping, half check what it chose: the
        # rounds kept, and the order each user segment is served by
        stop_reqs, check_reqs = np.sort(held_out[::2]), np.sort(held_out[1::2])
        is_stop = pairs[REQ].isin(held_out).to_numpy()
        # requests without a past are left to the cold-start choice, which judges the ranker on
        # them: it must not have learned or stopped on any
        has_past = pairs[REQ].isin(batch.history[REQ].unique()).to_numpy()
        learn = learning_rows(
            pairs[~is_stop & has_past], cfg.ranker.negatives_per_request, cfg.seed
        )
        held = pairs[is_stop & has_past]
        held = held[held.groupby(REQ)["label"].transform("max") > 0]
        x_learn = features_of(model, batch, learn, features)
        x_held = features_of(model, batch, held, features)
        in_stop = held[REQ].isin(stop_reqs).to_numpy()
        stop, check = held[in_stop], held[~in_stop]
    learned_from = [{"window": "validation", "requests": int(learn[REQ].nunique())}]
    for back in range(1, config.requests.windows):
        with stages.stage(f"earlier window {back} (sources, candidates, features)"):
            earlier = earlier_window(
                back,
                split,
                frame,
                events,
                users,
                catalog,
                config,
                model,
                features,
                target_events,
                next_click,
            )
        if earlier is None:
            break
        x_more, more = earlier
        learned_from.append(
            {"window": f"validation - {back}", "requests": int(more[REQ].nunique())}
        )
        x_learn = pd.concat([x_learn, x_more], ignore_index=True)
        learn = pd.concat([learn, more], ignore_index=True)
    logger.info(
        "ranker rows: %s to learn (%s), %s to stop early, %s to check",
        f"{len(learn):,}",
        ", ".join(f"{w['window']}: {w['requests']:,} requests" for w in learned_from),
        f"{len(stop):,}",
        f"{len(check):,}",
    )
    with stages.stage("fit ranker"):
        names = [col for col in x_learn.columns if col not in (REQ, ITEM)]
        ranker = Ranker(names)
        ranker.fit(
            (x_learn, learn["label"].to_numpy(), learn[REQ].to_numpy()),
            (x_held[in_stop], stop["label"].to_numpy(), stop[REQ].to_numpy()),
            (x_held[~in_stop], check["label"].to_numpy(), check[REQ].to_numpy()),
            cfg.ranker,
            cfg.seed,
        )
    with stages.stage("segment orders (validation check requests)"):
        model.ranker = ranker
        orders, order_evidence = segment_orders(
            model, batch, requests, targets, check_reqs, features
        )
    with stages.stage("cold-start choice (validation)"):
        cold = cold_start_choice(
            model,
            ranker,
            events,
            past,
            users,
            (split.validation_start, split.test_start),
            target_events,
            features,
        )
        cold_by_popularity = cold.get("popularity", 0.0) > cold.get("ranker", 0.0)
        logger.info(
            "requests without a past (validation): %s -> %s",
            cold,
            "popularity order" if cold_by_popularity else "ranker order",
        )
    with stages.stage("refit sources (train + validation: the judged model)"):
        final = Recommender.fit(frame[frame["ts"] < test_ts], catalog, users, cfg)
        final.ranker = ranker
        final.allow_rebuy = model.allow_rebuy
        final.cold_by_popularity = cold_by_popularity
        final.segment_orders = dict(orders)
    with stages.stage("test evaluation"):
        requests, targets = window_requests(
            events,
            split.test_start,
            split.end,
            target_events,
            config.requests.test,
            cfg.seed + 1,
            next_click=next_click,
        )
        past = frame[frame["ts"] < end_ts]
        batch = batch_from_events(requests, past, users, final.users, cfg.history_items)
        k = max(config.ks)
        answered = evaluate.ranker_and_sources(final, batch, k, features, SOURCE_BASELINES)
        lists = {
            "ranker": answered.pop("ranker"),
            "random": evaluate.random_lists(final, batch, k, cfg.seed),
            "popular": evaluate.popular(final, batch, k),
            **answered,
        }
        lists = {name: evaluate.as_lists(final, ranked, requests) for name, ranked in lists.items()}
        popularity, prices = evaluate.item_context(final, frame, test_ts)
        overall, by_segment = evaluate.judge(
            lists, final, batch, requests, targets, tuple(config.ks), popularity, prices
        )
    judged = {"data_end": final.data_end, "users": len(final.users)}
    del model, batch, lists
    if config.artefact == "judged":
        deployed, events_fit = final, int((frame["ts"] < test_ts).sum())
        logger.info("artefact: the judged model, fit before the test window (config)")
    else:
        with stages.stage("refit sources (every event: the deployed artefact)"):
            deployed = Recommender.fit(frame, catalog, users, cfg)
            deployed.ranker = ranker
            deployed.allow_rebuy = final.allow_rebuy
            deployed.cold_by_popularity = cold_by_popularity
            deployed.segment_orders = dict(orders)
            events_fit = len(frame)
        del final
        logger.info(
            "deployed artefact fit on %s events of %s users, up to %s",
            f"{events_fit:,}",
            f"{len(deployed.users):,}",
            pd.Timestamp(deployed.data_end, unit="s", tz="UTC"),
        )
    report = {
        "split": {
            **windows,
            "target_events": list(target_events),
            "targets": targets_why,
            "next_click": next_click,
            "requests": next_click_why,
            "validation_start": str(split.validation_start),
            "test_start": str(split.test_start),
            "end": str(split.end),
            "test_requests": len(requests),
            "test_targets": len(targets),
        },
        "models": overall,
        "segments": by_segment,
        "candidates": recall,
        "rebuy": {"share": share, "allowed": deployed.allow_rebuy},
        "cold_start": {**cold, "by_popularity": cold_by_popularity},
        "segment_orders": {"served_by": orders, "validation": order_evidence},
        "ranker": {
            "best_iteration": ranker.best_iteration,
            "rounds": ranker.best_iteration + 1,
            "early_stopping_rounds": ranker.rounds.stopped + 1,
            "check_requests": ranker.rounds.check_requests,
            "check_ndcg@10": {
                "chosen": ranker.rounds.more_trees,
                "one_tree": ranker.rounds.one_tree,
                "difference_ci95": list(ranker.rounds.ci),
            },
            "learning_requests": learned_from,
            "stop_requests": int(stop[REQ].nunique()),
            "features": len(names),
        },
        "artefact": {
            "judged": (
                "the test figures judge the procedure: sources fit on train + validation, "
                "ranker and choices from validation, test-window requests answered once"
            ),
            "judged_model_data_end": _instant(judged["data_end"]),
            "judged_model_users": judged["users"],
            "deployed": (
                "the registered artefact is the same procedure refit on every event up to "
                "the data end (train + validation + test), same ranker and choices"
                if config.artefact == "every_event"
                else "the registered artefact is the judged model itself (artefact: judged)"
            ),
            "deployed_data_end": _instant(deployed.data_end),
            "deployed_users": len(deployed.users),
            "deployed_events": events_fit,
        },
    }
    deployed.meta = {"lake_version": lake_version, "data_end": str(split.end)}
    return TrainResult(
        deployed, report, stages.rows, ranker.importance(), ranker.curve, lake_version
    )


def _instant(epoch: float) -> str:
    return str(pd.Timestamp(epoch, unit="s", tz="UTC"))

"""Never worse than the best simple list: each user segment served by the order that wins it.

The ranker learns one order for everyone. For some segments of some shops a simple list is
better: each light user's own most-bought items in a grocery, the last item's successor in a
sequence. On held-out validation requests the ranker neither learned nor stopped on, each
segment's ranker NDCG@10 is compared, request by request, with each simple order of the same
candidates: each source's own (ALS, co-visitation, popularity, the user's own past items by
frequency and recency, content) and the last item's successors and item-KNN alone. Where the
best of them beats the ranker beyond noise (the paired 95% interval of the difference above
zero, on at least ``MIN_REQUESTS`` requests), the segment is served by it.
New users are left to the cold-start choice, which judges every such request of the window.
"""

import logging

import numpy as np
import pandas as pd

from recommender.model import Recommender, order_scores
from recommender.segments import NEW, SEGMENTS, batch_segments
from recommender.state import ITEM, REQ, Batch, group_positions, order_by_request_and_score
from recsys import metrics
from training import evaluate

logger = logging.getLogger(__name__)
MIN_REQUESTS = 50
K = 10
# ranker inputs that are simple lists of their own: the last item's successors, item-KNN
FEATURE_ORDERS = ("covisit_follow_last", "covisit_knn")


def _interval(diff: np.ndarray) -> tuple[float, float]:
    if len(diff) < 2:
        return (-np.inf, np.inf)
    half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
    return (float(diff.mean() - half), float(diff.mean() + half))


def choose(
    per_request: dict[str, np.ndarray], segments: np.ndarray, min_requests: int = MIN_REQUESTS
) -> tuple[dict[str, str], dict[str, dict[str, object]]]:
    """``{segment: source}`` for the segments a source wins beyond noise, and for every segment
    the figures behind the choice. ``per_request``: NDCG@10 of each request by order name,
    ``ranker`` among them, aligned with ``segments``."""
    chosen: dict[str, str] = {}
    evidence: dict[str, dict[str, object]] = {}
    for segment in SEGMENTS:
        if segment == NEW:
            continue
        mine = segments == segment
        n = int(mine.sum())
        ranker = per_request["ranker"][mine]
        row: dict[str, object] = {"requests": n, "ranker": float(ranker.mean()) if n else None}
        best, best_mean = None, -np.inf
        for name, values in per_request.items():
            if name == "ranker":
                continue
            row[name] = float(values[mine].mean()) if n else None
            if n and values[mine].mean() > best_mean:
                best, best_mean = name, float(values[mine].mean())
        if best is not None and n >= min_requests:
            low, high = _interval(per_request[best][mine] - ranker)
            row["best_simple"] = best
            row["difference_ci95"] = [low, high]
            if low > 0:
                chosen[segment] = best
        row["served_by"] = chosen.get(segment, "ranker")
        evidence[segment] = row
    return chosen, evidence


def segment_orders(
    model: Recommender,
    batch: Batch,
    requests: pd.DataFrame,
    targets: pd.DataFrame,
    check: np.ndarray,
    features,
) -> tuple[dict[str, str], dict[str, dict[str, object]]]:
    """Judge the ranker and each simple order on the ``check`` requests of a validation
    batch, over the same candidates serving would order (``model`` holds the ranker and is
    fit before the window), then ``choose``."""
    part = batch.subset(np.asarray(check))
    asked = requests.iloc[np.asarray(check)].reset_index(drop=True)
    wanted = targets[targets[metrics.REQUEST_ID].isin(asked[metrics.REQUEST_ID])]
    pairs = model.candidates(part)
    inputs = model.features(part, pairs, features, model.ranker.feature_names)
    orders = {"ranker": model.ranker.score(inputs)}
    names = [source.name for source in model.sources] + list(FEATURE_ORDERS)
    for name in names:
        orders[name] = order_scores(name, pairs, inputs)
    index = asked[metrics.REQUEST_ID].to_numpy()
    reqs = pairs[REQ].to_numpy()
    per_request = {}
    for name, scores in orders.items():
        order = order_by_request_and_score(reqs, scores)
        position = group_positions(reqs[order])[0]
        top = order[position < K]
        ranked = pd.DataFrame(
            {REQ: reqs[top], ITEM: pairs[ITEM].to_numpy()[top], "rank": position[position < K] + 1}
        )
        judged = metrics.per_request(evaluate.as_lists(model, ranked, asked), wanted, ks=(K,))
        per_request[name] = judged[f"ndcg@{K}"].reindex(index).fillna(0.0).to_numpy()
    chosen, evidence = choose(per_request, batch_segments(part))
    logger.info("segments served by a simple order (validation check requests): %s", chosen)
    return chosen, evidence

"""Offline ranking metrics: how good ranked lists are against what the users then did.

Everything is computed on flat arrays (one ``bincount`` per metric and cut-off) instead of a
Python loop over requests, so that judging tens of thousands of requests with a hundred items
each stays well under a second and can run after every training job.

Relevance is binary: an item is relevant to a request when it is among that request's targets.
A target counts once, at its best rank, so an item listed twice cannot push recall above 1.
Only requests with at least one target are judged; a request without targets has nothing to be
judged on, and a judged request without recommendations counts as all-miss.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from recsys.columns import ITEM_ID
from recsys.errors import RecsysError

REQUEST_ID: Final = "request_id"
RANK: Final = "rank"

PER_REQUEST_METRICS: Final = ("precision", "recall", "ndcg", "map", "hit_rate", "revenue")
MRR: Final = "mrr"
REQUESTS: Final = "requests"


@dataclass(frozen=True)
class _Judged:
    """Recommendations of the judged requests, as arrays, and the hits among them."""

    requests: pd.Index  # the judged requests, in order of first appearance in the targets
    n_targets: np.ndarray  # distinct targets per judged request
    rec_rank: np.ndarray  # rank of every judged recommendation row
    rec_item: np.ndarray | None  # position in ``shown_items`` of every judged row, if asked
    shown_items: pd.Index | None  # distinct items of the judged rows, if asked
    hit_request: np.ndarray  # hits (first listing of a target), sorted by request then rank
    hit_rank: np.ndarray
    hit_item: np.ndarray  # position of the hit item in ``target_items``
    target_items: pd.Index


def _require(frame: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise RecsysError(f"{name}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise RecsysError(
            f"{name}: missing column(s) {', '.join(map(repr, missing))} "
            f"(expected columns {', '.join(map(repr, columns))})"
        )


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """Distinct cut-offs, ascending, so that output columns have one stable order."""
    if isinstance(ks, int | np.integer):
        ks = (ks,)
    values = list(ks)
    if not values:
        raise RecsysError("ks: give at least one cut-off k")
    for k in values:
        if isinstance(k, bool) or not isinstance(k, int | np.integer):
            raise RecsysError(f"ks: every cut-off must be an integer, got {k!r}")
        if k < 1:
            raise RecsysError(f"ks: every cut-off must be at least 1, got {k}")
    return tuple(sorted({int(k) for k in values}))


def _ranks(recs: pd.DataFrame) -> np.ndarray:
    """The rank column as int64, refusing anything that is not a 1-based whole number."""
    column = recs[RANK]
    if column.empty:  # an empty frame's columns are often of dtype object
        return np.empty(0, dtype=np.int64)
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise RecsysError(f"recs: column {RANK!r} must be numeric, got dtype {column.dtype}")
    values = column.to_numpy()
    if not np.issubdtype(values.dtype, np.integer):
        values = values.astype(np.float64)
        if not np.all(np.isfinite(values)) or not np.all(values == np.floor(values)):
            raise RecsysError(f"recs: column {RANK!r} must hold whole numbers")
    ranks = values.astype(np.int64)
    if len(ranks) and ranks.min() < 1:
        raise RecsysError(f"recs: column {RANK!r} is 1-based, found rank {ranks.min()}")
    return ranks


def _check_unique_ranks(rec_request: np.ndarray, rec_rank: np.ndarray) -> None:
    """Refuse two rows at one rank of a request, which would let precision exceed 1.

    The pair is folded into one int64 key, then counted in a table (dense lists, the usual
    case) or sorted: both several times faster than hashing the pair of columns.
    """
    if not len(rec_rank):
        return
    span = int(rec_rank.max()) + 1
    n_keys = span * (int(rec_request.max()) + 1)
    if n_keys <= 4 * len(rec_rank) + 1_000_000:  # the usual dense lists: count every slot
        repeated = bool(np.bincount(rec_request * span + rec_rank, minlength=n_keys).max() > 1)
    elif n_keys < 2**62:
        keys = np.sort(rec_request * span + rec_rank)
        repeated = bool(np.any(keys[1:] == keys[:-1]))
    else:  # absurdly large ranks: the single key would overflow, hash the pair instead
        repeated = bool(pd.DataFrame({"r": rec_request, "k": rec_rank}).duplicated().any())
    if repeated:
        raise RecsysError(f"recs: column {RANK!r} must be unique within each {REQUEST_ID!r}")


def _judge(recs: pd.DataFrame, targets: pd.DataFrame, with_items: bool = False) -> _Judged:
    """Find the hits; ``with_items`` also encodes every shown item for coverage and novelty.

    Items are hashed once: either only looked up among the targets (enough for the
    per-request metrics), or all encoded, when the catalogue-level metrics need them anyway.
    """
    _require(recs, "recs", (REQUEST_ID, ITEM_ID, RANK))
    _require(targets, "targets", (REQUEST_ID, ITEM_ID))
    ranks = _ranks(recs)
    targets = targets[[REQUEST_ID, ITEM_ID]].drop_duplicates()
    requests = pd.Index(pd.unique(targets[REQUEST_ID]), name=REQUEST_ID)
    target_request = requests.get_indexer(targets[REQUEST_ID])
    n_targets = np.bincount(target_request, minlength=len(requests))
    target_items = pd.Index(pd.unique(targets[ITEM_ID]))
    n_items = max(len(target_items), 1)
    target_keys = pd.Index(target_request * n_items + target_items.get_indexer(targets[ITEM_ID]))

    rec_request = requests.get_indexer(recs[REQUEST_ID])
    rec_item = recs[ITEM_ID].to_numpy()
    judged = rec_request >= 0
    if not judged.all():
        rec_request, ranks, rec_item = rec_request[judged], ranks[judged], rec_item[judged]
    _check_unique_ranks(rec_request, ranks)

    shown_codes: np.ndarray | None = None
    shown_items: pd.Index | None = None
    if with_items:
        shown_codes, uniques = pd.factorize(rec_item)
        shown_items = pd.Index(uniques)
        rec_target_item = target_items.get_indexer(shown_items)[shown_codes]
    else:
        rec_target_item = target_items.get_indexer(rec_item)

    # A hit is a recommended (request, item) pair that is also a target pair; both pairs are
    # encoded as one integer so a single hash lookup finds them.
    candidate = np.flatnonzero(rec_target_item >= 0)
    keys = rec_request[candidate] * n_items + rec_target_item[candidate]
    hit_rows = candidate[target_keys.get_indexer(keys) >= 0]
    hit_request = rec_request[hit_rows]
    hit_rank = ranks[hit_rows]
    hit_item = rec_target_item[hit_rows]
    order = np.lexsort((hit_rank, hit_request))
    hit_request, hit_rank, hit_item = hit_request[order], hit_rank[order], hit_item[order]
    first_listing = ~pd.Series(hit_request * n_items + hit_item).duplicated().to_numpy()
    return _Judged(
        requests=requests,
        n_targets=n_targets,
        rec_rank=ranks,
        rec_item=shown_codes,
        shown_items=shown_items,
        hit_request=hit_request[first_listing],
        hit_rank=hit_rank[first_listing],
        hit_item=hit_item[first_listing],
        target_items=target_items,
    )


def _unique_index(series: pd.Series, name: str) -> pd.Series:
    """A lookup Series with numeric values; an ambiguous lookup is refused, not guessed."""
    if not isinstance(series, pd.Series):
        raise RecsysError(f"{name}: expected a pandas Series, got {type(series).__name__}")
    if not series.index.is_unique:
        duplicated = series.index[series.index.duplicated()].unique()[:5]
        raise RecsysError(
            f"{name}: index must be unique, repeated: {', '.join(map(repr, duplicated))}"
        )
    try:
        return pd.to_numeric(series).astype(np.float64)
    except (TypeError, ValueError) as error:
        raise RecsysError(f"{name}: values must be numeric ({error})") from error


def _per_request(judged: _Judged, ks: tuple[int, ...], prices: pd.Series | None) -> pd.DataFrame:
    n = len(judged.requests)
    req, rank = judged.hit_request, judged.hit_rank
    # hits so far within the request, this one included: hit_request is sorted and ranks are
    # unique per request, so this is the number of hits at rank <= this hit's rank
    starts = np.flatnonzero(np.r_[True, req[1:] != req[:-1]]) if len(req) else np.array([], int)
    lengths = np.diff(np.r_[starts, len(req)])
    hits_so_far = np.arange(len(req)) - np.repeat(starts, lengths) + 1
    gain = 1.0 / np.log2(rank + 1.0)
    precision_at_hit = hits_so_far / rank
    price = None
    if prices is not None:
        price = prices.reindex(judged.target_items).fillna(0.0).to_numpy()[judged.hit_item]
    ideal = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(2, max(ks) + 2)))]

    columns: dict[str, dict[int, np.ndarray]] = {name: {} for name in PER_REQUEST_METRICS}
    for k in ks:
        top = rank <= k
        at = req[top]
        hits = np.bincount(at, minlength=n).astype(np.float64)
        relevant_in_reach = np.minimum(judged.n_targets, k)
        columns["precision"][k] = hits / k
        columns["recall"][k] = hits / judged.n_targets
        columns["ndcg"][k] = (
            np.bincount(at, weights=gain[top], minlength=n) / ideal[relevant_in_reach]
        )
        columns["map"][k] = (
            np.bincount(at, weights=precision_at_hit[top], minlength=n) / relevant_in_reach
        )
        columns["hit_rate"][k] = (hits > 0).astype(np.float64)
        if price is not None:
            columns["revenue"][k] = np.bincount(at, weights=price[top], minlength=n)
    mrr = np.zeros(n)
    mrr[req[starts]] = 1.0 / rank[starts]

    data = {f"{name}@{k}": values[k] for name, values in columns.items() for k in values}
    data[MRR] = mrr
    return pd.DataFrame(data, index=judged.requests)


def per_request(
    recs: pd.DataFrame,
    targets: pd.DataFrame,
    ks: Sequence[int] = (10, 20),
    prices: pd.Series | None = None,
) -> pd.DataFrame:
    """Metrics of every judged request, the unit that segments and significance tests need.

    One row per distinct request of ``targets`` (in order of first appearance), indexed by
    ``request_id``; a request without recommendations scores 0 everywhere. Columns, metric by
    metric then by ascending k: ``precision@k, recall@k, ndcg@k, map@k, hit_rate@k``,
    ``revenue@k`` (only with ``prices``, a Series item_id -> price where a missing price counts
    0), and ``mrr`` over the whole recorded list. Precision divides by k, not by the length of
    the list, so a short list is not rewarded for being short; map and ndcg normalise by
    ``min(|targets|, k)``, the best any list of length k could do.
    """
    ks = _check_ks(ks)
    price_lookup = _unique_index(prices, "prices") if prices is not None else None
    return _per_request(_judge(recs, targets), ks, price_lookup)


def _check_catalogue_size(catalogue_size: int) -> None:
    if isinstance(catalogue_size, bool) or not isinstance(catalogue_size, int | np.integer):
        raise RecsysError(f"catalogue_size must be an integer, got {catalogue_size!r}")
    if catalogue_size < 1:
        raise RecsysError(f"catalogue_size must be at least 1, got {catalogue_size}")


def _coverage(
    codes: np.ndarray, items: pd.Index, ranks: np.ndarray, ks: tuple[int, ...], catalogue_size: int
) -> dict[str, float]:
    result = {}
    for k in ks:
        shown = np.bincount(codes[ranks <= k], minlength=len(items)) > 0
        result[f"coverage@{k}"] = float(shown.sum() / catalogue_size)
    return result


def _popularity_counts(item_popularity: pd.Series) -> pd.Series:
    counts = _unique_index(item_popularity, "item_popularity").fillna(0.0)
    if (counts < 0).any():
        raise RecsysError("item_popularity: counts must not be negative")
    return counts


def _novelty(
    codes: np.ndarray, items: pd.Index, ranks: np.ndarray, ks: tuple[int, ...], counts: pd.Series
) -> dict[str, float]:
    n_items = len(counts) + int((~items.isin(counts.index)).sum())
    shown_counts = counts.reindex(items).fillna(0.0).to_numpy()
    information = -np.log2((shown_counts + 1.0) / (counts.sum() + n_items))
    result = {}
    for k in ks:
        top = codes[ranks <= k]
        result[f"novelty@{k}"] = float(information[top].mean()) if len(top) else float("nan")
    return result


def summarise(
    recs: pd.DataFrame,
    targets: pd.DataFrame,
    ks: Sequence[int] = (10, 20),
    catalogue_size: int | None = None,
    item_popularity: pd.Series | None = None,
    prices: pd.Series | None = None,
) -> dict[str, float]:
    """One number per metric for a model, comparable across models judged on the same targets.

    Keys: the means over judged requests of the ``per_request`` columns, in that order, then
    ``coverage@k`` (only with ``catalogue_size``), then ``novelty@k`` (only with
    ``item_popularity``). Coverage and novelty look at the same judged requests as the other
    metrics, so that every number describes one population.

    ``coverage@k`` is the number of distinct items shown at rank <= k over all judged requests,
    divided by ``catalogue_size``. ``novelty@k`` is the mean over shown (request, item) pairs at
    rank <= k of ``-log2 p(item)``; ``item_popularity`` is a Series item_id -> count, smoothed by
    one so that an item nobody interacted with has a finite, highest novelty instead of an
    infinite one: ``p(item) = (count + 1) / (sum of counts + n_items)`` where a missing item
    has count 0 and ``n_items`` counts the items of ``item_popularity`` plus the items it lacks
    that are recommended, at any rank, to a judged request (so that p sums to 1 over every item
    in play, whatever the cut-offs asked for). Novelty is nan when no item is shown at all.
    """
    ks = _check_ks(ks)
    if catalogue_size is not None:
        _check_catalogue_size(catalogue_size)
    price_lookup = _unique_index(prices, "prices") if prices is not None else None
    counts = _popularity_counts(item_popularity) if item_popularity is not None else None
    with_items = catalogue_size is not None or counts is not None
    judged = _judge(recs, targets, with_items=with_items)
    if not len(judged.requests):
        raise RecsysError("targets: no request to judge (the targets frame is empty)")
    means = _per_request(judged, ks, price_lookup).mean()
    result = {name: float(value) for name, value in means.items()}
    codes, items, ranks = judged.rec_item, judged.shown_items, judged.rec_rank
    if catalogue_size is not None and codes is not None and items is not None:
        result |= _coverage(codes, items, ranks, ks, catalogue_size)
    if counts is not None and codes is not None and items is not None:
        result |= _novelty(codes, items, ranks, ks, counts)
    return result


def by_segment(per_request_frame: pd.DataFrame, segments: pd.Series) -> dict[str, dict[str, float]]:
    """Means of every metric per segment, to see whom a model serves well and whom badly.

    ``segments`` maps request_id -> label; a request it lacks belongs to no segment. A label
    with no request in ``per_request_frame`` is left out rather than reported as nan. Each
    segment also gets ``"requests"``, its number of requests (an int), so that a mean over a
    handful of requests can be told apart from a robust one. Labels come out sorted.
    """
    if not isinstance(per_request_frame, pd.DataFrame):
        raise RecsysError(
            "per_request_frame: expected the DataFrame of per_request, "
            f"got {type(per_request_frame).__name__}"
        )
    if not isinstance(segments, pd.Series):
        raise RecsysError(f"segments: expected a pandas Series, got {type(segments).__name__}")
    if not segments.index.is_unique:
        raise RecsysError("segments: a request can be in one segment only (index not unique)")
    labels = segments.reindex(per_request_frame.index)
    grouped = per_request_frame.groupby(labels.to_numpy(), sort=True, dropna=True)
    means = grouped.mean()
    sizes = grouped.size()
    result: dict[str, dict[str, float]] = {}
    for label, row in means.iterrows():
        entry: dict[str, float] = {name: float(value) for name, value in row.items()}
        entry[REQUESTS] = int(sizes[label])
        result[label] = entry
    return result

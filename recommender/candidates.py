"""Candidate generation: the union of every source's proposals, each scored by every source.

Each source proposes its own top list; the union is capped at the model's ``candidates`` by
the best rank any source gave an item. Every candidate then gets every source's features, so
the ranker can weigh, say, an ALS proposal by its co-visitation score.

The union is computed on arrays (one key per request and item) rather than by merging frames:
the service asks for one request at a time, where a merge of small frames costs more than the
work, and evaluation for thousands, where the arrays are as fast.
"""

import logging

import numpy as np
import pandas as pd

from recommender.state import (
    ITEM,
    NO_PROPOSALS,
    REQ,
    Batch,
    Exclusions,
    group_positions,
    order_by_request_and_score,
    pair_key,
)

logger = logging.getLogger(__name__)
NOT_PROPOSED = 1_000.0
ITEM_BITS = np.int64((1 << 32) - 1)


def generate(sources: list, batch: Batch, exclusions: Exclusions, limit: int) -> pd.DataFrame:
    """``req, item`` plus ``<source>_rank`` (1 = its best) and ``n_sources`` per candidate.

    Rows are ordered by request, then best rank, then number of sources (more first), then
    item; the rank columns of the sources that proposed something come first."""
    proposed: list[tuple[str, np.ndarray, np.ndarray]] = []  # (rank column, keys, ranks)
    for source in sources:
        reqs, items, scores = _proposals(source, batch, exclusions)
        if len(reqs) == 0:
            continue
        order = order_by_request_and_score(reqs, scores)
        reqs = reqs[order].astype(np.int64)
        ranks = group_positions(reqs)[0] + 1.0
        keys = pair_key(reqs, items[order])
        proposed.append((f"{source.name}_rank", keys, ranks))
    if not proposed:
        return pd.DataFrame(
            {REQ: pd.Series([], dtype=np.int64), ITEM: pd.Series([], dtype=np.int64)}
        )
    # the union of the proposals, in (request, item) order
    union, where = np.unique(np.concatenate([keys for _, keys, _ in proposed]), return_inverse=True)
    names = [name for name, _, _ in proposed]
    names += [f"{s.name}_rank" for s in sources if f"{s.name}_rank" not in names]
    ranks = np.full((len(union), len(names)), np.nan)
    start = 0
    for column, (_, keys, source_ranks) in enumerate(proposed):
        ranks[where[start : start + len(keys)], column] = source_ranks
        start += len(keys)
    n_sources = (~np.isnan(ranks)).sum(axis=1).astype(np.float32)
    ranks[np.isnan(ranks)] = NOT_PROPOSED
    best = ranks.min(axis=1)
    reqs, items = union >> 32, union & ITEM_BITS
    order = np.lexsort((-n_sources, best, reqs))
    order = order[group_positions(reqs[order])[0] < limit]
    columns = {REQ: reqs[order], ITEM: items[order]}
    for column, name in enumerate(names):
        columns[name] = ranks[order, column]
    columns["n_sources"] = n_sources[order]
    return pd.DataFrame(columns, copy=False)  # (fresh arrays: no copy needed)


def _proposals(source, batch: Batch, exclusions: Exclusions) -> tuple[np.ndarray, ...]:
    """A source's proposals as arrays (requests, items, scores): from ``proposals`` where the
    source has it (no frame to build and take apart), else from ``propose``."""
    if hasattr(source, "proposals"):
        return source.proposals(batch, exclusions)
    found = source.propose(batch, exclusions)
    if len(found) == 0:
        return NO_PROPOSALS
    return found[REQ].to_numpy(), found[ITEM].to_numpy(), found["score"].to_numpy()


def describe(sources: list, batch: Batch, pairs: pd.DataFrame) -> pd.DataFrame:
    """Every source's features of each candidate, row-aligned with ``pairs``."""
    return pd.DataFrame(describe_columns(sources, batch, pairs), index=pairs.index)


def describe_columns(sources: list, batch: Batch, pairs: pd.DataFrame) -> dict[str, np.ndarray]:
    """``describe`` as columns: the pairs' own, then each source's features."""
    columns = {name: pairs[name].to_numpy() for name in pairs.columns}
    for source in sources:
        if hasattr(source, "feature_columns"):  # (no frame to build and take apart)
            columns.update(source.feature_columns(batch, pairs))
        else:
            features = source.features(batch, pairs)
            columns.update((name, features[name].to_numpy()) for name in features.columns)
    return columns

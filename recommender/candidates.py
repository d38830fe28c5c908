"""Candidate generation: the union of every source's proposals, each scored by every source.

Each source proposes its own top list; the union is capped at the model's ``candidates`` by
the best rank any source gave an item. Every candidate then gets every source's features, so
the ranker can weigh, say, an ALS proposal by its co-visitation score.
"""

import logging

import numpy as np
import pandas as pd

from recommender.state import ITEM, REQ, Batch, Exclusions

logger = logging.getLogger(__name__)
NOT_PROPOSED = 1_000.0


def generate(sources: list, batch: Batch, exclusions: Exclusions, limit: int) -> pd.DataFrame:
    """``req, item`` plus ``<source>_rank`` (1 = its best) and ``n_sources`` per candidate."""
    ranked = []
    for source in sources:
        found = source.propose(batch, exclusions)
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


def describe(sources: list, batch: Batch, pairs: pd.DataFrame) -> pd.DataFrame:
    """Every source's features of each candidate, row-aligned with ``pairs``."""
    parts = [pairs]
    for source in sources:
        parts.append(source.features(batch, pairs))
    return pd.concat(parts, axis=1)

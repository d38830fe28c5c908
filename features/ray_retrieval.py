"""Historical retrieval of a feature service under the ``scale`` profile (Feast's Ray store).

Feast 0.67's Ray offline store joins every view of a request onto one entity frame, batch by
batch, with ``pandas.merge_asof`` (``RayDataProcessor.broadcast_join_features``), and three
things in that join break a ranker's training frame:

1. it drops duplicate entity rows on (the view's join keys, event_timestamp) before joining,
   so several candidate items of one user at one instant collapse to one row in the user views;
2. with ``full_feature_names`` it renames a feature by copying and dropping the column of the
   feature's short name; ``product_catalog`` has a feature ``category``, which is also the join
   key of ``user_category_affinity``, so the entity frame's ``category`` column is replaced by
   the product's and then dropped, and the affinity join finds no keys: every row is lost
   (measured on the tiny shop: 300 entity rows in, 0 rows out);
3. its ``finalize_result`` puts back entity columns a batch lacks by position, after the joins
   re-sorted the rows by time, so they would land on the wrong rows;
4. it floors every timestamp, the entity's and the feature rows', to the second before the
   as-of join, so a value written later in the same second as an entity row is returned for
   it: a leak (seen on the tiny shop: a session row 51 ms after the label instant).

``historical_features`` avoids all three and still lets Feast do each point-in-time join on
Ray: one retrieval per feature view, on the distinct (join keys, timestamp) rows of that view
only, tagged with a row number; the results are merged back onto the entity frame by that
number, and the on-demand views are computed on the merged frame with Feast's own
``transform_arrow``, as Feast does after a retrieval. Against the leak, Feast is asked for each
row at one nanosecond before the start of the row's second, which it floors to the previous
second: it then returns values written strictly before that second, never after the row. The
price is that a value written within the row's own second, before it, is not seen (the other
profiles see it); rows of the daily snapshot tables are stamped at midnight, so this only
matters for rows exactly at midnight and for pushed session events.
The result has the same columns as ``get_historical_features(..., full_feature_names=True)
.to_df()`` of the other profiles.
"""

import logging

import pandas as pd
import pyarrow as pa
from feast import FeatureService, FeatureStore

logger = logging.getLogger(__name__)

EVENT_TIMESTAMP = "event_timestamp"
ROW = "__recsys_row"


def asked_instant(stamps: pd.Series) -> pd.Series:
    """The instant to ask Feast's Ray store for so that it returns nothing after ``stamps``."""
    stamps = pd.to_datetime(stamps, utc=True)
    return stamps.dt.floor("s") - pd.Timedelta(1, "ns")


def historical_features(
    store: FeatureStore, entity_df: pd.DataFrame, service: FeatureService
) -> pd.DataFrame:
    """Point-in-time features of ``service`` for each row of ``entity_df`` (full names)."""
    frame = entity_df.reset_index(drop=True)
    on_demand = {view.name for view in store.list_on_demand_feature_views()}
    projections = service.feature_view_projections
    for projection in (p for p in projections if p.name not in on_demand):
        view = store.get_feature_view(projection.name)
        keys = [projection.join_key_map.get(key, key) for key in view.join_keys]
        rows = frame[[*keys, EVENT_TIMESTAMP]].drop_duplicates().reset_index(drop=True)
        rows[ROW] = range(len(rows))
        asked = rows.assign(**{EVENT_TIMESTAMP: asked_instant(rows[EVENT_TIMESTAMP])})
        prefix = projection.name_to_use()
        columns = [f"{prefix}__{feature.name}" for feature in projection.features]
        got = store.get_historical_features(
            entity_df=asked,
            features=[f"{prefix}:{f.name}" for f in projection.features],
            full_feature_names=True,
        ).to_df()
        if len(got) != len(rows) or set(got[ROW]) != set(rows[ROW]):
            raise RuntimeError(f"{prefix}: Feast returned {len(got)} rows for {len(rows)}")
        rows = rows.merge(got[[ROW, *columns]], on=ROW).drop(columns=ROW)
        frame = frame.merge(rows, on=[*keys, EVENT_TIMESTAMP], how="left", validate="m:1")
        logger.debug("%s: %d distinct rows joined", prefix, len(rows))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for projection in (p for p in projections if p.name in on_demand):
        view = store.get_on_demand_feature_view(projection.name)
        out = view.transform_arrow(table, full_feature_names=True)
        prefix = projection.name_to_use()
        for feature in projection.features:
            name = f"{prefix}__{feature.name}"
            frame[name] = out.column(name).to_pandas()
    return frame

"""``recsys demo``: the platform's loop, as far as it is built, on a generated shop.

Runs in the workspace with the local profile, so it needs no service and leaves nothing
outside ``$RECSYS_HOME``.
"""

import logging
import time
from typing import Any

from recsys import columns as c
from recsys.workspace import Workspace

logger = logging.getLogger(__name__)

VALIDATION_DAYS = 28
TEST_DAYS = 28


def run_demo(
    workspace: Workspace, scale: str = "small", seed: int = 0, serve: bool = True
) -> dict[str, Any]:
    """Generate, ingest and split; returns the figures it printed."""
    import pandas as pd

    from lake.ingest import ingest
    from recsys.splits import leave_last_out, split_last_days
    from shop.generate import generate_shop

    figures: dict[str, Any] = {"workspace": str(workspace.home), "profile": workspace.profile}
    shop_dir = workspace.home / "demo-shop"
    print(f"== 1/4 generate: a '{scale}' shop into {shop_dir}")
    started = time.perf_counter()
    summary = generate_shop(shop_dir, scale=scale, seed=seed)
    figures["generate"] = summary.to_dict() | {"seconds": round(time.perf_counter() - started, 2)}

    print(f"== 2/4 ingest: validate into the lake at {workspace.lake}")
    started = time.perf_counter()
    result = ingest(shop_dir, workspace)
    print(result.markdown)
    figures["ingest"] = {
        "lake_version": result.report["lake_version"],
        "seconds": round(time.perf_counter() - started, 2),
        **{
            name: {k: t[k] for k in ("rows_in", "rows_kept", "rows_quarantined")}
            for name, t in result.report["tables"].items()
        },
    }

    print("== 3/4 split: temporal windows for training and evaluation")
    events = pd.read_parquet(workspace.table(c.EVENTS))
    split = split_last_days(events, VALIDATION_DAYS, TEST_DAYS)
    loo = leave_last_out(split.train)
    rows = [
        ("train", split.train, None, split.validation_start),
        ("validation", split.validation, split.validation_start, split.test_start),
        ("test", split.test, split.test_start, split.end),
    ]
    print(f"{'window':<11} {'from':<11} {'to':<11} {'events':>10} {'users':>8} {'purchases':>10}")
    figures["split"] = {}
    for name, frame, start, stop in rows:
        first = (start or frame[c.TIMESTAMP].min()).date()
        purchases = int((frame[c.EVENT_TYPE] == c.PURCHASE).sum())
        print(
            f"{name:<11} {first!s:<11} {stop.date()!s:<11} {len(frame):>10,} "
            f"{frame[c.USER_ID].nunique():>8,} {purchases:>10,}"
        )
        figures["split"][name] = {"events": len(frame), "purchases": purchases}
    print(f"leave-last-out on train: {len(loo.targets):,} users with a held-out last purchase")
    figures["split"]["leave_last_out_targets"] = len(loo.targets)
    figures["features"] = _features(workspace)
    if serve:
        print("serving is not part of this build yet: the demo stops after the data stages")
    return figures


def _features(workspace: Workspace) -> dict[str, Any]:
    """Build, apply and materialise the features, then read one user and a few products online."""
    import pandas as pd

    from features.build import build_features
    from features.online import OnlineReader
    from features.store import apply, materialize, open_store

    print(f"== 4/4 features: build, feast apply, materialise ({workspace.profile} profile)")
    built = build_features(workspace)
    for name, rows in built.rows.items():
        print(f"  {name:<24} {rows:>10,} rows")
    applied = apply(workspace)
    materialised = materialize(workspace)
    reader = OnlineReader(open_store(workspace))
    events = pd.read_parquet(workspace.table(c.EVENTS), columns=[c.USER_ID, c.ITEM_ID])
    user = events[c.USER_ID].value_counts().index[0]
    items = events[c.ITEM_ID].value_counts().index[:3].tolist()
    read = reader.read(str(user), [str(i) for i in items])
    print(f"online features of the most active user {user}:")
    for key in (
        "views_30d",
        "purchases_total",
        "favourite_category",
        "mean_price",
        "age",
        "country",
        "session_item_ids",
    ):
        print(f"  {key:<22} {read.user.get(key)}")
    print(read.items[[c.ITEM_ID, "views_7d", "trend", "price", "category"]].to_string(index=False))
    return {
        "rows": built.rows,
        "apply_seconds": applied["seconds"],
        "materialize_seconds": materialised.seconds,
    }

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
    print(f"== 1/3 generate: a '{scale}' shop into {shop_dir}")
    started = time.perf_counter()
    summary = generate_shop(shop_dir, scale=scale, seed=seed)
    figures["generate"] = summary.to_dict() | {"seconds": round(time.perf_counter() - started, 2)}

    print(f"== 2/3 ingest: validate into the lake at {workspace.lake}")
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

    print("== 3/3 split: temporal windows for training and evaluation")
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
    if serve:
        print("serving is not part of this build yet: the demo stops after the data stages")
    return figures

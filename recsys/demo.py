"""``recsys demo``: the platform's whole loop on a generated shop.

Runs in the workspace with the local profile, so it needs no external service and leaves
nothing outside ``$RECSYS_HOME`` but the running recommendation service it starts.
"""

import logging
import time
from typing import Any

from recsys import columns as c
from recsys.workspace import Workspace

logger = logging.getLogger(__name__)

VALIDATION_DAYS = 28
TEST_DAYS = 28


STEPS = 7
# a lighter training than the default (fewer evaluation requests), so the loop stays short
DEMO_TRAINING = {
    "split": {"validation_days": 21, "test_days": 21},
    "requests": {"train": 2000, "early_stopping": 500, "test": 1000},
}


def run_demo(
    workspace: Workspace,
    scale: str = "small",
    seed: int = 0,
    serve: bool = True,
    port: int = 3000,
) -> dict[str, Any]:
    """Every stage from a generated shop to a serving model; returns the figures it printed."""
    import pandas as pd

    from lake.ingest import ingest
    from recsys.splits import leave_last_out, split_last_days
    from shop.generate import generate_shop

    figures: dict[str, Any] = {"workspace": str(workspace.home), "profile": workspace.profile}
    shop_dir = workspace.home / "demo-shop"
    print(f"== 1/{STEPS} generate: a '{scale}' shop into {shop_dir}")
    started = time.perf_counter()
    summary = generate_shop(shop_dir, scale=scale, seed=seed)
    figures["generate"] = summary.to_dict() | {"seconds": round(time.perf_counter() - started, 2)}

    print(f"== 2/{STEPS} ingest: validate into the lake at {workspace.lake}")
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

    print(f"== 3/{STEPS} split: temporal windows for training and evaluation")
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
    figures["train"] = _train(workspace)
    if serve:
        figures["serve"] = _serve(workspace, port)
    else:
        print("--no-serve: stopping before the service")
    return figures


def _train(workspace: Workspace) -> dict[str, Any]:
    """Train, register as 'candidate', and promote that version to 'production'."""
    from mlflow import MlflowClient

    from recsys import tracking
    from training.config import TrainConfig
    from training.job import run_training

    print(f"== 5/{STEPS} train: candidate sources + XGBoost ranker, evaluated on the test window")
    payload = run_training(workspace, TrainConfig.model_validate(DEMO_TRAINING), None)
    models = payload["models"]
    for name in ("ranker", "als", "covisit", "popular"):
        if name in models:
            print(f"  {name:<8} ndcg@10 {models[name].get('ndcg@10', 0):.4f}")
    reg = payload["registered"]
    print(f"== 6/{STEPS} promote: version {reg['version']} 'candidate' -> 'production'")
    tracking.use(workspace)
    MlflowClient().set_registered_model_alias(reg["model_name"], "production", reg["version"])
    return {"version": reg["version"], "ndcg@10": models["ranker"].get("ndcg@10")}


def _serve(workspace: Workspace, port: int) -> dict[str, Any]:
    """Start the service in the background and show what it answers."""
    import pandas as pd

    from serving.server import post, start_background

    log = workspace.home / "serving" / "service.log"
    print(f"== 7/{STEPS} serve: BentoML service on http://127.0.0.1:{port} (log: {log})")
    process = start_background(workspace, port, log)
    (workspace.home / "serving" / "service.pid").write_text(f"{process.pid}\n")
    events = pd.read_parquet(workspace.table(c.EVENTS), columns=[c.USER_ID, c.ITEM_ID])
    known = str(events[c.USER_ID].value_counts().index[0])
    popular = events[c.ITEM_ID].value_counts().index[:2].astype(str).tolist()
    url = f"http://127.0.0.1:{port}"
    samples = {
        f"known user {known}": ("/recommend", {"user_id": known, "k": 5}),
        "new user (country DE, mobile)": (
            "/recommend",
            {"user_id": "demo-new-user", "k": 5, "context": {"country": "DE", "device": "mobile"}},
        ),
        f"anonymous session viewing {', '.join(popular)}": (
            "/recommend",
            {"user_id": "demo-anonymous", "k": 5, "session_item_ids": popular},
        ),
        f"similar to {popular[0]}": ("/similar_items", {"item_id": popular[0], "k": 5}),
    }
    shown = {}
    for title, (path, body) in samples.items():
        answer = post(url, path, body)
        print(f"-- {title}: POST {path} -> model version {answer['model_version']}")
        for item in answer["items"]:
            print(f"   {item['item_id']:<10} {item['score']:>9.4f}  {item['reason']}")
        shown[title] = [item["item_id"] for item in answer["items"]]
    print(
        f"the service keeps answering on {url} (pid {process.pid}); "
        f"stop it with: kill {process.pid}"
    )
    return {"url": url, "pid": process.pid, "samples": shown}


def _features(workspace: Workspace) -> dict[str, Any]:
    """Build, apply and materialise the features, then read one user and a few products online."""
    import pandas as pd

    from features.build import build_features
    from features.online import OnlineReader
    from features.store import apply, materialize, open_store

    print(f"== 4/{STEPS} features: build, feast apply, materialise ({workspace.profile} profile)")
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

"""`recsys monitor performance` on a small hand-made feedback log: every figure (click-through,
conversion, revenue per request; by version, by day, by segment) equals the hand computation
written next to it. The log is written by the service's own FeedbackLog, on the production
database (PostgreSQL) and, through the command line, on the local profile's SQLite."""

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from monitoring.performance import online_performance
from monitoring.windows import Lake, category_facts, parse_window
from serving.feedback import FeedbackLog
from tests.conftest import PG_URL, drop_prefixed_tables

pytestmark = [pytest.mark.integration]

WINDOW = "2026-03-01..2026-03-03"


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


# request_id, user, model version, variant, day served
SERVED = [
    ("r1", "u1", "v1", "production", 1),
    ("r2", "u2", "v1", "production", 1),
    ("r3", "u3", "v2", "canary", 1),
    ("r4", "u1", "v1", "production", 2),
    ("r5", "u4", "v2", "canary", 2),
    ("r6", "u1", "v1", "production", 3),  # after the window: not counted
]
# request_id, item, event type, price (None: the catalogue's)
EVENTS = [
    ("r1", "p1", "impression", None),
    ("r1", "p2", "impression", None),
    ("r1", "p3", "impression", None),
    ("r1", "p1", "click", None),
    ("r1", "p1", "purchase", 10.0),
    ("r2", "p1", "impression", None),
    ("r2", "p2", "impression", None),
    ("r3", "p3", "impression", None),
    ("r3", "p4", "impression", None),
    ("r3", "p4", "click", None),
    ("r3", "p4", "cart", None),
    ("r3", "p4", "purchase", None),  # catalogue price of p4: 25.0
    ("r4", "p1", "impression", None),
    ("r4", "p2", "impression", None),
    ("r4", "p2", "click", None),
    ("r5", "p1", "impression", None),
    ("r5", "p2", "impression", None),
    ("r5", "p3", "impression", None),
    ("r5", "p4", "impression", None),
    ("r5", "p1", "click", None),
    ("r5", "p3", "click", None),
    ("r5", "p3", "purchase", 5.5),
    (None, "p1", "click", None),  # unattributed: no request
    ("zzz", "p1", "click", None),  # unattributed: a request never served
    ("r6", "p1", "impression", None),  # unattributed: served after the window
]
# past lake events per user before March: u1 40 (heavy), u2 3 (light), u3 none (new),
# u4 10 (regular); p4 launched 2026-02-20, so new (30 days) at every event of March 1-2
PAST = {"u1": 40, "u2": 3, "u4": 10}

# hand computation: (requests, impressions, clicks, carts, purchases, revenue)
BY_VERSION = {
    ("v1", "production"): (3, 7, 2, 0, 1, 10.0),  # r1 r2 r4
    ("v2", "canary"): (2, 6, 3, 1, 2, 30.5),  # r3 r5: 25 + 5.5
}
BY_DAY = {
    ("2026-03-01", "v1"): (2, 5, 1, 0, 1, 10.0),
    ("2026-03-01", "v2"): (1, 2, 1, 1, 1, 25.0),
    ("2026-03-02", "v1"): (1, 2, 1, 0, 0, 0.0),
    ("2026-03-02", "v2"): (1, 4, 2, 0, 1, 5.5),
}
BY_SEGMENT = {
    ("heavy_users", "v1"): (2, 5, 2, 0, 1, 10.0),  # r1 r4
    ("light_users", "v1"): (1, 2, 0, 0, 0, 0.0),  # r2
    ("new_users", "v2"): (1, 2, 1, 1, 1, 25.0),  # r3
    ("regular_users", "v2"): (1, 4, 2, 0, 1, 5.5),  # r5
    ("new_products", "v2"): (2, 2, 1, 1, 1, 25.0),  # events on p4 in r3 and r5
}
OVERALL = (5, 13, 5, 1, 3, 40.5)


def expected_rates(figures: tuple) -> dict[str, float | None]:
    requests, impressions, clicks, _carts, purchases, revenue = figures
    return {
        "ctr": clicks / impressions if impressions else None,
        "conversion": purchases / impressions if impressions else None,
        "revenue_per_request": revenue / requests,
    }


def lake() -> Lake:
    events = pd.DataFrame(
        [
            {
                "user_id": user,
                "item_id": "p1",
                "event_type": "view",
                "timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(hours=n),
            }
            for user, count in PAST.items()
            for n in range(count)
        ]
    )
    products = pd.DataFrame(
        {
            "item_id": ["p1", "p2", "p3", "p4"],
            "category": ["A > x", "A > y", "B > z", "B > z"],
            "price": [10.0, 12.0, 5.5, 25.0],
            "created_at": pd.to_datetime(
                ["2024-01-01", "2024-01-01", "2024-01-01", "2026-02-20"], utc=True
            ),
        }
    )
    return Lake(events=events, products=category_facts(products))


def write_log(log: FeedbackLog) -> None:
    for request_id, user, version, variant, day in SERVED:
        log.log_served(
            {
                "request_id": request_id,
                "served_at": at(day),
                "endpoint": "recommend",
                "user_id": user,
                "model_version": version,
                "variant": variant,
                "item_ids": ["p1", "p2", "p3", "p4"],
                "scores": [0.4, 0.3, 0.2, 0.1],
                "cached": False,
                "latency_ms": 5.0,
            }
        )
    served = {request_id: (user, day) for request_id, user, _v, _var, day in SERVED}
    rows = []
    for n, (request_id, item, event_type, price) in enumerate(EVENTS):
        user, day = served.get(request_id, ("u9", 1))
        rows.append(
            {
                "request_id": request_id,
                "user_id": user,
                "item_id": item,
                "event_type": event_type,
                "event_ts": at(day, 13) + pd.Timedelta(seconds=n),
                "price": price,
            }
        )
    assert log.append(rows) == len(rows)


def check(figures: dict, keys: tuple[str, ...], expected: dict) -> None:
    rows = {tuple(row[key] for key in keys): row for row in figures}
    assert set(rows) == set(expected)
    for key, counts in expected.items():
        row = rows[key]
        names = ("requests", "impressions", "clicks", "carts", "purchases", "revenue")
        assert tuple(row[name] for name in names) == pytest.approx(counts), key
        for name, value in expected_rates(counts).items():
            assert row[name] == pytest.approx(value), (key, name)


def check_all(result: dict) -> None:
    check(result["by_version"], ("model_version", "variant"), BY_VERSION)
    check(result["by_day"], ("day", "model_version"), BY_DAY)
    check(result["by_segment"], ("segment", "model_version"), BY_SEGMENT)
    check([result["overall"] | {"all": "all"}], ("all",), {("all",): OVERALL})
    assert result["unattributed_events"] == 3


@pytest.fixture
def pg_prefix():
    prefix = f"mon{uuid.uuid4().hex[:8]}_"
    yield prefix
    drop_prefixed_tables(prefix)


def test_performance_matches_hand_computation_on_postgresql(tmp_path: Path, pg_prefix: str):
    with FeedbackLog(PG_URL, tmp_path / "spool", prefix=pg_prefix, flush_seconds=0.05) as log:
        write_log(log)
    with FeedbackLog(PG_URL, tmp_path / "spool", prefix=pg_prefix) as log:
        served, events = log.served(), log.events()
    result = online_performance(served, events, parse_window(WINDOW), lake()).to_dict()
    check_all(result)


def test_cli_performance_on_the_local_profile(tmp_path: Path):
    """The command reads the workspace's own log and lake, prints tables, writes the JSON."""
    home = tmp_path / "ws"
    (home / "lake").mkdir(parents=True)
    shop = lake()
    shop.events.to_parquet(home / "lake" / "events.parquet")
    products = shop.products.rename(columns={"list_price": "price"})
    products[["item_id", "category", "price", "created_at"]].to_parquet(
        home / "lake" / "products.parquet"
    )
    url = f"sqlite:///{home / 'serving' / 'feedback.db'}"
    (home / "serving").mkdir()
    with FeedbackLog(url, home / "serving" / "spool", flush_seconds=0.05) as log:
        write_log(log)
    out = tmp_path / "perf.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "recsys.cli",
            "--home",
            str(home),
            "monitor",
            "performance",
            "--window",
            WINDOW,
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "By day and model version" in run.stdout
    check_all(json.loads(out.read_text()))

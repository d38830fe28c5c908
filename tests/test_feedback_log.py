"""The feedback log keeps every accepted event and logs served responses, on SQLite and on the
real PostgreSQL: through a database outage (the spool), a replay that runs twice, a spool line
a crash cut short, and a served-log queue that overflows."""

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from recsys.workspace import Workspace
from serving.feedback import FeedbackLog, database_url
from tests.conftest import PG_URL, drop_prefixed_tables

pytestmark = [pytest.mark.integration]

PG_DOWN_URL = "postgresql+psycopg2://postgres@127.0.0.1:1/test"  # nothing listens on port 1
EVENT_COLUMNS = [
    "request_id",
    "user_id",
    "item_id",
    "event_type",
    "event_ts",
    "session_id",
    "price",
    "model_version",
    "variant",
]
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


@dataclass
class Backend:
    name: str
    url: str
    down_url: str  # the same kind of database, unreachable
    prefix: str


OpenLog = Callable[..., FeedbackLog]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    if request.param == "sqlite":
        missing = tmp_path / "no-such-folder" / "feedback.db"  # SQLite cannot open it
        yield Backend(
            "sqlite", f"sqlite:///{tmp_path / 'feedback.db'}", f"sqlite:///{missing}", prefix
        )
        return
    yield Backend("postgresql", PG_URL, PG_DOWN_URL, prefix)
    drop_prefixed_tables(prefix)


@pytest.fixture
def open_log(backend: Backend, tmp_path: Path) -> Iterator[OpenLog]:
    """Feedback logs on the backend's tables and one shared spool, all closed afterwards."""
    logs: list[FeedbackLog] = []

    def open_(url: str | None = None, **options: Any) -> FeedbackLog:
        options.setdefault("spool_dir", tmp_path / "spool")
        log = FeedbackLog(url or backend.url, prefix=backend.prefix, **options)
        logs.append(log)
        return log

    yield open_
    for log in logs:
        log.close()


def make_events(count: int, start: int = 0) -> list[dict]:
    """Events with every optional field both set and missing, and times in two zones."""
    paris = timezone(timedelta(hours=2))
    kinds = ["impression", "click", "cart", "purchase"]
    return [
        {
            "user_id": f"u{n % 3}",
            "item_id": f"i{n}",
            "event_type": kinds[n % 4],
            "event_ts": (T0 + timedelta(minutes=n)).astimezone(paris if n % 2 else UTC),
            "request_id": f"r{n}" if n % 3 else None,
            "session_id": f"s{n % 2}" if n % 4 else None,
            "price": 9.5 + n if n % 2 else None,
            "model_version": "ranker/7",
            "variant": "canary" if n % 5 == 0 else "production",
        }
        for n in range(start, start + count)
    ]


def stored(frame: pd.DataFrame) -> list[dict]:
    """The events as sent: the sent columns, NaN as None."""
    subset = frame[EVENT_COLUMNS].astype(object)
    return subset.where(subset.notna(), None).to_dict("records")


def sent(events: list[dict]) -> list[dict]:
    return [{name: event.get(name) for name in EVENT_COLUMNS} for event in events]


def spool_files(log: FeedbackLog) -> list[Path]:
    return sorted(log.spool_dir.glob("feedback-*"))


def test_appended_events_read_back_exactly_as_sent(open_log: OpenLog) -> None:
    # given a reachable database and events with optional fields set and missing
    log = open_log()
    events = make_events(8)

    # when they are appended
    accepted = log.append(events)

    # then every value reads back, instants compare equal whatever zone they were sent in
    assert accepted == 8
    frame = log.events()
    assert stored(frame) == sent(events)
    assert frame["event_uid"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert frame["event_uid"].is_unique
    assert not frame["session_pushed"].any()
    assert str(frame["event_ts"].dtype) == "datetime64[ns, UTC]"
    assert (frame["received_at"] > pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=5)).all()
    # and since= keeps the later events only
    assert stored(log.events(since=T0 + timedelta(minutes=5))) == sent(events[5:])
    assert spool_files(log) == []


def test_unreachable_database_spools_then_replays_once(open_log: OpenLog, backend: Backend) -> None:
    # given a database that cannot be reached
    down = open_log(backend.down_url)
    events = make_events(5)

    # when events are appended
    started = time.monotonic()
    accepted = down.append(events[:3]) + down.append(events[3:])

    # then they are all accepted, fast, and sit fsync'ed in this process's spool file
    assert accepted == 5
    assert time.monotonic() - started < 6
    files = spool_files(down)
    assert [path.suffix for path in files] == [".jsonl"]
    assert len(files[0].read_text().splitlines()) == 5
    down.close()

    # when the service restarts on the reachable database and replays the spool twice
    up = open_log()
    first, second = up.flush_spool(), up.flush_spool()

    # then each event is stored once, none lost, none duplicated, and the spool is gone
    assert (first, second) == (5, 0)
    assert stored(up.events()) == sent(events)
    assert spool_files(up) == []


def test_replaying_a_spool_again_after_a_crash_adds_nothing(
    open_log: OpenLog, backend: Backend
) -> None:
    # given events spooled during an outage, and a copy of the spool file
    down = open_log(backend.down_url)
    events = make_events(4)
    down.append(events)
    (spool,) = spool_files(down)
    copy = spool.read_bytes()

    # when the spool is replayed, then restored as if a crash had come before its deletion,
    # and replayed again by the next append
    up = open_log()
    replayed = up.flush_spool()
    spool.write_bytes(copy)
    more = make_events(2, start=4)
    up.append(more)

    # then the second replay added nothing and the new events follow the spooled ones
    assert replayed == 4
    assert stored(up.events()) == sent(events + more)
    assert spool_files(up) == []


def test_a_truncated_last_spool_line_is_skipped_and_the_rest_kept(
    open_log: OpenLog, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    # given spooled events and a last line a crash cut short
    down = open_log(backend.down_url)
    events = make_events(3)
    down.append(events)
    (spool,) = spool_files(down)
    with spool.open("a") as handle:
        handle.write('{"event_uid": "cut", "user_id": "u9", "ite')

    # when the spool is replayed
    up = open_log()
    with caplog.at_level(logging.WARNING, logger="serving.feedback"):
        replayed = up.flush_spool()

    # then the whole lines are stored, and the cut one is reported, not fatal
    assert replayed == 3
    assert stored(up.events()) == sent(events)
    assert any("truncated last line 4" in record.getMessage() for record in caplog.records)
    assert spool_files(up) == []


def test_appending_after_a_cut_line_does_not_lose_the_new_events(
    open_log: OpenLog, backend: Backend
) -> None:
    # given a spool file whose last line a crash cut short, in a process with the same pid
    # (pid 1 in a container, for instance)
    down = open_log(backend.down_url)
    events = make_events(3)
    down.append(events[:2])
    (spool,) = spool_files(down)
    with spool.open("a") as handle:
        handle.write('{"event_uid": "cut", "user_')

    # when more events are spooled to the same file and then replayed
    down.append(events[2:])
    replayed = open_log().flush_spool()

    # then only the fragment is lost, not the event written after it
    assert replayed == 3
    assert stored(open_log().events()) == sent(events)


def test_pending_sessions_lists_unpushed_interactions_until_marked(open_log: OpenLog) -> None:
    # given impressions, clicks, carts and purchases
    log = open_log()
    events = make_events(8)
    log.append(events)
    interactions = [event for event in events if event["event_type"] != "impression"]

    # when the pending ones are read
    pending = log.pending_sessions()

    # then they are the interactions in arrival order, with what a session push needs
    assert [row["item_id"] for row in pending] == [event["item_id"] for event in interactions]
    # (and the row's own names: a row that cannot be pushed is set aside under them)
    named = {"id", "event_uid", "request_id"}
    assert set(pending[0]) == named | (set(EVENT_COLUMNS) - {"price", "model_version", "variant"})
    assert pending[0]["event_ts"] == interactions[0]["event_ts"]
    assert [row["id"] for row in log.pending_sessions(limit=2)] == [
        row["id"] for row in pending[:2]
    ]

    # when the first two are marked as pushed
    log.mark_pushed([row["id"] for row in pending[:2]])

    # then only the others stay pending, and the flag is stored
    assert log.pending_sessions() == pending[2:]
    frame = log.events()
    assert frame["session_pushed"].sum() == 2


def test_served_responses_are_in_the_table_after_close(open_log: OpenLog) -> None:
    # given a log of served responses
    log = open_log(flush_seconds=0.05)
    records = [
        {
            "request_id": f"req-{n}",
            "served_at": T0 + timedelta(seconds=n),
            "endpoint": "/recommend" if n % 2 else "/similar_items",
            "user_id": f"u{n}" if n % 2 else None,
            "model_version": "ranker/7",
            "variant": "canary" if n == 1 else "production",
            "item_ids": [f"i{n}", f"i{n + 1}"],
            "scores": [0.5, 0.25],
            "fallback": "online_store_unavailable" if n == 2 else None,
            "cached": n == 0,
            "latency_ms": 3.5 + n,
        }
        for n in range(4)
    ]

    # when responses are logged and the log is closed
    for record in records:
        log.log_served(record)
    log.close()

    # then another process reads every one back with its values
    frame = open_log().served()
    assert frame.astype(object).where(frame.notna(), None).to_dict("records") == records
    assert log.dropped == 0


def test_a_full_served_queue_counts_and_reports_what_it_drops(
    open_log: OpenLog, caplog: pytest.LogCaptureFixture
) -> None:
    # given a queue of two records whose writer is not due for a minute
    log = open_log(max_queue=2, flush_seconds=60)

    # when five responses are logged
    with caplog.at_level(logging.WARNING, logger="serving.feedback"):
        for n in range(5):
            log.log_served({"request_id": f"req-{n}", "item_ids": ["i1"], "scores": [1.0]})

    # then three are dropped, counted and reported, and the two queued are written at close
    assert log.dropped == 3
    assert any("dropped" in record.getMessage() for record in caplog.records)
    log.close()
    assert list(open_log().served()["request_id"]) == ["req-0", "req-1"]


def test_served_records_wait_for_a_database_that_comes_back(tmp_path: Path) -> None:
    # given a SQLite database whose folder does not exist yet (so it cannot be opened)
    folder = tmp_path / "later"
    url = f"sqlite:///{folder / 'feedback.db'}"
    log = FeedbackLog(url, tmp_path / "spool", prefix="t_", flush_seconds=0.05)
    try:
        log.log_served({"request_id": "req-0", "item_ids": [], "scores": []})
        time.sleep(0.3)  # a few failed ticks

        # when the database becomes reachable
        folder.mkdir()
        deadline = time.monotonic() + 10
        while not (folder / "feedback.db").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        log.close()

        # then the record was kept and written, nothing dropped
        assert list(log.served()["request_id"]) == ["req-0"]
        assert log.dropped == 0
    finally:
        log.close()


def test_database_url_follows_the_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given no override
    monkeypatch.delenv("RECSYS_FEEDBACK_URL", raising=False)

    # then local keeps a SQLite file in the workspace, its folder created
    local = Workspace(home=tmp_path / "home", profile="local")
    assert database_url(local) == f"sqlite:///{(tmp_path / 'home/serving/feedback.db').resolve()}"
    assert (tmp_path / "home" / "serving").is_dir()

    # and production uses the RECSYS_PG_* settings, a password with URL characters intact
    monkeypatch.setenv("RECSYS_PG_HOST", "db.internal")
    monkeypatch.setenv("RECSYS_PG_PASSWORD", "p@ss:w/rd")
    url = sa.make_url(database_url(Workspace(home=tmp_path, profile="production")))
    assert (url.drivername, url.host, url.password) == (
        "postgresql+psycopg2",
        "db.internal",
        "p@ss:w/rd",
    )

    # and the override always wins
    monkeypatch.setenv("RECSYS_FEEDBACK_URL", "sqlite:////elsewhere.db")
    assert database_url(local) == "sqlite:////elsewhere.db"

"""The durable feedback log and the log of served responses (PLATFORM.md section 4).

``POST /feedback`` answers with an accepted count, so an accepted event must survive a restart
and a database that is briefly unreachable: events go to the database in one transaction, or,
when it fails, to an fsync'ed JSON-lines spool beside the service that is replayed later. Every
event carries an ``event_uid``, so replaying a spool twice (a crash between the insert and the
deletion of the file) never duplicates a row.

Every served response is logged too (monitoring, canary analysis), but that log must never slow
the request down: records go through a bounded in-memory queue to a writer thread, and the
records it cannot keep are counted in ``dropped`` and logged, never lost silently.

The tables are SQLAlchemy Core (``{prefix}feedback_events``, ``{prefix}served_requests``):
SQLite in the workspace for the local and scale profiles, PostgreSQL in production.
"""

import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, Engine

from recsys.workspace import Workspace

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the thread lock alone guards the spool
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

URL_ENV = "RECSYS_FEEDBACK_URL"
SPOOL_PATTERN = "feedback-*.jsonl"
REPLAYING_PATTERN = "feedback-*.replaying"
CONNECT_TIMEOUT_SECONDS = 2
DB_RETRY_SECONDS = 1.0  # after a failure, appends go straight to the spool for this long
SPOOL_RETRY_SECONDS = 5.0  # how often the writer thread retries a spool nobody else replays
REPLAY_CHUNK = 5_000
DROP_LOG_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 30.0
DB_ERRORS = (sa.exc.SQLAlchemyError, OSError)
# the database answered but refused these rows: retrying them would only fail again
REFUSED_ERRORS = (sa.exc.IntegrityError, sa.exc.DataError, ValueError, TypeError)

EVENT_REQUIRED = ("user_id", "item_id", "event_type", "event_ts")
EVENT_OPTIONAL = ("request_id", "session_id", "price", "model_version", "variant", "event_uid")
EVENT_TEXT = ("request_id", "session_id", "model_version", "variant")
SERVED_TEXT = ("endpoint", "user_id", "model_version", "variant", "fallback")
# (event_uid and request_id: what names a row that is quarantined instead of pushed)
SESSION_COLUMNS = (
    "id",
    "event_uid",
    "request_id",
    "user_id",
    "item_id",
    "event_type",
    "event_ts",
    "session_id",
)


def database_url(workspace: Workspace) -> str:
    """Where the feedback and served logs live: $RECSYS_FEEDBACK_URL, else per profile.

    Production shares the platform's PostgreSQL (the ``RECSYS_PG_*`` settings, as MLflow
    does), so every replica of the service writes one log; the other profiles keep a SQLite
    file inside the workspace, so two workspaces never share feedback.
    """
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV]
    if workspace.profile == "production":
        from features.environment import setting

        url = sa.URL.create(
            "postgresql+psycopg2",
            username=setting("RECSYS_PG_USER"),
            password=setting("RECSYS_PG_PASSWORD") or None,
            host=setting("RECSYS_PG_HOST"),
            port=int(setting("RECSYS_PG_PORT")),
            database=setting("RECSYS_PG_DATABASE"),
            query={"sslmode": setting("RECSYS_PG_SSLMODE")},
        )
        return url.render_as_string(hide_password=False)
    folder = workspace.home / "serving"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'feedback.db').resolve()}"


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A time zone-aware instant that reads back as UTC on every backend.

    SQLite has no time zone type: it stores the UTC wall time, and reads it back aware, so
    ``events()`` returns the same values on SQLite as on PostgreSQL.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = _utc(value, "timestamp")
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def feedback_tables(prefix: str) -> tuple[sa.MetaData, sa.Table, sa.Table]:
    """The two tables under ``prefix``, so tests and installations can share one database."""
    metadata = sa.MetaData()
    events = sa.Table(
        f"{prefix}feedback_events",
        metadata,
        # 64-bit on PostgreSQL (a busy shop passes 2**31 events); SQLite's rowid is 64-bit
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("event_uid", sa.String(36), nullable=False, unique=True),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.Column("request_id", sa.String, nullable=True),
        sa.Column("user_id", sa.String, nullable=False),
        sa.Column("item_id", sa.String, nullable=False),
        sa.Column("event_type", sa.String, nullable=False),
        sa.Column("event_ts", UtcDateTime, nullable=False),
        sa.Column("session_id", sa.String, nullable=True),
        sa.Column("price", sa.Float, nullable=True),
        sa.Column("model_version", sa.String, nullable=True),
        sa.Column("variant", sa.String, nullable=True),
        sa.Column(
            "session_pushed", sa.Boolean, nullable=False, default=False, server_default=sa.false()
        ),
        sa.Index(f"{prefix}feedback_events_pending", "session_pushed", "id"),
        sa.Index(f"{prefix}feedback_events_event_ts", "event_ts"),
    )
    served = sa.Table(
        f"{prefix}served_requests",
        metadata,
        sa.Column("request_id", sa.String, primary_key=True),
        sa.Column("served_at", UtcDateTime, nullable=False),
        sa.Column("endpoint", sa.String, nullable=True),
        sa.Column("user_id", sa.String, nullable=True),
        sa.Column("model_version", sa.String, nullable=True),
        sa.Column("variant", sa.String, nullable=True),
        sa.Column("item_ids", sa.Text, nullable=True),
        sa.Column("scores", sa.Text, nullable=True),
        sa.Column("fallback", sa.String, nullable=True),
        sa.Column("cached", sa.Boolean, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=True),
    )
    return metadata, events, served


class FeedbackLog:
    """Feedback events (durable, spooled when the database fails) and served responses.

    Thread-safe; one per service process. ``close()`` flushes the served records still queued.
    """

    def __init__(
        self,
        url: str,
        spool_dir: Path,
        prefix: str = "recsys_",
        flush_seconds: float = 0.5,
        max_queue: int = 100_000,
    ) -> None:
        self.url = url
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.flush_seconds = flush_seconds
        self.max_queue = max_queue
        self.dropped = 0
        self._engine = _engine(url)
        self._insert = (
            postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        )
        self._metadata, self._events, self._served = feedback_tables(prefix)
        self._tables_ready = False
        self._setup_lock = threading.Lock()
        self._spool_lock = threading.Lock()
        self._replay_lock = threading.Lock()
        self._drop_lock = threading.Lock()
        self._last_drop_log = float("-inf")
        self._db_retry_at = 0.0
        self._served_failing = False
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(max_queue)
        self._stop = threading.Event()
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="feedback-log", daemon=True)
        self._writer.start()

    def __enter__(self) -> "FeedbackLog":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    # ---- feedback events -------------------------------------------------------------------

    def append(self, events: list[dict]) -> int:
        """Store ``events`` durably; returns how many were accepted (all of them, or an error).

        One transaction when the database answers; otherwise the spool file, so an accepted
        event is never lost. A malformed event raises ValueError before anything is stored,
        because a row the database rejects would otherwise wedge the spool for good.
        """
        received_at = datetime.now(UTC)
        rows = [_event_row(event, received_at, index) for index, event in enumerate(events)]
        if not rows:
            return 0
        if time.monotonic() >= self._db_retry_at:
            try:
                if self._spool_files():
                    self._flush_spool(wait=False)
                self._insert_events(rows)
                return len(rows)
            except DB_ERRORS as error:
                self._db_retry_at = time.monotonic() + DB_RETRY_SECONDS
                logger.warning(
                    "feedback database unavailable (%s); spooling %d events to %s",
                    _reason(error),
                    len(rows),
                    self.spool_dir,
                )
        self._spool(rows)
        return len(rows)

    def flush_spool(self) -> int:
        """Replay every spool file into the database; returns the rows that were new.

        Raises the database error when it is still unreachable; the files then stay for the
        next attempt. Rows already present (same event_uid) are skipped, so a replay that
        crashed half-way can simply run again.
        """
        return self._flush_spool(wait=True)

    def pending_sessions(self, limit: int = 500) -> list[dict]:
        """Interactions not yet pushed to the online session features, oldest first.

        Impressions do not change a session, so they are never pending.
        """
        self._ensure_tables()
        table = self._events
        query = (
            sa.select(*(table.c[name] for name in SESSION_COLUMNS))
            .where(table.c.session_pushed.is_(False), table.c.event_type != "impression")
            .order_by(table.c.id)
            .limit(limit)
        )
        with self._engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def mark_pushed(self, ids: list[int]) -> None:
        """Record that these events reached the online store, so they are not pushed twice."""
        if not ids:
            return
        self._ensure_tables()
        table = self._events
        with self._engine.begin() as connection:
            for start in range(0, len(ids), 1_000):
                chunk = [int(value) for value in ids[start : start + 1_000]]
                connection.execute(
                    sa.update(table).where(table.c.id.in_(chunk)).values(session_pushed=True)
                )

    def quarantine_pushes(self, rows: list[dict], reason: str) -> None:
        """Keep ``rows`` out of the online session for good: written with ``reason`` to
        ``unpushable-<pid>.jsonl`` in the spool folder and marked pushed (they stay in the
        log, for monitoring and for whoever mends them)."""
        if not rows:
            return
        path = self.spool_dir / f"unpushable-{os.getpid()}.jsonl"
        with path.open("a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(
                    json.dumps(_spool_record(row) | {"reason": reason}, default=str) + "\n"
                )
        logger.error(
            "%d feedback event(s) cannot update a session (%s): kept in %s",
            len(rows),
            reason,
            path,
        )
        self.mark_pushed([row["id"] for row in rows])

    def events(self, since: datetime | None = None) -> pd.DataFrame:
        """The feedback events (event_ts at or after ``since``), by id, for monitoring."""
        self._ensure_tables()
        table = self._events
        query = sa.select(table).order_by(table.c.id)
        if since is not None:
            query = query.where(table.c.event_ts >= _utc(since, "since"))
        frame = self._frame(query)
        for column in ("received_at", "event_ts"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    # ---- served responses ------------------------------------------------------------------

    def log_served(self, record: dict) -> None:
        """Queue one served response for the writer thread; never blocks, never raises.

        ``record`` has the served_requests columns, with item_ids and scores as lists. A record
        that cannot be queued (full queue, malformed, log closed) is counted in ``dropped``.
        """
        if self._closed:
            self._drop(1, "the feedback log is closed")
            return
        try:
            row = _served_row(record)
        except (TypeError, ValueError, KeyError) as error:
            self._drop(1, f"malformed record: {error}")
            return
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self._drop(1, f"the queue of {self.max_queue} records is full")

    def served(self, since: datetime | None = None) -> pd.DataFrame:
        """The served responses (served_at at or after ``since``), by time, for canaries.

        item_ids and scores come back as lists.
        """
        self._ensure_tables()
        table = self._served
        query = sa.select(table).order_by(table.c.served_at, table.c.request_id)
        if since is not None:
            query = query.where(table.c.served_at >= _utc(since, "since"))
        frame = self._frame(query)
        frame["served_at"] = pd.to_datetime(frame["served_at"], utc=True)
        for column in ("item_ids", "scores"):
            frame[column] = [json.loads(text) if text else [] for text in frame[column]]
        return frame

    def close(self) -> None:
        """Write what is still queued (one last attempt), stop the writer, release the pool."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._writer.join(CLOSE_TIMEOUT_SECONDS)
        if self._writer.is_alive():
            logger.warning("the served-log writer did not stop within %ss", CLOSE_TIMEOUT_SECONDS)
        else:
            late = self._drain([])  # logged between the writer's last drain and its exit
            if late and self._write_served(late):
                self._drop(len(late), "the database failed at close")
        if self.dropped:
            logger.warning("%d served records were dropped by this feedback log", self.dropped)
        self._engine.dispose()

    # ---- internals -------------------------------------------------------------------------

    def _ensure_tables(self) -> None:
        """Create the tables on first use, not in the constructor: the database may be down
        when the service starts, and feedback must still be accepted (into the spool)."""
        if self._tables_ready:
            return
        with self._setup_lock:
            if not self._tables_ready:
                self._metadata.create_all(self._engine)
                self._tables_ready = True

    def _flush_spool(self, wait: bool) -> int:
        """Replay the spool; without ``wait``, leave files another thread or process is
        replaying to it (a request should not queue behind a long replay)."""
        self._ensure_tables()
        if not self._replay_lock.acquire(blocking=wait):
            return 0
        try:
            self._claim_spool_files()
            replayed = 0
            for path in sorted(self.spool_dir.glob(REPLAYING_PATTERN)):
                replayed += self._replay(path, wait)
            return replayed
        finally:
            self._replay_lock.release()

    def _insert_events(self, rows: list[dict[str, Any]]) -> int:
        """Insert in one transaction, skipping event_uids already stored; returns rows added."""
        self._ensure_tables()
        statement = self._insert(self._events).on_conflict_do_nothing(index_elements=["event_uid"])
        with self._engine.begin() as connection:
            return connection.execute(statement, rows).rowcount

    def _spool_files(self) -> list[Path]:
        return [*self.spool_dir.glob(SPOOL_PATTERN), *self.spool_dir.glob(REPLAYING_PATTERN)]

    def _spool(self, rows: list[dict[str, Any]]) -> None:
        """Append rows to this process's spool file and fsync before the events count as
        accepted; a failure here propagates, since nothing was stored."""
        payload = "".join(json.dumps(_spool_record(row)) + "\n" for row in rows).encode()
        path = self.spool_dir / f"feedback-{os.getpid()}.jsonl"
        with self._spool_lock, _locked_append(path) as descriptor:
            size = os.fstat(descriptor).st_size
            if size and os.pread(descriptor, 1, size - 1) != b"\n":
                # an earlier process with this pid (pid 1 in a container) died mid-line: end
                # that fragment so it does not swallow these events when replayed
                payload = b"\n" + payload
            view = memoryview(payload)
            while view:
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
            if size == 0:
                _fsync_directory(self.spool_dir)

    def _claim_spool_files(self) -> None:
        """Rename the spool files aside, so appends arriving during the replay start new ones."""
        with self._spool_lock:
            for path in sorted(self.spool_dir.glob(SPOOL_PATTERN)):
                target = path.with_name(f"{path.stem}.{uuid.uuid4().hex[:8]}.replaying")
                try:
                    path.rename(target)
                except FileNotFoundError:  # another process claimed it first
                    continue

    def _replay(self, path: Path, wait: bool) -> int:
        try:
            handle = path.open("rb")
        except FileNotFoundError:  # another process finished it
            return 0
        with handle:
            if fcntl is not None:  # a writer that opened it before the rename, or a replayer
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    return 0
            if os.fstat(handle.fileno()).st_nlink == 0:  # replayed meanwhile by another process
                return 0
            replayed = 0
            chunk: list[dict[str, Any]] = []
            for row in _read_spool(handle, path):
                chunk.append(row)
                if len(chunk) >= REPLAY_CHUNK:
                    replayed += self._insert_replayed(chunk)
                    chunk = []
            if chunk:
                replayed += self._insert_replayed(chunk)
            path.unlink(missing_ok=True)
        logger.info("replayed %d new feedback events from %s", replayed, path.name)
        return replayed

    def _insert_replayed(self, rows: list[dict[str, Any]]) -> int:
        """Insert a chunk of the spool; rows the database refuses go one by one to a rejected
        file, since one bad row must not hold back every later event forever."""
        try:
            return self._insert_events(rows)
        except REFUSED_ERRORS:
            pass
        added = 0
        for row in rows:
            try:
                added += self._insert_events([row])
            except REFUSED_ERRORS as error:
                rejected = self.spool_dir / f"rejected-{os.getpid()}.jsonl"
                logger.error(
                    "the database refuses feedback event %s (%s); kept in %s",
                    row["event_uid"],
                    _reason(error),
                    rejected,
                )
                with rejected.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(_spool_record(row)) + "\n")
        return added

    def _run(self) -> None:
        """The writer thread: every tick, write the queued served records in one transaction,
        keeping a failed batch for the next tick, and now and then retry a leftover spool."""
        pending: list[dict[str, Any]] = []
        next_spool_try = time.monotonic() + SPOOL_RETRY_SECONDS
        spool_failing = False
        while True:
            stopping = self._stop.wait(self.flush_seconds)
            try:
                pending = self._drain(pending)
                if pending:
                    pending = self._write_served(pending)
                if not stopping and time.monotonic() >= next_spool_try:
                    next_spool_try = time.monotonic() + SPOOL_RETRY_SECONDS
                    spool_failing = self._retry_spool(spool_failing)
            except Exception:  # a bug must not stop the thread: records would pile up unseen
                logger.exception("the served-log writer failed; it carries on")
            if stopping:
                break
        if pending:
            self._drop(len(pending), "the database failed at close")

    def _drain(self, pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
        while True:
            try:
                pending.append(self._queue.get_nowait())
            except queue.Empty:
                break
        overflow = len(pending) - self.max_queue
        if overflow > 0:
            self._drop(overflow, f"more than {self.max_queue} records wait for the database")
            del pending[:overflow]
        return pending

    def _write_served(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write ``rows`` in one transaction; returns the rows still to write (all of them when
        the database is unreachable). A request_id already stored is skipped, so a batch whose
        commit was not acknowledged can be written again."""
        try:
            self._insert_served(rows)
        except REFUSED_ERRORS:
            for row in rows:  # find the refused ones and give up on those only
                try:
                    self._insert_served([row])
                except REFUSED_ERRORS as error:
                    self._drop(1, f"the database refused request {row['request_id']}: {error}")
        except DB_ERRORS as error:
            # one warning per outage, not one per tick
            log = logger.debug if self._served_failing else logger.warning
            log("could not write %d served records (%s); retrying", len(rows), _reason(error))
            self._served_failing = True
            return rows
        if self._served_failing:
            logger.info("served records are written again")
            self._served_failing = False
        return []

    def _insert_served(self, rows: list[dict[str, Any]]) -> None:
        self._ensure_tables()
        statement = self._insert(self._served).on_conflict_do_nothing(index_elements=["request_id"])
        with self._engine.begin() as connection:
            connection.execute(statement, rows)

    def _retry_spool(self, failing: bool) -> bool:
        """Replay a spool left behind (quiet feedback traffic); returns whether it failed.

        Only the first failure of a streak is a warning, not every few seconds of an outage.
        """
        if not self._spool_files():
            return False
        try:
            self.flush_spool()
        except DB_ERRORS as error:
            log = logger.debug if failing else logger.warning
            log("feedback spool still waiting for the database (%s)", _reason(error))
            return True
        return False

    def _drop(self, count: int, reason: str) -> None:
        """Count records that are given up, and say so (at most every few seconds)."""
        with self._drop_lock:
            self.dropped += count
            now = time.monotonic()
            if now - self._last_drop_log < DROP_LOG_SECONDS:
                return
            self._last_drop_log = now
            total = self.dropped
        logger.warning("dropped %d served records (%s); %d in total", count, reason, total)

    def _frame(self, query: sa.Select) -> pd.DataFrame:
        with self._engine.connect() as connection:
            result = connection.execute(query)
            return pd.DataFrame(result.all(), columns=list(result.keys()))


def _engine(url: str) -> Engine:
    """A pooled engine that fails fast when the database is unreachable (so the request falls
    back to the spool quickly) and tolerates the connections a restart of it broke."""
    backend = sa.make_url(url).get_backend_name()
    if backend == "postgresql":
        return sa.create_engine(
            url,
            pool_pre_ping=True,
            future=True,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
        )
    if backend == "sqlite":
        engine = sa.create_engine(
            url, pool_pre_ping=True, future=True, connect_args={"check_same_thread": False}
        )
        sa.event.listen(engine, "connect", _sqlite_wal)
        return engine
    raise ValueError(f"feedback log needs a PostgreSQL or SQLite URL, not {backend!r}")


def _sqlite_wal(connection: Any, _record: Any) -> None:
    """WAL lets monitoring read while the service writes."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _utc(value: object, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError(f"{field} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field} must carry a time zone")
    return value.astimezone(UTC)


def _text(value: object, field: str) -> str:
    text = str(value)
    if "\x00" in text:  # PostgreSQL cannot store it, and would refuse the row forever
        raise ValueError(f"{field} contains a NUL character")
    return text


def _optional_text(value: object, field: str) -> str | None:
    return None if value is None else _text(value, field)


def _event_row(event: Mapping[str, Any], received_at: datetime, index: int) -> dict[str, Any]:
    """Validate one event and give it the table's columns (and an event_uid of its own)."""
    where = f"feedback event {index}"
    unknown = set(event) - {*EVENT_REQUIRED, *EVENT_OPTIONAL}
    if unknown:
        raise ValueError(f"{where}: unknown fields {', '.join(sorted(unknown))}")
    missing = [name for name in EVENT_REQUIRED if event.get(name) in (None, "")]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    event_uid = str(event.get("event_uid") or uuid.uuid4().hex)
    if len(event_uid) > 36:
        raise ValueError(f"{where}: event_uid is longer than 36 characters")
    price = event.get("price")
    try:
        price = None if price is None else float(price)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: price {price!r} is not a number") from None
    return {
        "event_uid": _text(event_uid, f"{where}: event_uid"),
        "received_at": received_at,
        "user_id": _text(event["user_id"], f"{where}: user_id"),
        "item_id": _text(event["item_id"], f"{where}: item_id"),
        "event_type": _text(event["event_type"], f"{where}: event_type"),
        "event_ts": _utc(event["event_ts"], f"{where}: event_ts"),
        "price": price,
        **{name: _optional_text(event.get(name), f"{where}: {name}") for name in EVENT_TEXT},
    }


def _spool_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in row.items()
    }


def _read_spool(handle: Any, path: Path) -> Iterator[dict[str, Any]]:
    """The spooled rows of one file; a line that does not parse (the write a crash cut
    short) is skipped with a warning rather than blocking the rest."""
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            received_at = datetime.fromisoformat(record.pop("received_at"))
            record["event_ts"] = datetime.fromisoformat(record["event_ts"])
            row = _event_row(record, received_at, number)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            cut = "truncated last line" if not line.endswith(b"\n") else "unreadable line"
            logger.warning(
                "skipping %s %d of feedback spool %s (%s): %r",
                cut,
                number,
                path.name,
                error,
                line[:200],
            )
            continue
        yield row


@contextmanager
def _locked_append(path: Path) -> Iterator[int]:
    """An append descriptor of ``path``, exclusively locked against a replay in another process.

    A replay may rename the file between our open and our lock; then we reopen by name.
    """
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            opened = os.fstat(descriptor)
            current = os.stat(path)
        except FileNotFoundError:
            os.close(descriptor)
            continue
        except BaseException:
            os.close(descriptor)
            raise
        if (opened.st_dev, opened.st_ino) != (current.st_dev, current.st_ino):
            os.close(descriptor)
            continue
        try:
            yield descriptor
        finally:
            os.close(descriptor)
        return


def _fsync_directory(folder: Path) -> None:
    """Make a new spool file's name durable, not only its content."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(descriptor)


def _served_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The served_requests row of one record, checked now so a bad record cannot fail (and
    so hold back) a whole batch in the writer thread."""
    request_id = record["request_id"]
    if request_id in (None, ""):
        raise ValueError("request_id is missing")
    served_at = record.get("served_at") or datetime.now(UTC)
    latency = record.get("latency_ms")
    cached = record.get("cached")
    return {
        "request_id": _text(request_id, "request_id"),
        "served_at": _utc(served_at, "served_at"),
        **{name: _optional_text(record.get(name), name) for name in SERVED_TEXT},
        # json escapes a NUL, so the lists are safe as they are
        "item_ids": json.dumps([str(item) for item in record.get("item_ids") or []]),
        "scores": json.dumps([float(score) for score in record.get("scores") or []]),
        "cached": None if cached is None else bool(cached),
        "latency_ms": None if latency is None else float(latency),
    }


def _reason(error: BaseException) -> str:
    """A one-line cause, without the SQL and its parameters (they hold user ids)."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"

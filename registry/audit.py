"""The append-only audit of registry transitions: who moved which alias from which version to
which, when, why, and on what evidence.

It is a table of our own (``recsys_registry_audit``) in the registry's database, so the record
lives and is backed up with the registry itself: the workspace's MLflow SQLite file locally,
PostgreSQL in the production profile. ``RECSYS_REGISTRY_AUDIT_URL`` (and, on PostgreSQL,
``RECSYS_REGISTRY_AUDIT_SCHEMA``) point it elsewhere, e.g. when MLflow is behind an HTTP
server. The code only ever inserts and selects: there is no update or delete path.
"""

import getpass
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from recsys.errors import RecsysError

logger = logging.getLogger(__name__)
TABLE = "recsys_registry_audit"
URL_ENV = "RECSYS_REGISTRY_AUDIT_URL"
SCHEMA_ENV = "RECSYS_REGISTRY_AUDIT_SCHEMA"


def actor() -> str:
    """Who is acting: ``$RECSYS_ACTOR``, else ``$GITHUB_ACTOR`` (a workflow), else the OS user."""
    for name in ("RECSYS_ACTOR", "GITHUB_ACTOR"):
        if os.environ.get(name, "").strip():
            return os.environ[name].strip()
    try:
        return getpass.getuser()
    except Exception:  # no user name in a bare container
        return f"uid:{os.getuid()}"


def audit_url(tracking_uri: str) -> str:
    """The SQLAlchemy URL of the registry's database (``RECSYS_REGISTRY_AUDIT_URL`` wins)."""
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV]
    if tracking_uri.startswith("sqlite:"):
        return tracking_uri
    for scheme in ("postgresql://", "postgres://"):
        if tracking_uri.startswith(scheme):
            return "postgresql+psycopg2://" + tracking_uri[len(scheme) :]
    if tracking_uri.startswith(("postgresql+", "mysql")):
        return tracking_uri
    raise RecsysError(
        f"the registry at {tracking_uri} is not a database the audit table can live in: "
        f"set {URL_ENV} to a SQLAlchemy URL"
    )


@dataclass(frozen=True)
class Record:
    id: int
    at: datetime
    actor: str
    action: str
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    reason: str
    metrics: dict
    details: dict


def _table(metadata: sa.MetaData, schema: str | None) -> sa.Table:
    return sa.Table(
        TABLE,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("from_version", sa.String(32)),
        sa.Column("to_version", sa.String(32)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        schema=schema,
    )


class AuditLog:
    """Insert-and-read access to the audit table; the table (and schema) made if missing."""

    def __init__(self, url: str, schema: str | None = None) -> None:
        self.url = url
        self.schema = schema or os.environ.get(SCHEMA_ENV) or None
        self.engine = sa.create_engine(url)
        self.table = _table(sa.MetaData(), self.schema)
        self._ready = False

    def _ensure(self) -> None:
        if self._ready:
            return
        with self.engine.begin() as connection:
            if self.schema and connection.dialect.name == "postgresql":
                connection.execute(sa.schema.CreateSchema(self.schema, if_not_exists=True))
            self.table.create(connection, checkfirst=True)
        self._ready = True

    def append(
        self,
        action: str,
        model: str,
        alias: str,
        from_version: str | None,
        to_version: str | None,
        reason: str,
        metrics: dict | None = None,
        details: dict | None = None,
        who: str | None = None,
    ) -> Record:
        """Write one transition; returns it as stored."""
        self._ensure()
        row = {
            "recorded_at": datetime.now(UTC),
            "actor": who or actor(),
            "action": action,
            "model_name": model,
            "alias": alias,
            "from_version": from_version,
            "to_version": to_version,
            "reason": reason,
            "metrics": json.dumps(metrics or {}, sort_keys=True, default=str),
            "details": json.dumps(details or {}, sort_keys=True, default=str),
        }
        with self.engine.begin() as connection:
            new_id = connection.execute(
                sa.insert(self.table).returning(self.table.c.id), row
            ).scalar_one()
        logger.info("audit %s: %s %s %s -> %s", new_id, action, alias, from_version, to_version)
        return self._record({"id": new_id, **row})

    def history(self, model: str, limit: int | None = None) -> list[Record]:
        """The newest ``limit`` records of ``model``, newest first."""
        self._ensure()
        query = (
            sa.select(self.table)
            .where(self.table.c.model_name == model)
            .order_by(self.table.c.id.desc())
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return [self._record(dict(row._mapping)) for row in connection.execute(query)]

    @staticmethod
    def _record(row: dict) -> Record:
        at = row["recorded_at"]
        if at.tzinfo is None:  # SQLite keeps no zone: the value was written in UTC
            at = at.replace(tzinfo=UTC)
        return Record(
            id=int(row["id"]),
            at=at,
            actor=row["actor"],
            action=row["action"],
            model=row["model_name"],
            alias=row["alias"],
            from_version=row["from_version"],
            to_version=row["to_version"],
            reason=row["reason"],
            metrics=json.loads(row["metrics"] or "{}"),
            details=json.loads(row["details"] or "{}"),
        )

    def close(self) -> None:
        self.engine.dispose()

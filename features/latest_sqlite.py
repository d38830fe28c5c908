"""SQLite online store that never replaces a value with an older one (the scale profile's).

Feast 0.67's Ray compute engine deduplicates materialised rows per Ray block only and relies
on the online store's upsert to settle duplicates across blocks ("last written wins",
``RayDedupNode``). Its source is sorted newest first, so the last block written holds the
oldest rows: with Feast's SQLite store, which overwrites unconditionally, the online store
ended up with stale values (tiny shop: 15 of 40 users had an old ``user_activity`` row).
Feast's Redis store already skips writes older than what it holds; this store does the same
on SQLite: rows older than the stored event time of their entity are dropped before Feast's
own upsert, and among equal event times the later created time wins.
"""

import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from feast import FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.sqlite import (
    SqliteOnlineStore,
    SqliteOnlineStoreConfig,
    _quote_id,
    _table_id,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from feast.utils import to_naive_utc

logger = logging.getLogger(__name__)

CHUNK = 500  # entity keys per lookup, under SQLite's limit of bound parameters

Row = tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]


class LatestWinsSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    """The SQLite online store's settings; only the type name differs."""

    type: Literal["features.latest_sqlite.LatestWinsSqliteOnlineStore"] = (  # type: ignore[assignment]
        "features.latest_sqlite.LatestWinsSqliteOnlineStore"
    )


def _seconds(stamp: datetime) -> int:
    """A time as Feast's SQLite store keeps it: whole epoch seconds of the naive UTC time."""
    return int(to_naive_utc(stamp).timestamp())


class LatestWinsSqliteOnlineStore(SqliteOnlineStore):
    """Feast's SQLite online store, minus writes older than the stored value."""

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[Row],
        progress: Callable[[int], Any] | None,
    ) -> None:
        version = config.entity_key_serialization_version
        keys = [
            serialize_entity_key(row[0], entity_key_serialization_version=version) for row in data
        ]
        stored = self._stored_times(config, table, sorted(set(keys)))
        newest: dict[bytes, tuple[int, tuple[datetime, datetime]]] = {}
        for index, (key, row) in enumerate(zip(keys, data, strict=True)):
            event = to_naive_utc(row[2])
            order = (event, to_naive_utc(row[3]) if row[3] is not None else event)
            if key in stored and (_seconds(order[0]), _seconds(order[1])) < stored[key]:
                continue  # older than the stored value (ties, at whole seconds, are rewritten)
            if key not in newest or order >= newest[key][1]:
                newest[key] = (index, order)
        kept = [data[index] for index, _ in sorted(newest.values())]
        if len(kept) < len(data):
            logger.debug(
                "%s: %d of %d rows older than stored values skipped",
                table.name,
                len(data) - len(kept),
                len(data),
            )
        super().online_write_batch(config, table, kept, progress)

    def _stored_times(
        self, config: RepoConfig, table: FeatureView, keys: list[bytes]
    ) -> dict[bytes, tuple[int, int]]:
        """Event and created time (epoch seconds) of the stored value of each known key."""
        name = _table_id(
            config.project, table, config.registry.enable_online_feature_view_versioning
        )
        conn = self._get_conn(config)
        found: dict[bytes, tuple[int, int]] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            try:
                rows = conn.execute(
                    f"SELECT entity_key, MAX(event_ts), MAX(created_ts) FROM {_quote_id(name)} "
                    f"WHERE entity_key IN ({', '.join('?' * len(chunk))}) GROUP BY entity_key",
                    chunk,
                ).fetchall()
            except sqlite3.OperationalError:  # no table yet: nothing stored
                return found
            for key, event, created in rows:  # MAX() returns the stored integers as they are
                found[key] = (int(event), int(created if created is not None else event))
        return found

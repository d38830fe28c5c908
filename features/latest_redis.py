"""Redis online store whose "newer value wins" check and write are one atomic step (the
production profile's).

Feast 0.67's Redis store reads every entity's stored event time in one round trip and writes
the newer rows in a second one ("TODO: investigate if check and set is a better approach ...
avoids potential (rare) race conditions", ``RedisOnlineStore.online_write_batch``). A
``feast materialize`` reads the times of all users, then spends seconds building its writes;
a session pushed by ``/feedback`` in between was overwritten by the lake's months-old
session (seen in CI: the ten events fed back during a Redis outage vanished from the online
session when the recovery's materialisation ran alongside the service's catch-up push).

Here each entity's row is written by a Lua script that compares and sets in Redis itself, so
no writer can slip in between. Order is the event time, then the created time (a later push
of the same second, holding more events, replaces the earlier one; Feast's store dropped it
as "not newer"). The order key sits beside Feast's own ``_ts:<view>`` field, which is still
written, so Feast's reads and other writers see the hash they expect.
"""

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from feast import FeatureView
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.infra.online_stores.redis import (
    RedisOnlineStore,
    RedisOnlineStoreConfig,
    RedisType,
    _versioned_fv_name,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from feast.utils import make_tzaware
from google.protobuf.timestamp_pb2 import Timestamp

logger = logging.getLogger(__name__)

Row = tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]

# KEYS[1] the entity's hash; ARGV: order field, order value, ttl seconds (0: none), then
# field/value pairs. Order values are fixed-width digit strings, so string order is time order.
COMPARE_AND_SET = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored and stored >= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], unpack(ARGV, 4))
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
end
return 1
"""


class LatestWinsRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    """The Redis online store's settings; only the type name differs."""

    type: Literal["features.latest_redis.LatestWinsRedisOnlineStore"] = (  # type: ignore[assignment]
        "features.latest_redis.LatestWinsRedisOnlineStore"
    )


def _stamp(moment: datetime) -> Timestamp:
    proto = Timestamp()
    proto.FromDatetime(make_tzaware(moment))
    return proto


def _nanos(stamp: Timestamp) -> int:
    return stamp.seconds * 1_000_000_000 + stamp.nanos


def order_value(event: Timestamp, created: datetime | None) -> str:
    """The write's place in time: event time, then created time, as comparable text."""
    made = _nanos(_stamp(created)) if created is not None else 0
    return f"{_nanos(event):020d}.{made:020d}"


class LatestWinsRedisOnlineStore(RedisOnlineStore):
    """Feast's Redis online store with an atomic compare-and-set per entity."""

    _compare_and_set: Any = None

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[Row],
        progress: Callable[[int], Any] | None,
    ) -> None:
        settings = config.online_store
        assert isinstance(settings, RedisOnlineStoreConfig)
        if settings.redis_type == RedisType.redis_cluster:
            # a cluster pipeline runs no scripts: Feast's two-step write
            super().online_write_batch(config, table, data, progress)
            return
        client = self._get_client(settings)
        if self._compare_and_set is None:
            self._compare_and_set = client.register_script(COMPARE_AND_SET)
        view = _versioned_fv_name(table, config)
        ts_field = f"_ts:{view}"
        order_field = f"_order:{view}"
        ttl = int(settings.key_ttl_seconds or 0)
        version = config.entity_key_serialization_version
        with client.pipeline(transaction=False) as pipe:
            for entity_key, values, event, created in data:
                stamp = _stamp(event)
                pairs: list[Any] = [ts_field, stamp.SerializeToString()]
                for name, value in values.items():
                    pairs += [_mmh3(f"{view}:{name}"), value.SerializeToString()]
                self._compare_and_set(
                    keys=[_redis_key(config.project, entity_key, version)],
                    args=[order_field, order_value(stamp, created), ttl, *pairs],
                    client=pipe,
                )
            written = pipe.execute()
        skipped = len(written) - sum(written)
        if skipped:
            logger.debug("%s: %d of %d rows not newer than stored", view, skipped, len(written))
        if progress:
            progress(len(written))

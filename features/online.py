"""The serving read path: one user and hundreds of candidate products in a few milliseconds.

Feast's ``get_online_features`` converts value by value into a response object: about 100 ms
for 300 entities (Feast's own figures: p99 114 ms at 100 rows). This reader keeps the online
store as the single source of truth but reads it in bulk:

- on Redis, every view of an entity lives in one hash (Feast's layout), so one pipelined
  HMGET per entity fetches all its views: user, products and affinities in one round trip;
  keys and field names come from Feast's own Redis store, values are decoded in bulk
  (``features.wire``);
- on any other online store (SQLite in the local profile), it calls the store's
  ``online_read`` once per view, as Feast does, without the response building.
"""

import logging
import struct
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from feast import FeatureStore, FeatureView
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.value_type import ValueType

from features import names as n
from features.session import SESSION_FIELDS, SessionState
from features.wire import decode, decode_column
from recsys import columns as c

logger = logging.getLogger(__name__)

USER_VIEWS = (n.USER_ACTIVITY, n.USER_PROFILE, n.SESSION)
ITEM_VIEWS = (n.PRODUCT_ACTIVITY, n.PRODUCT_CATALOG)
AFFINITY_VIEWS = (n.USER_CATEGORY,)
KEY_CACHE_SIZE = 200_000
FEW_PRODUCTS = 64  # up to this many products, values are decoded one by one
KEY_VERSION = 3  # Feast's entity key serialisation that ``entity_key_bytes`` writes
AFFINITY_KEYS = [c.USER_ID, c.CATEGORY]
_UINT32 = struct.Struct("<I")
_STRING_TYPE = _UINT32.pack(ValueType.STRING.value)


def _string_part(value: str) -> bytes:
    """A string value as Feast's key writes it: its type, its length, its UTF-8 bytes."""
    encoded = value.encode("utf8")
    return _STRING_TYPE + _UINT32.pack(len(encoded)) + encoded


def entity_key_bytes(join_keys: list[str], values: tuple[str, ...], project: bytes) -> bytes:
    """Feast's Redis key of an entity of string values (``serialize_entity_key``, version 3,
    then the project's name), built directly: Feast's builds a protobuf message first,
    about 10 us a key, and a request asks for a hundred user-category keys."""
    pairs = sorted(zip(join_keys, values, strict=True)) if len(join_keys) > 1 else None
    keys, vals = (join_keys, values) if pairs is None else zip(*pairs, strict=True)
    out = [_UINT32.pack(len(join_keys))]
    out += (_string_part(key) for key in keys)
    out += (_string_part(value) for value in vals)
    out.append(project)
    return b"".join(out)


def _session(user: dict[str, object]) -> SessionState | None:
    """The session fields of a user's online values, if the user has a session."""
    if user.get("session_id") is None:
        return None
    return SessionState(**{name: user[name] for name in SESSION_FIELDS})


@dataclass(frozen=True)
class OnlineRead:
    """What the online store knows about one user and a list of products."""

    user: dict[str, object]
    items: pd.DataFrame
    affinity: dict[str, dict[str, object]] = field(default_factory=dict)
    missing_items: tuple[str, ...] = ()

    @property
    def known_user(self) -> bool:
        return any(v is not None for k, v in self.user.items() if k not in SESSION_FIELDS)

    @property
    def session(self) -> SessionState | None:
        return _session(self.user)


class _Group:
    """Views sharing one entity key, read together."""

    def __init__(self, views: list[FeatureView]) -> None:
        self.views = views
        self.columns = [f.name for view in views for f in view.features]


class OnlineReader:
    """Reads the ranker's stored features of a store; create once, use for every request."""

    def __init__(self, store: FeatureStore, timeout: float | None = None) -> None:
        """``timeout``: seconds a Redis call may take before it fails, with no retry (the
        service's setting: a slow store must cost one short wait, then a fallback). Without
        it, Feast's own client and its defaults are used."""
        self.store = store
        self.timeout = timeout
        self.config = store.config
        self.provider = store._get_provider()
        views = {
            name: store.get_feature_view(name)
            for name in (*USER_VIEWS, *ITEM_VIEWS, *AFFINITY_VIEWS)
        }
        self.groups = {
            "user": _Group([views[v] for v in USER_VIEWS]),
            "item": _Group([views[v] for v in ITEM_VIEWS]),
            "affinity": _Group([views[v] for v in AFFINITY_VIEWS]),
        }
        self._redis = self._redis_layout()
        self._no_items: pd.DataFrame | None = None

    def _redis_layout(self):
        from feast.infra.online_stores.redis import RedisOnlineStore

        online = self.provider.online_store
        if not isinstance(online, RedisOnlineStore):
            return None
        from feast.infra.online_stores.redis import _versioned_fv_name

        fields = {}
        for name, group in self.groups.items():
            hset: list[bytes] = []
            for view in group.views:
                names, keys = online._generate_hset_keys_for_features(
                    view, None, fv_name_override=_versioned_fv_name(view, self.config)
                )
                hset += [k for f, k in zip(names, keys, strict=True) if not f.startswith("_ts:")]
            fields[name] = hset
        client = _fail_fast_client(online, self.config.online_store, self.timeout)
        logger.info("online reads go to Redis in one pipelined round trip per request")
        columns = {name: group.columns for name, group in self.groups.items()}
        return _RedisLayout(online, self.config, client, fields, columns)

    def _read(
        self, group: str, keys: list[str], rows: list[tuple[str, ...]]
    ) -> list[dict[str, object] | None]:
        """Generic path: the store's own online_read, one call per view."""
        merged: list[dict[str, object] | None] = [None] * len(rows)
        entity_keys = [
            EntityKey(join_keys=keys, entity_values=[Value(string_val=v) for v in row])
            for row in rows
        ]
        for view in self.groups[group].views:
            names = [f.name for f in view.features]
            answers = self.provider.online_read(
                config=self.config, table=view, entity_keys=entity_keys, requested_features=names
            )
            for i, (_, data) in enumerate(answers):
                if data is None:
                    continue
                values = {k: decode(v.SerializeToString()) for k, v in data.items()}
                merged[i] = (merged[i] or {}) | {name: values.get(name) for name in names}
        return merged

    def ping(self) -> bool:
        """Whether the store answers now (Redis: a PING; other stores: assumed)."""
        if self._redis is None:
            return True
        try:
            return bool(self._redis.client.ping())
        except Exception:
            return False

    def read_session(self, user_id: str) -> SessionState | None:
        """The user's current session only: what /feedback needs to fold in a new event."""
        if self._redis is not None:
            user, _, _ = self._redis.read(user_id, [], None)
        else:
            user = self._read("user", [c.USER_ID], [(user_id,)])[0]
        return _session(user or {})

    def read_user(self, user_id: str, categories: list[str] | tuple[str, ...] = ()) -> OnlineRead:
        """The user's values and affinities to ``categories`` (``read`` of no products), with
        an empty frame of products made once: a frame costs more than the read."""
        if self._redis is None:
            return self.read(user_id, [], list(categories))
        user, _, _, affinity = self.read_columns(user_id, [], list(categories))
        if self._no_items is None:
            self._no_items = pd.DataFrame(
                {c.ITEM_ID: [], **{name: [] for name in self.groups["item"].columns}}
            )
        return OnlineRead(user=user, items=self._no_items, affinity=affinity)

    def read_columns(
        self, user_id: str, item_ids: list[str], categories: list[str]
    ) -> tuple[dict[str, object], dict[str, list], set[str], dict[str, dict[str, object]]]:
        """``read`` without its frame of products (the request path's form): the user's
        values, each product feature as a list of Python values, the products the store does
        not hold, and the affinities that exist. A number the product lacks is ``None`` or
        NaN (decoded one by one or as a column), which ``OnlineFeatures`` types alike."""
        if self._redis is None:
            read = self.read(user_id, item_ids, categories)
            names = self.groups["item"].columns if item_ids else []
            columns = {name: read.items[name].to_numpy(dtype=object).tolist() for name in names}
            return read.user, columns, set(read.missing_items), read.affinity
        by_value = len(item_ids) <= FEW_PRODUCTS
        user, (items, found), affinity = self._redis.read(user_id, item_ids, categories, by_value)
        columns = {
            name: values.tolist() if isinstance(values, np.ndarray) else list(values)
            for name, values in items.items()
        }
        absent = {item for item, ok in zip(item_ids, found, strict=True) if not ok}
        user_values = user or {}
        return (
            {name: user_values.get(name) for name in self.groups["user"].columns},
            columns,
            absent,
            {cat: row for cat, row in (affinity or {}).items() if row is not None},
        )

    def read(
        self, user_id: str, item_ids: list[str], categories: list[str] | None = None
    ) -> OnlineRead:
        """User (activity, profile, session), products, and affinities to ``categories``.

        Without ``categories``, the affinities to the products' own categories are read in a
        second step (the categories are only known once the products are).
        """
        cols = self.groups["item"].columns
        if self._redis is not None:
            user, (columns, found), affinity = self._redis.read(user_id, item_ids, categories)
            frame = pd.DataFrame({c.ITEM_ID: item_ids, **columns})
        else:
            user = self._read("user", [c.USER_ID], [(user_id,)])[0]
            rows = self._read("item", [c.ITEM_ID], [(i,) for i in item_ids])
            found = [row is not None for row in rows]
            frame = pd.DataFrame([row or {} for row in rows], columns=cols)
            frame.insert(0, c.ITEM_ID, item_ids)
            affinity = None
        if affinity is None or categories is None:
            wanted = (
                categories
                if categories is not None
                else sorted(set(frame["category"].dropna()) if "category" in frame else set())
            )
            rows = (
                self._redis.read_affinity(user_id, wanted)
                if self._redis is not None
                else self._read(
                    "affinity", [c.USER_ID, c.CATEGORY], [(user_id, cat) for cat in wanted]
                )
            )
            affinity = dict(zip(wanted, rows, strict=True))
        missing = tuple(i for i, ok in zip(item_ids, found, strict=True) if not ok)
        user_values = user or {}
        return OnlineRead(
            user={name: user_values.get(name) for name in self.groups["user"].columns},
            items=frame,
            affinity={cat: row for cat, row in affinity.items() if row is not None},
            missing_items=missing,
        )


def _decode_values(values: tuple[bytes | None, ...]) -> list:
    return [decode(v) for v in values]


def _fail_fast_client(online, config, timeout: float | None):
    """Feast's Redis client, or (with ``timeout``, on a single Redis) one that gives up after
    ``timeout`` seconds without retrying: redis-py's default of three backed-off retries makes
    a call to a stopped Redis last up to 14 s. Feast's store is given the same client, so its
    writes (session pushes) fail as fast. Settings in the connection string win."""
    from feast.infra.online_stores.redis import RedisType

    if timeout is None or config.redis_type != RedisType.redis:
        return online._get_client(config)
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    nodes, kwargs = online._parse_connection_string(config.connection_string)
    kwargs.setdefault("socket_timeout", timeout)
    kwargs.setdefault("socket_connect_timeout", timeout)
    kwargs.setdefault("retry", Retry(NoBackoff(), 0))
    client = redis.Redis(host=nodes[0]["host"], port=int(nodes[0]["port"]), **kwargs)
    online._client = client
    return client


class _RedisLayout:
    """Feast's Redis layout, read in one round trip: a server-side script runs every HMGET.

    Where scripts cannot run over these keys (a Redis Cluster spreads them over slots), the
    same commands go out as one pipeline instead.
    """

    SCRIPT = """
    local nu, ni, na = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
    local fu, fi, fa = {}, {}, {}
    for j = 1, nu do fu[j] = ARGV[3 + j] end
    for j = 1, ni do fi[j] = ARGV[3 + nu + j] end
    for j = 1, na do fa[j] = ARGV[3 + nu + ni + j] end
    local n_items = tonumber(ARGV[4 + nu + ni + na])
    local out = {redis.call('HMGET', KEYS[1], unpack(fu))}
    for k = 2, #KEYS do
        if k <= 1 + n_items then
            out[k] = redis.call('HMGET', KEYS[k], unpack(fi))
        else
            out[k] = redis.call('HMGET', KEYS[k], unpack(fa))
        end
    end
    return out
    """

    def __init__(
        self, online, config, client, fields: dict[str, list[bytes]], columns: dict[str, list[str]]
    ) -> None:
        self.online, self.config, self.client = online, config, client
        self.fields, self.columns = fields, columns
        self._keys: OrderedDict[tuple[str, ...], bytes] = OrderedDict()
        self._argv_head = [
            len(fields["user"]),
            len(fields["item"]),
            len(fields["affinity"]),
            *fields["user"],
            *fields["item"],
            *fields["affinity"],
        ]
        self._script = client.register_script(self.SCRIPT)
        self._use_script = True
        self._project = config.project.encode("utf-8")
        self._direct_keys = config.entity_key_serialization_version == KEY_VERSION
        # (Feast sorts the join keys: the category's value comes before the user's)
        assert sorted(AFFINITY_KEYS) == [c.CATEGORY, c.USER_ID]
        self._affinity_head = entity_key_bytes(AFFINITY_KEYS, ("", ""), b"")[: -2 * 8]
        self._category_parts: dict[str, bytes] = {}

    def key(self, join_keys: list[str], values: tuple[str, ...]) -> bytes:
        """The entity's Redis key, computed once and then remembered (products and users
        come back request after request)."""
        cache_key = (*join_keys, *values)
        found = self._keys.get(cache_key)
        if found is None:
            found = self._entity_key(join_keys, values)
            self._keys[cache_key] = found
            if len(self._keys) > KEY_CACHE_SIZE:
                self._keys.popitem(last=False)
        return found

    def _entity_key(self, join_keys: list[str], values: tuple[str, ...]) -> bytes:
        """Feast's key bytes: directly where Feast's serialisation is the one written out
        (version 3), else from Feast's own store."""
        if self._direct_keys:
            return entity_key_bytes(join_keys, values, self._project)
        entity = EntityKey(join_keys=join_keys, entity_values=[Value(string_val=v) for v in values])
        return self.online._generate_redis_keys_for_entities(self.config, [entity])[0]

    def affinity_keys(self, user_id: str, categories: list[str]) -> list[bytes]:
        """The user-category keys, not remembered (a user's affinities are read once per
        request and would push the products' keys out of the cache), but made of parts that
        are: the keys' head, each category's part, then the user's part and the project."""
        if not self._direct_keys:
            return [self.key(AFFINITY_KEYS, (user_id, cat)) for cat in categories]
        user_part = _string_part(user_id) + self._project
        parts = self._category_parts
        keys = []
        for cat in categories:
            part = parts.get(cat)
            if part is None:
                part = parts[cat] = _string_part(cat)
            keys.append(self._affinity_head + part + user_part)
        if len(parts) > KEY_CACHE_SIZE:
            parts.clear()
        return keys

    def _fetch(self, user_id: str, item_ids: list[str], categories: list[str]) -> list:
        keys = [self.key([c.USER_ID], (user_id,))]
        keys += [self.key([c.ITEM_ID], (item,)) for item in item_ids]
        keys += self.affinity_keys(user_id, categories)
        if self._use_script:
            from redis.exceptions import ResponseError

            try:
                return self._script(keys=keys, args=[*self._argv_head, len(item_ids)])
            except ResponseError as exc:  # e.g. CROSSSLOT on a cluster: fall back for good
                logger.warning("Redis script refused (%s); using a pipeline", exc)
                self._use_script = False
        pipe = self.client.pipeline(transaction=False)
        groups = ["user"] + ["item"] * len(item_ids) + ["affinity"] * len(categories)
        for key, group in zip(keys, groups, strict=True):
            pipe.hmget(key, self.fields[group])
        return pipe.execute()

    def _row(self, values: list[bytes | None], group: str) -> dict[str, object] | None:
        if not any(values):
            return None
        return {name: decode(v) for name, v in zip(self.columns[group], values, strict=True)}

    def read(self, user_id: str, item_ids: list[str], categories: list[str] | None, by_value=False):
        """``by_value``: decode the products' values one by one (Python values, ``None``
        where absent) rather than as columns (numpy arrays of numbers, NaN where absent):
        for a few products, the column decoder's fixed cost is the larger."""
        answers = self._fetch(user_id, item_ids, categories or [])
        user = self._row(answers[0], "user")
        rows = answers[1 : 1 + len(item_ids)]
        found = [any(row) for row in rows]
        names = self.columns["item"]
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        decoder = _decode_values if by_value else decode_column
        items = {name: decoder(col) for name, col in zip(names, columns, strict=True)}
        affinity = None
        if categories is not None:
            affinity = {
                cat: self._row(a, "affinity")
                for cat, a in zip(categories, answers[1 + len(item_ids) :], strict=True)
            }
        return user, (items, found), affinity

    def read_affinity(self, user_id: str, categories: list[str]) -> list[dict | None]:
        answers = self._fetch(user_id, [], categories)
        return [self._row(a, "affinity") for a in answers[1:]]

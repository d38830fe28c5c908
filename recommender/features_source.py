"""Where the ranker's stored features come from: Feast's offline store (training, evaluation,
batch recommendations) or its online store (the service). Both give the same columns,
``<view>__<feature>``, for each candidate row.

Offline, one point-in-time join per candidate row is slow (DuckDB: ~170 us a row), and most
of it repeats: a request's 200 candidates share one user. So ``OfflineFeatures`` asks Feast
for each entity's views once, at the instant that gives exactly the row-by-row answer:

- user views (activity, profile, session) once per request, an instant before it;
- product views (activity, catalogue) once per product and day: activity rows are daily
  snapshots stamped at midnight, so the day's start gives the same row as the request's
  instant, and a product launched earlier that day is looked up at its launch instead;
- user-category affinity only for categories the user had touched before the request: the
  others have no row, offline as online;
- the request context from the same shared function as Feast's on-demand view.
"""

import json
import logging
from itertools import repeat

import numpy as np
import pandas as pd

from features import names as n
from features.context import context_columns
from recommender.catalog import Catalog
from recommender.state import ITEM, REQ, TS, Batch, as_text
from recommender.stored import LABEL_EPSILON
from recsys import columns as c

logger = logging.getLogger(__name__)
DAY = 86_400
USER_VIEWS = (n.USER_ACTIVITY, n.USER_PROFILE, n.SESSION)
ITEM_VIEWS = (n.PRODUCT_ACTIVITY, n.PRODUCT_CATALOG)
AFFINITY_VIEWS = (n.USER_CATEGORY,)
NO_AFFINITY: dict[str, object] = {}
NONE = type(None)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
EXACT = 2**53  # whole numbers below this are exact as floats


def _stamp(seconds: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(seconds, unit="s", utc=True).floor("us")


def _categories(catalog: Catalog, items: np.ndarray | None = None) -> np.ndarray:
    """The category of each item (of ``items``, or of all), ``""`` where unknown."""
    cats = catalog.facts[c.CATEGORY].to_numpy(dtype=object)
    cats = cats if items is None else cats[items]
    return np.where(pd.isna(cats), "", cats)


def request_frame(batch: Batch, pairs: pd.DataFrame, catalog: Catalog) -> pd.DataFrame:
    """Per candidate row: the request's instant and device and the candidate's keys."""
    return pd.DataFrame(_pair_columns(batch, pairs, catalog), index=pairs.index)


def _pair_columns(batch: Batch, pairs: pd.DataFrame, catalog: Catalog) -> dict[str, np.ndarray]:
    """``request_frame`` as columns: each request's values worked out once, then spread
    over its candidates."""
    reqs, items = pairs[REQ].to_numpy(), pairs[ITEM].to_numpy()
    requests = batch.requests
    at = requests[TS].to_numpy(dtype=np.float64)
    device = requests[c.DEVICE].to_numpy(dtype=object)
    device = np.where(device == "?", "unknown", device).astype(str)
    return {
        c.USER_ID: as_text(requests[c.USER_ID].to_numpy())[reqs],
        c.ITEM_ID: catalog.items.ids[items],
        c.CATEGORY: _categories(catalog, items),
        n.REQUEST_TS: at.astype(np.int64)[reqs],
        n.REQUEST_DEVICE: device[reqs],
    }


def _views_without_rows(workspace) -> set[str]:
    """The feature views whose offline table has no rows, as ``features build`` counted."""
    from features.build import features_dir

    manifest = features_dir(workspace) / "manifest.json"
    rows = json.loads(manifest.read_text()).get("rows", {}) if manifest.exists() else {}
    return {name for name, count in rows.items() if count == 0}


class OfflineFeatures:
    """Point-in-time values from Feast's offline store, as of each request's instant."""

    def __init__(self, workspace, service: str = n.RANKER_SERVICE) -> None:
        from feast.errors import FeatureServiceNotFoundException
        from feast.types import String

        from features.store import open_store
        from recsys.errors import RecsysError

        self.workspace = workspace
        self.store = open_store(workspace)
        try:
            self.service = self.store.get_feature_service(service)
        except FeatureServiceNotFoundException:
            raise RecsysError(
                f"feature service {service!r} is not registered in Feast project "
                f"{self.store.project!r} ({workspace.profile} profile): run "
                f"`recsys --profile {workspace.profile} features apply` first"
            ) from None
        self.refs = {
            p.name: [f"{p.name}:{f.name}" for f in p.features]
            for p in self.service.feature_view_projections
        }
        # Feast's Ray store (scale profile) cannot read a table without rows (a shop without
        # users or categories): such views are not asked, their features are all missing
        self.skip = _views_without_rows(workspace) if workspace.profile == "scale" else set()
        self.text = {
            f"{p.name}:{f.name}"
            for p in self.service.feature_view_projections
            for f in p.features
            if f.dtype == String
        }

    def _views(self, entities: pd.DataFrame, views: tuple[str, ...]) -> pd.DataFrame:
        from features.environment import feast_environment

        refs = [ref for v in views for ref in self.refs.get(v, [])]
        asked = [ref for ref in refs if ref.split(":")[0] not in self.skip]
        frame = entities.reset_index(drop=True).assign(_row=lambda f: f.index)
        if asked:
            with feast_environment(self.workspace):
                got = self.store.get_historical_features(
                    entity_df=frame, features=asked, full_feature_names=True
                ).to_df()
        else:
            got = frame
        got = got.sort_values("_row").drop(columns="_row").reset_index(drop=True)
        for ref in refs:
            if ref not in asked:
                got[ref.replace(":", "__")] = None if ref in self.text else np.nan
        return got

    def fetch(self, batch: Batch, pairs: pd.DataFrame, catalog: Catalog) -> pd.DataFrame:
        rows = request_frame(batch, pairs, catalog)
        if len(rows) == 0:
            return rows
        before = batch.requests[TS].to_numpy(dtype=np.float64) - LABEL_EPSILON.total_seconds()

        users = pd.DataFrame(
            {
                c.USER_ID: batch.requests[c.USER_ID].astype(str).to_numpy(),
                n.EVENT_TIMESTAMP: _stamp(before),
            }
        )
        user_values = self._views(users, USER_VIEWS).drop(columns=[c.USER_ID, n.EVENT_TIMESTAMP])
        picked = user_values.iloc[pairs[REQ].to_numpy()]
        picked.index = rows.index
        out = pd.concat([rows, picked], axis=1)

        at = before[pairs[REQ].to_numpy()]
        created = catalog.created[pairs[ITEM].to_numpy()]
        day = np.floor(at / DAY) * DAY
        # a launch instant read back from float seconds may land a microsecond early
        launch = np.minimum(created + 0.001, at)
        when = np.where((created > day) & (created <= at), launch, day)
        items = pd.DataFrame({c.ITEM_ID: rows[c.ITEM_ID].to_numpy(), "_when": when})
        unique = items.drop_duplicates().reset_index(drop=True)
        item_values = self._views(
            pd.DataFrame(
                {
                    c.ITEM_ID: unique[c.ITEM_ID],
                    n.EVENT_TIMESTAMP: _stamp(unique["_when"].to_numpy()),
                }
            ),
            ITEM_VIEWS,
        ).drop(columns=[n.EVENT_TIMESTAMP])
        item_values["_when"] = unique["_when"].to_numpy()
        joined = items.merge(item_values, on=[c.ITEM_ID, "_when"], how="left")
        joined.index = rows.index
        out = pd.concat([out, joined.drop(columns=[c.ITEM_ID, "_when"])], axis=1)

        touched = getattr(batch, "touched", None)
        aff_cols = [r.replace(":", "__") for v in AFFINITY_VIEWS for r in self.refs.get(v, [])]
        if touched is not None and len(touched):
            cats = _categories(catalog)
            t = pd.DataFrame(
                {REQ: touched[REQ].to_numpy(), c.CATEGORY: cats[touched[ITEM].to_numpy()]}
            )
            t = t[t[c.CATEGORY] != ""].drop_duplicates()
            cand = pd.DataFrame(
                {REQ: pairs[REQ].to_numpy(), c.CATEGORY: rows[c.CATEGORY].to_numpy()}
            )
            t = t.merge(cand.drop_duplicates(), on=[REQ, c.CATEGORY]).reset_index(drop=True)
            ask = pd.DataFrame(
                {
                    c.USER_ID: batch.requests[c.USER_ID].astype(str).to_numpy()[t[REQ].to_numpy()],
                    c.CATEGORY: t[c.CATEGORY].to_numpy(),
                    n.EVENT_TIMESTAMP: _stamp(before[t[REQ].to_numpy()]),
                }
            )
            aff = self._views(ask, AFFINITY_VIEWS)[aff_cols] if len(ask) else None
            if aff is not None:
                aff[REQ] = t[REQ].to_numpy()
                aff[c.CATEGORY] = t[c.CATEGORY].to_numpy()
                joined = cand.merge(aff, on=[REQ, c.CATEGORY], how="left")
                joined.index = rows.index
                out = pd.concat([out, joined[aff_cols]], axis=1)
        for col in aff_cols:
            if col not in out:
                out[col] = np.nan
        return with_context(out)


def with_context(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the on-demand ``request_context`` columns (Feast's function, called directly)."""
    context = pd.DataFrame(_context(frame), index=frame.index)
    return pd.concat([frame, context], axis=1)


def _with_context(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``with_context`` on columns (the service's path: no frame until the end)."""
    columns.update(_context(columns))
    return columns


def _context(columns) -> dict[str, np.ndarray]:
    """The ``request_context`` columns of a frame or a dict of columns."""
    context = context_columns(
        columns[n.REQUEST_TS],
        columns[n.REQUEST_DEVICE],
        price=columns.get(f"{n.PRODUCT_CATALOG}__price"),
        created_epoch=columns.get(f"{n.PRODUCT_CATALOG}__created_epoch"),
        mean_price=columns.get(f"{n.USER_ACTIVITY}__mean_price"),
        last_event_epoch=columns.get(f"{n.USER_ACTIVITY}__last_event_epoch"),
    )
    return {f"{n.REQUEST_CONTEXT}__{name}": values for name, values in context.items()}


def stored_columns(
    feature_source, batch: Batch, pairs: pd.DataFrame, catalog: Catalog
) -> pd.DataFrame | dict[str, np.ndarray]:
    """The source's stored features of the pairs: as columns where it gives them (the
    service's sources), else its frame."""
    fetch_columns = getattr(feature_source, "fetch_columns", None)
    if fetch_columns is not None:
        return fetch_columns(batch, pairs, catalog)
    return feature_source.fetch(batch, pairs, catalog)


class ColumnSource:
    """A feature source that makes columns (``fetch_columns``); ``fetch`` frames them."""

    def fetch(self, batch: Batch, pairs: pd.DataFrame, catalog: Catalog) -> pd.DataFrame:
        # (the columns are the call's own arrays: the frame takes them without a copy)
        return pd.DataFrame(
            self.fetch_columns(batch, pairs, catalog), index=pairs.index, copy=False
        )


class NoFeatures(ColumnSource):
    """No store at hand: only the request's own data; the ranker treats the rest as missing."""

    def fetch_columns(
        self, batch: Batch, pairs: pd.DataFrame, catalog: Catalog
    ) -> dict[str, np.ndarray]:
        return _with_context(_pair_columns(batch, pairs, catalog))


def _affinity_categories(batch: Batch, catalog: Catalog, candidate_categories) -> list[str]:
    """The categories whose user-category rows a request reads: those of its candidates
    that the user touched before it (stored past and live session), as ``OfflineFeatures``
    asks; the store holds no row for the others. Without the touched items, every
    candidate's category (a few dozen keys more to read)."""
    wanted = {x for x in candidate_categories if x}
    touched = getattr(batch, "touched", None)
    if touched is not None:
        wanted &= set(_categories(catalog, touched[ITEM].to_numpy()))
    return sorted(wanted)


class ProductColumns:
    """The products' stored rows held in-process as columns, one slot per product seen: a
    request takes its candidates' values with one array index per feature instead of
    building and converting a row of Python values per candidate (the full shop: 2.7 ms of
    a 13 ms request). Numbers are kept as float64 (NaN where missing), text as objects.
    Slot 0 is a product of missing values: the slot of a product not held."""

    def __init__(self, columns: list[str], numeric_columns: set[str], capacity: int = 1024):
        import threading

        # a worker answers on several threads: slots are handed out and read under the lock,
        # so no thread indexes arrays that another is replacing by larger ones
        self.lock = threading.Lock()
        self.columns = columns
        self.numeric = [name in numeric_columns for name in columns]
        self.slots: dict[str, int] = {}  # product id -> slot (from 1)
        self.ids: list[str | None] = [None]  # slot -> product id
        self.fetched = np.full(capacity, -np.inf)
        self.values = [self._empty(is_number, capacity) for is_number in self.numeric]
        self.clears = 0  # slots found before a clear are no longer the products'

    @staticmethod
    def _empty(is_number: bool, size: int) -> np.ndarray:
        return np.full(size, np.nan) if is_number else np.full(size, None, dtype=object)

    def __len__(self) -> int:
        return len(self.slots)

    def clear(self) -> None:
        """Forget every product (slots are reused: each is rewritten before it is read)."""
        self.slots.clear()
        self.clears += 1
        self.ids = [None]
        self.fetched[:] = -np.inf

    def lookup(self, item_ids, now: float, ttl: float) -> tuple[np.ndarray, list[str]]:
        """Each item's slot (0 where not held) and the items to read again (not held, or
        held for ``ttl`` seconds or more)."""
        slots = np.fromiter(
            map(self.slots.get, item_ids, repeat(0)), np.int64, len(item_ids)
        )  # (map: no Python frame per item, as a generator would run)
        stale = now - self.fetched[slots] >= ttl  # (slot 0 is never fetched)
        return slots, list(np.asarray(item_ids, dtype=object)[stale])

    def stalest(self, n: int, now: float, older_than: float) -> list[str]:
        """Up to ``n`` held products read ``older_than`` seconds ago or more, oldest first."""
        ages = now - self.fetched[1 : len(self.slots) + 1]
        old = np.flatnonzero(ages >= older_than)
        if len(old) > n:
            old = old[np.argpartition(-ages[old], n - 1)[:n]]
        old = old[np.argsort(-ages[old], kind="stable")]
        return [self.ids[i + 1] for i in old]

    def store(self, item_ids: list[str], columns: list[list], absent: set[str], now: float):
        """Hold freshly read rows (``columns``: one list of values per feature, in
        ``self.columns`` order); a product the store does not hold gets missing values."""
        for item in item_ids:
            if item not in self.slots:
                self.slots[item] = len(self.slots) + 1
                self.ids.append(item)
        size = len(self.fetched)
        if len(self.slots) >= size:  # grow by doubling
            grown = max(2 * size, len(self.slots) + 1)
            self.fetched = np.concatenate([self.fetched, np.full(grown - size, -np.inf)])
            self.values = [
                np.concatenate([v, self._empty(is_number, grown - size)])
                for v, is_number in zip(self.values, self.numeric, strict=True)
            ]
        at = np.fromiter((self.slots[item] for item in item_ids), np.int64, len(item_ids))
        gone = np.fromiter((item in absent for item in item_ids), bool, len(item_ids))
        for target, values, is_number in zip(self.values, columns, self.numeric, strict=True):
            typed = numeric(values) if is_number else np.asarray(values, dtype=object)
            target[at] = typed
            target[at[gone]] = np.nan if is_number else None
        self.fetched[at] = now


class OnlineFeatures(ColumnSource):
    """The same columns from the online store (the service): one read per request.

    Product rows change once a day (materialisation) and are shared by every user, so they are
    kept in-process for ``item_ttl`` seconds and only the products not held are read; user,
    session and affinity rows are read on every request, so feedback shows at once.
    """

    def __init__(self, reader, item_ttl: float = 60.0, max_items: int = 500_000) -> None:
        import time

        self.reader = reader
        self.item_ttl = item_ttl
        self.max_items = max_items
        self._clock = time.monotonic
        groups = reader.groups
        self.user_columns = {
            f.name: f"{view.name}__{f.name}" for view in groups["user"].views for f in view.features
        }
        self.item_columns = [
            (f.name, f"{view.name}__{f.name}")
            for view in groups["item"].views
            for f in view.features
        ]
        self.affinity_columns = [
            (f.name, f"{view.name}__{f.name}")
            for view in groups["affinity"].views
            for f in view.features
        ]
        self.numeric = {
            f"{view.name}__{f.name}"
            for group in groups.values()
            for view in group.views
            for f in view.features
            if "String" not in str(f.dtype)
        }
        self.products = ProductColumns([full for _, full in self.item_columns], self.numeric)

    def refresh(self, item_ids, older_than: float, chunk: int = 1_000) -> int:
        """Read the products of ``item_ids`` held for ``older_than`` seconds or more (or not
        held), in reads of ``chunk`` products; returns how many were read. Run ahead of
        requests (when a version is prepared), it leaves them almost nothing to read."""
        with self.products.lock:
            _, stale = self.products.lookup(
                np.asarray(item_ids, dtype=object), self._clock(), older_than
            )
        return self._read_products(stale, chunk)

    def refresh_stalest(self, n: int, older_than: float, chunk: int = 1_000) -> int:
        """Read again up to ``n`` held products, the longest held first, among those held
        ``older_than`` seconds or more. Called every second with ``n`` a small share of the
        catalogue, it spreads the rows' renewal evenly over time: no burst of reads (and of
        Python's lock taken from requests) when a whole catalogue read at once expires."""
        with self.products.lock:
            stale = self.products.stalest(n, self._clock(), older_than)
        return self._read_products(stale, chunk)

    def _read_products(self, stale: list[str], chunk: int) -> int:
        names = [name for name, _ in self.item_columns]
        for start in range(0, len(stale), chunk):
            part = stale[start : start + chunk]
            now = self._clock()
            _, fresh, absent, _ = self._read("", part, [])
            with self.products.lock:
                self.products.store(part, [fresh[name] for name in names], absent, now)
        return len(stale)

    def prefetched(self, user: dict, affinity: dict[str, dict], categories) -> "Prefetched":
        """This source for one request whose user row and affinities to ``categories`` came
        with the request's first read (the service reads them before it has candidates)."""
        return Prefetched(self, user, affinity, frozenset(categories))

    def fetch_columns(
        self,
        batch: Batch,
        pairs: pd.DataFrame,
        catalog: Catalog,
        prefetched: "Prefetched | None" = None,
    ) -> dict[str, np.ndarray]:
        """``fetch`` as columns (the service's path: the model makes one frame of them);
        with ``prefetched``, only what it lacks is read (often nothing: products are held)."""
        rows = _pair_columns(batch, pairs, catalog)
        if len(rows[c.ITEM_ID]) == 0:
            return rows
        user_ids = rows[c.USER_ID]
        if len(batch) != 1:
            raise ValueError("the online store answers one request at a time")
        item_ids = rows[c.ITEM_ID]
        codes, distinct = pd.factorize(item_ids)
        products = self.products
        now = self._clock()
        with products.lock:
            if len(products) > self.max_items:
                products.clear()
            slots, missing = products.lookup(distinct, now, self.item_ttl)
            clears = products.clears
        categories = _affinity_categories(batch, catalog, rows[c.CATEGORY])
        if prefetched is None:
            user, fresh, absent, affinity = self._read(user_ids[0], missing, categories)
        else:
            user, affinity = prefetched.user, prefetched.affinity
            ask = [cat for cat in categories if cat not in prefetched.categories]
            fresh, absent = {}, set()
            if missing or ask:
                _, fresh, absent, more = self._read(user_ids[0], missing, ask)
                affinity = {**affinity, **more}
        names = [name for name, _ in self.item_columns]
        with products.lock:  # (the read above is outside: other requests go on meanwhile)
            if missing:
                products.store(missing, [fresh[name] for name in names], absent, now)
            if missing or products.clears != clears:  # (else the slots found above hold)
                slots, _ = products.lookup(distinct, now, np.inf)
            at = slots[codes]
            out = {
                full: values[at]
                for full, values in zip(products.columns, products.values, strict=True)
            }
        for name, full in self.user_columns.items():
            out[full] = self._spread(full, user.get(name), len(item_ids))
        cat_codes, cats = pd.factorize(rows[c.CATEGORY])
        for name, full in self.affinity_columns:
            values = [affinity.get(cat, NO_AFFINITY).get(name) for cat in cats]
            out[full] = self._typed(full, values)[cat_codes]
        rows.update(out)
        return _with_context(rows)

    def _read(
        self, user_id: str, item_ids: list[str], categories: list[str]
    ) -> tuple[dict, dict[str, object], set[str], dict[str, dict]]:
        """The user's values, the products' columns (each a sequence of values), the products
        the store does not hold, and the affinities: from the reader's columns where it
        gives them (no frame of the products to build and take apart)."""
        read_columns = getattr(self.reader, "read_columns", None)
        if read_columns is not None:
            return read_columns(user_id, item_ids, categories)
        read = self.reader.read(user_id, item_ids, categories)
        names = [name for name, _ in self.item_columns] if item_ids else []
        fresh = {name: read.items[name].to_numpy(dtype=object) for name in names}
        return read.user, fresh, set(read.missing_items), read.affinity

    def _spread(self, column: str, value: object, n: int) -> np.ndarray:
        """One user value repeated for ``n`` candidates, typed as ``_typed`` types it (made
        directly for the plain floats, ints and missing values that nearly all are)."""
        kind = type(value)
        if column in self.numeric:
            if value is None or kind is float:
                return np.full(n, np.nan if value is None else value, dtype=np.float64)
            if kind is int and INT64_MIN <= value <= INT64_MAX:
                return np.full(n, value, dtype=np.int64)
        return np.repeat(self._typed(column, (value,)), n)

    def _typed(self, column: str, values) -> np.ndarray:
        """A numeric feature's values as numbers (NaN where missing), others as they are."""
        if column in self.numeric:
            return numeric(values)
        return np.asarray(values, dtype=object)


class Prefetched(ColumnSource):
    """``OnlineFeatures`` for one request, with the user's row and affinities already read."""

    def __init__(self, features: OnlineFeatures, user, affinity, categories: frozenset) -> None:
        self.features = features
        self.user, self.affinity, self.categories = user, affinity, categories

    def fetch_columns(
        self, batch: Batch, pairs: pd.DataFrame, catalog: Catalog
    ) -> dict[str, np.ndarray]:
        return self.features.fetch_columns(batch, pairs, catalog, prefetched=self)


def numeric(values) -> np.ndarray:
    """``pd.to_numeric(values, errors="coerce")`` of a sequence of Python values, the same
    array of the same type, made directly where the values are plain floats, ints and
    ``None`` (a request converts some sixty short columns: pandas' checks would cost more
    than the work)."""
    kinds = set(map(type, values))
    if not kinds:  # (no values: pandas' type of nothing)
        return pd.to_numeric(np.asarray(values, dtype=object), errors="coerce")
    if kinds <= {float, NONE}:  # (all missing: float NaN, as pandas gives)
        return np.array(values, dtype=np.float64)
    if kinds == {int} and min(values) >= INT64_MIN and max(values) <= INT64_MAX:
        return np.array(values, dtype=np.int64)
    if kinds <= {float, int, NONE} and all(abs(v) < EXACT for v in values if type(v) is int):
        return np.array(values, dtype=np.float64)
    return pd.to_numeric(np.asarray(values, dtype=object), errors="coerce")

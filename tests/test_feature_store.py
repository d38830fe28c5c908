"""The feature store for real: Feast with SQLite (local) and with PostgreSQL + Redis (production).

Point-in-time correctness on hand-made data, offline/online agreement on a generated shop,
the fast read path against Feast's own, and pushed session features visible within a second.
"""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import names as n
from features.push import SessionEvent, SessionUpdater
from features.store import historical_features
from recsys import columns as c
from shop.generate import generate_shop
from tests.feature_stack import feature_stack

pytestmark = pytest.mark.integration

PROFILES = ["local", "production"]


@pytest.fixture(scope="module")
def tiny_shop(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shop")
    generate_shop(folder, scale="tiny", seed=3)
    return folder


@pytest.fixture(scope="module", params=PROFILES)
def stack(request, tiny_shop, tmp_path_factory):
    home = tmp_path_factory.mktemp(f"ws-{request.param}")
    with feature_stack(tiny_shop, home, request.param) as built:
        yield built


# --- 1. point-in-time correctness on hand-made data -------------------------------------------

HAND_EVENTS = [
    ("u1", "p1", "view", "2025-03-01T10:00:00Z", "s1"),
    ("u1", "p2", "view", "2025-03-05T10:00:00Z", "s2"),
    ("u1", "p2", "purchase", "2025-03-05T10:05:00Z", "s2"),
    ("u2", "p1", "view", "2025-03-02T09:00:00Z", "s3"),
]


@pytest.fixture(scope="module", params=PROFILES)
def hand_stack(request, tmp_path_factory):
    shop = tmp_path_factory.mktemp(f"hand-{request.param}")
    pd.DataFrame(
        HAND_EVENTS, columns=[c.USER_ID, c.ITEM_ID, c.EVENT_TYPE, c.TIMESTAMP, c.SESSION_ID]
    ).assign(**{c.PRICE: 10.0}).to_csv(shop / "events.csv", index=False)
    pd.DataFrame(
        {
            c.ITEM_ID: ["p1", "p2"],
            c.PRICE: [10.0, 20.0],
            c.CREATED_AT: ["2025-01-01T00:00:00Z", "2025-03-04T00:00:00Z"],
            c.CATEGORY: ["A > B", "A > C"],
        }
    ).to_csv(shop / "products.csv", index=False)
    home = tmp_path_factory.mktemp(f"hand-ws-{request.param}")
    with feature_stack(shop, home, request.param, materialise=False) as built:
        yield built


def _historical(stack, rows: list[tuple[str, str, str]], features: list[str]) -> pd.DataFrame:
    entity = pd.DataFrame(rows, columns=[c.USER_ID, c.ITEM_ID, n.EVENT_TIMESTAMP])
    entity[n.EVENT_TIMESTAMP] = pd.to_datetime(entity[n.EVENT_TIMESTAMP], utc=True)
    entity["row"] = range(len(entity))
    out = stack.store.get_historical_features(entity_df=entity, features=features).to_df()
    return out.sort_values("row").reset_index(drop=True)


def test_values_written_after_the_label_time_are_never_returned(hand_stack) -> None:
    # given labels before, between and after u1's events (views on 03-01 and 03-05 10:00)
    labels = [
        ("u1", "p1", "2025-03-01T12:00:00Z"),  # after the first view, before its snapshot
        ("u1", "p1", "2025-03-03T12:00:00Z"),  # one view known
        ("u1", "p2", "2025-03-05T09:59:59Z"),  # the second view is a second in the future
        ("u1", "p2", "2025-03-06T00:00:00Z"),  # both views and the purchase known
        ("u1", "p2", "2025-03-03T12:00:00Z"),  # p2 launches on 03-04: not yet in the catalogue
    ]
    features = [
        "user_activity:views_7d",
        "user_activity:purchases_total",
        "product_catalog:price",
        "session_activity:session_events",
    ]
    out = _historical(hand_stack, labels, features)
    # then only what was written at or before each label time is visible
    assert pd.isna(out.loc[0, "views_7d"])
    assert out.loc[1, "views_7d"] == 1
    assert out.loc[2, "views_7d"] == 1 and out.loc[2, "purchases_total"] == 0
    assert out.loc[3, "views_7d"] == 2 and out.loc[3, "purchases_total"] == 1
    assert out.loc[1, "price"] == 10.0 and pd.isna(out.loc[4, "price"])
    assert out.loc[3, "price"] == 20.0
    # session state: the 03-05 session is unknown a second before it starts
    assert out.loc[2, "session_events"] == 1  # still the 03-01 session
    assert out.loc[3, "session_events"] == 2  # the 03-05 session, view then purchase


# --- 2. the same values offline and online for the same moment --------------------------------


def _sample(stack, k: int = 25) -> tuple[list[str], list[str]]:
    events = pd.read_parquet(stack.workspace.table(c.EVENTS))
    rng = np.random.default_rng(0)
    users = sorted(rng.choice(events[c.USER_ID].unique(), k, replace=False))
    items = sorted(rng.choice(events[c.ITEM_ID].unique(), k, replace=False))
    return users, items


def _same(left: object, right: object) -> bool:
    if left is None or (isinstance(left, float) and np.isnan(left)) or left is pd.NA:
        return right is None or (isinstance(right, float) and np.isnan(right)) or right is pd.NA
    if isinstance(left, float) or isinstance(right, float):
        return bool(np.isclose(float(left), float(right), rtol=1e-12, atol=1e-12))
    return left == right


def test_historical_retrieval_and_online_store_agree_at_the_same_moment(stack) -> None:
    # given the online store materialised up to the tables' as-of instant
    users, items = _sample(stack)
    as_of = pd.read_json(stack.workspace.home / "features" / "manifest.json", typ="series")["as_of"]
    service = stack.store.get_feature_service(n.RANKER_SERVICE)
    rows = pd.DataFrame({c.USER_ID: users, c.ITEM_ID: items})
    events = pd.read_parquet(stack.workspace.table(c.PRODUCTS))
    rows[c.CATEGORY] = rows[c.ITEM_ID].map(events.set_index(c.ITEM_ID)[c.CATEGORY])
    rows[n.REQUEST_TS] = int(pd.Timestamp(as_of).timestamp())
    rows[n.REQUEST_DEVICE] = "mobile"
    # when the same entities are read offline at that instant and online
    entity = rows.assign(**{n.EVENT_TIMESTAMP: pd.Timestamp(as_of)})
    offline = historical_features(
        stack.workspace, stack.store, entity, n.RANKER_SERVICE, chunk_rows=10
    )
    offline = offline.set_index([c.USER_ID, c.ITEM_ID]).loc[list(zip(users, items, strict=True))]
    online = stack.store.get_online_features(
        features=service, entity_rows=rows.to_dict("records"), full_feature_names=True
    ).to_df()
    online = online.set_index([c.USER_ID, c.ITEM_ID]).loc[list(zip(users, items, strict=True))]
    # then every feature of the service has the same value
    names = [
        f"{projection.name}__{f.name}"
        for projection in service.feature_view_projections
        for f in projection.features
    ]
    compared = 0
    for name in names:
        for key in online.index:
            a, b = offline.loc[key, name], online.loc[key, name]
            assert _same(a, b), f"{name} for {key}: offline {a!r} != online {b!r}"
            compared += 1
    assert compared >= 25 * 40
    # the comparison is not of empty values, context included
    assert online["user_activity__views_total"].notna().sum() > 0
    assert online["request_context__price_vs_user_mean"].notna().sum() > 0


def test_fast_reader_returns_what_feast_returns(stack) -> None:
    users, items = _sample(stack, 40)
    feast_items = stack.store.get_online_features(
        features=[f"{n.PRODUCT_ACTIVITY}:{f}" for f in ("views_30d", "trend", "conversion_rate")]
        + [f"{n.PRODUCT_CATALOG}:{f}" for f in ("price", "category", "created_epoch")],
        entity_rows=[{c.ITEM_ID: i} for i in [*items, "no-such-item"]],
    ).to_df()
    read = stack.reader.read(users[0], [*items, "no-such-item"])
    for col in ("views_30d", "trend", "conversion_rate", "price", "category", "created_epoch"):
        for a, b in zip(read.items[col], feast_items[col], strict=True):
            assert _same(a, b), col
    assert read.missing_items == ("no-such-item",)
    feast_user = stack.store.get_online_features(
        features=[
            f"{v.name}:{f.name}" for v in stack.reader.groups["user"].views for f in v.features
        ],
        entity_rows=[{c.USER_ID: users[0]}],
    ).to_dict()
    for name, value in read.user.items():
        assert _same(value, feast_user[name][0]), name
    assert read.known_user
    unknown = stack.reader.read("nobody", items[:3])
    assert not unknown.known_user and unknown.session is None
    categories = sorted(read.items["category"].dropna().unique())
    assert set(read.affinity) <= set(categories)


def test_incremental_materialisation_is_idempotent(stack) -> None:
    from features.store import materialize

    users, items = _sample(stack, 10)
    before = stack.reader.read(users[0], items)
    materialize(stack.workspace, incremental=True)
    materialize(stack.workspace, incremental=True)
    after = stack.reader.read(users[0], items)
    pd.testing.assert_frame_equal(before.items, after.items)
    assert before.user == after.user


# --- 6. feedback pushed to the push source is visible within a second -------------------------


def test_pushed_session_event_is_visible_online_within_a_second(stack) -> None:
    updater = SessionUpdater(stack.store, stack.reader)
    user, now = "push-user", int(time.time())
    assert stack.reader.read_session(user) is None
    started = time.perf_counter()
    updater.push([SessionEvent(user, "p-a", c.VIEW, now)])
    state = stack.reader.read_session(user)
    while state is None and time.perf_counter() - started < 1.0:
        state = stack.reader.read_session(user)
    elapsed = time.perf_counter() - started
    assert state is not None and elapsed < 1.0
    assert (state.session_item_ids, state.session_events) == ("p-a", 1)
    # a second event in the same session is folded into the stored state
    updater.push([SessionEvent(user, "p-b", c.CART, now + 60)])
    state = stack.reader.read_session(user)
    assert (state.session_item_ids, state.session_events) == ("p-b;p-a", 2)
    # and Feast's own online read sees the same
    seen = stack.store.get_online_features(
        features=[f"{n.SESSION}:session_item_ids"], entity_rows=[{c.USER_ID: user}]
    ).to_dict()
    assert seen["session_item_ids"] == ["p-b;p-a"]


def test_a_second_push_in_the_same_second_is_kept(stack) -> None:
    # given a session pushed with an event at second t
    updater = SessionUpdater(stack.store, stack.reader)
    user, now = "same-second-user", int(time.time())
    updater.push([SessionEvent(user, "p-a", c.VIEW, now)])
    # when another event of the same second is pushed (the state is no newer by event time)
    updater.push([SessionEvent(user, "p-b", c.CART, now)])
    # then the later push replaces the earlier one: both events are in the session
    state = stack.reader.read_session(user)
    assert state is not None and state.session_events == 2
    assert set(state.items) == {"p-a", "p-b"}


def test_a_materialisation_never_replaces_a_newer_pushed_session(stack) -> None:
    from features.store import materialize

    # given a user whose session the lake holds, and a feedback event pushed for them now
    users, _ = _sample(stack, 25)
    user = next(u for u in users if stack.reader.read_session(u) is not None)
    lake_events = stack.reader.read_session(user).session_events
    SessionUpdater(stack.store, stack.reader).push(
        [SessionEvent(user, "p-pushed", c.VIEW, int(time.time()))]
    )
    # when the whole online store is materialised again from the (older) offline tables
    materialize(stack.workspace)
    # then the pushed session is still the one online
    state = stack.reader.read_session(user)
    assert state is not None and "p-pushed" in state.items, state
    assert state.session_events in (1, lake_events + 1)


def test_every_view_declares_exactly_the_columns_its_table_has(stack) -> None:
    from features.build import table_path

    for view in stack.store.list_feature_views():
        keys = {f.name for f in view.entity_columns} | {n.EVENT_TIMESTAMP, n.CREATED}
        columns = pd.read_parquet(table_path(stack.workspace, view.name)).columns
        assert [f.name for f in view.features] == [col for col in columns if col not in keys]


def test_the_repository_works_with_the_feast_cli_directly(stack) -> None:
    import os
    import subprocess
    import sys

    from features.environment import feature_repo, store_yaml, variables

    feast = Path(sys.executable).with_name("feast")
    env = {**os.environ, **variables(stack.workspace), "RECSYS_FEAST_PROJECT": stack.project}
    base = [str(feast), "-c", str(feature_repo()), "-f", str(store_yaml(stack.workspace.profile))]
    for command in (["apply"], ["feature-views", "list"]):
        done = subprocess.run(
            [*base, *command], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
    for view in n.TABLES:
        assert view in done.stdout

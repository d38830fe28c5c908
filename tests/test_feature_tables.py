"""Feature computations on tiny hand-made frames with exact expected values."""

import pandas as pd
import pytest

from features import names as n
from features.context import context_features
from features.session import SESSION_FIELDS, SessionState, fold_given, items_so_far, next_state
from features.snapshots import DAY, running_favourite, windowed
from features.tables import session_activity, user_activity, user_category_affinity
from recsys import columns as c

pytestmark = pytest.mark.unit


def _events(rows) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=[c.USER_ID, c.ITEM_ID, c.EVENT_TYPE, c.TIMESTAMP, c.SESSION_ID, c.PRICE]
    )
    frame[c.TIMESTAMP] = pd.to_datetime(frame[c.TIMESTAMP], utc=True)
    return frame


def test_windowed_emits_a_row_when_a_value_enters_or_leaves_a_window() -> None:
    # given 2 views on day 10 and 1 on day 12, windows of 3 days
    daily = pd.DataFrame({"k": ["a", "a"], DAY: [10, 12], "views": [2, 1]})
    out = windowed(daily, ["k"], ["views"], (3,), last_day=20)
    # then rows at 11 (enter), 13 (enter), 14 (day 10 leaves), 16 (day 12 leaves)
    assert out[DAY].tolist() == [11, 13, 14, 16]
    assert out["views_3d"].tolist() == [2, 3, 1, 0]
    assert out["views_total"].tolist() == [2, 3, 3, 3]
    assert out[n.EVENT_TIMESTAMP].iloc[0] == pd.Timestamp(11 * 86_400, unit="s", tz="UTC")


def test_windowed_stops_at_the_last_day() -> None:
    daily = pd.DataFrame({"k": ["a"], DAY: [10], "views": [1]})
    out = windowed(daily, ["k"], ["views"], (3, 7), last_day=14)
    assert out[DAY].tolist() == [11, 14]  # day 18 (leaving the 7-day window) is not yet


def test_running_favourite_changes_only_when_overtaken() -> None:
    rows = pd.DataFrame(
        {"u": ["a"] * 4, DAY: [1, 2, 3, 4], "cat": ["x", "y", "y", "x"], "w": [2.0, 2.0, 1.0, 2.0]}
    )
    out = running_favourite(rows, "u", "cat", "w")
    # day 2 ties (x 2, y 2): x stays; day 3 y leads with 3; day 4 x reaches 4 and leads
    assert out["cat"].tolist() == ["x", "x", "y", "x"]


def test_items_so_far_lists_the_last_items_newest_first_repeats_kept_per_session() -> None:
    items = pd.Series(["a", "b", "a", "c", "d"])
    group = pd.Series(["s1", "s1", "s1", "s1", "s2"])
    assert items_so_far(items, group, kept=3).tolist() == ["a", "b;a", "a;b;a", "c;a;b", "d"]


def test_user_activity_counts_only_days_before_each_snapshot() -> None:
    events = _events(
        [
            ("u1", "p1", "view", "2025-03-01T10:00:00Z", "s1", 10.0),
            ("u1", "p1", "purchase", "2025-03-01T10:05:00Z", "s1", 10.0),
            ("u1", "p2", "view", "2025-03-03T10:00:00Z", "s2", 30.0),
        ]
    )
    products = pd.DataFrame({c.ITEM_ID: ["p1", "p2"], c.CATEGORY: ["A", "B"], c.BRAND: ["x", "y"]})
    last_day = int(pd.Timestamp("2025-07-01", tz="UTC").timestamp() // 86_400)
    out = user_activity(events, products, last_day).set_index(n.EVENT_TIMESTAMP)
    day2, day4 = pd.Timestamp("2025-03-02", tz="UTC"), pd.Timestamp("2025-03-04", tz="UTC")
    assert out.loc[day2, "views_7d"] == 1 and out.loc[day2, "purchases_7d"] == 1
    assert out.loc[day4, "views_7d"] == 2 and out.loc[day4, "views_total"] == 2
    assert out.loc[day4, "mean_price"] == pytest.approx(50.0 / 3)
    assert out.loc[day4, "max_price"] == 30.0 and out.loc[day4, "min_price"] == 10.0
    assert out.loc[day4, "favourite_category"] == "A"  # 1 + 5 for A against 1 for B
    assert out.loc[day4, "last_event_epoch"] == int(events[c.TIMESTAMP].max().timestamp())
    assert out.loc[day4, "last_purchase_epoch"] == int(events[c.TIMESTAMP][1].timestamp())
    # 90 days after the last event every window is back to zero, lifetime values stay
    last = out.iloc[-1]
    assert (last["views_90d"], last["views_total"]) == (0, 2)


def test_online_session_updates_replay_to_the_offline_table() -> None:
    events = _events(
        [
            ("u1", "p1", "view", "2025-03-01T10:00:00Z", "s1", 1.0),
            ("u1", "p2", "view", "2025-03-01T10:01:00Z", "s1", 1.0),
            ("u1", "p1", "cart", "2025-03-01T10:02:00Z", "s1", 1.0),
            ("u1", "p1", "purchase", "2025-03-01T10:03:00Z", "s1", 1.0),
            ("u1", "p3", "view", "2025-03-02T08:00:00Z", "s2", 1.0),
        ]
    )
    offline = session_activity(events)
    state = None
    for row, (_, event) in zip(offline.itertuples(), events.iterrows(), strict=True):
        state = next_state(
            state,
            "u1",
            event[c.ITEM_ID],
            event[c.EVENT_TYPE],
            int(event[c.TIMESTAMP].timestamp()),
            event[c.SESSION_ID],
        )
        assert state == SessionState(**{f: getattr(row, f) for f in SESSION_FIELDS})
    assert state.session_item_ids == "p3" and offline["session_purchases"].tolist()[3] == 1


def _clicked(user: str, items: list[str], start: int, previous=None) -> SessionState:
    """The session after ``items`` are clicked a minute apart from ``start`` (/feedback's
    folding)."""
    state = previous
    for i, item in enumerate(items):
        state = next_state(state, user, item, c.VIEW, start + 60 * i)
    return state


def test_a_given_session_folds_as_the_same_clicks_told_one_by_one() -> None:
    # given clicks on a, b and a again, told one by one, and the same items given with a
    # request of another visitor an hour later
    told = _clicked("told", ["a", "b", "a"], 1_000)
    given = fold_given(None, "given", ["a", "b", "a"], 4_600.5)
    # then both sessions hold three events, the items in order (newest first, a twice), no
    # purchase; they differ only in their id and instants
    assert (given.session_events, given.session_item_ids, given.session_purchases) == (
        told.session_events,
        told.session_item_ids,
        told.session_purchases,
    )
    assert given.items == ["a", "b", "a"] and given.session_events == 3
    # and the given clicks come a second apart, the last a second before the request
    assert (given.session_start_epoch, given.session_last_epoch) == (4_597, 4_599)
    # or the model's typical click gap apart where it has one
    spaced = fold_given(None, "given", ["a", "b"], 1_000.0, gap=60.0)
    assert (spaced.session_start_epoch, spaced.session_last_epoch) == (880, 940)


def test_given_items_go_on_top_of_the_stored_session_once() -> None:
    # given a stored session of clicks x, a, b
    stored = _clicked("u", ["x", "a", "b"], 1_000)
    # when a request gives items the stored session does not end with
    on_top = fold_given(stored, "u", ["c", "a"], 1_200.0)
    # then they are folded on top of it
    assert on_top.items == ["a", "c", "b", "a", "x"] and on_top.session_events == 5
    assert on_top.session_id == stored.session_id
    # and items it already ends with (a front end telling /feedback and the request) are not
    # folded twice, only those after them
    assert fold_given(stored, "u", ["a", "b"], 1_200.0) == stored
    assert fold_given(stored, "u", ["x", "a", "b", "c"], 1_200.0).items == ["c", "b", "a", "x"]
    assert fold_given(stored, "u", ["b", "d"], 1_200.0).items == ["d", "b", "a", "x"]
    # and nothing given leaves the stored session as it is, or no session at all
    assert fold_given(stored, "u", [], 1_200.0) is stored
    assert fold_given(None, "u", [], 1_200.0) is None
    # and items given more than the session gap after its last click start a new session
    later = fold_given(stored, "u", ["c"], 1_120.0 + 31 * 60 + 2)
    assert later.items == ["c"] and later.session_events == 1


def test_context_features_exact_values() -> None:
    inputs = pd.DataFrame(
        {
            n.REQUEST_TS: [int(pd.Timestamp("2025-07-05T14:00Z").timestamp())],
            n.REQUEST_DEVICE: ["Mobile"],
            "price": [30.0],
            "mean_price": [20.0],
            "created_epoch": [int(pd.Timestamp("2025-07-01").timestamp())],
            "last_event_epoch": [int(pd.Timestamp("2025-07-04T14:00Z").timestamp())],
        }
    )
    out = context_features(inputs).iloc[0].to_dict()
    assert out == {
        "hour": 14,
        "weekday": 5,
        "month": 7,
        "season": 2,
        "is_weekend": 1,
        "is_mobile": 1,
        "price_vs_user_mean": 1.5,
        "product_age_days": pytest.approx(4 + 14 / 24),
        "days_since_last_event": 1.0,
    }


def test_without_categories_the_affinity_table_is_empty_with_every_column() -> None:
    # given events and a catalogue without categories
    events = pd.DataFrame(
        {
            c.USER_ID: ["u1"],
            c.ITEM_ID: ["i1"],
            c.EVENT_TYPE: [c.VIEW],
            c.TIMESTAMP: pd.to_datetime(["2025-03-01T10:00:00Z"]),
        }
    )
    products = pd.DataFrame({c.ITEM_ID: ["i1"]})
    # when the user-category affinity table is built
    out = user_category_affinity(events, products, last_day=20_200)
    # then it has no rows but every column Feast reads, its tie-breaker included
    assert len(out) == 0
    assert {c.USER_ID, c.CATEGORY, n.EVENT_TIMESTAMP, n.CREATED} <= set(out.columns)
    assert {"affinity_30d", "affinity_90d", "affinity_total", "share_total"} <= set(out.columns)

"""The serving benchmark's session mix, on a tiny hand-made event log.

Its latency is only the session path's if its requests are: anonymous visitors, each seen
once, carrying views of one real session in time order (not carts, not another session's).
"""

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import serve_load

pytestmark = pytest.mark.unit

# three sessions' views: u1/s1 a b c (b also carted), u1/s2 d, u2/s1 e f (f also bought);
# u2's session has u1's first session's id, and the rows are not in time order
ROWS = [
    ("u2", "s1", "f", "view", 6),
    ("u1", "s1", "c", "view", 4),
    ("u1", "s1", "a", "view", 1),
    ("u1", "s1", "b", "cart", 3),
    ("u2", "s1", "e", "view", 5),
    ("u1", "s2", "d", "view", 9),
    ("u1", "s1", "b", "view", 2),
    ("u2", "s1", "f", "purchase", 7),
]


def events() -> pd.DataFrame:
    frame = pd.DataFrame(ROWS, columns=["user_id", "session_id", "item_id", "event_type", "min"])
    frame["timestamp"] = pd.Timestamp("2026-03-01") + pd.to_timedelta(frame.pop("min"), "min")
    return frame


def test_session_prefixes_are_each_session_once_while_there_are_enough() -> None:
    # given three sessions
    # when three prefixes are drawn
    # then each session gives one, cut after a view drawn at random (e of e f, a of a b c)
    assert serve_load.session_prefixes(events(), 3, seed=0) == [["e"], ["a"], ["d"]]


def test_session_prefixes_keep_time_order_and_only_the_last_views() -> None:
    # given three sessions and more requests than sessions
    # when eight prefixes of at most two items are drawn
    # then sessions repeat, and a prefix cut after c of a b c keeps b c, in time order
    assert serve_load.session_prefixes(events(), 8, seed=0, longest=2) == [
        ["e"],
        ["d"],
        ["d"],
        ["b", "c"],
        ["a", "b"],
        ["b", "c"],
        ["a", "b"],
        ["a", "b"],
    ]


def test_session_bodies_are_new_visitors_carrying_their_session() -> None:
    # given two sessions
    # when their bodies are made for the instant 1_700_000_000.5
    bodies = serve_load.session_bodies([["a"], ["b", "c"]], 10, 1_700_000_000.5)
    # then each is a visitor of its own with the session, at the whole second, devices alternating
    assert bodies == [
        {
            "user_id": "anonymous-visitor-000001",
            "k": 10,
            "context": {"timestamp": 1_700_000_000, "device": "mobile"},
            "session_item_ids": ["a"],
        },
        {
            "user_id": "anonymous-visitor-000002",
            "k": 10,
            "context": {"timestamp": 1_700_000_000, "device": "desktop"},
            "session_item_ids": ["b", "c"],
        },
    ]

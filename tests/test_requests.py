"""Training requests on tiny hand-made frames with exact expected rows."""

import pandas as pd
import pytest

from recsys import columns as c
from recsys.metrics import REQUEST_ID
from training.requests import next_click_requests, window_requests

pytestmark = pytest.mark.unit

START, END = pd.Timestamp("2025-01-10", tz="UTC"), pd.Timestamp("2025-01-20", tz="UTC")
TARGETS = (c.CART, c.PURCHASE)


def _events(rows: list[tuple[str, str, str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=[c.USER_ID, c.ITEM_ID, c.EVENT_TYPE, c.TIMESTAMP, c.SESSION_ID]
    )
    frame[c.TIMESTAMP] = pd.to_datetime(frame[c.TIMESTAMP], utc=True)
    return frame


EVENTS = _events(
    [
        ("u1", "a", c.PURCHASE, "2025-01-05 10:00", "s0"),  # before the window
        ("u1", "b", c.VIEW, "2025-01-11 10:00", "s1"),
        ("u1", "c", c.PURCHASE, "2025-01-11 10:05", "s1"),
        ("u1", "d", c.VIEW, "2025-01-12 09:00", "s2"),  # a session without a target
        ("u1", "e", c.VIEW, "2025-01-15 08:00", "s3"),
        ("u1", "f", c.CART, "2025-01-15 08:10", "s3"),
        ("u2", "g", c.PURCHASE, "2025-01-13 12:00", "s4"),
        ("u2", "h", c.PURCHASE, "2025-01-21 12:00", "s5"),  # after the window
    ]
)


def _epoch(text: str) -> float:
    return pd.Timestamp(text, tz="UTC").timestamp()


def test_first_session_requests_are_one_per_user_with_every_later_target() -> None:
    # when each user's first session with a target is a request
    requests, targets = window_requests(EVENTS, START, END, TARGETS, 10, seed=0)
    # then u1 is asked at s1's start and judged on c and f, u2 at s4 on g
    assert requests[c.USER_ID].tolist() == ["u1", "u2"]
    assert requests["ts"].tolist() == [_epoch("2025-01-11 10:00"), _epoch("2025-01-13 12:00")]
    assert list(targets.itertuples(index=False, name=None)) == [(0, "c"), (0, "f"), (1, "g")]


def test_every_session_requests_ask_each_target_session_from_its_start() -> None:
    # when every session with a target is a request
    requests, targets = window_requests(EVENTS, START, END, TARGETS, 10, 0, every_session=True)
    # then u1 is asked at s1's and at s3's start (s2 has no target), u2 at s4's
    assert requests[c.USER_ID].tolist() == ["u1", "u1", "u2"]
    assert requests["ts"].tolist() == [
        _epoch("2025-01-11 10:00"),
        _epoch("2025-01-15 08:00"),
        _epoch("2025-01-13 12:00"),
    ]
    assert requests[REQUEST_ID].tolist() == [0, 1, 2]
    # and each is judged on what the user targeted from then to the window's end
    assert list(targets.itertuples(index=False, name=None)) == [
        (0, "c"),
        (0, "f"),
        (1, "f"),
        (2, "g"),
    ]


def test_every_session_requests_without_session_ids_are_at_each_target_instant() -> None:
    # given the same events without session ids
    requests, targets = window_requests(
        EVENTS.drop(columns=c.SESSION_ID), START, END, TARGETS, 10, 0, every_session=True
    )
    # then each target event's instant is a request
    assert requests["ts"].tolist() == [
        _epoch("2025-01-11 10:05"),
        _epoch("2025-01-15 08:10"),
        _epoch("2025-01-13 12:00"),
    ]
    assert len(targets) == 4


def test_every_session_requests_are_drawn_down_to_the_limit_with_the_seed() -> None:
    # when at most two of the three requests are wanted
    first, _ = window_requests(EVENTS, START, END, TARGETS, 2, seed=3, every_session=True)
    again, _ = window_requests(EVENTS, START, END, TARGETS, 2, seed=3, every_session=True)
    # then two are drawn, the same two for the same seed
    assert len(first) == 2
    pd.testing.assert_frame_equal(first, again)


def test_targets_default_to_carts_and_purchases_or_views_in_a_click_log() -> None:
    from training.config import TrainConfig
    from training.pipeline import chosen_targets

    # given the default config, a shop with purchases and a click log without any
    default = TrainConfig()
    clicks = EVENTS.assign(**{c.EVENT_TYPE: c.VIEW})
    # then the first is judged on carts and purchases, the click log on views
    assert chosen_targets(EVENTS, default)[0] == (c.CART, c.PURCHASE)
    assert chosen_targets(clicks, default) == (
        (c.VIEW,),
        "views: the lake holds no cart or purchase events",
    )
    # and a configured choice is kept as it is
    given = TrainConfig.model_validate({"requests": {"target_events": [c.PURCHASE]}})
    assert chosen_targets(clicks, given) == ((c.PURCHASE,), "configured")


def test_learning_rows_keep_every_positive_and_at_most_n_drawn_negatives() -> None:
    from recommender.state import ITEM, REQ
    from training.pipeline import learning_rows

    # given request 0 with one positive among five candidates, request 1 without a positive
    pairs = pd.DataFrame(
        {
            REQ: [0, 0, 0, 0, 0, 1, 1],
            ITEM: [10, 11, 12, 13, 14, 10, 11],
            "label": [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        }
    )
    # when two negatives a request are kept
    rows = learning_rows(pairs, negatives=2, seed=0)
    again = learning_rows(pairs, negatives=2, seed=0)
    # then request 1 is gone; request 0 keeps its positive and two of its four negatives
    assert set(rows[REQ]) == {0}
    assert rows.loc[rows["label"] > 0, ITEM].tolist() == [11]
    assert len(rows) == 3 and set(rows[ITEM]) - {11} <= {10, 12, 13, 14}
    # and rows stay in candidate order, drawn the same way for the same seed
    assert rows.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(rows, again)


CLICKS = _events(
    [
        ("v1", "a", c.VIEW, "2025-01-11 10:00", "s1"),
        ("v1", "b", c.VIEW, "2025-01-11 10:01", "s1"),
        ("v1", "a", c.VIEW, "2025-01-11 10:02", "s1"),
        ("v2", "c", c.VIEW, "2025-01-12 09:00", "s2"),  # one click: nothing to predict
        ("v3", "d", c.VIEW, "2025-01-13 09:00", "s3"),
        ("v3", "e", c.VIEW, "2025-01-13 09:00", "s3"),  # same instant: no past before it
        ("v3", "f", c.VIEW, "2025-01-13 09:05", "s3"),
        ("v4", "g", c.VIEW, "2025-01-09 09:00", "s4"),  # before the window
        ("v4", "h", c.VIEW, "2025-01-10 09:00", "s4"),
    ]
)


def test_next_click_requests_cut_sessions_at_every_click_with_a_past() -> None:
    # when a click log is asked next clicks
    requests, targets = next_click_requests(CLICKS, START, END, 10, seed=0)
    # then every click after its session's first instant is a request at that click, judged
    # on that click's item alone: v1 at b and at a again, v3 at f (e shares d's instant, v2's
    # session has one click, v4's first click is before the window)
    cuts = list(zip(requests[c.USER_ID], requests["ts"], targets[c.ITEM_ID], strict=True))
    assert cuts == [
        ("v1", _epoch("2025-01-11 10:01"), "b"),
        ("v1", _epoch("2025-01-11 10:02"), "a"),
        ("v3", _epoch("2025-01-13 09:05"), "f"),
    ]
    assert targets[REQUEST_ID].tolist() == requests[REQUEST_ID].tolist() == [0, 1, 2]


def test_next_click_requests_are_drawn_down_to_the_limit_with_the_seed() -> None:
    # when the same log is asked for two cuts twice with one seed, and with several seeds
    first = next_click_requests(CLICKS, START, END, 2, seed=5)
    again = next_click_requests(CLICKS, START, END, 2, seed=5)
    # then one seed gives one draw, of two of the three cuts, and the draw varies by seed
    pd.testing.assert_frame_equal(first[0], again[0])
    pd.testing.assert_frame_equal(first[1], again[1])
    assert len(first[0]) == 2
    draws = {
        tuple(next_click_requests(CLICKS, START, END, 2, seed=s)[1][c.ITEM_ID]) for s in range(20)
    }
    assert len(draws) > 1 and all(len(d) == 2 for d in draws)

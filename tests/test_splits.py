"""Temporal splits on tiny hand-made frames with exact expected rows."""

import pandas as pd
import pytest

from recsys import columns as c
from recsys.errors import RecsysError
from recsys.splits import choose_window_days, leave_last_out, split_by_time, split_last_days

pytestmark = pytest.mark.unit


def _events(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[c.USER_ID, c.ITEM_ID, c.EVENT_TYPE, c.TIMESTAMP])
    frame[c.TIMESTAMP] = pd.to_datetime(frame[c.TIMESTAMP], utc=True)
    return frame


EVENTS = _events(
    [
        ("u1", "a", "view", "2025-01-01 10:00"),
        ("u1", "a", "purchase", "2025-01-05 10:00"),
        ("u2", "b", "purchase", "2025-01-10 00:00"),
        ("u1", "c", "view", "2025-01-10 00:00"),
        ("u2", "c", "purchase", "2025-01-20 12:00"),
        ("u1", "d", "purchase", "2025-01-25 09:00"),
    ]
)


def test_split_by_time_puts_each_event_in_exactly_one_window() -> None:
    # given boundaries on 2025-01-10 and 2025-01-20
    split = split_by_time(EVENTS, "2025-01-10", "2025-01-20")
    # then the boundary instants belong to the later window
    assert list(split.train[c.ITEM_ID]) == ["a", "a"]
    assert list(split.validation[c.ITEM_ID]) == ["b", "c"]
    assert list(split.test[c.ITEM_ID]) == ["c", "d"]
    assert split.train[c.TIMESTAMP].max() < split.validation[c.TIMESTAMP].min()
    assert split.validation[c.TIMESTAMP].max() < split.test[c.TIMESTAMP].min()


def test_split_by_time_leaves_out_events_after_end() -> None:
    split = split_by_time(EVENTS, "2025-01-10", "2025-01-20", end="2025-01-21")
    assert list(split.test[c.ITEM_ID]) == ["c"]


def test_split_rejects_boundaries_out_of_order() -> None:
    with pytest.raises(RecsysError, match="must be before"):
        split_by_time(EVENTS, "2025-01-20", "2025-01-10")


def test_split_last_days_counts_back_from_midnight_after_last_event() -> None:
    split = split_last_days(EVENTS, validation_days=10, test_days=5)
    assert split.end == pd.Timestamp("2025-01-26", tz="UTC")
    assert split.test_start == pd.Timestamp("2025-01-21", tz="UTC")
    assert split.validation_start == pd.Timestamp("2025-01-11", tz="UTC")
    assert list(split.train[c.ITEM_ID]) == ["a", "a", "b", "c"]
    assert list(split.validation[c.ITEM_ID]) == ["c"]
    assert list(split.test[c.ITEM_ID]) == ["d"]


def test_leave_last_out_holds_out_last_purchase_and_nothing_after_it() -> None:
    events = _events(
        [
            ("u1", "a", "view", "2025-01-01"),
            ("u1", "a", "purchase", "2025-01-02"),
            ("u1", "b", "purchase", "2025-01-03"),
            ("u1", "b", "view", "2025-01-03"),  # same instant as the target: not history
            ("u1", "z", "view", "2025-01-04"),  # after the target: not history
            ("u2", "c", "view", "2025-01-05"),  # no purchase: whole history kept
        ]
    )
    loo = leave_last_out(events)
    assert list(loo.targets[c.ITEM_ID]) == ["b"]
    assert sorted(loo.history[c.ITEM_ID]) == ["a", "a", "c"]
    assert sorted(loo.after_target[c.ITEM_ID]) == ["b", "z"]
    assert len(loo.history) + len(loo.targets) + len(loo.after_target) == len(events)
    # applied again, it gives the validation target from the history
    again = leave_last_out(loo.history)
    assert list(again.targets[c.ITEM_ID]) == ["a"]


def _daily(days: int, per_day: int, last_day_extra: int = 0) -> pd.DataFrame:
    """``per_day`` events at noon on each of ``days`` days from 2025-01-01, plus
    ``last_day_extra`` more on the last day."""
    first = pd.Timestamp("2025-01-01 12:00")
    stamps = [str(first + pd.Timedelta(days=d)) for d in range(days) for _ in range(per_day)]
    stamps += [str(first + pd.Timedelta(days=days - 1))] * last_day_extra
    return _events([("u", "i", "purchase", t) for t in stamps])


def test_windows_chosen_from_data_keep_two_weeks_when_they_hold_out_little() -> None:
    # given 200 days with one event a day: the last 28 days hold 14% of the events
    choice = choose_window_days(_daily(200, 1))
    # then both windows are two weeks
    assert (choice.validation_days, choice.test_days) == (14, 14)
    assert choice.share_held_out == pytest.approx(28 / 200)


def test_windows_chosen_from_data_shrink_until_a_quarter_is_held_out() -> None:
    # given 40 days with one event a day: 2 x 14 days would hold 70% of the events
    choice = choose_window_days(_daily(40, 1))
    # then the windows are the longest whose two hold at most 25%: 5 days (10 of 40 events)
    assert (choice.validation_days, choice.test_days) == (5, 5)
    assert choice.share_held_out == pytest.approx(10 / 40)
    assert "6-day windows would hold 30.0%" in choice.reason


def test_windows_chosen_from_sequences_ending_together_are_one_day() -> None:
    # given sequences stamped a day apart ending on one day: 10 days of 1 event, 30 on the last
    choice = choose_window_days(_daily(10, 1, last_day_extra=30))
    # then the windows are one day each (leave-one-out), though they hold more than a quarter
    assert (choice.validation_days, choice.test_days) == (1, 1)
    assert choice.share_held_out == pytest.approx(32 / 40)
    assert "the shortest" in choice.reason


def test_windows_cannot_be_chosen_from_no_events() -> None:
    with pytest.raises(RecsysError, match="empty"):
        choose_window_days(EVENTS.iloc[:0])

"""Temporal splits shared by training, evaluation and monitoring.

Both protocols guarantee the same thing: nothing that happened in a later window is visible
in an earlier one, so a model fitted on an earlier window never sees what it is judged on.
"""

from dataclasses import dataclass

import pandas as pd

from recsys.columns import EVENT_TYPE, PURCHASE, TIMESTAMP, USER_ID
from recsys.errors import RecsysError


@dataclass(frozen=True)
class TimeSplit:
    """Three windows cut at two instants: ``[.., validation_start) [.., test_start) [.., end)``."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    validation_start: pd.Timestamp
    test_start: pd.Timestamp
    end: pd.Timestamp


def _as_utc(value: object, name: str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        raise RecsysError(f"{name}: not a valid instant: {value!r}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def split_by_time(
    events: pd.DataFrame,
    validation_start: object,
    test_start: object,
    end: object | None = None,
    time_col: str = TIMESTAMP,
) -> TimeSplit:
    """Cut ``events`` into train, validation and test windows by timestamp.

    ``end`` (exclusive) bounds the test window; events at or after it belong to no window and
    are left out, so a later, still-open period cannot leak into a finished evaluation.
    """
    val = _as_utc(validation_start, "validation_start")
    test = _as_utc(test_start, "test_start")
    stop = _as_utc(end, "end") if end is not None else None
    if not val < test:
        raise RecsysError(f"validation_start ({val}) must be before test_start ({test})")
    if stop is not None and not test < stop:
        raise RecsysError(f"test_start ({test}) must be before end ({stop})")
    times = events[time_col]
    train = events[times < val]
    validation = events[(times >= val) & (times < test)]
    in_test = times >= test if stop is None else (times >= test) & (times < stop)
    last = stop if stop is not None else (times.max() if len(times) else test)
    return TimeSplit(train, validation, events[in_test], val, test, last)


def split_last_days(
    events: pd.DataFrame, validation_days: int, test_days: int, time_col: str = TIMESTAMP
) -> TimeSplit:
    """Hold out the last ``test_days`` for test and the ``validation_days`` before them.

    Windows are counted back from midnight after the last event, so a split is a whole number
    of days and the same data always gives the same cut.
    """
    if validation_days <= 0 or test_days <= 0:
        raise RecsysError("validation_days and test_days must be positive")
    if events.empty:
        raise RecsysError("cannot split an empty event table")
    end = events[time_col].max().floor("D") + pd.Timedelta(days=1)
    test_start = end - pd.Timedelta(days=test_days)
    validation_start = test_start - pd.Timedelta(days=validation_days)
    return split_by_time(events, validation_start, test_start, end, time_col)


@dataclass(frozen=True)
class WindowChoice:
    """Window lengths chosen from the data, and why (logged and written to the report)."""

    validation_days: int
    test_days: int
    share_held_out: float
    reason: str


def choose_window_days(
    events: pd.DataFrame,
    longest: int = 14,
    max_share: float = 0.25,
    time_col: str = TIMESTAMP,
) -> WindowChoice:
    """Equal validation and test windows, as long as ``longest`` days while the two together
    hold at most ``max_share`` of the events, else the longest that does (one day at least).

    Two weeks suit a shop whose events spread over months; but when the data's rhythm is
    another (review sequences stamped one item a day and ending together, a short export),
    two weeks would hold most of every user's history and leave little to learn from. The
    share of events held out is what must stay small, whatever a day means in the data.
    """
    if events.empty:
        raise RecsysError("cannot split an empty event table")
    times = events[time_col]
    end = times.max().floor("D") + pd.Timedelta(days=1)
    total = len(times)

    def share(days: int) -> float:
        return float((times >= end - pd.Timedelta(days=2 * days)).sum()) / total

    for days in range(longest, 0, -1):
        held = share(days)
        if held <= max_share:
            reason = (
                f"{days}-day windows: the last {2 * days} days hold {held:.1%} of the events "
                f"(at most {max_share:.0%} held out)"
            )
            if days < longest:
                reason += f"; {days + 1}-day windows would hold {share(days + 1):.1%}"
            return WindowChoice(days, days, held, reason)
    held = share(1)
    return WindowChoice(
        1,
        1,
        held,
        f"1-day windows, the shortest: the last 2 days hold {held:.1%} of the events "
        f"(more than {max_share:.0%}: the data ends together, as sequences stamped a day apart do)",
    )


@dataclass(frozen=True)
class LeaveLastOut:
    """Per-user hold-out: each user's last target event, and only what that user did before it."""

    history: pd.DataFrame
    targets: pd.DataFrame
    after_target: pd.DataFrame


def leave_last_out(
    events: pd.DataFrame,
    target_event: str = PURCHASE,
    user_col: str = USER_ID,
    time_col: str = TIMESTAMP,
    type_col: str = EVENT_TYPE,
) -> LeaveLastOut:
    """Hold out each user's last ``target_event`` (the leave-last-out protocol).

    A user's history keeps only events strictly earlier than their target; events at the same
    instant or later are returned in ``after_target`` rather than silently dropped, so the
    caller can account for every row. Users without a target event keep their whole history.
    Apply it again to ``history`` for a validation target.
    """
    ordered = events.reset_index(drop=True).sort_values([user_col, time_col], kind="stable")
    is_target = ordered[type_col] == target_event
    last_idx = ordered[is_target].groupby(user_col, sort=False).tail(1).index
    targets = ordered.loc[last_idx]
    cut = targets.set_index(user_col)[time_col]
    user_cut = ordered[user_col].map(cut)
    before = user_cut.isna() | (ordered[time_col] < user_cut)
    rest = ~before & ~ordered.index.isin(last_idx)
    return LeaveLastOut(
        history=ordered[before], targets=targets.sort_values(user_col), after_target=ordered[rest]
    )

"""Sessions for event logs that lack them: a user's session ends after an inactivity gap."""

import pandas as pd

from lake.parse import TEXT
from recsys.columns import SESSION_ID, TIMESTAMP, USER_ID


def derive_sessions(events: pd.DataFrame, gap_minutes: int) -> tuple[pd.DataFrame, int]:
    """Fill missing ``session_id`` values as ``<user_id>-s<n>``; returns frame and sessions made.

    Only rows without a session id are grouped, so ids a shop sends are never rewritten; the
    n-th session of a user is numbered by time, so the same log always gives the same ids.
    """
    events = events.copy()
    if SESSION_ID not in events.columns:
        events[SESSION_ID] = pd.Series(pd.NA, index=events.index, dtype=TEXT)
    missing = events[SESSION_ID].isna()
    if not missing.any():
        return events, 0
    part = events.loc[missing, [USER_ID, TIMESTAMP]].sort_values(
        [USER_ID, TIMESTAMP], kind="stable"
    )
    users = part[USER_ID]
    new_user = users.ne(users.shift()).fillna(True).astype(bool)
    starts = new_user | (part[TIMESTAMP].diff() > pd.Timedelta(minutes=gap_minutes))
    ordinal = starts.astype("int64").groupby(users.to_numpy()).cumsum()
    events.loc[part.index, SESSION_ID] = (users + "-s" + ordinal.astype(TEXT)).to_numpy()
    events[SESSION_ID] = events[SESSION_ID].astype(TEXT)
    return events, int(starts.sum())

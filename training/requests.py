"""Evaluation requests: the moments a user came to the shop, and what they then wanted.

A user's request in a window is the start of their first session there that holds a target
event (cart or purchase by default); the answer is judged on every item they targeted from
then to the window's end. Only what happened before the request is visible to the model.

The ranker learns from more: with ``every_session``, each session of a user that holds a target
event is a request of its own (its past includes the user's earlier sessions of the window),
so a window of a few weeks yields several requests per active user instead of one.

A click log (no carts, no purchases: what people want is what they click next) asks inside
sessions instead: ``next_click_requests`` cuts each session at one of its clicks, the clicks
before it are the request's past, the click itself the one answer, as the session-based
literature judges and as an anonymous visitor's ``/recommend`` with its session asks.
"""

import numpy as np
import pandas as pd

from recommender.state import epoch
from recsys import columns as c
from recsys.metrics import REQUEST_ID


def request_rows(rows: pd.DataFrame, ts: np.ndarray) -> pd.DataFrame:
    """The requests made at ``rows`` (events) at instants ``ts``: request_id, user_id, ts,
    and the device and country the events were logged with, where the log has them."""
    return pd.DataFrame(
        {
            REQUEST_ID: np.arange(len(rows)),
            c.USER_ID: rows[c.USER_ID].astype(str).to_numpy(),
            "ts": ts,
            c.DEVICE: rows[c.DEVICE].astype(object).to_numpy() if c.DEVICE in rows else None,
            c.COUNTRY: rows[c.COUNTRY].astype(object).to_numpy() if c.COUNTRY in rows else None,
        }
    )


def window_requests(
    events: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    target_events: tuple[str, ...],
    limit: int,
    seed: int,
    every_session: bool = False,
    next_click: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``requests`` (request_id, user_id, ts, device, country) and ``targets``
    (request_id, item_id), at most ``limit`` requests drawn with ``seed``: next clicks
    inside sessions (``next_click_requests``), or session starts judged on every target
    event after them."""
    if next_click:
        return next_click_requests(events, start, end, limit, seed)
    window = events[(events[c.TIMESTAMP] >= start) & (events[c.TIMESTAMP] < end)]
    hit = window[window[c.EVENT_TYPE].isin(target_events)]
    session_col = c.SESSION_ID if c.SESSION_ID in window else None
    if every_session:
        return _session_requests(window, hit, session_col, limit, seed)
    if session_col:
        first_hit = hit.sort_values(c.TIMESTAMP).groupby(c.USER_ID, sort=False).head(1)
        sessions = first_hit.set_index(c.USER_ID)[session_col]
        in_session = window[window[session_col].isin(sessions.to_numpy())]
        starts = in_session.sort_values(c.TIMESTAMP).groupby(c.USER_ID, sort=False).head(1)
    else:
        starts = hit.sort_values(c.TIMESTAMP).groupby(c.USER_ID, sort=False).head(1)
    starts = starts.sort_values(c.USER_ID).reset_index(drop=True)
    if len(starts) > limit:
        pick = np.random.default_rng(seed).choice(len(starts), size=limit, replace=False)
        starts = starts.iloc[np.sort(pick)].reset_index(drop=True)
    requests = request_rows(starts, epoch(starts[c.TIMESTAMP]))
    at = requests.set_index(c.USER_ID)
    wanted = hit[hit[c.USER_ID].isin(at.index)]
    wanted = wanted[epoch(wanted[c.TIMESTAMP]) >= wanted[c.USER_ID].map(at["ts"]).to_numpy()]
    targets = pd.DataFrame(
        {
            REQUEST_ID: wanted[c.USER_ID].map(at[REQUEST_ID]).to_numpy(),
            c.ITEM_ID: wanted[c.ITEM_ID].astype(str).to_numpy(),
        }
    ).drop_duplicates()
    return requests, targets.sort_values([REQUEST_ID, c.ITEM_ID]).reset_index(drop=True)


def _session_requests(
    window: pd.DataFrame,
    hit: pd.DataFrame,
    session_col: str | None,
    limit: int,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One request at the start of every session holding a target event (without session ids,
    at every target event's instant); targets: what the user targeted from then to the
    window's end. Several requests of one user share a user id, never a request id."""
    if session_col:
        keys = hit[[c.USER_ID, session_col]].drop_duplicates()
        in_session = window.merge(keys, on=[c.USER_ID, session_col])
        starts = in_session.sort_values(c.TIMESTAMP, kind="stable")
        starts = starts.groupby([c.USER_ID, session_col], sort=False).head(1)
    else:
        starts = hit.sort_values(c.TIMESTAMP, kind="stable").drop_duplicates(
            [c.USER_ID, c.TIMESTAMP]
        )
    starts = starts.sort_values([c.USER_ID, c.TIMESTAMP], kind="stable").reset_index(drop=True)
    if len(starts) > limit:
        pick = np.random.default_rng(seed).choice(len(starts), size=limit, replace=False)
        starts = starts.iloc[np.sort(pick)].reset_index(drop=True)
    ts = epoch(starts[c.TIMESTAMP])
    requests = request_rows(starts, ts)
    wanted = pd.DataFrame(
        {
            c.USER_ID: hit[c.USER_ID].astype(str).to_numpy(),
            c.ITEM_ID: hit[c.ITEM_ID].astype(str).to_numpy(),
            "at": epoch(hit[c.TIMESTAMP]),
        }
    )
    pairs = requests[[REQUEST_ID, c.USER_ID, "ts"]].merge(wanted, on=c.USER_ID)
    pairs = pairs[pairs["at"] >= pairs["ts"]]
    targets = pairs[[REQUEST_ID, c.ITEM_ID]].drop_duplicates()
    return requests, targets.sort_values([REQUEST_ID, c.ITEM_ID]).reset_index(drop=True)


def next_click_requests(
    events: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    limit: int,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Requests at events of the window that have an earlier instant in their session (the
    session's events before it are the request's past, with the user's earlier ones); each
    one's target is that event's item alone. Every such cut, or ``limit`` of them drawn with
    ``seed``: a long session is cut more often, as an anonymous visitor's every click asks
    for the next. A session is a ``session_id`` of a user, or the user's events in the window
    where the log has none."""
    window = events[(events[c.TIMESTAMP] >= start) & (events[c.TIMESTAMP] < end)]
    keys = [c.USER_ID, c.SESSION_ID] if c.SESSION_ID in window else [c.USER_ID]
    window = window.sort_values([*keys, c.TIMESTAMP], kind="stable").reset_index(drop=True)
    ts = epoch(window[c.TIMESTAMP])
    session = window.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    first_ts = pd.Series(ts).groupby(session).transform("min").to_numpy()
    # a cut needs a click strictly before it in the session: the past a request sees
    chosen = np.flatnonzero(ts > first_ts)
    if len(chosen) > limit:
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(chosen, size=limit, replace=False))
    picked = window.iloc[chosen].reset_index(drop=True)
    requests = request_rows(picked, ts[chosen])
    targets = pd.DataFrame(
        {
            REQUEST_ID: requests[REQUEST_ID].to_numpy(),
            c.ITEM_ID: picked[c.ITEM_ID].astype(str).to_numpy(),
        }
    )
    return requests, targets.reset_index(drop=True)

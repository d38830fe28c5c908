"""Evaluation requests: the moments a user came to the shop, and what they then wanted.

A user's request in a window is the start of their first session there that holds a target
event (cart or purchase by default); the answer is judged on every item they targeted from
then to the window's end. Only what happened before the request is visible to the model.
"""

import numpy as np
import pandas as pd

from recommender.state import epoch
from recsys import columns as c
from recsys.metrics import REQUEST_ID


def window_requests(
    events: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    target_events: tuple[str, ...],
    limit: int,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``requests`` (request_id, user_id, ts, device, country) and ``targets``
    (request_id, item_id), at most ``limit`` requests drawn with ``seed``."""
    window = events[(events[c.TIMESTAMP] >= start) & (events[c.TIMESTAMP] < end)]
    hit = window[window[c.EVENT_TYPE].isin(target_events)]
    session_col = c.SESSION_ID if c.SESSION_ID in window else None
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
    requests = pd.DataFrame(
        {
            REQUEST_ID: np.arange(len(starts)),
            c.USER_ID: starts[c.USER_ID].astype(str).to_numpy(),
            "ts": epoch(starts[c.TIMESTAMP]),
            c.DEVICE: starts[c.DEVICE].astype(object).to_numpy() if c.DEVICE in starts else None,
            c.COUNTRY: starts[c.COUNTRY].astype(object).to_numpy() if c.COUNTRY in starts else None,
        }
    )
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

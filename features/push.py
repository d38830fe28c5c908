"""Feedback events into the online session features, through Feast's push source.

``/feedback`` calls this; the next request of the same user reads the new session state from
the online store (tested to take well under a second).
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
from feast import FeatureStore
from feast.data_source import PushMode

from features import names as n
from features.online import OnlineReader
from features.session import SESSION_FIELDS, SessionState, next_state
from recsys import columns as c

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionEvent:
    """What a feedback event tells the session: who did what to which item, when."""

    user_id: str
    item_id: str
    event_type: str
    epoch: int
    session_id: str | None = None


class SessionUpdater:
    """Folds events into each user's session state and pushes the result online."""

    def __init__(self, store: FeatureStore, reader: OnlineReader) -> None:
        self.store = store
        self.reader = reader

    def states_after(self, events: Iterable[SessionEvent]) -> dict[str, SessionState]:
        """Each user's session after the events (in time order), starting from the stored one."""
        states: dict[str, SessionState | None] = {}
        for event in sorted(events, key=lambda e: (e.user_id, e.epoch)):
            if event.user_id not in states:
                states[event.user_id] = self.reader.read_session(event.user_id)
            states[event.user_id] = next_state(
                states[event.user_id],
                event.user_id,
                event.item_id,
                event.event_type,
                event.epoch,
                event.session_id,
            )
        return {user: state for user, state in states.items() if state is not None}

    def push(self, events: Iterable[SessionEvent]) -> int:
        """Push the new session states; returns how many users' sessions changed."""
        states = self.states_after(events)
        if not states:
            return 0
        rows = [{c.USER_ID: user, **state.as_row()} for user, state in states.items()]
        frame = pd.DataFrame(rows, columns=[c.USER_ID, *SESSION_FIELDS])
        stamp = pd.to_datetime(frame["session_last_epoch"], unit="s", utc=True)
        frame[n.EVENT_TIMESTAMP] = stamp
        frame[n.CREATED] = pd.Timestamp.now(tz="UTC")
        self.store.push(n.SESSION_PUSH, frame, to=PushMode.ONLINE)
        logger.debug("pushed %d session states", len(frame))
        return len(frame)

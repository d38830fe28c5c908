"""The session state: computed offline from the lake, updated online from /feedback events.

Both paths apply the same rule, so a session replayed event by event online ends in the same
state as the offline table: items are listed once, most recently first seen first, the last
``SESSION_ITEMS_KEPT`` kept; a gap of more than ``SESSION_GAP_SECONDS`` starts a new session.
"""

from dataclasses import asdict, dataclass
from typing import Final

import pandas as pd

from features.names import SESSION_ITEMS_KEPT
from recsys import columns as c

SESSION_FIELDS: Final = (
    "session_id",
    "session_events",
    "session_start_epoch",
    "session_last_epoch",
    "session_item_ids",
    "session_purchases",
)
SESSION_GAP_SECONDS: Final = 30 * 60
SEPARATOR: Final = ";"


def items_so_far(items: pd.Series, group: pd.Series, kept: int = SESSION_ITEMS_KEPT) -> pd.Series:
    """For each row (in time order), the distinct items of its group up to it, newest first."""
    items = items.astype("string[pyarrow]").reset_index(drop=True)
    group = group.astype("string[pyarrow]").reset_index(drop=True)
    first = ~pd.DataFrame({"g": group, "i": items}).duplicated()
    f_items, f_group = items[first].reset_index(drop=True), group[first].reset_index(drop=True)
    joined = f_items.copy()
    for lag in range(1, kept):
        same = (f_group.shift(lag) == f_group).fillna(False).to_numpy()
        if not same.any():
            break
        joined[same] = joined[same] + SEPARATOR + f_items.shift(lag)[same]
    out = pd.Series(pd.NA, index=items.index, dtype="string[pyarrow]")
    out[first.to_numpy()] = joined.to_numpy()
    return out.groupby(group.to_numpy(), sort=False).ffill()


@dataclass(frozen=True)
class SessionState:
    """One user's current session, as stored in the online store."""

    session_id: str
    session_events: int
    session_start_epoch: int
    session_last_epoch: int
    session_item_ids: str
    session_purchases: int

    @property
    def items(self) -> list[str]:
        return self.session_item_ids.split(SEPARATOR) if self.session_item_ids else []

    def as_row(self) -> dict[str, object]:
        return asdict(self)


def next_state(
    previous: SessionState | None,
    user_id: str,
    item_id: str,
    event_type: str,
    epoch: int,
    session_id: str | None = None,
) -> SessionState:
    """The session after one more event: the online twin of the offline session table."""
    new_session = (
        previous is None
        or (session_id is not None and session_id != previous.session_id)
        or (session_id is None and epoch - previous.session_last_epoch > SESSION_GAP_SECONDS)
    )
    purchase = int(event_type == c.PURCHASE)
    if new_session:
        return SessionState(session_id or f"{user_id}-t{epoch}", 1, epoch, epoch, item_id, purchase)
    items = previous.items
    if item_id not in items:
        items = [item_id, *items][:SESSION_ITEMS_KEPT]
    return SessionState(
        previous.session_id,
        previous.session_events + 1,
        previous.session_start_epoch,
        max(epoch, previous.session_last_epoch),
        SEPARATOR.join(items),
        previous.session_purchases + purchase,
    )

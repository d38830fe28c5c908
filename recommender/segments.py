"""User segments by the events before a request: new, light, regular and heavy users.

Offline evaluation, online monitoring, the canary report and the answering path itself (a
segment may be served by a simple list where validation found it better than the ranker)
label requests with the same rule, so a figure by segment means one thing everywhere.
"""

import numpy as np

from recommender.state import REQ, Batch

LIGHT_MAX_EVENTS = 5
HEAVY_MIN_EVENTS = 30
NEW, LIGHT, REGULAR, HEAVY = "new_users", "light_users", "regular_users", "heavy_users"
SEGMENTS = (NEW, LIGHT, REGULAR, HEAVY)


def segment_labels(n_past: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """The user segment of each request from the user's events before it: new users (none, or
    a user the model does not know), light (at most 5), heavy (30 or more), regular."""
    n_past = np.asarray(n_past)
    return np.where(
        (n_past == 0) | np.asarray(unknown, dtype=bool),
        NEW,
        np.where(
            n_past <= LIGHT_MAX_EVENTS,
            LIGHT,
            np.where(n_past >= HEAVY_MIN_EVENTS, HEAVY, REGULAR),
        ),
    )


def batch_segments(batch: Batch) -> np.ndarray:
    """The segment of each request of a batch (its ``req`` order), from the past it carries."""
    n_past = np.bincount(batch.history[REQ].to_numpy(), minlength=len(batch))
    unknown = batch.requests["user"].to_numpy() < 0
    return segment_labels(n_past, unknown)

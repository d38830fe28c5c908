"""Lists computed ahead for the most active users (``recsys precompute``, a nightly job).

The busiest users ask most often; their plain home-page list (no filters, no session items)
is computed by the service's own request path and kept in the Redis cache under the model
version, so their first request of the day is a cache read. Feedback drops a user's lists
as it does any cached list, and a new model version never reads another version's lists.
"""

import logging
import time

import pandas as pd

from recsys import columns as c
from recsys.errors import RecsysError
from recsys.workspace import Workspace

logger = logging.getLogger(__name__)


def most_active_users(workspace: Workspace, n: int, days: float = 30.0) -> list[str]:
    """The ``n`` users with most events in the lake's last ``days`` days (ties by id)."""
    events = pd.read_parquet(workspace.table(c.EVENTS), columns=[c.USER_ID, c.TIMESTAMP])
    if events.empty:
        return []
    recent = events[events[c.TIMESTAMP] >= events[c.TIMESTAMP].max() - pd.Timedelta(days=days)]
    counts = recent[c.USER_ID].astype(str).value_counts()
    counts = counts.sort_index().sort_values(ascending=False, kind="stable")
    return counts.index[:n].tolist()


def precompute(workspace: Workspace, n_users: int, k: int, alias: str | None) -> dict:
    """Compute and cache the lists; returns the counts and the seconds it took."""
    from serving.engine import Engine
    from serving.settings import load_settings

    if workspace.profile != "production":
        raise RecsysError(
            "precomputed lists live in the Redis cache of the production profile; "
            "run with --profile production (the local profile caches per process)"
        )
    settings = load_settings()
    if alias:
        settings = settings.model_copy(update={"alias": alias})
    started = time.perf_counter()
    users = most_active_users(workspace, n_users)
    engine = Engine(workspace, settings, background=False)
    try:
        if not engine.ready:
            raise RecsysError(
                f"no model behind {settings.model_name}@{settings.alias}: "
                f"{engine.follower.last_error}"
            )
        if engine.reader is None:
            raise RecsysError("the online store is unreachable: nothing worth keeping")
        logger.info("precomputing %d lists of %d items with version %s", len(users), k,
                    engine.current.version)  # fmt: skip
        counts = engine.precompute(users, k, settings.precompute_ttl)
    finally:
        engine.close()
    return counts | {
        "users": len(users),
        "model_version": engine.current.version,
        "seconds": round(time.perf_counter() - started, 2),
    }

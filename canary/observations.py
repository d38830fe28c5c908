"""What the service logged, per user and per variant: the served log (answers, errors,
latency) joined by request id with the feedback events (impressions, clicks, purchases).

Both tables are the service's own (``serving.feedback``): PostgreSQL in production, the
workspace's SQLite elsewhere. A feedback event is attributed to the answer whose request id it
carries: the served log says which variant and model version gave it (the event's own stamp
is for other readers: here an event counts only when its answer is in the window compared);
events that cannot be attributed are counted apart.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa

from serving.feedback import feedback_tables

logger = logging.getLogger(__name__)
ANSWER, ERROR = "recommend", "recommend:error"
COUNTS = ("requests", "errors", "impressions", "clicks", "purchases", "revenue")


@dataclass(frozen=True)
class Observations:
    """``users``: one row per (group, user_id) with the COUNTS columns; ``latency``: the
    answered requests' latencies (ms) per group; ``group``: variant or model_version."""

    group: str
    users: pd.DataFrame
    latency: dict[str, np.ndarray] = field(default_factory=dict)
    unattributed: int = 0

    def of(self, name: str) -> pd.DataFrame:
        return self.users[self.users[self.group] == name]

    def totals(self, name: str) -> dict[str, float]:
        part = self.of(name)
        return {column: float(part[column].sum()) for column in COUNTS} | {"users": len(part)}


def read(
    url: str,
    since: datetime,
    until: datetime | None = None,
    group: str = "variant",
    versions: tuple[str, ...] | None = None,
    prefix: str = "recsys_",
) -> Observations:
    """Answers of /recommend served in [since, until) (only ``versions`` when given), and
    the feedback on them, summed per user of each ``group`` (``variant`` or ``model_version``)."""
    engine = sa.create_engine(url)
    try:
        _, events, served = feedback_tables(prefix)
        with engine.connect() as connection:
            present = set(sa.inspect(connection).get_table_names())
            if served.name not in present:
                return _empty(group)
            query = sa.select(
                served.c.request_id,
                served.c.endpoint,
                served.c.user_id,
                served.c.variant,
                served.c.model_version,
                served.c.latency_ms,
            ).where(served.c.served_at >= since, served.c.endpoint.in_((ANSWER, ERROR)))
            if until is not None:
                query = query.where(served.c.served_at < until)
            if versions is not None:
                query = query.where(served.c.model_version.in_(versions))
            answers = pd.DataFrame(
                connection.execute(query).all(), columns=list(query.selected_columns.keys())
            )
            feedback = pd.DataFrame()
            if events.name in present:
                query = sa.select(
                    events.c.request_id,
                    events.c.user_id,
                    events.c.event_type,
                    events.c.price,
                    events.c.variant,
                    events.c.model_version,
                ).where(events.c.received_at >= since)
                feedback = pd.DataFrame(
                    connection.execute(query).all(), columns=list(query.selected_columns.keys())
                )
    finally:
        engine.dispose()
    return summarise(answers, feedback, group, versions)


def summarise(
    answers: pd.DataFrame,
    feedback: pd.DataFrame,
    group: str = "variant",
    versions: tuple[str, ...] | None = None,
) -> Observations:
    """The per-user sums of ``answers`` (served rows) and ``feedback`` (event rows)."""
    if answers.empty:
        return _empty(group)
    answers = answers.assign(user_id=answers["user_id"].fillna("(anonymous)"))
    is_error = answers["endpoint"] == ERROR
    per_user = (
        answers.assign(requests=~is_error, errors=is_error)
        .groupby([group, "user_id"])[["requests", "errors"]]
        .sum()
        .astype(np.float64)
    )
    unattributed = 0
    if not feedback.empty:
        unattributed = int(feedback["request_id"].isna().sum())
        known = answers[["request_id", group]]
        joined = feedback.drop(columns=["variant", "model_version"], errors="ignore").merge(
            known, on="request_id", how="inner"
        )
        # events on answers outside the window (or of other versions) are not this comparison's
        unattributed += int(feedback["request_id"].notna().sum()) - len(joined)
        kinds = joined["event_type"]
        joined = joined.assign(
            impressions=kinds == "impression",
            clicks=kinds == "click",
            purchases=kinds == "purchase",
            revenue=np.where(kinds == "purchase", pd.to_numeric(joined["price"]).fillna(0.0), 0.0),
        )
        responses = (
            joined.groupby([group, "user_id"])[["impressions", "clicks", "purchases", "revenue"]]
            .sum()
            .astype(np.float64)
        )
        per_user = per_user.join(responses, how="outer")
    per_user = per_user.reindex(columns=list(COUNTS)).fillna(0.0).reset_index()
    latency = {
        str(name): part["latency_ms"].to_numpy(dtype=np.float64)
        for name, part in answers[~is_error].groupby(group)
    }
    return Observations(group, per_user, latency, unattributed)


def _empty(group: str) -> Observations:
    return Observations(group, pd.DataFrame(columns=[group, "user_id", *COUNTS]))

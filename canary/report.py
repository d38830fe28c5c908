"""The A/B report: any two model versions over a period, overall and per user segment, with
the lift of B over A and its 95% interval on click-through, conversion (both per impression)
and revenue per request.

The period is one look decided in advance, so the intervals are the fixed-sample ones
(``canary.stats.lift``, users as the unit); the controller's always-valid intervals are wider,
the price of looking while the canary runs. Segments are the users' activity in the lake, as
the offline gates' (training.evaluate): new, light, regular and heavy users.
"""

import logging
import math
from datetime import datetime

import numpy as np
import pandas as pd

from canary import observations, stats
from canary.observations import Observations
from recsys import columns as c
from recsys.workspace import Workspace

logger = logging.getLogger(__name__)
# metric -> (numerator, denominator, label)
METRICS = {
    "ctr": ("clicks", "impressions", "click-through"),
    "conversion": ("purchases", "impressions", "conversion"),
    "revenue_per_request": ("revenue", "requests", "revenue per request"),
}
ALL = "all users"


def user_segments(workspace: Workspace) -> pd.Series:
    """user_id -> activity segment from the lake's events (users absent from it are new)."""
    from recommender.segments import HEAVY_MIN_EVENTS, LIGHT_MAX_EVENTS

    path = workspace.table(c.EVENTS)
    if not path.exists():
        return pd.Series(dtype=object)
    counts = pd.read_parquet(path, columns=[c.USER_ID])[c.USER_ID].astype(str).value_counts()
    labels = np.where(
        counts <= LIGHT_MAX_EVENTS,
        "light_users",
        np.where(counts >= HEAVY_MIN_EVENTS, "heavy_users", "regular_users"),
    )
    return pd.Series(labels, index=counts.index)


def compare(obs: Observations, a: str, b: str, segments: pd.Series | None = None) -> dict:
    """``{segment: {metric: Lift, "users": (users of a, users of b)}}``, overall first."""
    users = obs.users
    label = (
        users["user_id"].map(segments).fillna("new_users")
        if segments is not None and len(segments)
        else pd.Series("", index=users.index)
    )
    parts = {ALL: users}
    if segments is not None and len(segments):
        for name in ("new_users", "light_users", "regular_users", "heavy_users"):
            part = users[label == name]
            if len(part):
                parts[name] = part
    out = {}
    for name, part in parts.items():
        ua, ub = part[part[obs.group] == a], part[part[obs.group] == b]
        row: dict = {"users": (len(ua), len(ub))}
        for metric, (num, den, _) in METRICS.items():
            row[metric] = stats.lift(stats.ratio(ua[num], ua[den]), stats.ratio(ub[num], ub[den]))
        out[name] = row
    return out


def ab_report(
    workspace: Workspace,
    feedback_url: str,
    a: str,
    b: str,
    since: datetime,
    until: datetime | None = None,
) -> tuple[dict, str]:
    """The comparison of versions ``a`` and ``b`` (whichever variant served them) and its
    Markdown rendering."""
    obs = observations.read(feedback_url, since, until, group="model_version", versions=(a, b))
    result = compare(obs, a, b, user_segments(workspace))
    return result, render(result, a, b, since, until, obs.unattributed)


def render(
    result: dict, a: str, b: str, since: datetime, until: datetime | None, unattributed: int = 0
) -> str:
    period = (
        f"{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M}"
        if until
        else f"since {since:%Y-%m-%d %H:%M}"
    )
    lines = [
        f"## A/B report: version {b} (B) against version {a} (A), {period} UTC",
        "",
        "Lift = B / A - 1, with its 95% interval (users as the unit, one look).",
        "",
        "| segment | users A | users B | metric | A | B | lift | 95% interval |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for segment, row in result.items():
        for metric, (_, _, label) in METRICS.items():
            lift: stats.Lift = row[metric]
            interval = (
                f"[{lift.low:+.1%}, {lift.high:+.1%}]"
                if math.isfinite(lift.low) and math.isfinite(lift.high)
                else "n/a (too few events)"
            )
            value = f"{lift.lift:+.1%}" if math.isfinite(lift.lift) else "n/a"
            lines.append(
                f"| {segment} | {row['users'][0]} | {row['users'][1]} | {label} | "
                f"{lift.a:.4f} | {lift.b:.4f} | {value} | {interval} |"
            )
    if unattributed:
        lines += ["", f"{unattributed} feedback events could not be attributed to either version."]
    return "\n".join(lines) + "\n"


def to_json(result: dict) -> dict:
    from dataclasses import asdict

    from canary.analysis import _finite

    return _finite(
        {
            segment: {
                key: (asdict(value) if isinstance(value, stats.Lift) else list(value))
                for key, value in row.items()
            }
            for segment, row in result.items()
        }
    )

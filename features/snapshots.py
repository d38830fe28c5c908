"""Daily snapshots of windowed and lifetime aggregates, emitted only when a value changes.

A daily table per entity would be 365 rows per user; most would repeat the previous day. A
value of a ``w``-day window changes only on the day after an event (it enters) and ``w`` days
later (it leaves), and a lifetime value only on the day after an event, so one row is written
at each of those days and point-in-time joins find the right value for any moment in between.
Snapshot ``S`` (midnight UTC, day number ``S``) covers events strictly before ``S``.
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.names import EVENT_TIMESTAMP

DAY = "day"
SECONDS_PER_DAY = 86_400


def day_number(timestamps: pd.Series) -> pd.Series:
    """Days since the epoch (UTC) of each instant."""
    return (timestamps.astype("int64") // (SECONDS_PER_DAY * 10**9)).astype("int64")


def day_start(days: pd.Series | np.ndarray) -> pd.Series:
    """Midnight UTC of each day number, as the snapshot's event timestamp."""
    return pd.Series(
        pd.to_datetime(np.asarray(days, dtype="int64") * SECONDS_PER_DAY, unit="s", utc=True)
    )


def snapshot_days(
    daily: pd.DataFrame, keys: Sequence[str], windows: Sequence[int], last_day: int
) -> pd.DataFrame:
    """Each (key, snapshot day) where a lifetime or ``windows`` value changes, to ``last_day``."""
    shifted = [daily[[*keys, DAY]].assign(**{DAY: daily[DAY] + 1 + w}) for w in (0, *windows)]
    days = pd.concat(shifted, ignore_index=True).drop_duplicates()
    return days[days[DAY] <= last_day]


def _as_of(
    snaps: pd.DataFrame, cum: pd.DataFrame, keys: Sequence[str], columns: Sequence[str], offset: int
) -> pd.DataFrame:
    """Cumulative ``columns`` over the days strictly before ``snapshot day - offset``."""
    probe = snaps[[*keys, DAY, "_row"]].assign(_probe=snaps[DAY] - offset - 1)
    probe = probe.sort_values("_probe", kind="stable")
    right = cum[[*keys, DAY, *columns]].rename(columns={DAY: "_probe"})
    right = right.sort_values("_probe", kind="stable")
    joined = pd.merge_asof(probe, right, on="_probe", by=list(keys), direction="backward")
    return joined.set_index("_row")[list(columns)].fillna(0).sort_index()


def windowed(
    daily: pd.DataFrame,
    keys: Sequence[str],
    values: Sequence[str],
    windows: Sequence[int],
    last_day: int,
) -> pd.DataFrame:
    """Snapshot rows with ``<value>_<w>d`` window sums and ``<value>_total`` lifetime sums.

    ``daily`` holds one row per (keys, day) with additive ``values``.
    """
    daily = daily.sort_values([*keys, DAY], kind="stable")
    cum = daily[[*keys, DAY]].copy()
    cum[list(values)] = daily.groupby(list(keys), sort=False)[list(values)].cumsum()
    snaps = snapshot_days(daily, keys, windows, last_day).sort_values([*keys, DAY])
    snaps = snaps.reset_index(drop=True)
    snaps["_row"] = snaps.index
    now = _as_of(snaps, cum, keys, values, 0)
    out = snaps[[*keys, DAY]].copy()
    dtypes = {value: daily[value].dtype for value in values}
    for value in values:
        out[f"{value}_total"] = now[value].to_numpy().astype(dtypes[value])
    for w in windows:
        before = _as_of(snaps, cum, keys, values, w)
        for value in values:
            out[f"{value}_{w}d"] = (now[value] - before[value]).to_numpy().astype(dtypes[value])
    out[EVENT_TIMESTAMP] = day_start(out[DAY]).to_numpy()
    return out


def latest_as_of(
    snaps: pd.DataFrame, facts: pd.DataFrame, keys: Sequence[str], columns: Sequence[str]
) -> pd.DataFrame:
    """For each snapshot row, ``columns`` of the last ``facts`` row of its key before its day.

    ``facts`` holds values known at the end of each (key, day), e.g. a running favourite.
    """
    probe = snaps[[*keys, DAY]].reset_index(drop=True)
    probe["_row"] = probe.index
    probe["_probe"] = probe[DAY] - 1
    right = facts[[*keys, DAY, *columns]].rename(columns={DAY: "_probe"}).sort_values("_probe")
    joined = pd.merge_asof(
        probe.sort_values("_probe"), right, on="_probe", by=list(keys), direction="backward"
    )
    return joined.set_index("_row")[list(columns)].sort_index()


def running_favourite(rows: pd.DataFrame, key: str, choice: str, weight: str) -> pd.DataFrame:
    """The ``choice`` with the largest cumulative ``weight`` per ``key``, at the end of each day.

    ``rows`` holds one row per (key, day, choice). Ties go to the choice that reached the
    maximum first, so the favourite only changes when another one overtakes it.
    """
    rows = rows.sort_values([key, DAY, choice], kind="stable").reset_index(drop=True)
    cum = rows.groupby([key, choice], sort=False)[weight].cumsum()
    best = cum.groupby(rows[key], sort=False).cummax()
    leader = rows[choice].where(cum.eq(best) & cum.gt(best.groupby(rows[key]).shift().fillna(-1)))
    favourite = leader.groupby(rows[key], sort=False).ffill()
    out = pd.DataFrame({key: rows[key], DAY: rows[DAY], choice: favourite})
    return out.groupby([key, DAY], sort=False).tail(1).reset_index(drop=True)

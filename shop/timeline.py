"""When people shop: daily traffic, hour of day, season per category and the late taste shift.

Kept apart from the session logic so that the shape of the year can be read in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shop.scales import MS_PER_DAY, Period
from shop.taxonomy import Taxonomy

# relative traffic by hour of day (UTC, close enough to European local time)
HOUR_PROFILE = np.array(
    [
        0.25,
        0.15,
        0.1,
        0.08,
        0.08,
        0.12,
        0.3,
        0.6,
        0.85,
        0.95,
        1.0,
        1.05,
        1.2,
        1.15,
        1.0,
        0.95,
        1.0,
        1.1,
        1.3,
        1.55,
        1.7,
        1.6,
        1.2,
        0.6,
    ]
)
# Monday..Sunday
WEEKDAY_PROFILE = np.array([1.0, 0.97, 0.97, 0.98, 0.95, 0.9, 1.12])
# January..December: more traffic before Christmas and in the January sales
MONTH_PROFILE = np.array([1.05, 0.9, 0.92, 0.93, 0.93, 0.9, 0.9, 0.92, 0.95, 1.0, 1.35, 1.5])


@dataclass(frozen=True)
class Timeline:
    """Per-day facts about the period, and the cumulative traffic used to draw days."""

    period: Period
    day_month: np.ndarray  # int8, 0 = January
    traffic: np.ndarray  # float64 per day
    cumulative: np.ndarray  # float64, len(days) + 1
    season: np.ndarray  # float32 (12, n_leaves) log multipliers
    shift_log: np.ndarray  # float32 (n_leaves,) log multiplier at full strength
    ramp_ms: float

    def day_of(self, ms: np.ndarray) -> np.ndarray:
        return ((ms - self.period.start_ms) // MS_PER_DAY).astype(np.int64)

    def month_of(self, ms: np.ndarray) -> np.ndarray:
        day = np.clip(self.day_of(ms), 0, len(self.day_month) - 1)
        return self.day_month[day]

    def shift_strength(self, ms: np.ndarray) -> np.ndarray:
        """0 before the shift start, rising linearly to 1 over the ramp."""
        return np.clip((ms - self.period.shift_ms) / self.ramp_ms, 0.0, 1.0)

    def intent_log_weights(self, ms: np.ndarray) -> np.ndarray:
        """Season and shift, as log multipliers per leaf for sessions starting at ``ms``."""
        return (
            self.season[self.month_of(ms)]
            + self.shift_strength(ms)[:, None].astype(np.float32) * self.shift_log
        )


def build_timeline(tax: Taxonomy, period: Period) -> Timeline:
    """Precompute the year's traffic curve and the per-leaf season and shift multipliers."""
    days = np.arange(period.days)
    dates = np.datetime64(period.start_ms, "ms").astype("datetime64[D]") + days
    month = (dates.astype("datetime64[M]").astype(np.int64) % 12).astype(np.int8)
    weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    traffic = MONTH_PROFILE[month] * WEEKDAY_PROFILE[weekday]
    day_of_month = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    black_friday = (month == 10) & (weekday == 4) & (day_of_month >= 22) & (day_of_month <= 28)
    traffic = np.where(black_friday, traffic * 2.5, traffic)
    after_christmas = (month == 11) & (day_of_month >= 25) & (day_of_month <= 26)
    traffic = np.where(after_christmas, traffic * 0.5, traffic)
    cumulative = np.concatenate([[0.0], np.cumsum(traffic)])

    season = np.zeros((12, len(tax.leaves)), dtype=np.float32)
    for leaf in tax.leaves:
        if leaf.season is not None:
            season[:, leaf.index] = np.log(tax.seasons[leaf.season])
    shift_log = np.zeros(len(tax.leaves), dtype=np.float32)
    shift_log[list(tax.shift.trending)] = np.log(tax.shift.gain)
    shift_log[list(tax.shift.declining)] = np.log(tax.shift.loss)
    return Timeline(
        period=period,
        day_month=month,
        traffic=traffic,
        cumulative=cumulative,
        season=season,
        shift_log=shift_log,
        ramp_ms=tax.shift.ramp_days * MS_PER_DAY,
    )


def draw_times(rng: np.random.Generator, timeline: Timeline, from_ms: np.ndarray) -> np.ndarray:
    """One instant per entry, at or after ``from_ms``, following the traffic curve and hours."""
    period = timeline.period
    first_day = np.clip(
        timeline.day_of(np.maximum(from_ms, period.start_ms)), 0, len(timeline.traffic) - 1
    )
    lo = timeline.cumulative[first_day]
    hi = timeline.cumulative[-1]
    u = lo + rng.random(len(from_ms)) * (hi - lo)
    day = np.clip(
        np.searchsorted(timeline.cumulative, u, side="right") - 1, 0, len(timeline.traffic) - 1
    )
    hour = rng.choice(24, len(from_ms), p=HOUR_PROFILE / HOUR_PROFILE.sum())
    within = hour * 3_600_000 + rng.integers(0, 3_600_000, len(from_ms))
    ms = period.start_ms + day * MS_PER_DAY + within
    late_start = from_ms + rng.integers(60_000, 3 * 3_600_000, len(from_ms))
    return np.where(ms < from_ms, late_start, ms)

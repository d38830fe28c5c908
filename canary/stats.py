"""The canary's statistics, as small pure functions on per-user sums.

Click-through (clicks per impression), conversion (purchases per impression) and revenue per
request are ratios of sums over users. A user's events are not independent (one user clicks
more than another, in every request), so each ratio's variance is the delta method's over
users, not the binomial one over impressions: sticky users make the user the unit of the
experiment.

The controller looks at the data again and again while the canary runs, so a fixed-sample
test would find a difference that is not there far more often than its alpha says. The
mixture sequential probability ratio test (mSPRT, Johari et al. 2017, "Always valid
inference") keeps its error rate at alpha however often it is looked at: its likelihood ratio
against "no difference", mixed over a normal prior N(0, tau^2) on the difference, and the
confidence interval derived from it, hold at every look at once.

The A/B report over a fixed period is a single look: there the usual normal interval on the
log of the ratio of the two ratios (the lift) is the right one.
"""

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # the normal quantile of 0.975


@dataclass(frozen=True)
class Ratio:
    """sum(numerator) / sum(denominator) over users, and the variance of that estimate."""

    value: float
    variance: float
    users: int
    numerator: float
    denominator: float


def ratio(numerator, denominator) -> Ratio:
    """The ratio of sums over users and its delta-method variance,
    ``sum((x_i - R n_i)^2) / N^2 * m / (m - 1)`` (m users, N the denominators' sum).

    No denominator: value and variance are NaN. One user: the variance is infinite (nothing
    to say how users vary)."""
    x = np.asarray(numerator, dtype=np.float64)
    n = np.asarray(denominator, dtype=np.float64)
    users, total_x, total_n = len(x), float(x.sum()), float(n.sum())
    if total_n <= 0:
        return Ratio(math.nan, math.nan, users, total_x, total_n)
    value = total_x / total_n
    if users < 2:
        return Ratio(value, math.inf, users, total_x, total_n)
    residual = x - value * n
    variance = float((residual**2).sum()) / total_n**2 * users / (users - 1)
    return Ratio(value, variance, users, total_x, total_n)


def msprt_lambda(difference: float, variance: float, tau2: float) -> float:
    """The mixture likelihood ratio of an observed ``difference`` with ``variance`` against
    no difference, under a N(0, tau2) mixture:
    ``sqrt(V / (V + tau2)) * exp(tau2 d^2 / (2 V (V + tau2)))``."""
    if not math.isfinite(variance) or not tau2 > 0:
        return 1.0  # nothing known yet: no evidence either way
    if variance <= 0:
        return 1.0 if difference == 0 else math.inf
    total = variance + tau2
    exponent = tau2 * difference**2 / (2.0 * variance * total)
    return math.sqrt(variance / total) * math.exp(min(exponent, 700.0))


def always_valid_p(difference: float, variance: float, tau2: float, previous: float = 1.0) -> float:
    """The always-valid p-value after this look: ``min(previous, 1 / Lambda)``."""
    lam = msprt_lambda(difference, variance, tau2)
    return min(previous, 1.0 / lam, 1.0)


def always_valid_interval(
    difference: float, variance: float, tau2: float, alpha: float
) -> tuple[float, float]:
    """The (1 - alpha) confidence interval of the difference that holds at every look:
    ``d +- sqrt(V (V + tau2) / tau2 * (log((V + tau2) / V) - 2 log alpha))``."""
    if not variance > 0 or not math.isfinite(variance):
        return (-math.inf, math.inf) if variance != 0 else (difference, difference)
    total = variance + tau2
    half = math.sqrt(variance * total / tau2 * (math.log(total / variance) - 2.0 * math.log(alpha)))
    return difference - half, difference + half


@dataclass(frozen=True)
class Lift:
    """B against A on one ratio metric: both values, the relative lift ``B / A - 1`` and its
    (1 - alpha) interval (normal on the log of B / A, one look)."""

    a: float
    b: float
    lift: float
    low: float
    high: float

    def covers(self, true_lift: float) -> bool:
        return self.low <= true_lift <= self.high


def lift(a: Ratio, b: Ratio, z: float = Z95) -> Lift:
    """``B / A - 1`` with the interval ``exp(log(B/A) +- z sqrt(var_A/A^2 + var_B/B^2)) - 1``
    (delta method on the logs); NaN bounds when either ratio is zero or unknown."""
    if not (a.value > 0 and b.value > 0) or not (
        math.isfinite(a.variance) and math.isfinite(b.variance)
    ):
        value = b.value / a.value - 1 if a.value and a.value == a.value else math.nan
        return Lift(a.value, b.value, value, math.nan, math.nan)
    log_ratio = math.log(b.value / a.value)
    se = math.sqrt(a.variance / a.value**2 + b.variance / b.value**2)
    return Lift(
        a.value,
        b.value,
        b.value / a.value - 1,
        math.exp(log_ratio - z * se) - 1,
        math.exp(log_ratio + z * se) - 1,
    )


def percentile(values, q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method: a value that was observed
    (NaN when there is none)."""
    data = np.sort(np.asarray(values, dtype=np.float64))
    if len(data) == 0:
        return math.nan
    rank = max(math.ceil(q / 100.0 * len(data)), 1)
    return float(data[rank - 1])

"""One look at a running canary: the two variants side by side and the verdict.

Guardrails (errors, a latency percentile) are judged as soon as the canary has answered
``guardrails.min_requests`` times: they are hard limits, breached or not. User response
(click-through and conversion per impression) is judged only once each variant has
``min_impressions``, by the mixture sequential test of ``canary.stats``: the canary fails when
its always-valid interval lies entirely below production (beyond ``max_relative_drop``). Each
variant's variance is the delta method's over users, floored at the binomial variance of the
pooled rate (so a variant with no event yet is not taken as known to be at zero).
"""

import math
from dataclasses import asdict, dataclass, field

from canary import stats
from canary.observations import Observations
from canary.policy import CanaryPolicy, MetricTest
from serving.split import CANARY, PRODUCTION

# metric -> (numerator column, denominator column, words)
RESPONSE = {
    "ctr": ("clicks", "impressions", "click-through"),
    "conversion": ("purchases", "impressions", "conversion"),
}


@dataclass(frozen=True)
class MetricResult:
    metric: str
    production: float
    canary: float
    difference: float
    low: float  # the always-valid interval of canary - production
    high: float
    p_value: float  # always valid: the smallest over the looks so far
    worse: bool
    # shown no worse than the policy's promote_margin (None: no margin asked)
    non_inferior: bool | None = None


@dataclass(frozen=True)
class Analysis:
    variants: dict[str, dict[str, float]]
    metrics: dict[str, MetricResult] = field(default_factory=dict)
    breaches: tuple[str, ...] = ()
    sample_ok: bool = False
    notes: tuple[str, ...] = ()

    @property
    def breached(self) -> bool:
        return bool(self.breaches)

    @property
    def promotable(self) -> bool:
        """The minimum sample is there and every promotion margin is met."""
        return self.sample_ok and all(r.non_inferior is not False for r in self.metrics.values())

    def p_values(self) -> dict[str, float]:
        return {name: result.p_value for name, result in self.metrics.items()}

    def to_dict(self) -> dict:
        """JSON-ready (the audit's ``metrics``): infinities and NaN as None."""
        return _finite(
            {
                "variants": self.variants,
                "metrics": {name: asdict(result) for name, result in self.metrics.items()},
                "breaches": list(self.breaches),
                "sample_ok": self.sample_ok,
                "notes": list(self.notes),
            }
        )

    def summary(self) -> str:
        """One line per variant and metric, for the CLI and logs."""
        lines = []
        for name, v in self.variants.items():
            lines.append(
                f"{name:<10} users {v['users']:>6.0f}  answers {v['requests']:>7.0f}  "
                f"errors {v['error_rate']:>6.2%}  p50/p95/p99 {v['p50_ms']:.1f}/"
                f"{v['p95_ms']:.1f}/{v['p99_ms']:.1f} ms  impressions {v['impressions']:>7.0f}  "
                f"ctr {v['ctr']:.4f}  conversion {v['conversion']:.4f}  "
                f"revenue/request {v['revenue_per_request']:.3f}"
            )
        for result in self.metrics.values():
            lines.append(
                f"{result.metric}: canary - production {result.difference:+.4f}, always-valid "
                f"interval [{result.low:+.4f}, {result.high:+.4f}], p={result.p_value:.4g}"
                + ("  WORSE" if result.worse else "")
                + ("  (not yet shown no worse)" if result.non_inferior is False else "")
            )
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"BREACH: {breach}" for breach in self.breaches]
        return "\n".join(lines)


def describe_variant(obs: Observations, name: str, percentiles=(50, 95, 99)) -> dict[str, float]:
    totals = obs.totals(name)
    answers = totals["requests"] + totals["errors"]
    latency = obs.latency.get(name, [])
    return totals | {
        "error_rate": totals["errors"] / answers if answers else 0.0,
        "ctr": _share(totals["clicks"], totals["impressions"]),
        "conversion": _share(totals["purchases"], totals["impressions"]),
        "revenue_per_request": _share(totals["revenue"], totals["requests"]),
        **{f"p{q:g}_ms": stats.percentile(latency, q) for q in percentiles},
    }


def analyse(
    obs: Observations, policy: CanaryPolicy, previous_p: dict[str, float] | None = None
) -> Analysis:
    """The verdict of one look; ``previous_p``: the always-valid p-values of earlier looks."""
    previous_p = previous_p or {}
    guard = policy.guardrails
    q = guard.latency_percentile
    variants = {
        name: describe_variant(obs, name, sorted({50, 95, 99, q})) for name in (PRODUCTION, CANARY)
    }
    prod, canary = variants[PRODUCTION], variants[CANARY]
    breaches, notes = [], []

    canary_answers = canary["requests"] + canary["errors"]
    if canary_answers < guard.min_requests:
        notes.append(
            f"guardrails wait for {guard.min_requests} canary answers ({canary_answers:.0f})"
        )
    else:
        increase = canary["error_rate"] - prod["error_rate"]
        if canary["errors"] >= guard.min_errors and increase > guard.max_error_rate_increase:
            breaches.append(
                f"error rate {canary['error_rate']:.2%} vs production {prod['error_rate']:.2%} "
                f"(+{increase:.2%} > +{guard.max_error_rate_increase:.2%}; "
                f"{canary['errors']:.0f} errors in {canary_answers:.0f} answers)"
            )
        key = f"p{q:g}_ms"
        if prod["requests"] >= guard.min_requests and canary["requests"] >= guard.min_requests:
            limit = max(prod[key] * guard.max_latency_ratio, prod[key] + guard.latency_slack_ms)
            if canary[key] > limit:
                breaches.append(
                    f"latency p{q:g} {canary[key]:.1f} ms vs production {prod[key]:.1f} ms "
                    f"(limit {limit:.1f} ms: {guard.max_latency_ratio:g}x or "
                    f"+{guard.latency_slack_ms:g} ms)"
                )

    sample_ok = min(prod["impressions"], canary["impressions"]) >= policy.min_impressions
    metrics = {}
    if not sample_ok:
        notes.append(
            f"user response waits for {policy.min_impressions} impressions per variant "
            f"(production {prod['impressions']:.0f}, canary {canary['impressions']:.0f})"
        )
    else:
        for name, (num, den, words) in RESPONSE.items():
            test: MetricTest = getattr(policy, name)
            result = compare(obs, num, den, test, policy.alpha, previous_p.get(name, 1.0), name)
            metrics[name] = result
            if result.worse:
                breaches.append(
                    f"{words} {result.canary:.4f} vs production {result.production:.4f}: "
                    f"difference {result.difference:+.4f}, always-valid "
                    f"{1 - policy.alpha:.0%} interval [{result.low:+.4f}, {result.high:+.4f}], "
                    f"p={result.p_value:.2g}"
                )
    return Analysis(variants, metrics, tuple(breaches), sample_ok, tuple(notes))


def compare(
    obs: Observations,
    numerator: str,
    denominator: str,
    test: MetricTest,
    alpha: float,
    previous_p: float = 1.0,
    name: str = "",
) -> MetricResult:
    """Canary against production on one ratio metric, by the mixture sequential test."""
    prod = stats.ratio(obs.of(PRODUCTION)[numerator], obs.of(PRODUCTION)[denominator])
    can = stats.ratio(obs.of(CANARY)[numerator], obs.of(CANARY)[denominator])
    difference = can.value - prod.value
    variance = _floored(prod, can) + _floored(can, prod)
    tau2 = (test.tau_relative * prod.value) ** 2 if prod.value > 0 else test.tau_relative**2
    p_value = stats.always_valid_p(difference, variance, tau2, previous_p)
    low, high = stats.always_valid_interval(difference, variance, tau2, alpha)
    worse = high < -test.max_relative_drop * prod.value
    margin = test.promote_margin
    non_inferior = None if margin is None else bool(low > -margin * prod.value)
    return MetricResult(
        name, prod.value, can.value, difference, low, high, p_value, worse, non_inferior
    )


def _floored(one: stats.Ratio, other: stats.Ratio) -> float:
    """``one``'s variance, at least the binomial one at the two variants' pooled rate: a
    variant with no click at all (or only clicks) has a delta-method variance of zero, which
    would make the test sure of a rate it has barely seen."""
    if not one.denominator > 0:
        return one.variance
    pooled = (one.numerator + other.numerator) / (one.denominator + other.denominator)
    return max(one.variance, pooled * (1.0 - pooled) / one.denominator)


def _share(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _finite(value):
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

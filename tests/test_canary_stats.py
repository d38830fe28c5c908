"""The canary's maths on tiny hand-made inputs with exact values (canary.stats, the split,
the analysis' verdicts), and the A/B report's intervals checked against simulations where the
true lift is known."""

import math

import numpy as np
import pandas as pd
import pytest

from canary import stats
from canary.analysis import analyse
from canary.observations import summarise
from canary.policy import CanaryPolicy, parse_steps
from canary.report import compare
from recsys.errors import RecsysError
from serving import split

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------------------ stats
def test_ratio_of_sums_with_the_users_delta_method_variance() -> None:
    r = stats.ratio([1, 2, 0], [10, 10, 5])
    # R = 3 / 25; residuals x - R n = -0.2, 0.8, -0.6; (0.04 + 0.64 + 0.36) / 25^2 * 3 / 2
    assert r.value == pytest.approx(0.12, abs=1e-15)
    assert r.variance == pytest.approx(1.04 / 625 * 1.5, rel=1e-12)
    assert (r.users, r.numerator, r.denominator) == (3, 3.0, 25.0)
    assert math.isinf(stats.ratio([1], [4]).variance)  # one user: nothing says how users vary
    assert math.isnan(stats.ratio([0, 0], [0, 0]).value)


def test_mixture_likelihood_ratio_p_value_and_interval() -> None:
    # Lambda = sqrt(V / (V + tau2)) * exp(tau2 d^2 / (2 V (V + tau2)))
    assert stats.msprt_lambda(0.1, 0.01, 0.01) == pytest.approx(
        math.sqrt(0.5) * math.exp(0.25), rel=1e-12
    )
    lam = math.sqrt(0.5) * math.exp(2.25)  # d = 0.3: 6.7088...
    assert stats.always_valid_p(0.3, 0.01, 0.01) == pytest.approx(1 / lam, rel=1e-12)
    assert stats.always_valid_p(0.3, 0.01, 0.01, previous=0.1) == 0.1  # the smallest so far
    assert stats.always_valid_p(0.0, 0.01, 0.01) == 1.0
    low, high = stats.always_valid_interval(0.1, 0.01, 0.01, 0.05)
    half = math.sqrt(0.01 * 0.02 / 0.01 * (math.log(2) - 2 * math.log(0.05)))
    assert (low, high) == (pytest.approx(0.1 - half), pytest.approx(0.1 + half))
    # the interval excludes 0 exactly when 1 / Lambda <= alpha
    assert stats.always_valid_interval(0.3, 0.01, 0.01, 1 / lam)[0] == pytest.approx(0, abs=1e-12)
    # nothing known yet: no evidence, an unbounded interval
    assert stats.msprt_lambda(0.2, math.inf, 0.01) == 1.0
    assert stats.always_valid_interval(0.2, math.inf, 0.01, 0.05) == (-math.inf, math.inf)


def test_lift_and_its_interval_on_the_log_scale() -> None:
    a = stats.Ratio(0.10, 0.0001, 100, 10, 100)
    b = stats.Ratio(0.12, 0.0001, 100, 12, 100)
    result = stats.lift(a, b)
    se = math.sqrt(0.0001 / 0.01 + 0.0001 / 0.0144)
    assert result.lift == pytest.approx(0.2, rel=1e-12)
    assert result.low == pytest.approx(1.2 * math.exp(-stats.Z95 * se) - 1, rel=1e-12)
    assert result.high == pytest.approx(1.2 * math.exp(stats.Z95 * se) - 1, rel=1e-12)
    assert result.covers(0.2) and not result.covers(1.0)
    assert math.isnan(stats.lift(stats.Ratio(0.0, 0.0, 5, 0, 50), b).low)


def test_percentile_is_an_observed_value_by_nearest_rank() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert [stats.percentile(values, q) for q in (20, 50, 99, 100)] == [1.0, 3.0, 5.0, 5.0]
    assert math.isnan(stats.percentile([], 99))


# ------------------------------------------------------------------------------ the split
def test_the_split_is_a_stable_hash_of_user_and_canary() -> None:
    # blake2b-64 of "recsys-canary:7:u0001" mod 10,000 = 8766
    assert split.bucket("u0001", "recsys-canary:7") == 87.66
    assert split.bucket("u0001", split.split_salt("recsys-canary", "8")) == 70.32
    salt = "recsys-canary:7"
    assert split.variant_of("u0001", 87.66, salt) == split.PRODUCTION
    assert split.variant_of("u0001", 87.67, salt) == split.CANARY
    assert split.variant_of(None, 100, salt) == split.PRODUCTION  # anonymous: production
    users = [f"u{n:05d}" for n in range(20_000)]
    canary_at = {w: {u for u in users if split.variant_of(u, w, salt) == "canary"} for w in (5, 25)}
    assert canary_at[5] <= canary_at[25]  # a canary user stays one as the weight grows
    assert abs(len(canary_at[25]) / len(users) - 0.25) < 0.01


def test_weight_and_fault_tags_are_read_without_ever_failing() -> None:
    assert split.weight_of({split.WEIGHT_TAG: "25"}) == 25.0
    assert split.weight_of({split.WEIGHT_TAG: "150"}) == 100.0
    assert split.weight_of({split.WEIGHT_TAG: "lots"}) == 0.0
    assert split.weight_of({split.WEIGHT_TAG: "nan"}) == 0.0
    assert split.weight_of({}) == 0.0
    assert split.fault_of({}) is None
    assert split.fault_of({split.FAULT_DELAY_TAG: "250", split.FAULT_ERROR_TAG: "2"}) == (0.25, 1.0)


def test_steps_are_parsed_and_validated() -> None:
    assert [(s.weight, s.minutes) for s in parse_steps("5:30, 25:60,100:0.5")] == [
        (5.0, 30.0),
        (25.0, 60.0),
        (100.0, 0.5),
    ]
    with pytest.raises(RecsysError, match="weights must increase step by step"):
        parse_steps("25:1,5:1")
    with pytest.raises(RecsysError, match="'500:1' is not WEIGHT:MINUTES"):
        parse_steps("5:1,500:1")


# ------------------------------------------------------------------------------ the verdicts
POLICY = CanaryPolicy.model_validate(
    {
        "schedule": [{"weight": 5, "minutes": 1}],
        "min_impressions": 20,
        "ctr": {"tau_relative": 0.5},
        "guardrails": {"min_requests": 4, "min_errors": 2, "latency_slack_ms": 10},
    }
)


def _answers(variant: str, users: list[str], latency: float, errors: int = 0) -> list[dict]:
    rows = [
        {"request_id": f"{variant}-{n}", "endpoint": "recommend", "user_id": user,
         "variant": variant, "model_version": "1" if variant == "production" else "2",
         "latency_ms": latency + n}
        for n, user in enumerate(users)
    ]  # fmt: skip
    for n in range(errors):
        rows.append(rows[0] | {"request_id": f"{variant}-e{n}", "endpoint": "recommend:error"})
    return rows


def _feedback(variant: str, users: list[str], clicks: list[int]) -> list[dict]:
    rows = []
    for n, (user, hits) in enumerate(zip(users, clicks, strict=True)):
        for k in range(10):
            kind = "impression"
            rows.append({"request_id": f"{variant}-{n}", "user_id": user, "event_type": kind,
                         "price": None, "variant": None, "model_version": None})  # fmt: skip
            if k < hits:
                rows.append(rows[-1] | {"event_type": "click"})
    return rows


def _observe(prod_clicks, canary_clicks, canary_latency=10.0, canary_errors=0):
    prod_users = [f"p{n}" for n in range(len(prod_clicks))]
    canary_users = [f"c{n}" for n in range(len(canary_clicks))]
    answers = pd.DataFrame(
        _answers("production", prod_users, 10.0)
        + _answers("canary", canary_users, canary_latency, canary_errors)
    )
    feedback = pd.DataFrame(
        _feedback("production", prod_users, prod_clicks)
        + _feedback("canary", canary_users, canary_clicks)
    )
    return summarise(answers, feedback)


def test_a_canary_confidently_worse_on_click_through_is_a_breach() -> None:
    obs = _observe([3, 2, 3, 2, 3, 2], [0, 0, 1, 0, 0, 0])
    assert obs.totals("canary") == {
        "requests": 6.0, "errors": 0.0, "impressions": 60.0, "clicks": 1.0, "purchases": 0.0,
        "revenue": 0.0, "users": 6,
    }  # fmt: skip
    result = analyse(obs, POLICY)
    ctr = result.metrics["ctr"]
    assert (ctr.production, ctr.canary) == (pytest.approx(0.25), pytest.approx(1 / 60))
    assert ctr.worse and ctr.high < 0 and ctr.p_value < 0.05
    # both variances are floored at the binomial one of the pooled rate, 16 / 120, over 60
    pooled = 16 / 120
    variance, tau2 = 2 * pooled * (1 - pooled) / 60, (0.5 * 0.25) ** 2
    half = math.sqrt(variance * (variance + tau2) / tau2 * (
        math.log((variance + tau2) / variance) - 2 * math.log(0.05)))  # fmt: skip
    assert (ctr.low, ctr.high) == (pytest.approx(-0.7 / 3 - half), pytest.approx(-0.7 / 3 + half))
    assert len(result.breaches) == 1 and result.breaches[0].startswith("click-through 0.0167")
    assert not analyse(_observe([3, 2, 3, 2, 3, 2], [3, 2, 2, 3, 2, 3]), POLICY).breached


def test_promotion_can_ask_for_the_canary_shown_no_worse() -> None:
    obs = _observe([3, 2, 3, 2, 3, 2], [3, 2, 2, 3, 2, 3])  # equal click-through, 60 each
    assert analyse(obs, POLICY).promotable  # no margin asked: no breach is enough
    margin = POLICY.model_copy(
        update={"ctr": POLICY.ctr.model_copy(update={"promote_margin": 0.1})}
    )
    result = analyse(obs, margin)
    ctr = result.metrics["ctr"]
    # the interval (+-0.2518) reaches below -0.1 * 0.25 = -0.025: not shown no worse yet
    assert ctr.difference == 0 and ctr.low < -0.025 and ctr.non_inferior is False
    assert not result.breached and not result.promotable
    # ten times the users: the interval (+-0.0775) is inside a margin of 0.5 * 0.25
    more = _observe([3, 2] * 30, [2, 3] * 30)
    half = POLICY.model_copy(update={"ctr": POLICY.ctr.model_copy(update={"promote_margin": 0.5})})
    assert analyse(more, half).metrics["ctr"].non_inferior and analyse(more, half).promotable


def test_user_response_waits_for_the_minimum_sample_but_guardrails_do_not() -> None:
    obs = _observe([3, 2, 3], [0, 0, 0, 0], canary_errors=3)  # 30 production impressions
    strict = POLICY.model_copy(update={"min_impressions": 50})
    result = analyse(obs, strict)
    assert not result.sample_ok and result.metrics == {}
    assert result.breaches == (
        "error rate 42.86% vs production 0.00% (+42.86% > +1.00%; 3 errors in 7 answers)",
    )
    slow = analyse(_observe([1] * 5, [1] * 5, canary_latency=200.0), strict)
    assert slow.breaches == (
        "latency p99 204.0 ms vs production 14.0 ms (limit 24.0 ms: 1.5x or +10 ms)",
    )
    few = analyse(_observe([1] * 5, [1] * 3, canary_latency=200.0), strict)
    assert not few.breached and "guardrails wait for 4 canary answers (3)" in few.notes


# ------------------------------------------------------------------------------ the A/B report
def _experiment(rng: np.random.Generator, users: int, true_lift: float) -> pd.DataFrame:
    """Users of A and B with their own click propensity (users differ: a beta spread around
    the variant's rate) and their own number of requests and impressions; revenue per
    request with the same lift."""
    rows = []
    for variant, factor in (("1", 1.0), ("2", 1.0 + true_lift)):
        requests = rng.poisson(3, users) + 1
        impressions = requests * 10
        propensity = rng.beta(2, 38, users) * factor  # mean 5% (A)
        clicks = rng.binomial(impressions, np.minimum(propensity, 1))
        purchases = rng.binomial(clicks, 0.3)
        revenue = purchases * rng.gamma(2.0, 20.0, users)
        rows.append(
            pd.DataFrame({"model_version": variant,
                          "user_id": [f"{variant}-{n}" for n in range(users)],
                          "requests": requests.astype(float), "errors": 0.0,
                          "impressions": impressions.astype(float), "clicks": clicks.astype(float),
                          "purchases": purchases.astype(float), "revenue": revenue})
        )  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def test_the_ab_reports_intervals_cover_a_known_lift_about_95_times_in_100() -> None:
    from canary.observations import Observations

    rng = np.random.default_rng(20261123)
    runs, true_lift = 400, 0.2
    covered = {"ctr": 0, "conversion": 0, "revenue_per_request": 0}
    lifts = []
    for _ in range(runs):
        obs = Observations("model_version", _experiment(rng, 400, true_lift))
        overall = compare(obs, "1", "2")["all users"]
        for metric in covered:
            covered[metric] += overall[metric].covers(true_lift)
        lifts.append(overall["ctr"].lift)
    coverage = {metric: hits / runs for metric, hits in covered.items()}
    print(f"\ncoverage of the 95% intervals over {runs} experiments (true lift +20%): {coverage}")
    # 400 runs: the binomial spread of a 95% coverage is about 1.1 points
    for metric, share in coverage.items():
        assert 0.92 <= share <= 0.98, (metric, share)
    assert np.mean(lifts) == pytest.approx(true_lift, abs=0.02)  # and the lift is unbiased
    # with no true difference the interval covers 0 as often
    null = [
        compare(Observations("model_version", _experiment(rng, 400, 0.0)), "1", "2")["all users"]
        for _ in range(200)
    ]
    assert 0.91 <= np.mean([row["ctr"].covers(0.0) for row in null]) <= 0.99

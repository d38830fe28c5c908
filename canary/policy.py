"""The canary policy (``canary/policy.yaml``): the default schedule, how often to look, the
sequential test's settings, the minimum sample and the guardrails. Validated into frozen
models, so a misspelt key is an error naming it rather than a silently ignored guardrail."""

from pathlib import Path

from pydantic import Field, field_validator

from recsys.config import FrozenModel, load_yaml_model
from registry.desired import Canary, Step

DEFAULT_FILE = Path(__file__).with_name("policy.yaml")


class MetricTest(FrozenModel):
    """One user-response metric compared by the sequential test."""

    # the mixture's spread, as a share of production's value: the size of effect the test
    # is most sensitive to (tau = tau_relative * production's rate)
    tau_relative: float = Field(0.1, gt=0, le=10)
    # the canary fails when it is confidently worse by more than this share of production
    # (0: confidently worse at all)
    max_relative_drop: float = Field(0.0, ge=0, lt=1)
    # promotion also needs the canary shown no worse than this share of production (the
    # always-valid interval's lower bound above -promote_margin * production's rate); None:
    # promotion needs no breach only (the absence of evidence of harm)
    promote_margin: float | None = Field(None, ge=0, lt=1)


class Guardrails(FrozenModel):
    """Hard limits judged as soon as the canary has ``min_requests`` answers (no minimum
    sample of impressions): errors and latency are visible long before user response."""

    min_requests: int = Field(50, ge=1)
    # canary error rate minus production's, absolute, and the fewest errors that count
    max_error_rate_increase: float = Field(0.01, ge=0, le=1)
    min_errors: int = Field(3, ge=1)
    latency_percentile: float = Field(99.0, gt=0, le=100)
    # the canary's percentile may be at most max(ratio * production's, production's + slack)
    max_latency_ratio: float = Field(1.5, ge=1)
    latency_slack_ms: float = Field(20.0, ge=0)


class CanaryPolicy(FrozenModel):
    schedule: tuple[Step, ...] = Field(min_length=1)
    look_seconds: float = Field(60.0, gt=0, description="seconds between two analyses")
    alpha: float = Field(0.05, gt=0, lt=1)
    # impressions each variant needs before click-through and conversion are judged, and
    # before the canary may be promoted (a step ends on time: stepping up is not a verdict)
    min_impressions: int = Field(2_000, ge=1)
    # the last step, still short of the minimum sample after this many times its duration,
    # ends the canary (rolled back: it cannot be judged)
    max_wait_factor: float = Field(4.0, ge=1)
    ctr: MetricTest = MetricTest()
    conversion: MetricTest = MetricTest()
    guardrails: Guardrails = Guardrails()

    @field_validator("schedule")
    @classmethod
    def _increasing(cls, steps: tuple[Step, ...]) -> tuple[Step, ...]:
        Canary.model_validate({"version": "1", "reason": "check", "schedule": steps})
        return steps


def load_policy(path: str | Path | None = None) -> CanaryPolicy:
    return load_yaml_model(path or DEFAULT_FILE, CanaryPolicy)


def parse_steps(text: str) -> tuple[Step, ...]:
    """``5:30,25:60,100:60`` (weight percent : minutes) into a validated schedule."""
    from recsys.errors import RecsysError

    steps = []
    for part in text.split(","):
        weight, sep, minutes = part.strip().partition(":")
        try:
            if not sep:
                raise ValueError
            steps.append(Step(weight=float(weight), minutes=float(minutes)))
        except ValueError:
            raise RecsysError(
                f"--steps: '{part.strip()}' is not WEIGHT:MINUTES with 0 < WEIGHT <= 100 and "
                "MINUTES > 0 (e.g. 5:30,25:60,100:60)"
            ) from None
    try:
        Canary.model_validate({"version": "1", "reason": "steps", "schedule": steps})
    except ValueError:
        weights = [s.weight for s in steps]
        raise RecsysError(f"--steps: weights must increase step by step, got {weights}") from None
    return tuple(steps)

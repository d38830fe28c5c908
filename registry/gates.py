"""The offline gates: is a version, judged on the same window as production, no worse than
production beyond the policy's tolerances, overall and in every segment?

Pure functions over metric dictionaries (``{"overall": {...}, "segments": {name: {...}}}``,
the shape training reports), so the verdicts can be tested exactly on hand-made numbers.
"""

from dataclasses import asdict, dataclass, field

from recsys.metrics import REQUESTS
from registry.policy import MetricCheck, Policy

OVERALL = "overall"
SLACK = 1e-12  # float noise: a value exactly at the limit passes

Metrics = dict[str, dict]


@dataclass(frozen=True)
class Check:
    """One metric in one scope (``overall`` or a segment) of the candidate against production."""

    scope: str
    metric: str
    candidate: float | None
    production: float | None
    tolerance: float  # the drop allowed, in the metric's unit
    passed: bool
    skipped: bool = False
    note: str = ""

    @property
    def difference(self) -> float | None:
        if self.candidate is None or self.production is None:
            return None
        return self.candidate - self.production

    def describe(self) -> str:
        """One line naming the metric, both values and the tolerance."""
        where = "" if self.scope == OVERALL else f"{self.scope} "
        if self.note and (self.candidate is None or self.production is None):
            return f"{where}{self.metric}: {self.note}"
        drop = (self.production or 0.0) - (self.candidate or 0.0)
        return (
            f"{where}{self.metric} {self.candidate:.4f} vs production {self.production:.4f} "
            f"(drop {drop:.4f} > tolerance {self.tolerance:.4f})"
        )


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.passed)

    def to_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "checks": [asdict(check) for check in self.checks],
        }


def _value(values: dict | None, metric: str) -> float | None:
    if not values or metric not in values or values[metric] is None:
        return None
    return float(values[metric])


def _compare(
    scope: str, check: MetricCheck, candidate: float | None, production: float | None
) -> Check:
    if candidate is None or production is None:
        missing = "the candidate" if candidate is None else "production"
        return Check(
            scope,
            check.metric,
            candidate,
            production,
            check.tolerance,
            False,
            note=f"not computed for {missing}",
        )
    drop = check.allowed_drop(production)
    passed = candidate >= production - drop - SLACK
    return Check(scope, check.metric, candidate, production, drop, passed)


def _segment_checks(candidate: Metrics, production: Metrics, policy: Policy) -> list[Check]:
    rules = policy.segments
    cand_segments = candidate.get("segments") or {}
    prod_segments = production.get("segments") or {}
    out = []
    for segment in sorted(set(cand_segments) | set(prod_segments)):
        mine, theirs = cand_segments.get(segment), prod_segments.get(segment)
        for check in rules.checks_for(segment):
            cand_value, prod_value = _value(mine, check.metric), _value(theirs, check.metric)
            sizes = [int((v or {}).get(REQUESTS, 0)) for v in (mine, theirs)]
            if min(sizes) < rules.min_requests:
                out.append(
                    Check(
                        segment,
                        check.metric,
                        cand_value,
                        prod_value,
                        check.tolerance,
                        True,
                        skipped=True,
                        note=f"not judged: {min(sizes)} requests < {rules.min_requests}",
                    )
                )
                continue
            out.append(_compare(segment, check, cand_value, prod_value))
    return out


def judge(
    candidate: Metrics,
    production: Metrics | None,
    policy: Policy,
    candidate_version: str = "candidate",
    production_version: str | None = None,
) -> Verdict:
    """The gate's verdict for ``candidate`` against ``production`` (``None``: there is none)."""
    if production is None:
        return Verdict(
            True,
            f"version {candidate_version} passes: no production version exists yet, "
            "so there is nothing to be worse than",
        )
    checks = [
        _compare(
            OVERALL,
            check,
            _value(candidate.get(OVERALL), check.metric),
            _value(production.get(OVERALL), check.metric),
        )
        for check in policy.overall
    ]
    checks += _segment_checks(candidate, production, policy)
    failures = [check for check in checks if not check.passed]
    against = f"production version {production_version}" if production_version else "production"
    if failures:
        reason = f"version {candidate_version} is refused against {against}: " + "; ".join(
            check.describe() for check in failures
        )
        return Verdict(False, reason, tuple(checks))
    judged = sum(1 for check in checks if not check.skipped)
    return Verdict(
        True,
        f"version {candidate_version} passes against {against}: {judged} checks within tolerance",
        tuple(checks),
    )

"""The promotion gates' policy: which metrics a version must hold against production, on which
window, and how much of a drop is tolerated.

It lives in a YAML file in the repository (``registry/policy.yaml``) so that loosening a gate
is a reviewed change, not a command-line flag. Unknown keys are errors: a misspelt tolerance
must not silently become the default.
"""

from pathlib import Path

from pydantic import Field, field_validator

from recsys import columns as c
from recsys.config import FrozenModel, load_yaml_model
from recsys.errors import RecsysError

DEFAULT_POLICY = Path(__file__).resolve().parent / "policy.yaml"
SEGMENTS = ("new_users", "light_users", "regular_users", "heavy_users", "new_products")


class MetricCheck(FrozenModel):
    """A metric may not fall below production's value minus the tolerance.

    ``tolerance`` is in the metric's own unit (absolute), or a fraction of production's value
    when ``relative`` is true.
    """

    metric: str = Field(min_length=1, description="a metric name as training reports it")
    tolerance: float = Field(0.0, ge=0)
    relative: bool = False

    def allowed_drop(self, production: float) -> float:
        return self.tolerance * abs(production) if self.relative else self.tolerance


class WindowPolicy(FrozenModel):
    """The recent window both versions are judged on: the lake's last ``days``."""

    days: int = Field(14, ge=1, description="the lake's last days (midnight after the last event)")
    requests: int = Field(2_000, ge=10, description="requests drawn from the window")
    seed: int = 7
    target_events: tuple[str, ...] = (c.CART, c.PURCHASE)


class SegmentPolicy(FrozenModel):
    """Per-segment checks: the same for every segment unless a segment has its own list."""

    checks: tuple[MetricCheck, ...] = ()
    per_segment: dict[str, tuple[MetricCheck, ...]] = Field(default_factory=dict)
    min_requests: int = Field(
        20, ge=1, description="a segment with fewer requests (either version) is not judged"
    )

    @field_validator("per_segment")
    @classmethod
    def _known_segments(
        cls, value: dict[str, tuple[MetricCheck, ...]]
    ) -> dict[str, tuple[MetricCheck, ...]]:
        unknown = sorted(set(value) - set(SEGMENTS))
        if unknown:
            raise ValueError(f"unknown segment(s) {unknown}; known: {', '.join(SEGMENTS)}")
        return value

    def checks_for(self, segment: str) -> tuple[MetricCheck, ...]:
        return self.per_segment.get(segment, self.checks)


class Policy(FrozenModel):
    window: WindowPolicy = WindowPolicy()
    overall: tuple[MetricCheck, ...] = (
        MetricCheck(metric="ndcg@10", tolerance=0.005),
        MetricCheck(metric="recall@20", tolerance=0.01),
    )
    segments: SegmentPolicy = SegmentPolicy()

    @property
    def ks(self) -> tuple[int, ...]:
        """The list lengths the evaluation must compute for every checked metric."""
        names = [check.metric for check in self.overall]
        names += [check.metric for check in self.segments.checks]
        names += [check.metric for checks in self.segments.per_segment.values() for check in checks]
        found = {10, 20}
        for name in names:
            if "@" in name and name.rsplit("@", 1)[1].isdigit():
                found.add(int(name.rsplit("@", 1)[1]))
        return tuple(sorted(found))


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy in ``path``; by default ``registry/policy.yaml`` of the working directory
    (the repository), else the one shipped with the package."""
    if path is None:
        local = Path("registry") / "policy.yaml"
        path = local if local.exists() else DEFAULT_POLICY
    try:
        return load_yaml_model(path, Policy)
    except RecsysError as exc:
        raise RecsysError(" ".join(str(exc).split())) from None

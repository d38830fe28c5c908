"""The thresholds that turn a drift report into an alert.

They live in a YAML file in the repository (``monitoring/thresholds.yaml``, or ``--thresholds
FILE``) so that loosening an alert is a reviewed change. Unknown keys are errors: a misspelt
threshold must not silently become the default.

Distances are Evidently's: Jensen-Shannon distance for categorical columns, Wasserstein
distance normed by the reference's standard deviation for numerical ones; a column drifts when
its distance reaches its threshold.
"""

from pathlib import Path

from pydantic import Field

from recsys.config import FrozenModel, load_yaml_model

DEFAULT_THRESHOLDS = Path(__file__).resolve().parent / "thresholds.yaml"


class ColumnSet(FrozenModel):
    """Per-column distance thresholds of one report section, and when the section drifts."""

    default: float = Field(0.1, gt=0, description="threshold of a column not listed below")
    columns: dict[str, float] = Field(default_factory=dict)
    min_drifted: int = Field(
        1, ge=1, description="the section drifts when at least this many columns drift"
    )

    def threshold(self, column: str) -> float:
        return self.columns.get(column, self.default)


class Recommendations(FrozenModel):
    """Limits on the served lists themselves (coverage, popularity bias)."""

    head_share: float = Field(
        0.2, gt=0, lt=1, description="the most popular items' share of the catalogue ('head')"
    )
    max_head_share: float = Field(
        0.9, gt=0, le=1, description="drift when more of the recommended slots are head items"
    )
    min_coverage_ratio: float = Field(
        0.7,
        gt=0,
        description="drift when coverage falls below this fraction of the reference's "
        "(served reference only, on as many requests as the smaller window)",
    )


class Thresholds(FrozenModel):
    features: ColumnSet = ColumnSet()
    predictions: ColumnSet = ColumnSet()
    recommendations: Recommendations = Recommendations()
    min_rows: int = Field(
        200, ge=1, description="a window with fewer rows is an error, not a verdict"
    )
    seed: int = 0


def load_thresholds(path: str | Path | None = None) -> Thresholds:
    """The thresholds file (default: monitoring/thresholds.yaml), validated."""
    return load_yaml_model(path or DEFAULT_THRESHOLDS, Thresholds)

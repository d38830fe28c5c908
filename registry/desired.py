"""The desired state file (``registry/promotions.yaml``): which version is production, which is
canary and at what weights, each with a reason. A pull request edits it; ``recsys registry
plan`` shows what would change, ``recsys registry apply`` makes it so.
"""

from itertools import pairwise
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from recsys.config import FrozenModel, load_yaml_model
from recsys.errors import RecsysError
from registry.store import MODEL_NAME

DEFAULT_FILE = Path("registry") / "promotions.yaml"


def _version(value: object) -> str:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise ValueError(f"a version is a whole number from 1, got {value!r}")
    return str(int(text))


class Target(FrozenModel):
    version: str
    reason: str = Field(min_length=1)

    @field_validator("version", mode="before")
    @classmethod
    def _check_version(cls, value: object) -> str:
        return _version(value)

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a reason is required")
        return value.strip()


class Step(FrozenModel):
    """One step of the canary: its share of traffic (percent) and how long it lasts."""

    weight: float = Field(gt=0, le=100)
    minutes: float = Field(gt=0)


class Canary(Target):
    schedule: tuple[Step, ...] = Field(min_length=1)

    @field_validator("schedule")
    @classmethod
    def _increasing(cls, steps: tuple[Step, ...]) -> tuple[Step, ...]:
        weights = [step.weight for step in steps]
        if any(b <= a for a, b in pairwise(weights)):
            raise ValueError(f"weights must increase step by step, got {weights}")
        return steps

    def schedule_json(self) -> str:
        import json

        return json.dumps([step.model_dump() for step in self.schedule], sort_keys=True)


class Promotions(FrozenModel):
    """``production``: required once the registry has a production version (removing it is
    not a desired state; a rollback names the previous version). ``canary``: absent or null
    means no canary."""

    model: str = MODEL_NAME
    production: Target | None = None
    canary: Canary | None = None

    @model_validator(mode="after")
    def _distinct(self) -> "Promotions":
        if self.production and self.canary and self.production.version == self.canary.version:
            raise ValueError(
                f"version {self.canary.version} cannot be production and canary at once"
            )
        return self


def load_promotions(path: str | Path | None = None) -> Promotions:
    """The desired state in ``path`` (default ``registry/promotions.yaml``); any problem is one
    line naming the file."""
    try:
        return load_yaml_model(path or DEFAULT_FILE, Promotions)
    except RecsysError as exc:
        raise RecsysError(" ".join(str(exc).split())) from None

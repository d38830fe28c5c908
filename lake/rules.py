"""Explicit, configurable cleaning rules: what counts as noise, and when a session ends."""

from pathlib import Path

from pydantic import Field

from recsys.config import FrozenModel, load_yaml_model


class PriceRules(FrozenModel):
    """Prices no real order has: zero, or above a ceiling set per shop."""

    max_price: float = Field(100_000.0, gt=0)
    zero_is_impossible: bool = True


class ResellerRules(FrozenModel):
    """Bulk resellers buy like a warehouse, not a person: their events teach the model nothing."""

    max_quantity: int = Field(20, ge=1)
    max_purchases_per_day: int = Field(20, ge=1)


class IngestRules(FrozenModel):
    """Every rule ingestion applies besides type checks; defaults suit the generated shop."""

    test_account_pattern: str = r"^(test|qa)[-_]"
    price: PriceRules = PriceRules()
    reseller: ResellerRules = ResellerRules()
    max_age: int = Field(120, ge=1)
    session_gap_minutes: int = Field(30, ge=1)
    earliest_timestamp: str = "1995-01-01"
    latest_timestamp: str = "2100-01-01"
    deduplicate: bool = True
    # an export whose kept events fall below this share of the current lake's is refused
    # (unless `recsys ingest --replace`): a truncated or header-only export is a broken one
    shrink_limit: float = Field(0.5, ge=0, le=1)


def load_rules(path: str | Path | None) -> IngestRules:
    """The rules in ``path``, or the defaults."""
    return IngestRules() if path is None else load_yaml_model(path, IngestRules)

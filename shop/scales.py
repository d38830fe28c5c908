"""Shop sizes and the fixed simulated period, so every run of one scale is comparable."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.errors import RecsysError

MS_PER_DAY = 86_400_000
FORMATS = ("parquet", "csv")


@dataclass(frozen=True)
class Scale:
    """How big a generated shop is; ``events`` is met exactly by the generator."""

    name: str
    users: int
    products: int
    events: int

    @property
    def user_width(self) -> int:
        return len(str(self.users - 1))

    @property
    def product_width(self) -> int:
        return len(str(self.products - 1))


SCALES: dict[str, Scale] = {
    "tiny": Scale("tiny", users=2_000, products=500, events=20_000),
    "small": Scale("small", users=20_000, products=5_000, events=200_000),
    "full": Scale("full", users=200_000, products=50_000, events=2_000_000),
}


@dataclass(frozen=True)
class Period:
    """The simulated year, as epoch milliseconds (UTC); ``end`` is exclusive."""

    start_ms: int
    end_ms: int
    shift_ms: int

    @property
    def days(self) -> int:
        return (self.end_ms - self.start_ms) // MS_PER_DAY


def _ms(iso: str) -> int:
    return int(np.datetime64(iso, "ms").astype(np.int64))


DEFAULT_PERIOD = Period(
    start_ms=_ms("2025-04-01T00:00:00"),
    end_ms=_ms("2026-04-01T00:00:00"),
    shift_ms=_ms("2026-02-01T00:00:00"),
)


def resolve_scale(name: str) -> Scale:
    """Look a scale up by name, or say which names exist."""
    try:
        return SCALES[name]
    except KeyError:
        raise RecsysError(f"unknown scale {name!r}; allowed: {', '.join(SCALES)}") from None


def check_format(fmt: str) -> str:
    """Accept only the formats the data contract allows."""
    if fmt not in FORMATS:
        raise RecsysError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    return fmt

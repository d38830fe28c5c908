"""The shop's category tree, brands and seasonal profiles, read from ``taxonomy.yaml``.

The tree is data, not code, so that what the shop sells can be read and changed in one place.
It is parsed lazily (and once) into frozen dataclasses; nothing happens at import time.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from importlib import resources

import yaml

from recsys.columns import CATEGORY_SEPARATOR
from recsys.errors import RecsysError

logger = logging.getLogger(__name__)

MONTHS = 12


@dataclass(frozen=True)
class Brand:
    """A brand sells in one department; its tier moves prices, its quality moves popularity."""

    name: str
    department: int
    price_factor: float
    quality: float


@dataclass(frozen=True)
class Leaf:
    """A leaf category: the level at which products, intents and follow-ups live."""

    index: int
    name: str
    department: int
    path: str
    price: float
    words: tuple[str, ...]
    attributes: tuple[tuple[str, float], ...]
    skin: bool
    repurchase_days: int | None
    season: str | None
    follow_ups: tuple[int, ...]

    @property
    def consumable(self) -> bool:
        return self.repurchase_days is not None


@dataclass(frozen=True)
class Department:
    """A top-level department with its brands, vocabulary and share of the shop."""

    index: int
    name: str
    weight: float
    adjectives: tuple[str, ...]
    phrases: tuple[str, ...]
    leaves: tuple[int, ...]
    brands: tuple[int, ...]


@dataclass(frozen=True)
class Shift:
    """The late change of taste: which leaves gain or lose share, by how much, how fast."""

    trending: tuple[int, ...]
    declining: tuple[int, ...]
    gain: float
    loss: float
    ramp_days: float


@dataclass(frozen=True)
class Taxonomy:
    """Everything the generator needs to know about what the shop sells."""

    departments: tuple[Department, ...]
    leaves: tuple[Leaf, ...]
    brands: tuple[Brand, ...]
    seasons: dict[str, tuple[float, ...]]
    shift: Shift
    avoidable: tuple[str, ...]
    skin_types: tuple[str, ...]
    concerns: tuple[str, ...]

    def leaf_by_name(self, name: str) -> Leaf:
        for leaf in self.leaves:
            if leaf.name == name:
                return leaf
        raise RecsysError(f"taxonomy: unknown leaf category {name!r}")


def _pairs(raw: list | None) -> tuple[tuple[str, float], ...]:
    return tuple((str(token), float(p)) for token, p in (raw or []))


@functools.cache
def load_taxonomy() -> Taxonomy:
    """Parse the packaged taxonomy once; later calls return the same frozen object."""
    text = resources.files("shop").joinpath("taxonomy.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    tiers = {str(k): float(v) for k, v in raw["tiers"].items()}
    departments: list[Department] = []
    leaves: list[Leaf] = []
    brands: list[Brand] = []
    pending_follow: list[tuple[str, ...]] = []
    for d_index, dept in enumerate(raw["departments"]):
        dept_attrs = _pairs(dept.get("attributes"))
        brand_ids = []
        for name, tier, quality in dept["brands"]:
            brand_ids.append(len(brands))
            brands.append(Brand(str(name), d_index, tiers[tier], float(quality)))
        leaf_ids = []
        for sub in dept["subcategories"]:
            sub_attrs = _pairs(sub.get("attributes"))
            for item in sub["leaves"]:
                leaf_ids.append(len(leaves))
                path = CATEGORY_SEPARATOR.join((dept["name"], sub["name"], item["name"]))
                season = item.get("season")
                if season is not None and season not in raw["seasons"]:
                    raise RecsysError(f"taxonomy: {path}: unknown season {season!r}")
                leaves.append(
                    Leaf(
                        index=len(leaves),
                        name=str(item["name"]),
                        department=d_index,
                        path=path,
                        price=float(item["price"]),
                        words=tuple(item["words"]),
                        attributes=dept_attrs + sub_attrs + _pairs(item.get("attributes")),
                        skin=bool(sub.get("skin", False)),
                        repurchase_days=item.get("consumable"),
                        season=season,
                        follow_ups=(),
                    )
                )
                pending_follow.append(tuple(item.get("follow", ())))
        departments.append(
            Department(
                index=d_index,
                name=str(dept["name"]),
                weight=float(dept["weight"]),
                adjectives=tuple(dept["adjectives"]),
                phrases=tuple(dept["phrases"]),
                leaves=tuple(leaf_ids),
                brands=tuple(brand_ids),
            )
        )
    by_name = {leaf.name: leaf.index for leaf in leaves}
    if len(by_name) != len(leaves):
        raise RecsysError("taxonomy: leaf names must be unique")

    def resolve(names: tuple[str, ...] | list[str]) -> tuple[int, ...]:
        missing = [n for n in names if n not in by_name]
        if missing:
            raise RecsysError(f"taxonomy: unknown leaf categories {missing}")
        return tuple(by_name[n] for n in names)

    leaves = [
        Leaf(**{**leaf.__dict__, "follow_ups": resolve(follow)})
        for leaf, follow in zip(leaves, pending_follow, strict=True)
    ]
    shift_raw = raw["shift"]
    shift = Shift(
        trending=resolve(shift_raw["trending"]),
        declining=resolve(shift_raw["declining"]),
        gain=float(shift_raw["gain"]),
        loss=float(shift_raw["loss"]),
        ramp_days=float(shift_raw["ramp_days"]),
    )
    seasons = {str(k): tuple(float(x) for x in v) for k, v in raw["seasons"].items()}
    if any(len(v) != MONTHS for v in seasons.values()):
        raise RecsysError("taxonomy: every season profile needs 12 monthly multipliers")
    logger.debug(
        "taxonomy: %d departments, %d leaves, %d brands", len(departments), len(leaves), len(brands)
    )
    return Taxonomy(
        departments=tuple(departments),
        leaves=tuple(leaves),
        brands=tuple(brands),
        seasons=seasons,
        shift=shift,
        avoidable=tuple(raw["avoidable"]),
        skin_types=tuple(raw["skin_types"]),
        concerns=tuple(raw["concerns"]),
    )

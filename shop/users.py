"""Shoppers: demographics, and the hidden tastes the recommender is supposed to recover.

Tastes are built from a segment centroid (age band x gender x country) plus individual noise,
so demographics carry real signal about what a user buys, without fully determining it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from shop.catalogue import EMBEDDING_DIM
from shop.scales import MS_PER_DAY, Period
from shop.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

GENDERS = ("F", "M", "X")
GENDER_WEIGHTS = (0.49, 0.48, 0.03)
COUNTRIES = ("GB", "DE", "FR", "ES", "IT", "NL", "SE", "PL")
COUNTRY_WEIGHTS = (0.24, 0.22, 0.17, 0.11, 0.1, 0.06, 0.04, 0.06)
DEVICES = ("mobile", "desktop", "tablet")
AGE_BANDS = (18, 25, 35, 45, 55)  # lower bounds
AGE_BAND_NAMES = ("18-24", "25-34", "35-44", "45-54", "55+")
AVOIDER_SHARE = 0.35
DECLARED_SHARE = 0.60
BEAUTY_SHOPPER_SHARE = 0.1  # share of Beauty in a user's preferences that makes them one
BEAUTY_TOKENS = ("parabens", "sulfates", "fragrance", "alcohol", "silicones")

# Hand-set department tilts (log scale), so the demographic signal is plausible, not random.
_AGE_TILT = {
    "Electronics": (0.5, 0.3, 0.0, -0.2, -0.4),
    "Fashion": (0.5, 0.3, 0.0, -0.2, -0.4),
    "Beauty": (0.4, 0.3, 0.1, 0.0, -0.2),
    "Toys & Games": (-0.6, 0.2, 0.5, 0.1, 0.0),
    "Baby": (-0.8, 0.6, 0.4, -0.4, -0.8),
    "Garden": (-0.8, -0.4, 0.1, 0.4, 0.7),
    "Home & Kitchen": (-0.4, 0.0, 0.2, 0.3, 0.3),
    "Books": (0.0, -0.1, 0.0, 0.2, 0.4),
    "Health": (-0.2, -0.1, 0.0, 0.2, 0.5),
    "Sports & Outdoors": (0.3, 0.3, 0.1, -0.1, -0.4),
}
_GENDER_TILT = {
    "Beauty": (0.8, -0.9, 0.2),
    "Fashion": (0.3, -0.2, 0.2),
    "Electronics": (-0.4, 0.5, 0.1),
    "Sports & Outdoors": (-0.2, 0.4, 0.0),
    "Baby": (0.3, -0.3, 0.0),
}


@dataclass(frozen=True)
class Population:
    """The clean shoppers, as arrays indexed by user number."""

    age: np.ndarray  # int32
    gender: np.ndarray  # int8 into GENDERS
    country: np.ndarray  # int8 into COUNTRIES
    signup_ms: np.ndarray  # int64
    segment: np.ndarray  # int16 (age band, gender, country)
    preference: np.ndarray  # float32 (n, n_leaves), rows sum to 1
    taste: np.ndarray  # float32 (n, EMBEDDING_DIM)
    price_sensitivity: np.ndarray  # float32
    activity: np.ndarray  # float32, long-tailed
    skin_type: np.ndarray  # int8 into Taxonomy.skin_types, -1 if not a Beauty shopper
    avoid_mask: np.ndarray  # int32 bits over Taxonomy.avoidable (all avoided tokens)
    declares: np.ndarray  # bool: the user told the shop what they avoid
    device: np.ndarray  # int8 into DEVICES, preferred device

    @property
    def size(self) -> int:
        return len(self.age)


def segment_name(segment: int) -> str:
    band, rest = divmod(int(segment), len(GENDERS) * len(COUNTRIES))
    gender, country = divmod(rest, len(COUNTRIES))
    return f"{AGE_BAND_NAMES[band]}|{GENDERS[gender]}|{COUNTRIES[country]}"


def _department_tilts(tax: Taxonomy) -> tuple[np.ndarray, np.ndarray]:
    n_dept = len(tax.departments)
    age = np.zeros((len(AGE_BANDS), n_dept))
    gender = np.zeros((len(GENDERS), n_dept))
    for d in tax.departments:
        age[:, d.index] = _AGE_TILT.get(d.name, (0.0,) * len(AGE_BANDS))
        gender[:, d.index] = _GENDER_TILT.get(d.name, (0.0,) * len(GENDERS))
    return age, gender


def build_population(rng: np.random.Generator, tax: Taxonomy, n: int, period: Period) -> Population:
    """Draw ``n`` shoppers with demographics, signup dates and hidden tastes."""
    n_leaves, n_dept = len(tax.leaves), len(tax.departments)
    age = np.clip(np.round(rng.gamma(5.0, 7.5, n) + 16), 18, 85).astype(np.int32)
    gender = rng.choice(len(GENDERS), n, p=GENDER_WEIGHTS).astype(np.int8)
    country = rng.choice(len(COUNTRIES), n, p=COUNTRY_WEIGHTS).astype(np.int8)
    band = np.searchsorted(AGE_BANDS, age, side="right") - 1
    segment = ((band * len(GENDERS) + gender) * len(COUNTRIES) + country).astype(np.int16)
    n_segments = len(AGE_BANDS) * len(GENDERS) * len(COUNTRIES)

    # category preferences: department level, then leaf level, each segment + individual
    leaf_dept = np.array([lf.department for lf in tax.leaves])
    age_tilt, gender_tilt = _department_tilts(tax)
    # a department's share follows its weight, however many leaves it is split into
    dept_base = np.log([d.weight / len(d.leaves) for d in tax.departments])
    country_tilt = rng.normal(0.0, 0.2, (len(COUNTRIES), n_dept))
    seg_dept = rng.normal(0.0, 0.3, (n_segments, n_dept))
    seg_leaf = rng.normal(0.0, 0.4, (n_segments, n_leaves))
    dept_logit = (
        dept_base
        + age_tilt[band]
        + gender_tilt[gender]
        + country_tilt[country]
        + seg_dept[segment]
        + rng.normal(0.0, 0.9, (n, n_dept))
    )
    logit = (
        dept_logit[:, leaf_dept] + seg_leaf[segment] + rng.normal(0.0, 0.7, (n, n_leaves))
    ).astype(np.float32)
    logit -= logit.max(axis=1, keepdims=True)
    preference = np.exp(logit)
    preference /= preference.sum(axis=1, keepdims=True)

    seg_taste = rng.normal(0.0, 0.25, (n_segments, EMBEDDING_DIM))
    taste = (seg_taste[segment] + rng.normal(0.0, 0.35, (n, EMBEDDING_DIM))).astype(np.float32)
    price_sensitivity = np.clip(
        1.3 - 0.018 * (age - 18) + rng.normal(0.0, 0.3, n), 0.1, 2.5
    ).astype(np.float32)
    activity = rng.lognormal(0.0, 1.0, n).astype(np.float32)

    start_ms, span = period.start_ms, period.end_ms - period.start_ms
    before = rng.random(n) < 0.35
    signup_ms = np.where(
        before,
        start_ms - (rng.random(n) * 3 * 365 * MS_PER_DAY).astype(np.int64),
        start_ms + (rng.random(n) * span).astype(np.int64),
    )

    beauty = [d.index for d in tax.departments if d.name == "Beauty"]
    beauty_share = preference[:, leaf_dept == beauty[0]].sum(axis=1) if beauty else np.zeros(n)
    skin_type = np.where(
        beauty_share >= BEAUTY_SHOPPER_SHARE,
        rng.choice(len(tax.skin_types), n, p=[0.22, 0.22, 0.26, 0.18, 0.12]),
        -1,
    ).astype(np.int8)

    # avoided tokens: Beauty shoppers lean to cosmetic ingredients, everyone to food/material
    base = np.array([2.0 if t in BEAUTY_TOKENS else 1.0 for t in tax.avoidable])
    weights = np.tile(base, (n, 1))
    weights[:, [tax.avoidable.index(t) for t in BEAUTY_TOKENS]] *= np.where(
        skin_type >= 0, 2.0, 0.3
    )[:, None]
    keys = np.log(weights) + rng.gumbel(size=weights.shape)
    ranked = np.argsort(-keys, axis=1)
    n_avoid = np.where(rng.random(n) < AVOIDER_SHARE, rng.choice([1, 2], n, p=[0.7, 0.3]), 0)
    avoid_mask = np.zeros(n, dtype=np.int32)
    for k in range(2):
        avoid_mask |= np.where(n_avoid > k, 1 << ranked[:, k], 0).astype(np.int32)
    declares = (n_avoid > 0) & (rng.random(n) < DECLARED_SHARE)

    young = age < 35
    device = np.where(
        rng.random(n) < np.where(young, 0.72, 0.5), 0, np.where(rng.random(n) < 0.75, 1, 2)
    ).astype(np.int8)
    logger.debug("users: %d, %.1f%% avoid something", n, 100 * (n_avoid > 0).mean())
    return Population(
        age=age,
        gender=gender,
        country=country,
        signup_ms=signup_ms,
        segment=segment,
        preference=preference,
        taste=taste,
        price_sensitivity=price_sensitivity,
        activity=activity,
        skin_type=skin_type,
        avoid_mask=avoid_mask,
        declares=declares,
        device=device,
    )

"""Arrow tables for the data contract (events, products, users) and for the ground truth.

Column names come from ``recsys.columns`` so the generator cannot drift from ingestion.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from recsys import columns as col
from shop.catalogue import Catalogue
from shop.events import EventBlock
from shop.noise import NoiseUsers
from shop.taxonomy import Taxonomy
from shop.users import COUNTRIES, DEVICES, GENDERS, Population, segment_name
from shop.writer import float_lists, take_strings, timestamps

EVENT_TYPE_NAMES = (col.VIEW, col.CART, col.PURCHASE)  # order of the integer codes


def _mask_tokens(tax: Taxonomy, mask: np.ndarray) -> list[list[str]]:
    """Bit masks over the avoidable tokens, as token lists (empty where no bit is set)."""
    out: list[list[str]] = [[] for _ in range(len(mask))]
    for bit, token in enumerate(tax.avoidable):
        for i in np.flatnonzero(mask & (1 << bit)):
            out[i].append(token)
    return out


def events_table(
    events: EventBlock, user_ids: list[str], item_ids: list[str], session_ids: list[str]
) -> pa.Table:
    return pa.table(
        {
            col.USER_ID: take_strings(user_ids, events.user),
            col.ITEM_ID: take_strings(item_ids, events.item),
            col.EVENT_TYPE: take_strings(EVENT_TYPE_NAMES, events.etype),
            col.TIMESTAMP: timestamps(events.ts),
            col.SESSION_ID: take_strings(session_ids, events.session),
            col.PRICE: pa.array(events.price, type=pa.float64()),
            col.QUANTITY: pa.array(events.quantity, type=pa.int32()),
            col.DEVICE: take_strings(DEVICES, events.device),
            col.COUNTRY: take_strings(COUNTRIES, events.country),
        }
    )


def products_table(tax: Taxonomy, cat: Catalogue, item_ids: list[str]) -> pa.Table:
    return pa.table(
        {
            col.ITEM_ID: pa.array(item_ids, type=pa.string()),
            col.TITLE: pa.array(cat.titles, type=pa.string()),
            col.DESCRIPTION: pa.array(cat.descriptions, type=pa.string()),
            col.CATEGORY: take_strings([leaf.path for leaf in tax.leaves], cat.leaf),
            col.BRAND: take_strings([b.name for b in tax.brands], cat.brand),
            col.PRICE: pa.array(cat.price, type=pa.float64()),
            col.ATTRIBUTES: pa.array(cat.attributes, type=pa.string()),
            col.CREATED_AT: timestamps(cat.created_ms),
            col.IN_STOCK: pa.array(cat.in_stock, type=pa.bool_()),
        }
    )


def users_table(tax: Taxonomy, pop: Population, noise: NoiseUsers, user_ids: list[str]) -> pa.Table:
    """Clean users, then resellers (ordinary-looking), then test accounts (no profile)."""
    n_resellers, n_tests = len(noise.reseller_index), len(noise.test_ids)
    n_noise = n_resellers + n_tests
    skin = [tax.skin_types[s] if s >= 0 else None for s in pop.skin_type]
    declared = np.where(pop.declares, pop.avoid_mask, 0)
    avoid = [col.ATTRIBUTE_SEPARATOR.join(t) if t else None for t in _mask_tokens(tax, declared)]
    is_test = np.arange(n_noise) >= n_resellers
    return pa.table(
        {
            col.USER_ID: pa.array(user_ids, type=pa.string()),
            col.SIGNUP_AT: timestamps(np.concatenate([pop.signup_ms, noise.signup_ms])),
            col.AGE: pa.array(
                np.concatenate([pop.age, noise.age]),
                type=pa.int32(),
                mask=np.concatenate([np.zeros(pop.size, dtype=bool), is_test]),
            ),
            col.GENDER: pa.array(
                [GENDERS[g] for g in pop.gender]
                + [None if t else GENDERS[g] for g, t in zip(noise.gender, is_test, strict=True)],
                type=pa.string(),
            ),
            col.COUNTRY: take_strings(COUNTRIES, np.concatenate([pop.country, noise.country])),
            col.SKIN_TYPE: pa.array(skin + [None] * n_noise, type=pa.string()),
            col.AVOID_ATTRIBUTES: pa.array(avoid + [None] * n_noise, type=pa.string()),
        }
    )


def ground_truth_users(tax: Taxonomy, pop: Population, user_ids: list[str]) -> pa.Table:
    """Hidden tastes of the clean users; ``category_preference`` follows shop.json categories."""
    tokens = _mask_tokens(tax, pop.avoid_mask)
    return pa.table(
        {
            col.USER_ID: pa.array(user_ids[: pop.size], type=pa.string()),
            "category_preference": float_lists(pop.preference),
            "taste": float_lists(pop.taste),
            "price_sensitivity": pa.array(pop.price_sensitivity, type=pa.float32()),
            "activity": pa.array(pop.activity, type=pa.float32()),
            col.AVOID_ATTRIBUTES: pa.array(tokens, type=pa.list_(pa.string())),
            "declares_avoid": pa.array(pop.declares, type=pa.bool_()),
            col.SKIN_TYPE: pa.array(
                [tax.skin_types[s] if s >= 0 else None for s in pop.skin_type], type=pa.string()
            ),
            "segment": pa.array(
                [segment_name(s) for s in range(int(pop.segment.max()) + 1)], type=pa.string()
            ).take(pa.array(pop.segment, type=pa.int64())),
        }
    )


def ground_truth_products(tax: Taxonomy, cat: Catalogue, item_ids: list[str]) -> pa.Table:
    return pa.table(
        {
            col.ITEM_ID: pa.array(item_ids, type=pa.string()),
            col.CATEGORY: take_strings([leaf.path for leaf in tax.leaves], cat.leaf),
            "embedding": float_lists(cat.embedding),
            "popularity": pa.array(cat.popularity, type=pa.float64()),
            "is_new": pa.array(cat.is_new, type=pa.bool_()),
        }
    )

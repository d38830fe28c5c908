"""Feature views: what each offline table means, and which of it is served online.

TTL 0 (no expiry) is right for every view: the snapshot tables emit a row whenever a windowed
value changes, including when it falls back to zero, so the latest row is always current.
"""

from datetime import timedelta

from entities import category, item, user
from feast import FeatureView, Field
from feast.types import Float64, Int64, String
from sources import (
    product_activity_source,
    product_catalog_source,
    session_push,
    user_activity_source,
    user_category_source,
    user_profile_source,
)

from features import names as n

FOREVER = timedelta(0)


def _counts(prefixes: tuple[str, ...], windows: tuple[int, ...]) -> list[Field]:
    return [Field(name=f"{p}_{w}d", dtype=Int64) for p in prefixes for w in windows]


user_activity = FeatureView(
    name=n.USER_ACTIVITY,
    entities=[user],
    ttl=FOREVER,
    schema=[
        *_counts(("views", "carts", "purchases"), n.USER_WINDOWS),
        Field(name="views_total", dtype=Int64),
        Field(name="carts_total", dtype=Int64),
        Field(name="purchases_total", dtype=Int64),
        Field(name="last_event_epoch", dtype=Int64),
        Field(name="first_purchase_epoch", dtype=Int64),
        Field(name="last_purchase_epoch", dtype=Int64),
        Field(name="avg_days_between_purchases", dtype=Float64),
        Field(name="mean_price", dtype=Float64),
        Field(name="price_std", dtype=Float64),
        Field(name="min_price", dtype=Float64),
        Field(name="max_price", dtype=Float64),
        Field(name="favourite_category", dtype=String),
        Field(name="favourite_brand", dtype=String),
    ],
    source=user_activity_source,
    description="A user's activity before each day: counts per window, recency, habits.",
)

user_profile = FeatureView(
    name=n.USER_PROFILE,
    entities=[user],
    ttl=FOREVER,
    schema=[
        Field(name="age", dtype=Int64),
        Field(name="gender", dtype=String),
        Field(name="country", dtype=String),
        Field(name="region", dtype=String),
        Field(name="skin_type", dtype=String),
        Field(name="avoid_attributes", dtype=String),
    ],
    source=user_profile_source,
    description="Demographics and declared preferences, from sign-up on.",
)

product_activity = FeatureView(
    name=n.PRODUCT_ACTIVITY,
    entities=[item],
    ttl=FOREVER,
    schema=[
        *_counts(("views", "carts", "purchases"), n.PRODUCT_WINDOWS),
        Field(name="views_total", dtype=Int64),
        Field(name="purchases_total", dtype=Int64),
        Field(name="trend", dtype=Float64),
        Field(name="conversion_rate", dtype=Float64),
    ],
    source=product_activity_source,
    description="A product's popularity before each day, its trend and conversion.",
)

product_catalog = FeatureView(
    name=n.PRODUCT_CATALOG,
    entities=[item],
    ttl=FOREVER,
    schema=[
        Field(name="created_epoch", dtype=Int64),
        Field(name="price", dtype=Float64),
        Field(name="category", dtype=String),
        Field(name="brand", dtype=String),
        Field(name="attributes", dtype=String),
        Field(name="in_stock", dtype=Int64),
    ],
    source=product_catalog_source,
    description="Catalogue facts, known from the product's launch on.",
)

user_category_affinity = FeatureView(
    name=n.USER_CATEGORY,
    entities=[user, category],
    ttl=FOREVER,
    schema=[
        *[Field(name=f"affinity_{w}d", dtype=Float64) for w in n.AFFINITY_WINDOWS],
        Field(name="affinity_total", dtype=Float64),
        Field(name="share_total", dtype=Float64),
    ],
    source=user_category_source,
    description="Weighted interest (view 1, cart 3, purchase 5) of a user in a category.",
)

session_activity = FeatureView(
    name=n.SESSION,
    entities=[user],
    ttl=FOREVER,
    schema=[
        Field(name="session_id", dtype=String),
        Field(name="session_events", dtype=Int64),
        Field(name="session_start_epoch", dtype=Int64),
        Field(name="session_last_epoch", dtype=Int64),
        Field(name="session_item_ids", dtype=String),
        Field(name="session_purchases", dtype=Int64),
    ],
    source=session_push,
    description="The user's current session; pushed online by /feedback within a second. "
    "Join it at an instant before a label, so the labelled event is not in it.",
)

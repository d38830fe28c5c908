"""The feature tables, computed from the lake: one function per Feast feature view.

Each returns a frame with the view's join keys, ``event_timestamp`` and its features, and is
the only place that feature is defined; the Feast views in ``feature_repo/`` declare the same
columns (checked by a test), training retrieves them point-in-time, serving reads them online.
"""

import numpy as np
import pandas as pd

from features import names as n
from features.snapshots import DAY, day_number, latest_as_of, running_favourite, windowed
from recsys import columns as c

EVENT_WEIGHTS = {c.VIEW: 1.0, c.CART: 3.0, c.PURCHASE: 5.0}
NO_TIME = pd.Timestamp("1995-01-01", tz="UTC")  # "known since always" for undated rows


def epoch_seconds(timestamps: pd.Series) -> pd.Series:
    return (timestamps.astype("int64") // 10**9).astype("int64")


def _with_days(events: pd.DataFrame) -> pd.DataFrame:
    out = events.copy()
    if c.PRICE not in out.columns:
        out[c.PRICE] = np.nan
    out[DAY] = day_number(out[c.TIMESTAMP])
    out["_epoch"] = epoch_seconds(out[c.TIMESTAMP])
    for kind, column in ((c.VIEW, "views"), (c.CART, "carts"), (c.PURCHASE, "purchases")):
        out[column] = (out[c.EVENT_TYPE] == kind).astype("int64")
    out["weight"] = out[c.EVENT_TYPE].map(EVENT_WEIGHTS).astype("float64")
    return out


def user_activity(events: pd.DataFrame, products: pd.DataFrame, last_day: int) -> pd.DataFrame:
    """Counts per event type over windows, recency, purchase rhythm, favourites, price habits."""
    ev = _with_days(events)
    price = ev[c.PRICE]
    ev["price_n"] = price.notna().astype("int64")
    ev["price_sum"] = price.fillna(0.0)
    ev["price_sq"] = price.fillna(0.0) ** 2
    ev["purchase_epoch"] = ev["_epoch"].where(ev["purchases"] == 1)
    daily = (
        ev.groupby([c.USER_ID, DAY], sort=False)
        .agg(
            views=("views", "sum"),
            carts=("carts", "sum"),
            purchases=("purchases", "sum"),
            price_n=("price_n", "sum"),
            price_sum=("price_sum", "sum"),
            price_sq=("price_sq", "sum"),
            last_event_epoch=("_epoch", "max"),
            min_price=(c.PRICE, "min"),
            max_price=(c.PRICE, "max"),
            first_purchase_epoch=("purchase_epoch", "min"),
            last_purchase_epoch=("purchase_epoch", "max"),
        )
        .reset_index()
    )
    counts = ["views", "carts", "purchases"]
    out = windowed(
        daily, [c.USER_ID], [*counts, "price_n", "price_sum", "price_sq"], n.USER_WINDOWS, last_day
    )
    facts = daily.sort_values([c.USER_ID, DAY]).reset_index(drop=True)
    by_user = facts.groupby(c.USER_ID, sort=False)
    facts["last_event_epoch"] = by_user["last_event_epoch"].cummax()
    facts["min_price"] = by_user["min_price"].cummin()
    facts["max_price"] = by_user["max_price"].cummax()
    facts["first_purchase_epoch"] = by_user["first_purchase_epoch"].cummin()
    facts["last_purchase_epoch"] = by_user["last_purchase_epoch"].cummax()
    fact_cols = [
        "last_event_epoch",
        "min_price",
        "max_price",
        "first_purchase_epoch",
        "last_purchase_epoch",
    ]
    # a running min/max leaves days without a value empty: carry the last one forward
    facts[fact_cols] = facts.groupby(c.USER_ID, sort=False)[fact_cols].ffill()
    known = latest_as_of(out, facts, [c.USER_ID], fact_cols)
    for col in fact_cols:
        out[col] = known[col].to_numpy()
    n_priced = out["price_n_total"].where(out["price_n_total"] > 0)
    mean = out["price_sum_total"] / n_priced
    out["mean_price"] = mean
    out["price_std"] = np.sqrt(np.maximum(out["price_sq_total"] / n_priced - mean**2, 0.0))
    gaps = out["purchases_total"] - 1
    out["avg_days_between_purchases"] = (
        (out["last_purchase_epoch"] - out["first_purchase_epoch"]) / 86_400 / gaps.where(gaps > 0)
    )
    for col in ("last_event_epoch", "first_purchase_epoch", "last_purchase_epoch"):
        out[col] = out[col].astype("Int64")
    catalogue = products.set_index(c.ITEM_ID) if len(products) else None
    for attr, column in ((c.CATEGORY, "favourite_category"), (c.BRAND, "favourite_brand")):
        out[column] = _favourite(ev, catalogue, attr, out)
    keep = [
        c.USER_ID,
        n.EVENT_TIMESTAMP,
        *[f"{k}_{w}d" for k in counts for w in n.USER_WINDOWS],
        *[f"{k}_total" for k in counts],
        "last_event_epoch",
        "first_purchase_epoch",
        "last_purchase_epoch",
        "avg_days_between_purchases",
        "mean_price",
        "price_std",
        "min_price",
        "max_price",
        "favourite_category",
        "favourite_brand",
    ]
    return _finish(out[keep], [c.USER_ID])


def _favourite(
    ev: pd.DataFrame, catalogue: pd.DataFrame | None, attr: str, snaps: pd.DataFrame
) -> pd.Series:
    if catalogue is None or attr not in catalogue.columns:
        return pd.Series(pd.NA, index=snaps.index, dtype="string")
    rows = ev[[c.USER_ID, DAY, "weight"]].assign(**{attr: ev[c.ITEM_ID].map(catalogue[attr])})
    rows = rows.dropna(subset=[attr])
    rows = rows.groupby([c.USER_ID, DAY, attr], sort=False)["weight"].sum().reset_index()
    leaders = running_favourite(rows, c.USER_ID, attr, "weight")
    return latest_as_of(snaps, leaders, [c.USER_ID], [attr])[attr].astype("string").to_numpy()


def product_activity(events: pd.DataFrame, last_day: int) -> pd.DataFrame:
    """Popularity per event type over windows, its trend, and conversion."""
    ev = _with_days(events)
    daily = ev.groupby([c.ITEM_ID, DAY], sort=False)[["views", "carts", "purchases"]].sum()
    out = windowed(
        daily.reset_index(),
        [c.ITEM_ID],
        ["views", "carts", "purchases"],
        n.PRODUCT_WINDOWS,
        last_day,
    )
    short, long = n.PRODUCT_WINDOWS[0], n.PRODUCT_WINDOWS[-1]
    # views per day in the short window over the long one, smoothed so new items are not inf
    out["trend"] = ((out[f"views_{short}d"] + 1) / short) / ((out[f"views_{long}d"] + 1) / long)
    out["conversion_rate"] = out[f"purchases_{long}d"] / out[f"views_{long}d"].clip(lower=1)
    counts = [f"{k}_{w}d" for k in ("views", "carts", "purchases") for w in n.PRODUCT_WINDOWS]
    keep = [
        c.ITEM_ID,
        n.EVENT_TIMESTAMP,
        *counts,
        "views_total",
        "purchases_total",
        "trend",
        "conversion_rate",
    ]
    return _finish(out[keep], [c.ITEM_ID])


def product_catalog(products: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Price, category, brand, attributes, stock and launch, known from the product's launch on.

    Without a products table, every item seen in the events gets its median event price and
    its first event as launch, so a shop with only an event log still has these features.
    """
    seen = events.groupby(c.ITEM_ID).agg(
        first_seen=(c.TIMESTAMP, "min"),
        event_price=(c.PRICE, "median") if c.PRICE in events else (c.TIMESTAMP, "size"),
    )
    if c.PRICE not in events:
        seen["event_price"] = np.nan
    base = products.set_index(c.ITEM_ID) if len(products) else pd.DataFrame(index=seen.index)
    index = base.index.union(seen.index)
    base, seen = base.reindex(index), seen.reindex(index)
    out = pd.DataFrame({c.ITEM_ID: index.astype("string")})
    created = (
        base[c.CREATED_AT]
        if c.CREATED_AT in base
        else pd.Series(pd.NaT, index=index, dtype="datetime64[ns, UTC]")
    )
    created = created.fillna(seen["first_seen"]).fillna(NO_TIME)
    out[n.EVENT_TIMESTAMP] = created.to_numpy()
    out["created_epoch"] = epoch_seconds(created).to_numpy()
    price = base[c.PRICE] if c.PRICE in base else pd.Series(np.nan, index=index)
    out["price"] = price.fillna(seen["event_price"]).astype("float64").to_numpy()
    for col in (c.CATEGORY, c.BRAND, c.ATTRIBUTES):
        values = base[col] if col in base else pd.Series(pd.NA, index=index)
        out[col] = values.astype("string").to_numpy()
    stock = base[c.IN_STOCK] if c.IN_STOCK in base else pd.Series(pd.NA, index=index)
    out["in_stock"] = stock.astype("boolean").fillna(True).astype("int64").to_numpy()
    return _finish(out, [c.ITEM_ID])


def user_profile(users: pd.DataFrame) -> pd.DataFrame:
    """Demographics and declared preferences, known from sign-up on."""
    columns = [c.AGE, c.GENDER, c.COUNTRY, c.REGION, c.SKIN_TYPE, c.AVOID_ATTRIBUTES]
    out = (
        pd.DataFrame({c.USER_ID: users[c.USER_ID].astype("string")})
        if len(users)
        else (pd.DataFrame({c.USER_ID: pd.Series(dtype="string")}))
    )
    signup = (
        users[c.SIGNUP_AT]
        if c.SIGNUP_AT in users
        else pd.Series(pd.NaT, index=users.index, dtype="datetime64[ns, UTC]")
    )
    out[n.EVENT_TIMESTAMP] = (
        signup.fillna(NO_TIME).to_numpy() if len(users) else pd.Series(dtype="datetime64[ns, UTC]")
    )
    for col in columns:
        if col == c.AGE:
            values = users[col] if col in users else pd.Series(pd.NA, index=users.index)
            out[col] = values.astype("Int64").to_numpy()
        else:
            values = users[col] if col in users else pd.Series(pd.NA, index=users.index)
            out[col] = values.astype("string").to_numpy()
    return _finish(out, [c.USER_ID])


def user_category_affinity(
    events: pd.DataFrame, products: pd.DataFrame, last_day: int
) -> pd.DataFrame:
    """Weighted interest of a user in a category over windows, and its share of all interest."""
    empty = pd.DataFrame(
        {c.USER_ID: pd.Series(dtype="string"), c.CATEGORY: pd.Series(dtype="string")}
    )
    if not len(products) or c.CATEGORY not in products.columns:
        # no categories, no affinities: an empty table of the view's columns, so Feast's
        # offline and online stores still find every column they declare
        cols = [f"affinity_{w}d" for w in n.AFFINITY_WINDOWS] + ["affinity_total", "share_total"]
        empty = empty.assign(
            **{n.EVENT_TIMESTAMP: pd.Series(dtype="datetime64[ns, UTC]")},
            **{col: pd.Series(dtype="float64") for col in cols},
        )
        return _finish(empty, [c.USER_ID, c.CATEGORY])
    ev = _with_days(events)
    ev[c.CATEGORY] = ev[c.ITEM_ID].map(products.set_index(c.ITEM_ID)[c.CATEGORY])
    ev = ev.dropna(subset=[c.CATEGORY])
    daily = ev.groupby([c.USER_ID, c.CATEGORY, DAY], sort=False)["weight"].sum().reset_index()
    out = windowed(daily, [c.USER_ID, c.CATEGORY], ["weight"], n.AFFINITY_WINDOWS, last_day)
    out = out.rename(
        columns={
            "weight_total": "affinity_total",
            **{f"weight_{w}d": f"affinity_{w}d" for w in n.AFFINITY_WINDOWS},
        }
    )
    per_user = daily.groupby([c.USER_ID, DAY], sort=False)["weight"].sum().reset_index()
    per_user = per_user.sort_values([c.USER_ID, DAY])
    per_user["weight"] = per_user.groupby(c.USER_ID, sort=False)["weight"].cumsum()
    total = latest_as_of(out, per_user, [c.USER_ID], ["weight"])["weight"].to_numpy()
    out["share_total"] = out["affinity_total"] / total
    keep = [
        c.USER_ID,
        c.CATEGORY,
        n.EVENT_TIMESTAMP,
        *[f"affinity_{w}d" for w in n.AFFINITY_WINDOWS],
        "affinity_total",
        "share_total",
    ]
    return _finish(out[keep], [c.USER_ID, c.CATEGORY])


def session_activity(events: pd.DataFrame) -> pd.DataFrame:
    """The state of the user's session after each event: what serving updates on /feedback.

    Rows are stamped with the event's own time; a label at time ``t`` must be joined at an
    instant before ``t`` so that the labelled event is not part of its own session.
    """
    from features.session import SESSION_FIELDS, items_so_far

    ev = events.sort_values([c.USER_ID, c.TIMESTAMP, c.SESSION_ID], kind="stable")
    ev = ev.reset_index(drop=True)
    groups = ev.groupby([c.USER_ID, c.SESSION_ID], sort=False)
    out = pd.DataFrame(
        {c.USER_ID: ev[c.USER_ID].astype("string"), n.EVENT_TIMESTAMP: ev[c.TIMESTAMP]}
    )
    out["session_id"] = ev[c.SESSION_ID].astype("string")
    out["session_events"] = (groups.cumcount() + 1).astype("int64")
    out["session_start_epoch"] = epoch_seconds(groups[c.TIMESTAMP].transform("min"))
    out["session_last_epoch"] = epoch_seconds(ev[c.TIMESTAMP])
    out["session_item_ids"] = items_so_far(ev[c.ITEM_ID], ev[c.USER_ID] + "\x1f" + ev[c.SESSION_ID])
    out["session_purchases"] = (
        (ev[c.EVENT_TYPE] == c.PURCHASE)
        .astype("int64")
        .groupby([ev[c.USER_ID], ev[c.SESSION_ID]], sort=False)
        .cumsum()
        .to_numpy()
    )
    assert list(out.columns[2:]) == list(SESSION_FIELDS)
    out = _finish(out, [c.USER_ID])
    # several events of a user in the same instant: the later one must win the join
    ties = out.groupby([c.USER_ID, n.EVENT_TIMESTAMP], sort=False).cumcount()
    out[n.CREATED] = out[n.EVENT_TIMESTAMP] + pd.to_timedelta(ties, unit="us")
    return out


def _finish(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Stable order and a ``created`` column (Feast's tie-breaker between equal timestamps)."""
    frame = frame.sort_values([n.EVENT_TIMESTAMP, *keys], kind="stable").reset_index(drop=True)
    for key in keys:
        frame[key] = frame[key].astype("string")
    frame[n.CREATED] = frame[n.EVENT_TIMESTAMP]
    return frame

"""The generated shop hides known truths; a model (and these tests) must be able to find them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys import columns as col
from shop.generate import generate_shop

pytestmark = pytest.mark.integration

RESELLER_DAILY_PURCHASES = 25
MAX_CLEAN_QUANTITY = 5
MAX_CLEAN_PRICE = 100_000
IMPOSSIBLE_PRICE = 1_000_000


class Shop:
    """One generated small shop, read back the way a user would, plus its ground truth."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest = json.loads((root / "manifest.json").read_text())
        self.truth = json.loads((root / "ground_truth" / "shop.json").read_text())
        self.raw = pd.read_parquet(root / "events.parquet")
        self.products = pd.read_parquet(root / "products.parquet")
        self.users = pd.read_parquet(root / "users.parquet")
        self.gt_users = pd.read_parquet(root / "ground_truth" / "users.parquet")
        self.gt_products = pd.read_parquet(root / "ground_truth" / "products.parquet")
        self.removed, self.clean = _default_rules(self.raw)
        leaf = self.products.set_index(col.ITEM_ID)[col.CATEGORY]
        self.clean = self.clean.assign(
            category=self.clean[col.ITEM_ID].map(leaf).to_numpy(),
            month=self.clean[col.TIMESTAMP].dt.strftime("%Y-%m"),
        )
        self.purchases = self.clean[self.clean[col.EVENT_TYPE] == col.PURCHASE]


def _default_rules(events: pd.DataFrame) -> tuple[dict[str, int], pd.DataFrame]:
    """The ingestion stage's default rules, re-stated here: each removed row counted once."""
    removed = {}
    test = events[col.USER_ID].str.startswith(("test-", "qa_"))
    removed["test_account"] = int(test.sum())
    events = events[~test]
    impossible = (events[col.PRICE] == 0) | (events[col.PRICE] > IMPOSSIBLE_PRICE)
    removed["impossible_price"] = int(impossible.sum())
    events = events[~impossible]
    negative = events[col.PRICE] < 0
    removed["negative_price"] = int(negative.sum())
    events = events[~negative]
    purchases = events[events[col.EVENT_TYPE] == col.PURCHASE]
    day = purchases[col.TIMESTAMP].dt.floor("D")
    per_day = purchases.groupby([purchases[col.USER_ID], day])[col.ITEM_ID].transform("size")
    bulk = per_day.index[
        (per_day > RESELLER_DAILY_PURCHASES) | (purchases[col.QUANTITY] > MAX_CLEAN_QUANTITY)
    ]
    removed["bulk_reseller"] = len(bulk)
    events = events.drop(index=bulk)
    duplicate = events.duplicated(keep="first")
    removed["duplicate"] = int(duplicate.sum())
    return removed, events[~duplicate].reset_index(drop=True)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    root = tmp_path_factory.mktemp("shop_small")
    generate_shop(root, scale="small", seed=7)
    return Shop(root)


def _tokens(series: pd.Series) -> pd.Series:
    return (
        series.fillna("")
        .str.split(col.ATTRIBUTE_SEPARATOR)
        .map(lambda ts: frozenset(t for t in ts if t))
    )


def test_event_total_is_exact_and_noise_counts_match_the_files(shop: Shop) -> None:
    assert len(shop.raw) == shop.manifest["events"] == 200_000
    assert shop.removed == shop.manifest["noise"] == shop.truth["noise"]
    assert len(shop.clean) == shop.manifest["clean_events"]
    assert shop.manifest["noise"]["duplicate"] > 0
    assert shop.manifest["noise"]["bulk_reseller"] > 0
    resellers = shop.raw[shop.raw[col.USER_ID].isin(shop.truth["noise_users"]["bulk_reseller"])]
    assert len(resellers) == shop.manifest["noise"]["bulk_reseller"]
    assert resellers[col.QUANTITY].between(25, 200).all()


def test_clean_rows_never_trip_the_default_rules(shop: Shop) -> None:
    clean = shop.clean
    assert clean[col.PRICE].gt(0).all() and clean[col.PRICE].lt(MAX_CLEAN_PRICE).all()
    assert clean[col.QUANTITY].between(1, MAX_CLEAN_QUANTITY).all()
    per_day = shop.purchases.groupby(
        [shop.purchases[col.USER_ID], shop.purchases[col.TIMESTAMP].dt.floor("D")]
    ).size()
    assert per_day.max() <= 20
    assert not clean[col.USER_ID].str.startswith(("test-", "qa_")).any()


def test_avoided_attributes_are_never_carted_or_bought_but_are_viewed(shop: Shop) -> None:
    avoid = shop.gt_users.set_index(col.USER_ID)[col.AVOID_ATTRIBUTES].map(frozenset)
    tokens = _tokens(shop.products.set_index(col.ITEM_ID)[col.ATTRIBUTES])
    clean = shop.clean[shop.clean[col.USER_ID].isin(avoid.index)]
    user_avoid = clean[col.USER_ID].map(avoid)
    item_tokens = clean[col.ITEM_ID].map(tokens)
    hit = np.array([bool(a & t) for a, t in zip(user_avoid, item_tokens, strict=True)])
    kinds = clean[col.EVENT_TYPE].to_numpy()
    assert hit[kinds == col.VIEW].sum() > 100
    assert hit[kinds == col.CART].sum() == 0
    assert hit[kinds == col.PURCHASE].sum() == 0
    # users declare a subset of what they avoid, and about 35% avoid something
    assert 0.28 < (avoid.map(len) > 0).mean() < 0.42
    declared = shop.users[col.AVOID_ATTRIBUTES].notna().sum()
    assert 0.5 < declared / (avoid.map(len) > 0).sum() < 0.7


def test_purchases_follow_hidden_category_preferences(shop: Shop) -> None:
    categories = {c: i for i, c in enumerate(shop.truth["categories"])}
    prefs = np.stack(shop.gt_users["category_preference"].to_numpy())
    row = pd.Series(np.arange(len(shop.gt_users)), index=shop.gt_users[col.USER_ID])
    buyers = shop.purchases[shop.purchases[col.USER_ID].isin(row.index)]
    u = row[buyers[col.USER_ID]].to_numpy()
    c = buyers[col.CATEGORY].map(categories).to_numpy()
    actual = prefs[u, c].mean()
    shuffled = prefs[np.random.default_rng(0).permutation(u), c].mean()
    assert actual > 3 * shuffled


def test_purchased_items_match_hidden_taste_better_than_their_category(shop: Shop) -> None:
    taste = np.stack(shop.gt_users.set_index(col.USER_ID)["taste"].to_numpy())
    user_row = pd.Series(np.arange(len(taste)), index=shop.gt_users[col.USER_ID])
    emb = np.stack(shop.gt_products["embedding"].to_numpy())
    item_row = pd.Series(np.arange(len(emb)), index=shop.gt_products[col.ITEM_ID])
    cat = shop.gt_products[col.CATEGORY].to_numpy()
    centroid = pd.DataFrame(emb).groupby(cat).mean()
    buyers = shop.purchases[shop.purchases[col.USER_ID].isin(user_row.index)]
    t = taste[user_row[buyers[col.USER_ID]].to_numpy()]
    e = emb[item_row[buyers[col.ITEM_ID]].to_numpy()]
    avg = centroid.loc[buyers[col.CATEGORY]].to_numpy()
    lift = np.einsum("ij,ij->i", t, e) - np.einsum("ij,ij->i", t, avg)
    assert lift.mean() > 0.1
    assert lift.mean() / (lift.std() / np.sqrt(len(lift))) > 10


def test_demographics_carry_signal(shop: Shop) -> None:
    gender = shop.users.set_index(col.USER_ID)[col.GENDER]
    beauty = shop.purchases[col.CATEGORY].str.startswith("Beauty")
    by_gender = beauty.groupby(shop.purchases[col.USER_ID].map(gender).to_numpy()).mean()
    assert by_gender["F"] > 1.5 * by_gender["M"]
    # younger users are more price sensitive, so they buy cheaper than older ones
    age = shop.users.set_index(col.USER_ID)[col.AGE]
    gt = shop.gt_users.set_index(col.USER_ID)
    assert np.corrcoef(age[gt.index], gt["price_sensitivity"])[0, 1] < -0.5


def test_skin_type_matches_are_preferred(shop: Shop) -> None:
    skin = shop.gt_users.set_index(col.USER_ID)[col.SKIN_TYPE].dropna()
    skincare = shop.products[shop.products[col.CATEGORY].str.startswith("Beauty > Skincare")]
    tokens = _tokens(skincare.set_index(col.ITEM_ID)[col.ATTRIBUTES])
    bought = shop.purchases[
        shop.purchases[col.ITEM_ID].isin(tokens.index)
        & shop.purchases[col.USER_ID].isin(skin.index)
    ]
    wanted = f"{col.SKIN_TYPE}:" + bought[col.USER_ID].map(skin)
    match = [w in t for w, t in zip(wanted, bought[col.ITEM_ID].map(tokens), strict=True)]
    random_match = [
        w in t
        for w, t in zip(
            wanted, tokens.sample(len(wanted), replace=True, random_state=0), strict=True
        )
    ]
    assert np.mean(match) > np.mean(random_match) + 0.1


def _share(frame: pd.DataFrame, mask: pd.Series, months: list[str]) -> float:
    in_months = frame["month"].isin(months)
    return float(mask[in_months].mean())


def test_seasonality(shop: Shop) -> None:
    p = shop.purchases
    sunscreen = p[col.CATEGORY].str.endswith("> Sunscreen")
    summer = _share(p, sunscreen, ["2025-06", "2025-07", "2025-08"])
    winter = _share(p, sunscreen, ["2025-12", "2026-01", "2026-02"])
    assert summer > 3 * winter
    gifts = [c for c, s in shop.truth["category_seasons"].items() if s == "gift"]
    gift = p[col.CATEGORY].isin(gifts)
    december = _share(p, gift, ["2025-12"])
    others = [m for m in p["month"].unique() if m not in ("2025-11", "2025-12")]
    assert december > 1.5 * max(_share(p, gift, [m]) for m in others)


def test_late_taste_shift_is_visible_and_beyond_ordinary_variation(shop: Shop) -> None:
    assert shop.truth["shift_start"].startswith("2026-02-01")
    events = shop.clean
    trending = events[col.CATEGORY].isin(shop.truth["trending_categories"])
    declining = events[col.CATEGORY].isin(shop.truth["declining_categories"])
    first, last = ["2025-04", "2025-05"], ["2026-02", "2026-03"]
    shift = _share(events, trending, last) / _share(events, trending, first)
    assert shift > 2.0
    assert _share(events, declining, last) < 0.7 * _share(events, declining, first)
    # ordinary variation: two-month windows of comparable seasons before the shift
    comparable = [
        (["2025-06", "2025-07"], ["2025-08", "2025-09"]),
        (["2025-04", "2025-05"], ["2025-09", "2025-10"]),
        (["2025-10", "2025-11"], ["2025-12", "2026-01"]),
    ]
    for a, b in comparable:
        ordinary = abs(np.log(_share(events, trending, b) / _share(events, trending, a)))
        assert np.log(shift) > 2 * ordinary


def test_follow_up_purchases(shop: Shop) -> None:
    p = shop.purchases.sort_values([col.USER_ID, col.TIMESTAMP], kind="stable")
    leaf = p[col.CATEGORY].str.split(col.CATEGORY_SEPARATOR).str[-1].to_numpy()
    same_user = p[col.USER_ID].to_numpy()[1:] == p[col.USER_ID].to_numpy()[:-1]
    prev, nxt = leaf[:-1][same_user], leaf[1:][same_user]
    base = (nxt == "Toner").mean()
    after_cleanser = (nxt[prev == "Cleanser"] == "Toner").mean()
    assert after_cleanser > 5 * base
    assert (nxt[prev == "Consoles"] == "Video Games").mean() + (
        nxt[prev == "Consoles"] == "Controllers"
    ).mean() > 5 * np.isin(nxt, ["Video Games", "Controllers"]).mean()
    # chains of three purchases along follow-up edges (Cleanser -> Toner -> Serum, ...)
    edges = {(a, b) for a, bs in shop.truth["follow_ups"].items() for b in bs}
    path = p[col.CATEGORY].to_numpy()
    users = p[col.USER_ID].to_numpy()
    chains = sum(
        1
        for i in range(len(path) - 2)
        if users[i] == users[i + 2]
        and (path[i], path[i + 1]) in edges
        and (path[i + 1], path[i + 2]) in edges
    )
    assert chains >= 3


def test_consumables_are_bought_again_around_their_interval(shop: Shop) -> None:
    p = shop.purchases
    intervals = shop.truth["consumables"]
    consumable = p[p[col.CATEGORY].isin(intervals)].sort_values(col.TIMESTAMP)
    gap = consumable.groupby([col.USER_ID, col.ITEM_ID])[col.TIMESTAMP].diff().dropna()
    assert len(gap) > 500
    days = gap.dt.total_seconds() / 86_400
    expected = consumable.loc[gap.index, col.CATEGORY].map(intervals)
    assert 0.7 < float((days / expected).median()) < 2.0


def test_nothing_happens_before_launch_or_signup(shop: Shop) -> None:
    events = shop.raw
    created = events[col.ITEM_ID].map(shop.products.set_index(col.ITEM_ID)[col.CREATED_AT])
    assert (events[col.TIMESTAMP] >= created).all()
    signup = events[col.USER_ID].map(shop.users.set_index(col.USER_ID)[col.SIGNUP_AT])
    assert (events[col.TIMESTAMP] >= signup).all()
    new = shop.gt_products.set_index(col.ITEM_ID)["is_new"]
    assert events[col.ITEM_ID].map(new).any()
    start = pd.Timestamp(shop.truth["period"]["start"])
    end = pd.Timestamp(shop.truth["period"]["end"])
    assert events[col.TIMESTAMP].min() >= start and events[col.TIMESTAMP].max() < end


def test_catalogue_and_population_shapes(shop: Shop) -> None:
    products, users = shop.products, shop.users
    paths = products[col.CATEGORY].str.split(col.CATEGORY_SEPARATOR)
    assert paths.map(len).eq(3).all()
    assert 90 <= len(shop.truth["categories"]) <= 130
    assert paths.str[0].nunique() == 12
    assert {"Cleanser", "Toner", "Serum", "Moisturiser", "Sunscreen"} <= set(paths.str[-1])
    start = pd.Timestamp(shop.truth["period"]["start"])
    launched_before = (products[col.CREATED_AT] < start).mean()
    assert 0.65 < launched_before < 0.75
    assert 0.05 < shop.gt_products["is_new"].mean() < 0.11
    assert 0.92 < products[col.IN_STOCK].mean() < 0.98
    clean_users = users[users[col.USER_ID].isin(shop.gt_users[col.USER_ID])]
    assert 0.3 < (clean_users[col.SIGNUP_AT] < start).mean() < 0.4
    assert set(clean_users[col.GENDER]) == {"F", "M", "X"}
    assert set(clean_users[col.COUNTRY]) == {"GB", "DE", "FR", "ES", "IT", "NL", "SE", "PL"}
    beauty = products[col.CATEGORY].str.startswith("Beauty > Skincare")
    tokens = set(
        col.ATTRIBUTE_SEPARATOR.join(products.loc[beauty, col.ATTRIBUTES].dropna()).split(
            col.ATTRIBUTE_SEPARATOR
        )
    )
    assert {"parabens", "retinol", "niacinamide", "skin_type:oily", "concern:acne"} <= tokens


def test_popularity_and_activity_are_long_tailed(shop: Shop) -> None:
    per_item = shop.clean[col.ITEM_ID].value_counts()
    top = per_item.iloc[: len(shop.products) // 10].sum() / per_item.sum()
    assert top > 0.35
    per_user = shop.clean[col.USER_ID].value_counts()
    assert per_user.quantile(0.99) > 8 * per_user.median()
    monthly = shop.clean.groupby("month").size()
    assert monthly["2025-12"] > monthly["2025-10"]

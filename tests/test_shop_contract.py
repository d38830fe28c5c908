"""The generated files follow the data contract (PLATFORM.md section 2) in both formats."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys import columns as col
from recsys.errors import RecsysError
from shop.generate import ShopSummary, generate_shop
from shop.scales import SCALES
from shop.taxonomy import load_taxonomy
from shop.writer import iso_utc

STRING = pa.string()
TIMESTAMP = pa.timestamp("ms", tz="UTC")
EVENT_SCHEMA = {
    col.USER_ID: STRING,
    col.ITEM_ID: STRING,
    col.EVENT_TYPE: STRING,
    col.TIMESTAMP: TIMESTAMP,
    col.SESSION_ID: STRING,
    col.PRICE: pa.float64(),
    col.QUANTITY: pa.int32(),
    col.DEVICE: STRING,
    col.COUNTRY: STRING,
}
PRODUCT_SCHEMA = {
    col.ITEM_ID: STRING,
    col.TITLE: STRING,
    col.DESCRIPTION: STRING,
    col.CATEGORY: STRING,
    col.BRAND: STRING,
    col.PRICE: pa.float64(),
    col.ATTRIBUTES: STRING,
    col.CREATED_AT: TIMESTAMP,
    col.IN_STOCK: pa.bool_(),
}
USER_SCHEMA = {
    col.USER_ID: STRING,
    col.SIGNUP_AT: TIMESTAMP,
    col.AGE: pa.int32(),
    col.GENDER: STRING,
    col.COUNTRY: STRING,
    col.SKIN_TYPE: STRING,
    col.AVOID_ATTRIBUTES: STRING,
}
ISO_Z = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


@pytest.fixture(scope="module")
def parquet_shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ShopSummary]:
    root = tmp_path_factory.mktemp("tiny_parquet")
    return root, generate_shop(root, scale="tiny", seed=1)


@pytest.fixture(scope="module")
def csv_shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ShopSummary]:
    root = tmp_path_factory.mktemp("tiny_csv")
    return root, generate_shop(root, scale="tiny", seed=1, fmt="csv")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("stem", "schema"),
    [(col.EVENTS, EVENT_SCHEMA), (col.PRODUCTS, PRODUCT_SCHEMA), (col.USERS, USER_SCHEMA)],
)
def test_parquet_columns_and_types(
    parquet_shop: tuple[Path, ShopSummary], stem: str, schema: dict[str, pa.DataType]
) -> None:
    root, _ = parquet_shop
    table = pq.read_table(root / f"{stem}.parquet")
    assert dict(zip(table.schema.names, table.schema.types, strict=True)) == schema


@pytest.mark.integration
def test_tiny_counts_are_exact_and_match_the_summary(
    parquet_shop: tuple[Path, ShopSummary],
) -> None:
    root, summary = parquet_shop
    tiny = SCALES["tiny"]
    events = pd.read_parquet(root / "events.parquet")
    assert len(events) == summary.events == tiny.events
    assert summary.products == tiny.products
    assert len(pd.read_parquet(root / "products.parquet")) == tiny.products
    noise_users = summary.users - tiny.users
    assert len(pd.read_parquet(root / "users.parquet")) == summary.users
    assert 0 < noise_users < 50
    assert summary.clean_events + sum(summary.noise.values()) == tiny.events
    assert sum(summary.event_types.values()) == tiny.events
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(summary.to_dict()))
    assert set(manifest["seconds"]) >= {"catalogue", "users", "sessions", "noise", "write"}
    for name in manifest["files"].values():
        assert (root / name).is_file()


@pytest.mark.integration
def test_values_follow_the_contract(parquet_shop: tuple[Path, ShopSummary]) -> None:
    root, _ = parquet_shop
    events = pd.read_parquet(root / "events.parquet")
    products = pd.read_parquet(root / "products.parquet")
    users = pd.read_parquet(root / "users.parquet")
    clean = events[events[col.USER_ID].str.startswith("u")]
    assert clean[col.USER_ID].str.fullmatch(r"u\d{4}").all()
    assert products[col.ITEM_ID].str.fullmatch(r"p\d{3}").all()
    assert products[col.ITEM_ID].is_unique and users[col.USER_ID].is_unique
    assert set(events[col.EVENT_TYPE]) == set(col.EVENT_TYPES)
    assert set(events[col.DEVICE]) == {"mobile", "desktop", "tablet"}
    assert set(events[col.ITEM_ID]) <= set(products[col.ITEM_ID])
    assert set(events[col.USER_ID]) <= set(users[col.USER_ID])
    # sorted by timestamp, then user
    key = list(zip(events[col.TIMESTAMP].astype("int64"), events[col.USER_ID], strict=True))
    assert key == sorted(key)
    assert products[col.CATEGORY].str.count(col.CATEGORY_SEPARATOR).eq(2).all()
    assert not products[col.ATTRIBUTES].str.contains(",").any()
    assert users[col.SKIN_TYPE].dropna().isin(load_taxonomy().skin_types).all()
    declared = users[col.AVOID_ATTRIBUTES].dropna().str.split(col.ATTRIBUTE_SEPARATOR)
    assert declared.map(lambda ts: set(ts) <= set(load_taxonomy().avoidable)).all()


@pytest.mark.integration
def test_csv_holds_the_same_data(
    parquet_shop: tuple[Path, ShopSummary], csv_shop: tuple[Path, ShopSummary]
) -> None:
    proot, _ = parquet_shop
    croot, summary = csv_shop
    assert summary.fmt == "csv" and summary.files[col.EVENTS] == "events.csv"
    for stem, stamp in (
        (col.EVENTS, col.TIMESTAMP),
        (col.PRODUCTS, col.CREATED_AT),
        (col.USERS, col.SIGNUP_AT),
    ):
        from_csv = pd.read_csv(
            croot / f"{stem}.csv",
            keep_default_na=False,
            na_values=[""],
            dtype={col.AGE: "Int32"} if stem == col.USERS else None,
        )
        from_parquet = pd.read_parquet(proot / f"{stem}.parquet")
        assert list(from_csv.columns) == list(from_parquet.columns)
        assert from_csv[stamp].str.fullmatch(ISO_Z).all()
        from_csv[stamp] = pd.to_datetime(from_csv[stamp], utc=True).astype(
            from_parquet[stamp].dtype
        )
        if stem == col.USERS:
            from_parquet[col.AGE] = from_parquet[col.AGE].astype("Int32")
        for frame in (from_csv, from_parquet):
            for name in frame.select_dtypes(include="object").columns:
                frame[name] = frame[name].where(frame[name].notna(), None)
        pd.testing.assert_frame_equal(from_csv, from_parquet, check_dtype=False)
    # the ground truth is always Parquet
    assert (croot / "ground_truth" / "users.parquet").is_file()


@pytest.mark.integration
def test_ground_truth_files(parquet_shop: tuple[Path, ShopSummary]) -> None:
    root, summary = parquet_shop
    users = pq.read_table(root / "ground_truth" / "users.parquet")
    products = pq.read_table(root / "ground_truth" / "products.parquet")
    shop = json.loads((root / "ground_truth" / "shop.json").read_text())
    assert users.schema.field("category_preference").type == pa.list_(pa.float32())
    assert users.schema.field("taste").type == pa.list_(pa.float32())
    assert {"price_sensitivity", "activity", col.AVOID_ATTRIBUTES, "segment"} <= set(
        users.schema.names
    )
    assert products.schema.field("embedding").type == pa.list_(pa.float32())
    assert {"popularity", "is_new"} <= set(products.schema.names)
    prefs = np.stack(users.column("category_preference").to_numpy(zero_copy_only=False))
    assert prefs.shape == (SCALES["tiny"].users, len(shop["categories"]))
    np.testing.assert_allclose(prefs.sum(axis=1), 1.0, rtol=1e-4)
    for key in (
        "period",
        "shift_start",
        "trending_categories",
        "declining_categories",
        "season_profiles",
        "follow_ups",
        "consumables",
        "noise",
        "seed",
        "scale",
    ):
        assert key in shop
    assert shop["noise"] == summary.noise
    assert shop["follow_ups"]["Beauty > Skincare > Cleanser"] == ["Beauty > Skincare > Toner"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("kwargs", "allowed"),
    [({"scale": "huge"}, "tiny, small, full"), ({"fmt": "xlsx"}, "parquet, csv")],
)
def test_unknown_scale_or_format_is_a_user_error(
    tmp_path: Path, kwargs: dict, allowed: str
) -> None:
    with pytest.raises(RecsysError, match=allowed):
        generate_shop(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


@pytest.mark.unit
@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_bad_seed_is_a_user_error(tmp_path: Path, seed: object) -> None:
    with pytest.raises(RecsysError, match="seed"):
        generate_shop(tmp_path, scale="tiny", seed=seed)  # type: ignore[arg-type]


@pytest.mark.unit
def test_iso_timestamps_are_formatted_like_numpy() -> None:
    ms = np.array([0, 1_743_465_600_000, 1_775_001_599_999, 951_782_400_123], dtype=np.int64)
    expected = [str(np.datetime64(int(m), "ms")) + "Z" for m in ms]
    assert [b.decode() for b in iso_utc(ms)] == expected


@pytest.mark.unit
def test_taxonomy_is_data_with_the_expected_shape() -> None:
    tax = load_taxonomy()
    assert len(tax.departments) == 12
    assert 90 <= len(tax.leaves) <= 130
    names = {leaf.name: leaf for leaf in tax.leaves}
    chain = ["Cleanser", "Toner", "Serum", "Moisturiser"]
    for a, b in itertools.pairwise(chain):
        assert names[b].index in names[a].follow_ups
    assert names["Sunscreen"].season == "summer" and names["Sunscreen"].consumable
    assert {"Smartphones", "Laptops", "Consoles", "Shampoo", "Bikes", "Cameras"} <= {
        n for n, leaf in names.items() if leaf.follow_ups
    }
    assert all(leaf.price > 0 for leaf in tax.leaves)


@pytest.mark.integration
def test_stages_are_logged_with_durations(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="shop"):
        generate_shop(tmp_path, scale="tiny", seed=2)
    done = [r.getMessage() for r in caplog.records if "done in" in r.getMessage()]
    assert len(done) == 5

"""The scale profile (Feast's Ray offline store and compute engine) serves what local serves.

The tiny shop is stood up twice, in a local and a scale workspace: build, apply, full and
incremental materialisation. Then the whole ``ranker_v1`` service must come out the same from
both, offline (point-in-time retrieval) and online (after materialisation). Ray runs in local
mode, held for the whole module so it starts once, and is shut down at the end.
"""

import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray

from features import names as n
from features.ray_runtime import ray_runtime
from features.store import historical_features, materialize
from recsys import columns as c
from recsys.workspace import Workspace
from shop.generate import generate_shop
from tests.feature_stack import Stack, feature_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

logger = logging.getLogger(__name__)

ENTITY_ROWS = 300
ONLINE_USERS = 40
DEVICES = ("mobile", "desktop", "tablet")
KEYS = [c.USER_ID, c.ITEM_ID, c.CATEGORY, n.EVENT_TIMESTAMP]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shop")
    generate_shop(folder, scale="tiny", seed=0)
    return folder


@pytest.fixture(scope="module")
def stacks(shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Stack]]:
    """Both profiles built, applied and materialised (full, then incremental)."""
    with ExitStack() as stack:
        built: dict[str, Stack] = {}
        for profile in ("local", "scale"):
            home = tmp_path_factory.mktemp(f"ws-{profile}")
            started = time.perf_counter()
            if profile == "scale":  # one Ray for the module; the jobs reuse it
                stack.enter_context(ray_runtime(Workspace(home=home, profile=profile)))
            built[profile] = stack.enter_context(feature_stack(shop, home, profile))
            materialize(built[profile].workspace, incremental=True)
            logger.info("%s stack in %.1fs", profile, time.perf_counter() - started)
        yield built
    assert not ray.is_initialized(), "Ray outlived the runtime that started it"


def entity_frame(workspace: Workspace) -> pd.DataFrame:
    """Users x items x categories of real events, at instants spread over the shop's year.

    The instants are random, not the events' own: Feast's Ray store works at whole seconds
    (see ``features/ray_retrieval.py``), so an entity row in the same second as a feature row
    would legitimately differ between the profiles.
    """
    rng = np.random.default_rng(7)
    events = pd.read_parquet(workspace.table(c.EVENTS))
    products = pd.read_parquet(workspace.table(c.PRODUCTS))[[c.ITEM_ID, c.CATEGORY]]
    picked = events.sample(ENTITY_ROWS, random_state=7).merge(products, on=c.ITEM_ID)
    first, last = events[c.TIMESTAMP].min().timestamp(), events[c.TIMESTAMP].max().timestamp()
    seconds = rng.integers(int(first), int(last), size=len(picked))
    stamps = pd.to_datetime(seconds, unit="s", utc=True) + pd.Timedelta(500, "ms")
    return pd.DataFrame(
        {
            c.USER_ID: picked[c.USER_ID].astype(str).to_numpy(),
            c.ITEM_ID: picked[c.ITEM_ID].astype(str).to_numpy(),
            c.CATEGORY: picked[c.CATEGORY].astype(str).to_numpy(),
            n.EVENT_TIMESTAMP: stamps,
            n.REQUEST_TS: seconds.astype("int64"),
            n.REQUEST_DEVICE: rng.choice(DEVICES, size=len(picked)),
        }
    )


def assert_same(local: pd.DataFrame, scale: pd.DataFrame, keys: list[str]) -> None:
    """Equal frames up to row order and dtype: floats within 1e-9, nulls equal to nulls."""
    assert sorted(local.columns) == sorted(scale.columns)
    assert len(local) == len(scale)
    left = local.sort_values(keys).reset_index(drop=True)
    right = scale[local.columns].sort_values(keys).reset_index(drop=True)
    for column in left.columns:
        a, b = left[column], right[column]
        if pd.api.types.is_datetime64_any_dtype(a):
            unit = "datetime64[ns, UTC]"  # DuckDB returns microseconds, Ray nanoseconds
            assert (
                pd.to_datetime(a, utc=True)
                .astype(unit)
                .equals(pd.to_datetime(b, utc=True).astype(unit))
            ), column
        elif pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            assert np.allclose(
                a.astype("float64"), b.astype("float64"), rtol=1e-9, atol=1e-9, equal_nan=True
            ), column
        else:
            assert (a.isna() == b.isna()).all(), column
            assert (a[a.notna()].astype(str) == b[b.notna()].astype(str)).all(), column


def assert_informative(frame: pd.DataFrame) -> None:
    """Every feature view contributes values: a comparison of all-null columns proves nothing."""
    for view in (*n.TABLES, n.REQUEST_CONTEXT):
        columns = [col for col in frame.columns if col.startswith(f"{view}__")]
        assert columns, view
        assert frame[columns].notna().to_numpy().mean() > 0.1, view


def test_historical_retrieval_of_the_service_is_the_same_in_both_profiles(stacks) -> None:
    local, scale = stacks["local"], stacks["scale"]
    entity = entity_frame(local.workspace)
    service = local.store.get_feature_service(n.RANKER_SERVICE)
    expected = local.store.get_historical_features(
        entity_df=entity, features=service, full_feature_names=True
    ).to_df()
    started = time.perf_counter()
    got = historical_features(
        scale.workspace, scale.store, entity, n.RANKER_SERVICE, chunk_rows=200
    )
    logger.info("scale retrieval of %d rows in %.1fs", len(got), time.perf_counter() - started)
    assert len(expected) == len(entity)
    assert_informative(expected)
    assert_same(expected, got, KEYS)


def test_online_store_serves_the_same_values_in_both_profiles(stacks) -> None:
    entity = entity_frame(stacks["local"].workspace)
    users = entity.drop_duplicates(c.USER_ID).head(ONLINE_USERS)
    rows = users[[c.USER_ID, c.ITEM_ID, c.CATEGORY, n.REQUEST_TS, n.REQUEST_DEVICE]]
    frames = {
        profile: stack.store.get_online_features(
            features=stack.store.get_feature_service(n.RANKER_SERVICE),
            entity_rows=rows.to_dict("records"),
            full_feature_names=True,
        ).to_df()
        for profile, stack in stacks.items()
    }
    assert len(frames["local"]) == len(rows)
    assert_informative(frames["local"])
    assert_same(frames["local"], frames["scale"], [c.USER_ID, c.ITEM_ID, c.CATEGORY])

"""The ranker's stored features, fetched view by view, equal Feast's whole-service retrieval.

``OfflineFeatures.fetch`` asks Feast for each entity's views once instead of joining every
candidate row against every view. It must give, column for column, exactly what the one
point-in-time join of the ``ranker_v1`` service gives for the same rows, an instant before
each request: for batches built from the event log (training, evaluation) and for batches
built from the histories a model stores (``recsys recommend``, the registered model).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import names as n
from features.build import read_lake
from features.store import historical_features
from recommender.catalog import Catalog
from recommender.config import AlsConfig, ModelConfig
from recommender.features_source import OfflineFeatures, request_frame
from recommender.model import Recommender
from recommender.state import ITEM, REQ, TS, Batch, batch_from_events, event_frame
from recommender.stored import LABEL_EPSILON
from recsys import columns as c
from recsys.cli import main
from recsys.workspace import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAY = 86_400.0
CONFIG = ModelConfig(als=AlsConfig(factors=8, iterations=3), candidates=40)


@dataclass
class Stack:
    workspace: Workspace
    model: Recommender
    frame: pd.DataFrame
    users: pd.DataFrame
    products: pd.DataFrame
    features: OfflineFeatures


def _cli(home: Path, *args: str) -> None:
    assert main(["-q", "--home", str(home), "--profile", "local", *args]) == 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """A tiny shop's lake with its feature tables applied, and a model fitted on all of it."""
    root = tmp_path_factory.mktemp("offline")
    home = root / "home"
    _cli(home, "generate", "--out", str(root / "shop"), "--scale", "tiny", "--seed", "0")
    _cli(home, "ingest", str(root / "shop"))
    _cli(home, "features", "build")
    _cli(home, "features", "apply")
    workspace = Workspace.from_env(home, "local")
    events, products, users, _ = read_lake(workspace)
    catalog = Catalog.build(products, events)
    frame = event_frame(events, catalog, CONFIG.events)
    model = Recommender.fit(frame, catalog, users, CONFIG)
    return Stack(workspace, model, frame, users, products, OfflineFeatures(workspace))


def _whole_service(stack: Stack, batch: Batch, pairs: pd.DataFrame) -> pd.DataFrame:
    """The reference: Feast's point-in-time join of the whole service, one row per pair."""
    entity = request_frame(batch, pairs, stack.model.catalog)
    at = batch.requests.set_index(REQ)[TS].to_numpy(dtype=np.float64)[pairs[REQ].to_numpy()]
    before = at - LABEL_EPSILON.total_seconds()
    entity[n.EVENT_TIMESTAMP] = pd.to_datetime(before, unit="s", utc=True).floor("us")
    got = historical_features(stack.workspace, stack.features.store, entity, n.RANKER_SERVICE)
    got.index = pairs.index
    return got


def _differences(fetched: pd.DataFrame, reference: pd.DataFrame) -> dict[str, int]:
    """Feature columns (``<view>__<feature>``) whose values differ, with the count of rows."""
    out = {}
    for column in (col for col in reference.columns if "__" in col):
        if column not in fetched:
            out[column] = len(reference)
            continue
        a, b = fetched[column], reference[column]
        both_missing = a.isna().to_numpy() & b.isna().to_numpy()
        if pd.api.types.is_numeric_dtype(b) or pd.api.types.is_bool_dtype(b):
            x = pd.to_numeric(a, errors="coerce").to_numpy(dtype=np.float64)
            y = pd.to_numeric(b, errors="coerce").to_numpy(dtype=np.float64)
            same = (x == y) | both_missing
        else:
            same = (a.astype(object).to_numpy() == b.astype(object).to_numpy()) | both_missing
        if not same.all():
            out[column] = int((~same).sum())
    return out


def _launched_mid_day(stack: Stack) -> tuple[str, float]:
    """A product launched inside the data's time range, well after midnight of its day."""
    created = pd.to_datetime(stack.products[c.CREATED_AT], utc=True)
    start = pd.to_datetime(stack.frame[TS].min() + 60 * DAY, unit="s", utc=True)
    end = pd.to_datetime(stack.frame[TS].max() - 5 * DAY, unit="s", utc=True)
    hour = created.dt.hour
    fits = (created > start) & (created < end) & (hour >= 2) & (hour <= 20)
    chosen = stack.products[fits.to_numpy()].sort_values(c.ITEM_ID).iloc[0]
    return str(chosen[c.ITEM_ID]), pd.Timestamp(chosen[c.CREATED_AT]).timestamp()


def test_fetch_for_requests_from_the_event_log_equals_whole_service_retrieval(
    stack: Stack,
) -> None:
    # given requests as training builds them, from the whole event log: known users at
    # instants spread over three weeks (not on whole seconds), one a half second after
    # midnight, one by a user nobody knows, and two on the launch day of a product (1.5 s
    # and an hour after its launch), each asked about that product
    model, frame = stack.model, stack.frame
    last = float(frame[TS].max())
    known = list(model.users.ids[::40])
    spread = [last - i * 0.37 * DAY - 0.25 for i in range(len(known))]
    midnight = np.floor((last - 3 * DAY) / DAY) * DAY + 0.5
    product, launched = _launched_mid_day(stack)
    requests = pd.DataFrame(
        {
            c.USER_ID: [*known, known[0], "nobody-knows-me", known[1], known[2]],
            TS: [*spread, midnight, last - DAY, launched + 1.5, launched + 3_600.0],
        }
    )
    batch = batch_from_events(requests, frame, stack.users, model.users, CONFIG.history_items)
    launch_reqs = [len(requests) - 2, len(requests) - 1]
    asked = pd.DataFrame({REQ: launch_reqs, ITEM: model.catalog.items.rows([product] * 2)})
    pairs = pd.concat([model.candidates(batch)[[REQ, ITEM]], asked], ignore_index=True)
    pairs = pairs.drop_duplicates([REQ, ITEM]).reset_index(drop=True)
    # when both ways of retrieving are asked for the same rows
    fetched = stack.features.fetch(batch, pairs, model.catalog)
    reference = _whole_service(stack, batch, pairs)
    # then every feature column of the service is there, with the very same values
    assert fetched.index.equals(pairs.index)
    assert _differences(fetched, reference) == {}
    # and the rows exercised what they were meant to: affinities of touched categories, the
    # catalogue row of a product launched earlier on the request's day, nothing for a stranger
    affinity = f"{n.USER_CATEGORY}__affinity_total"
    assert fetched[affinity].notna().sum() > 0 and fetched[affinity].isna().sum() > 0
    launch_rows = fetched[(pairs[REQ].isin(launch_reqs)) & (pairs[ITEM] == asked[ITEM].iloc[0])]
    assert launch_rows[f"{n.PRODUCT_CATALOG}__created_epoch"].tolist() == [int(launched)] * 2
    stranger = fetched[pairs[REQ] == len(known) + 1]
    assert len(stranger) > 0
    assert stranger[f"{n.USER_ACTIVITY}__views_total"].isna().all()


def test_fetch_for_requests_from_stored_histories_equals_whole_service_retrieval(
    stack: Stack,
) -> None:
    # given the heaviest users asked the way `recsys recommend` and the registered model ask:
    # a batch built from the histories the model stores (its last events and purchases)
    model = stack.model
    heaviest = stack.frame.groupby(c.USER_ID).size().sort_values(ascending=False, kind="stable")
    batch = model.batch(pd.DataFrame({c.USER_ID: list(heaviest.index[:25])}))
    pairs = model.candidates(batch)[[REQ, ITEM]]
    # when both ways of retrieving are asked for the same rows
    fetched = stack.features.fetch(batch, pairs, model.catalog)
    reference = _whole_service(stack, batch, pairs)
    # then the values are the same: a user's affinity to a category they touched before
    # their stored history began is as real as Feast says (the ranker learned with it)
    assert fetched.index.equals(pairs.index)
    assert _differences(fetched, reference) == {}

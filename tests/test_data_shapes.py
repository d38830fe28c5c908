"""Every ordinary shape of a shop's data through every command, on tiny data.

The data contract requires only events (user, item, event type, time); products and users,
and every other column, are optional. Each shape below is cut from the generated tiny shop
and taken through the real CLI (`ingest`, `features build|apply|materialize`, `train`,
`recommend`) and the service's request path (`/recommend`, `/similar_items`): through
BentoML over HTTP for the events-only shop, through the engine the service runs for the
others. A missing table or column must leave the features that depend on it empty (recorded
in the features manifest), never crash.

Timestamps written another way (sub-microsecond digits, time zones, epoch milliseconds) must
give the very lake the plain UTC text gives: every later command reads only the lake, so the
events-only runs answer for them too.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys import columns as c
from recsys.workspace import Workspace
from tests.serving_stack import (
    _service_env,
    cli,
    promote,
    scoped_env,
    start_service,
    stop_service,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRAIN_YAML = """\
split: {validation_days: 21, test_days: 21}
requests: {train: 300, early_stopping: 100, test: 300}
model:
  als: {iterations: 5, factors: 16}
  ranker: {n_estimators: 10}
"""
REQUIRED = [c.USER_ID, c.ITEM_ID, c.EVENT_TYPE, c.TIMESTAMP]
CONTENT = [c.CATEGORY, c.BRAND, c.ATTRIBUTES]
NEW_USER = "someone-brand-new"
K = 5
ALIAS = "candidate"


@dataclass(frozen=True)
class Shop:
    """The generated tiny shop's three tables, every value as the CSV text."""

    events: pd.DataFrame
    products: pd.DataFrame
    users: pd.DataFrame


@dataclass(frozen=True)
class Shape:
    """Which tables and columns a shop hands over, and what its lake must then lack."""

    tables: Callable[[Shop], dict[str, pd.DataFrame]]
    missing: set[str]  # the features manifest's missing inputs
    empty: dict[str, set[str]]  # features that must be left without values, per table


EVENT_OPTIONALS = {f"events.{col}" for col in (c.PRICE, c.QUANTITY, c.DEVICE, c.COUNTRY)}
PRODUCT_OPTIONALS = {
    f"products.{col}"
    for col in (c.TITLE, c.DESCRIPTION, *CONTENT, c.PRICE, c.CREATED_AT, c.IN_STOCK)
}
USER_OPTIONALS = {f"users.{col}" for col in (c.SIGNUP_AT, c.AGE, c.GENDER, c.COUNTRY, c.REGION)}
NO_PRICES = {
    "user_activity": {"mean_price", "price_std", "min_price", "max_price"},
    "product_catalog": {"price"},
}
NO_CONTENT = {
    "user_activity": {"favourite_category", "favourite_brand"},
    "product_catalog": set(CONTENT),
    "user_category_affinity": {"affinity_30d", "affinity_90d", "affinity_total", "share_total"},
}
NO_PROFILE = {
    "user_profile": {c.AGE, c.GENDER, c.COUNTRY, c.REGION, c.SKIN_TYPE, c.AVOID_ATTRIBUTES}
}


def _merge(*parts: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for part in parts:
        for table, columns in part.items():
            out[table] = out.get(table, set()) | columns
    return out


SHAPES = {
    # the contract's minimum: four columns of events, nothing else
    "events_only": Shape(
        lambda s: {c.EVENTS: s.events[REQUIRED]},
        {c.PRODUCTS, c.USERS} | EVENT_OPTIONALS,
        _merge(NO_PRICES, NO_CONTENT, NO_PROFILE),
    ),
    "products_with_item_id_only": Shape(
        lambda s: {c.EVENTS: s.events[REQUIRED], c.PRODUCTS: s.products[[c.ITEM_ID]]},
        {c.USERS} | EVENT_OPTIONALS | PRODUCT_OPTIONALS,
        _merge(NO_PRICES, NO_CONTENT, NO_PROFILE),
    ),
    # like a grocery order log: purchases only, a users file of bare ids, no catalogue
    "users_with_user_id_only": Shape(
        lambda s: {
            c.EVENTS: s.events.loc[s.events[c.EVENT_TYPE] == c.PURCHASE, REQUIRED],
            c.USERS: s.users[[c.USER_ID]],
        },
        {c.PRODUCTS} | EVENT_OPTIONALS | USER_OPTIONALS,
        _merge(NO_PRICES, NO_CONTENT, NO_PROFILE),
    ),
    # everything but what tells products apart by content
    "products_without_category_brand_attributes": Shape(
        lambda s: {
            c.EVENTS: s.events,
            c.PRODUCTS: s.products.drop(columns=CONTENT),
            c.USERS: s.users,
        },
        {f"products.{col}" for col in CONTENT} | {"users.region"},
        NO_CONTENT,
    ),
}


def _nanoseconds(events: pd.DataFrame) -> pd.DataFrame:
    """ISO text with 9 decimals: the same microsecond, then three more digits (not all 0)."""
    stamps = pd.to_datetime(events[c.TIMESTAMP], utc=True)
    extra = pd.Series(np.arange(len(events)) % 999 + 1, index=events.index)
    text = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + extra.map("{:03d}".format) + "Z"
    return events.assign(**{c.TIMESTAMP: text})


def _time_zones(events: pd.DataFrame) -> pd.DataFrame:
    """The same instants written in three zones' local time with their offsets."""
    stamps = pd.to_datetime(events[c.TIMESTAMP], utc=True)
    zones = ["Asia/Kolkata", "America/Los_Angeles", "Europe/Berlin"]
    text = pd.Series("", index=events.index)
    for i, zone in enumerate(zones):
        rows = np.arange(len(events)) % len(zones) == i
        text[rows] = stamps[rows].dt.tz_convert(zone).map(pd.Timestamp.isoformat)
    return events.assign(**{c.TIMESTAMP: text})


def _epoch_ms(events: pd.DataFrame) -> pd.DataFrame:
    stamps = pd.to_datetime(events[c.TIMESTAMP], utc=True)
    return events.assign(**{c.TIMESTAMP: (stamps.astype("int64") // 10**6).astype(str)})


TIME_SHAPES = {
    "nanoseconds": _nanoseconds,
    "time_zones": _time_zones,
    "epoch_milliseconds": _epoch_ms,
}


@dataclass(frozen=True)
class Built:
    """A shape's workspace after every CLI command, and what the commands wrote."""

    name: str
    workspace: Workspace
    manifest: dict
    recs: pd.DataFrame
    known_user: str


@pytest.fixture(scope="module", autouse=True)
def _own_settings():
    """MLflow and Feast settings come from each workspace, never from the caller's shell."""
    with scoped_env({}):
        yield


def _write(folder: Path, tables: dict[str, pd.DataFrame]) -> Path:
    folder.mkdir(parents=True)
    for name, frame in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    folder = tmp_path_factory.mktemp("generated")
    cli(folder / "home", "local", {}, "generate", "--out", str(folder / "shop"),
        "--scale", "tiny", "--seed", "0", "--format", "csv")  # fmt: skip
    tables = (pd.read_csv(folder / "shop" / f"{n}.csv", dtype=str) for n in c.TABLES)
    return Shop(*tables)


def _most_frequent(values: pd.Series) -> str:
    counts = values.astype(str).value_counts().sort_index()
    return str(counts.sort_values(ascending=False, kind="stable").index[0])


def _popular_item(workspace: Workspace) -> str:
    """The item with most events in the lake: one co-visited with others."""
    return _most_frequent(pd.read_parquet(workspace.table(c.EVENTS))[c.ITEM_ID])


@pytest.fixture(scope="module")
def build(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Built]:
    """Each shape through every CLI command, once for the module (on first use)."""
    done: dict[str, Built] = {}

    def run(name: str) -> Built:
        if name in done:
            return done[name]
        root = tmp_path_factory.mktemp(name)
        folder = _write(root / "shop", SHAPES[name].tables(shop))
        home, config = root / "home", root / "train.yaml"
        config.write_text(TRAIN_YAML)
        for args in (
            ("ingest", str(folder)),
            ("features", "build"),
            ("features", "apply"),
            ("features", "materialize"),
            ("train", "--config", str(config)),
        ):
            cli(home, "local", {}, *args)
        workspace = Workspace(home=home.resolve(), profile="local")
        # the lake's busiest user (test accounts and resellers of the source are not in it)
        known = _most_frequent(pd.read_parquet(workspace.table(c.EVENTS))[c.USER_ID])
        users, recs = root / "users.csv", root / "recs.csv"
        pd.DataFrame({c.USER_ID: [known, NEW_USER]}).to_csv(users, index=False)
        cli(home, "local", {}, "recommend", "--alias", ALIAS, "--users", str(users),
            "--k", str(K), "--out", str(recs))  # fmt: skip
        manifest = json.loads((home / "features" / "manifest.json").read_text())
        out = Built(name, workspace, manifest, pd.read_csv(recs, dtype={c.ITEM_ID: str}), known)
        done[name] = out
        return out

    return run


@pytest.fixture(scope="module", params=list(SHAPES))
def built(request: pytest.FixtureRequest, build: Callable[[str], Built]) -> Built:
    return build(request.param)


# ------------------------------------------------------------------------------ the CLI
def test_recommend_lists_k_items_for_a_known_and_a_new_user(built: Built) -> None:
    # given a shape taken through ingest, features, train and recommend (the fixture)
    recs = built.recs
    # then the known user and the new user each get K distinct ranked items of the lake
    lake = pd.read_parquet(built.workspace.table(c.EVENTS))
    assert set(recs[c.USER_ID]) == {built.known_user, NEW_USER}
    for user in (built.known_user, NEW_USER):
        mine = recs[recs[c.USER_ID] == user]
        assert mine["rank"].tolist() == list(range(1, K + 1)), user
        assert mine[c.ITEM_ID].is_unique, user
        assert mine[c.ITEM_ID].isin(lake[c.ITEM_ID]).all(), user
        assert np.isfinite(mine["score"]).all(), user


def test_missing_inputs_leave_their_features_empty(built: Built) -> None:
    # given the features manifest of a shape
    shape = SHAPES[built.name]
    # then it names exactly the optional tables and columns the shape left out
    assert set(built.manifest["missing_inputs"]) == shape.missing
    # and the features built from them have no value, while the rest of each table does
    empty = {table: set(cols) for table, cols in built.manifest["empty_features"].items()}
    for table, columns in shape.empty.items():
        assert columns <= empty.get(table, set()), table
    assert "product_activity" not in empty
    assert {"views_total", "purchases_total"}.isdisjoint(empty.get("user_activity", set()))


def test_without_content_the_content_source_is_off(built: Built) -> None:
    # given the registered model of a shape whose products carry no category, brand or
    # attributes (every shape here)
    from recommender.mlflow_model import load_recommender
    from recsys import tracking

    with scoped_env({}):
        tracking.use(built.workspace)
        model = load_recommender(f"models:/recsys-recommender@{ALIAS}")
    content = model.source("content")
    # then the content source embeds nothing and proposes nothing
    assert content.svd is None
    assert not content.embeddings.any()
    batch = model.batch(pd.DataFrame({c.USER_ID: [built.known_user, NEW_USER]}))
    assert len(content.propose(batch, model.exclusions(batch))) == 0
    # while the other sources still propose for the known user
    assert len(model.candidates(batch)) > 0


# ------------------------------------------------------------------------------ the service
def test_the_service_engine_answers_recommend_and_similar_items(built: Built) -> None:
    # given the engine the service runs, on the shape's materialised online store
    from serving.engine import Engine
    from serving.schemas import RecommendRequest, SimilarRequest
    from serving.settings import load_settings

    with scoped_env({"RECSYS_SERVE_WORKERS": "1"}):
        settings = load_settings().model_copy(update={"alias": ALIAS})
        engine = Engine(built.workspace, settings, background=False)
        try:
            # when a known user, a new user and a similar-items request are answered
            known = engine.recommend(RecommendRequest(user_id=built.known_user, k=K))
            new = engine.recommend(RecommendRequest(user_id=NEW_USER, k=K))
            item = _popular_item(built.workspace)
            similar = engine.similar(SimilarRequest(item_id=item, k=K))
        finally:
            engine.close()
    # then each list has K distinct items, ranked with the online features (no fallback)
    for answer in (known, new):
        assert answer.fallback is None, answer.fallback
        ids = [i.item_id for i in answer.items]
        assert len(ids) == K and len(set(ids)) == K
    # and the similar items (by co-visitation: content is off) are other items
    ids = [i.item_id for i in similar.items]
    assert 0 < len(ids) <= K and item not in ids and len(set(ids)) == len(ids)


def test_events_only_over_http(build: Callable[[str], Built], tmp_path: Path) -> None:
    # given the events-only shop's model behind `production` and the BentoML service
    shop = build("events_only")
    from recsys import tracking

    with scoped_env({}):
        promote(tracking.tracking_uri(shop.workspace))
    env = _service_env(shop.workspace.home, "local", {}, tmp_path / "bentoml")
    process, url = start_service(env, tmp_path / "service.log")
    try:
        import httpx

        with httpx.Client(base_url=url, timeout=60) as client:
            # when a known user, a new user and a similar-items request are posted
            answers = [
                client.post("/recommend", json={"user_id": user, "k": K})
                for user in (shop.known_user, NEW_USER)
            ]
            item = _popular_item(shop.workspace)
            similar = client.post("/similar_items", json={"item_id": item, "k": K})
    finally:
        stop_service(process)
    # then each is a 200 with K distinct items (no fallback), and similar items are others
    for response in answers:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["fallback"] is None, body["fallback"]
        ids = [i["item_id"] for i in body["items"]]
        assert len(ids) == K and len(set(ids)) == K
    assert similar.status_code == 200, similar.text
    ids = [i["item_id"] for i in similar.json()["items"]]
    assert 0 < len(ids) <= K and item not in ids


# ------------------------------------------------------------------------------ timestamps
@pytest.mark.parametrize("written", list(TIME_SHAPES))
def test_timestamps_written_otherwise_give_the_same_lake(
    written: str, shop: Shop, build: Callable[[str], Built], tmp_path: Path
) -> None:
    # given the events-only shop with its times written another way
    reference = build("events_only").workspace
    events = TIME_SHAPES[written](shop.events[REQUIRED])
    folder = _write(tmp_path / "shop", {c.EVENTS: events})
    home = tmp_path / "home"
    # when it is ingested and its features built
    cli(home, "local", {}, "ingest", str(folder))
    cli(home, "local", {}, "features", "build")
    # then its lake is byte for byte the plain UTC text's, so every later command is too
    mine = json.loads((home / "lake" / "manifest.json").read_text())
    theirs = json.loads((reference.lake / "manifest.json").read_text())
    assert mine["lake_version"] == theirs["lake_version"]
    # and the digits finer than a microsecond are counted in the quality report, not lost
    # silently (the other writings have none)
    report = json.loads((home / "reports" / "ingest" / "quality.json").read_text())
    cut = report["tables"][c.EVENTS].get("cut_to_microsecond", {})
    kept = report["tables"][c.EVENTS]["rows_kept"]
    assert cut == ({c.TIMESTAMP: kept} if written == "nanoseconds" else {})

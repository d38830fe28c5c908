"""`recsys train` and `recsys recommend` end to end on the tiny shop, through the real CLI.

One workspace is generated, ingested and trained once for the module; the tests read its
metrics, report and registered model, which a fresh Python process also loads from its alias
(started right after training, so it runs while the other tests do).

A pattern no shop would show (each of 30 new users views X, then views, carts and buys Y: two
products no user had touched together before) is added to the shop inside the test window
only: the model the test figures judge must not carry it, the registered artefact (refit on
every event) must. So must it know a user whose only purchase is on the lake's last day.
"""

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import read_lake
from recommender.catalog import Catalog
from recommender.features_source import OfflineFeatures
from recommender.mlflow_model import load_recommender
from recommender.model import Recommender
from recommender.state import ITEM, KIND, PURCHASED, TS, event_frame
from recsys import columns as c
from recsys import tracking
from recsys.cli import main
from recsys.workspace import Workspace
from training.config import load_config
from training.pipeline import train

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL_URI = "models:/recsys-recommender@candidate"
VALIDATION_DAYS = TEST_DAYS = 21
TRAIN_YAML = f"""\
split: {{validation_days: {VALIDATION_DAYS}, test_days: {TEST_DAYS}}}
requests: {{train: 300, early_stopping: 100, test: 300}}
model:
  als: {{iterations: 5, factors: 16}}
  ranker: {{n_estimators: 30}}
"""
MODELS = ("ranker", "random", "popular", "als", "covisit", "sknn", "content")
LEAK_USERS = [f"leak-u{i:02d}" for i in range(30)]
NEW_USER = "someone-brand-new"
LAST_DAY_BUYER = "bought-on-the-last-day"
NEW_PRODUCT = "brand-new-product"
K = 5


# Run in a fresh Python process: load the registered model by its alias and answer.
FRESH_PROCESS = """\
import json, sys
import mlflow.pyfunc
import numpy as np
import pandas as pd
from recsys import tracking
from recsys.workspace import Workspace

args = json.loads(sys.argv[1])
tracking.use(Workspace.from_env())
pyfunc = mlflow.pyfunc.load_model(args["uri"])
model = pyfunc.unwrap_python_model().recommender
users = pd.DataFrame({"user_id": [args["known"], args["new"]]})
out = {"allow_rebuy": model.allow_rebuy, "n_items": len(model.catalog)}
out["stored"] = pyfunc.predict(users, params={"k": args["k"]}).to_dict("list")
model.allow_rebuy = False
out["no_rebuy"] = pyfunc.predict(users, params={"k": args["k"]}).to_dict("list")
out["added"] = model.add_products(pd.DataFrame([args["product"]]))
new, template = model.catalog.items.rows([args["product"]["item_id"], args["template"]])
emb = model.source("content").embeddings
out["new_row"] = int(new)
out["embedding_rows"] = len(emb)
out["embedding_norm"] = float(np.linalg.norm(emb[new]))
out["same_as_template"] = bool(np.allclose(emb[new], emb[template], atol=1e-5))
found = model.candidates(model.batch(users.iloc[:1]))
out["candidates"] = [str(i) for i in model.catalog.items.ids[found["item"].to_numpy()]]
out["after"] = pyfunc.predict(users, params={"k": args["k"]}).to_dict("list")
print("RESULT " + json.dumps(out, default=lambda v: v.item()))
"""


@dataclass(frozen=True)
class Leak:
    """Two products never touched by one user before the test window, then paired in it."""

    first: str
    then: str


@dataclass
class Trained:
    workspace: Workspace
    metrics: dict
    leak: Leak
    model: Recommender
    config: Path
    fresh: "Background"


@dataclass
class Background:
    """A child process started once the module's model is trained, read by the tests later."""

    process: subprocess.Popen
    stdout: Path
    stderr: Path

    def result(self) -> str:
        code = self.process.wait(timeout=900)
        assert code == 0, self.stderr.read_text()[-4000:]
        return self.stdout.read_text()


def _cli(home: Path, *args: str) -> int:
    return main(["-q", "--home", str(home), "--profile", "local", *args])


@pytest.fixture(scope="module", autouse=True)
def _own_tracking():
    """MLflow and Feast settings come from each workspace, never from the caller's shell."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MLFLOW_TRACKING_URI", "RECSYS_MLFLOW_ARTIFACTS", "RECSYS_FEAST_PROJECT"):
            mp.delenv(name, raising=False)
        yield


def _add_leak(shop: Path) -> Leak:
    """Append the pattern to the shop's events, a week into the test window."""
    events = pd.read_parquet(shop / "events.parquet")
    end = events[c.TIMESTAMP].max().floor("D") + pd.Timedelta(days=1)
    test_start = end - pd.Timedelta(days=TEST_DAYS)
    before = events[events[c.TIMESTAMP] < test_start]
    counts = before[c.ITEM_ID].value_counts().sort_index(kind="stable")
    by_count = counts.sort_values(ascending=False, kind="stable").index
    first = str(by_count[0])
    with_first = before[c.USER_ID].isin(before.loc[before[c.ITEM_ID] == first, c.USER_ID])
    touched_with_first = set(before.loc[with_first, c.ITEM_ID])
    then = next(str(item) for item in by_count if item not in touched_with_first)
    price = float(events.loc[events[c.ITEM_ID] == then, c.PRICE].iloc[0])
    rows = []
    for i, user in enumerate(LEAK_USERS):
        at = test_start + pd.Timedelta(days=7, minutes=10 * i)
        for step, (item, kind) in enumerate(
            [(first, c.VIEW), (then, c.VIEW), (then, c.CART), (then, c.PURCHASE)]
        ):
            rows.append(
                (user, item, kind, at + pd.Timedelta(minutes=step), f"leak-s{i:02d}", price)
            )
    # a user whose only event is a purchase of `first` at the lake's last instant
    rows.append((LAST_DAY_BUYER, first, c.PURCHASE, events[c.TIMESTAMP].max(), "last-day", price))
    leak = pd.DataFrame(
        rows, columns=[c.USER_ID, c.ITEM_ID, c.EVENT_TYPE, c.TIMESTAMP, c.SESSION_ID, c.PRICE]
    )
    leak[c.QUANTITY] = np.int32(1)
    leak[c.DEVICE] = "desktop"
    leak[c.COUNTRY] = "DE"
    leak[c.TIMESTAMP] = leak[c.TIMESTAMP].astype(events[c.TIMESTAMP].dtype)
    both = pd.concat([events, leak[events.columns]], ignore_index=True)
    both.to_parquet(shop / "events.parquet", index=False)
    return Leak(first, then)


def _fresh_args(model: Recommender) -> dict:
    """A known buyer, a new user, and a new product copied from the buyer's last item."""
    known = _known_buyer(model)
    last = model.past[model.past[c.USER_ID] == known].sort_values(TS, kind="stable").iloc[-1]
    facts = model.catalog.facts.iloc[int(last[ITEM])]
    product = {
        c.ITEM_ID: NEW_PRODUCT,
        c.CATEGORY: facts[c.CATEGORY],
        c.BRAND: facts[c.BRAND],
        c.ATTRIBUTES: facts[c.ATTRIBUTES],
        c.PRICE: float(facts[c.PRICE]),
        c.CREATED_AT: pd.Timestamp(model.data_end - 3_600, unit="s", tz="UTC").isoformat(),
        c.IN_STOCK: True,
    }
    template = str(model.catalog.items.ids[int(last[ITEM])])
    return {"uri": MODEL_URI, "known": known, "new": NEW_USER, "k": K} | {
        "product": product,
        "template": template,
    }


def _start(folder: Path, args: list[str], env: dict[str, str]) -> Background:
    folder.mkdir(parents=True, exist_ok=True)
    out, err = folder / "stdout.txt", folder / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, *args], stdout=stdout, stderr=stderr, env=env, cwd=folder
        )
    return Background(process, out, err)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return env | {"RECSYS_HOME": str(home), "RECSYS_PROFILE": "local"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """Generate (plus the test-window pattern), ingest and train through the CLI; then start
    a fresh process asking the registered model (the tests read its answers later)."""
    root = tmp_path_factory.mktemp("training")
    shop, home, config = root / "shop", root / "home", root / "train.yaml"
    assert _cli(home, "generate", "--out", str(shop), "--scale", "tiny", "--seed", "0") == 0
    leak = _add_leak(shop)
    config.write_text(TRAIN_YAML)
    assert _cli(home, "ingest", str(shop)) == 0
    metrics = root / "metrics.json"
    assert _cli(home, "train", "--config", str(config), "--metrics-out", str(metrics)) == 0
    workspace = Workspace.from_env(home, "local")
    tracking.use(workspace)
    model = load_recommender(MODEL_URI)
    answers = json.dumps(_fresh_args(model))
    fresh = _start(root / "fresh", ["-c", FRESH_PROCESS, answers], _env(home))
    try:
        yield Trained(workspace, json.loads(metrics.read_text()), leak, model, config, fresh)
    finally:
        if fresh.process.poll() is None:
            fresh.process.kill()
            fresh.process.wait()


@pytest.fixture(scope="module")
def model(trained: Trained) -> Recommender:
    """The registered candidate, loaded back from the registry (not the trained object)."""
    return trained.model


@pytest.fixture(scope="module")
def lake_frame(trained: Trained, model: Recommender) -> pd.DataFrame:
    events, _, _, _ = read_lake(trained.workspace)
    return event_frame(events, model.catalog, model.config.events)


@pytest.fixture(scope="module")
def fresh(trained: Trained) -> dict:
    """What the fresh process answered (see FRESH_PROCESS)."""
    return json.loads(trained.fresh.result().split("RESULT ", 1)[1])


def _test_start(trained: Trained) -> float:
    return pd.Timestamp(trained.metrics["split"]["test_start"]).timestamp()


def _known_buyer(model: Recommender) -> str:
    """The user with the most stored purchases (ties by id)."""
    bought = model.past[model.past[KIND] == PURCHASED].groupby(c.USER_ID).size()
    bought = bought.sort_index().sort_values(ascending=False, kind="stable")
    return str(bought.index[0])


def _bought(model: Recommender, user: str) -> set[str]:
    rows = model.past[(model.past[c.USER_ID] == user) & (model.past[KIND] == PURCHASED)][ITEM]
    return set(model.catalog.items.ids[rows.to_numpy()])


def _check_lists(
    recs: pd.DataFrame, users: list[str], catalog: Catalog, k: int | None, added: tuple = ()
) -> None:
    """Ranks 1..n per user (n = k, or at least K when k is None), distinct items of the
    catalogue or of the products ``added`` to it."""
    assert set(recs[c.USER_ID]) == set(users)
    for user in users:
        mine = recs[recs[c.USER_ID] == user]
        n = len(mine) if k is None else k
        assert n >= K, user
        assert mine["rank"].tolist() == list(range(1, n + 1)), user
        assert mine[c.ITEM_ID].is_unique, user
        known = (catalog.items.rows(mine[c.ITEM_ID]) >= 0) | mine[c.ITEM_ID].isin(added)
        assert known.all(), user


def _top(recs: dict | pd.DataFrame, user: str) -> list[str]:
    recs = pd.DataFrame(recs)
    mine = recs[(recs[c.USER_ID] == user) & (recs["rank"] <= K)].sort_values("rank")
    return mine[c.ITEM_ID].tolist()


# ------------------------------------------------------------------------ metrics and report
def test_metrics_json_holds_the_split_and_every_model_and_segment(trained: Trained) -> None:
    # given the metrics written by `recsys train --metrics-out`
    metrics = trained.metrics
    # then the split is the configured whole days counted back from the end
    split = metrics["split"]
    end, test_start = pd.Timestamp(split["end"]), pd.Timestamp(split["test_start"])
    assert end - test_start == pd.Timedelta(days=TEST_DAYS)
    assert test_start - pd.Timestamp(split["validation_start"]) == pd.Timedelta(
        days=VALIDATION_DAYS
    )
    assert 20 <= split["test_requests"] <= 300 and split["test_targets"] >= split["test_requests"]
    # and the ranker and every baseline are judged, overall and by segment
    assert set(metrics["models"]) == set(MODELS)
    assert set(metrics["segments"]) == set(MODELS)
    for name in MODELS:
        overall = metrics["models"][name]
        for key in ("ndcg@10", "ndcg@20", "recall@10", "recall@20", "map@10", "hit_rate@10"):
            value = overall[key]
            assert isinstance(value, float) and math.isfinite(value), (name, key)
            assert 0.0 <= value <= 1.0, (name, key, value)
        assert overall["recall@10"] <= overall["recall@20"]
        for segment, values in metrics["segments"][name].items():
            for key in ("ndcg@10", "recall@20"):
                assert 0.0 <= values[key] <= 1.0 and math.isfinite(values[key]), (segment, key)
        assert "new_users" in metrics["segments"][name]
    # and the ranker learned something: far better than random and global popularity
    ndcg = {name: metrics["models"][name]["ndcg@10"] for name in MODELS}
    assert ndcg["ranker"] > 2 * ndcg["random"]
    assert ndcg["ranker"] > ndcg["popular"]
    assert metrics["registered"]["alias"] == "candidate"


def test_cold_start_choice_judges_every_validation_request_without_a_past(
    trained: Trained, lake_frame: pd.DataFrame
) -> None:
    # given the validation window's requests: each user's first session there with a cart or
    # purchase, from its start
    split = trained.metrics["split"]
    start, end = (pd.Timestamp(split[k]).timestamp() for k in ("validation_start", "test_start"))
    window = lake_frame[(lake_frame[TS] >= start) & (lake_frame[TS] < end)]
    hits = window[window[KIND] > 0].sort_values(TS, kind="stable")
    sessions = hits.groupby(c.USER_ID).head(1)[c.SESSION_ID]
    at = window[window[c.SESSION_ID].isin(sessions)].groupby(c.USER_ID)[TS].min()
    # those without any event before them
    first_seen = lake_frame.groupby(c.USER_ID)[TS].min().reindex(at.index)
    cold = int((first_seen >= at).sum())
    # then the cold-start choice counted every one of them, not a sample
    choice = trained.metrics["cold_start"]
    assert choice["cold_requests"] == cold > 0
    # and answers them by the order with the better NDCG@10; with fewer than 20 (the tiny
    # shop's case) nothing tells the orders apart and the ranker's stays
    if cold < 20:
        assert choice == {"cold_requests": cold, "by_popularity": False}
    else:
        assert choice["by_popularity"] == (choice["popularity"] > choice["ranker"])


def test_training_report_and_its_plots_are_written(trained: Trained) -> None:
    # given the trained workspace
    folder = trained.workspace.reports / "training"
    # then the report names its plots, and each plot is a PNG image
    report = (folder / "report.md").read_text()
    assert report.startswith("# Training report")
    assert Path(trained.metrics["report"]) == folder / "report.md"
    for plot in ("feature_importance.png", "segments.png", "learning_curve.png"):
        assert f"]({plot})" in report
        assert (folder / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot


# ------------------------------------------------------------------------ leakage
def test_the_lake_holds_the_test_window_pattern(
    trained: Trained, model: Recommender, lake_frame: pd.DataFrame
) -> None:
    # given the lake: the pattern survived ingestion, all of it inside the test window
    leak_rows = lake_frame[lake_frame[c.USER_ID].isin(LEAK_USERS)]
    assert len(leak_rows) == 4 * len(LEAK_USERS)
    assert (lake_frame[c.USER_ID] == LAST_DAY_BUYER).sum() == 1
    assert leak_rows[TS].min() >= _test_start(trained)
    # when a co-visitation source is fitted on everything, test window included
    everything = Recommender.fit(
        lake_frame, model.catalog, pd.DataFrame({c.USER_ID: []}), model.config, only=("covisit",)
    )
    # then the pattern is plain to see: the leak check below can fail
    x, y = model.catalog.items.rows([trained.leak.first, trained.leak.then])
    covisit = everything.source("covisit")
    assert covisit.matrices["follow"][x, y] > 0
    assert covisit.matrices["session"][x, y] > 0


def test_the_judged_model_never_saw_the_test_window(
    trained: Trained, lake_frame: pd.DataFrame
) -> None:
    # given the model the test figures judge (sources fit on train + validation)
    test_ts = _test_start(trained)
    before = lake_frame[lake_frame[TS] < test_ts]
    judged = trained.metrics["artefact"]
    # then its histories end before the test window and it knows only the users before it
    assert pd.Timestamp(judged["judged_model_data_end"]).timestamp() == before[TS].max()
    assert judged["judged_model_users"] == before[c.USER_ID].nunique()
    # and a model fit the way it was carries none of the test window's pair
    refit = Recommender.fit(
        before,
        trained.model.catalog,
        pd.DataFrame({c.USER_ID: []}),
        trained.model.config,
        only=("covisit",),
    )
    x, y = trained.model.catalog.items.rows([trained.leak.first, trained.leak.then])
    for name, matrix in refit.source("covisit").matrices.items():
        assert matrix[x, y] == 0 and matrix[y, x] == 0, name


def test_registered_artefact_knows_every_event_up_to_the_data_end(
    trained: Trained, model: Recommender, lake_frame: pd.DataFrame
) -> None:
    # given the registered model and the lake it was trained from
    # then its stored histories reach the lake's last event, the test window's included
    assert model.data_end == lake_frame[TS].max()
    assert set(model.users.ids) == set(lake_frame[c.USER_ID])
    assert set(LEAK_USERS) <= set(model.past[c.USER_ID])
    assert trained.metrics["artefact"]["deployed_events"] == len(lake_frame)
    # and the pair seen only in the test window is in its item-to-item matrices
    x, y = model.catalog.items.rows([trained.leak.first, trained.leak.then])
    assert model.source("covisit").matrices["follow"][x, y] > 0
    # and its all-time popularity counts every event
    n_items = len(model.catalog)
    expected = np.log1p(np.bincount(lake_frame[ITEM], minlength=n_items).astype(np.float32))
    np.testing.assert_array_equal(model.source("popularity").total, expected)


def test_a_purchase_on_the_lakes_last_day_changes_that_users_recommend_list(
    trained: Trained, model: Recommender, tmp_path: Path
) -> None:
    # given a user whose only event is a purchase of the pattern's first product, on the
    # lake's last day, and a user nobody has seen
    users = _users_file(tmp_path / "users.csv", c.USER_ID, [LAST_DAY_BUYER, NEW_USER])
    # when `recsys recommend` answers both from the registered artefact
    out = tmp_path / "recs.csv"
    assert _recommend(trained.workspace.home, users, out, "--k", str(K)) == 0
    recs = pd.read_csv(out, dtype={c.USER_ID: str, c.ITEM_ID: str})
    # then the buyer is not answered as a stranger: the list follows from the purchase
    buyer, stranger = _top(recs, LAST_DAY_BUYER), _top(recs, NEW_USER)
    assert len(buyer) == len(stranger) == K
    assert buyer != stranger
    # and what the test window taught follows from it: the pattern's second product is among
    # the buyer's candidates
    found = model.candidates(model.batch(pd.DataFrame({c.USER_ID: [LAST_DAY_BUYER]})))
    assert trained.leak.then in set(model.catalog.items.ids[found[ITEM].to_numpy()])


# ------------------------------------------------------------------------ determinism
def test_training_again_on_the_same_data_and_seed_gives_identical_metrics(
    trained: Trained,
) -> None:
    # given the trained workspace, its metrics as written by `recsys train`
    first = trained.metrics
    # when the same configuration is trained again on the same lake and feature tables
    result = train(trained.workspace, load_config(trained.config))
    again = json.loads(json.dumps(result.metrics, default=str))
    # then every judged number is exactly the same
    assert again["split"] == first["split"]
    assert again["models"] == first["models"]
    assert again["segments"] == first["segments"]
    assert again["candidates"] == first["candidates"]
    assert again["ranker"] == first["ranker"]
    assert again["rebuy"] == first["rebuy"]
    assert again["cold_start"] == first["cold_start"]


# ------------------------------------------------------------------------ registered model
def test_registered_model_answers_k_ranked_items_in_a_fresh_process(
    model: Recommender, fresh: dict
) -> None:
    # given a fresh Python process that loaded the model from its registry alias
    # when it was asked, through mlflow's pyfunc, for k = 5 items for a known and a new user
    # then each user gets exactly k distinct catalogue items ranked 1..k
    users = [_known_buyer(model), NEW_USER]
    for answer in ("stored", "no_rebuy", "after"):
        _check_lists(pd.DataFrame(fresh[answer]), users, model.catalog, K, (NEW_PRODUCT,))


def test_registered_model_answers_in_a_fresh_process_as_in_this_one(
    trained: Trained, model: Recommender, fresh: dict
) -> None:
    # given the fresh process's answers for a known and a brand-new user
    users = [_known_buyer(model), NEW_USER]
    _check_lists(pd.DataFrame(fresh["stored"]), users, model.catalog, k=None)
    # when this process asks the same registered model with the same feature store
    here = model.recommend(pd.DataFrame({c.USER_ID: users}), K, OfflineFeatures(trained.workspace))
    # then both get the same best k items in the same order
    for user in users:
        assert _top(fresh["stored"], user) == _top(here, user), user
    assert fresh["allow_rebuy"] == model.allow_rebuy


def test_registered_model_offers_no_rebuys_when_they_are_not_allowed(
    model: Recommender, fresh: dict
) -> None:
    # given the known user's purchases, and the fresh process's answers with rebuys forbidden
    known = _known_buyer(model)
    bought = _bought(model, known)
    assert bought
    no_rebuy = pd.DataFrame(fresh["no_rebuy"])
    stored = pd.DataFrame(fresh["stored"])
    # then nothing they bought is offered again; nor as stored when the model forbids rebuys
    assert not bought & set(no_rebuy.loc[no_rebuy[c.USER_ID] == known, c.ITEM_ID])
    if not model.allow_rebuy:
        assert not bought & set(stored.loc[stored[c.USER_ID] == known, c.ITEM_ID])


def test_new_product_is_embedded_and_becomes_a_candidate_in_a_fresh_process(
    model: Recommender, fresh: dict
) -> None:
    # given the fresh process added a product the model never saw, copied from the known
    # user's last item (same category, brand and attributes), launched an hour before data end
    # then it got the next catalogue row and a content embedding, the same as its model's
    assert fresh["added"] == 1 and fresh["new_row"] == fresh["n_items"] == len(model.catalog)
    assert fresh["embedding_rows"] == len(model.catalog) + 1
    assert fresh["embedding_norm"] == pytest.approx(1.0, abs=1e-4)
    assert fresh["same_as_template"]
    # and it is among the known user's candidates, and the model still answers
    assert NEW_PRODUCT in fresh["candidates"]
    users = [_known_buyer(model), NEW_USER]
    _check_lists(pd.DataFrame(fresh["after"]), users, model.catalog, None, (NEW_PRODUCT,))


# ------------------------------------------------------------------------ recsys recommend
def _users_file(path: Path, column: str, users: list[str]) -> Path:
    pd.DataFrame({column: users}).to_csv(path, index=False)
    return path


def _recommend(home: Path, users: Path, out: Path, *more: str) -> int:
    args = ("--alias", "candidate", "--users", str(users), "--out", str(out), *more)
    return _cli(home, "recommend", *args)


def test_recommend_writes_csv_and_parquet_with_the_contract_columns(
    trained: Trained, model: Recommender, tmp_path: Path
) -> None:
    # given a users file with a known user and a new one
    users = [_known_buyer(model), NEW_USER]
    given = _users_file(tmp_path / "users.csv", c.USER_ID, users)
    home = trained.workspace.home
    # when recommendations are written as CSV and as Parquet
    for out in ("recs.csv", "recs.parquet"):
        assert _recommend(home, given, tmp_path / out, "--k", str(K)) == 0
    as_csv = pd.read_csv(tmp_path / "recs.csv", dtype={c.USER_ID: str, c.ITEM_ID: str})
    as_parquet = pd.read_parquet(tmp_path / "recs.parquet")
    # then both hold exactly user_id, rank, item_id, score: k ranked distinct items a user
    for recs in (as_csv, as_parquet):
        assert list(recs.columns) == [c.USER_ID, "rank", c.ITEM_ID, "score"]
        _check_lists(recs, users, model.catalog, k=K)
        assert recs["score"].notna().all()
    key = [c.USER_ID, "rank", c.ITEM_ID]
    pd.testing.assert_frame_equal(as_csv[key], as_parquet[key], check_dtype=False)
    # and they are the lists the registered model gives for these users
    here = model.recommend(pd.DataFrame({c.USER_ID: users}), K, OfflineFeatures(trained.workspace))
    assert as_parquet[c.ITEM_ID].tolist() == here[c.ITEM_ID].tolist()


def test_recommend_users_file_without_user_id_column_exits_2_naming_it(
    trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a users file whose column is called 'customer'
    given = _users_file(tmp_path / "users.csv", "customer", ["u0001"])
    # when
    code = _recommend(trained.workspace.home, given, tmp_path / "recs.csv")
    # then a usage error names the file and the missing column, and nothing is written
    assert code == 2
    err = capsys.readouterr().err
    assert str(given) in err and "'user_id'" in err
    assert not (tmp_path / "recs.csv").exists()


def test_recommend_rejects_an_output_extension_it_cannot_write(
    trained: Trained, model: Recommender, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a valid users file but an output named .json
    given = _users_file(tmp_path / "users.csv", c.USER_ID, [_known_buyer(model)])
    # when
    code = _recommend(trained.workspace.home, given, tmp_path / "recs.json")
    # then
    assert code == 2
    assert "must be .csv or .parquet" in capsys.readouterr().err
    assert not (tmp_path / "recs.json").exists()

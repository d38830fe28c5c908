"""The ranker ranks: on the small generated shop, trained with the default settings, it keeps
many trees, and every known user's top-10, from `recsys recommend` and from the engine the
service runs, has ten distinct scores, in rank order.

One tree (what early stopping on a few hundred requests used to keep) gave each candidate one
of a handful of scores: a known user's whole top-10 tied, the order left to tie-breaking.
"""

import itertools
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from recsys import columns as c
from recsys.workspace import Workspace
from tests.serving_stack import cli, scoped_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# the defaults, but fewer test requests: this module checks the lists, not the test figures
TRAIN_YAML = "requests: {test: 500}\n"
K = 10


@dataclass(frozen=True)
class Trained:
    workspace: Workspace
    metrics: dict
    recs: pd.DataFrame
    known: list[str]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("ranker-scores")
    shop, home, config = root / "shop", root / "home", root / "train.yaml"
    config.write_text(TRAIN_YAML)
    metrics, recs = root / "metrics.json", root / "recs.parquet"
    for args in (
        ("generate", "--out", str(shop), "--scale", "small", "--seed", "0"),
        ("ingest", str(shop)),
        ("train", "--config", str(config), "--metrics-out", str(metrics)),
        ("features", "materialize"),
        ("recommend", "--alias", "candidate", "--all", "--k", str(K), "--out", str(recs)),
    ):
        cli(home, "local", {}, *args)
    workspace = Workspace(home=home.resolve(), profile="local")
    events = pd.read_parquet(workspace.table(c.EVENTS), columns=[c.USER_ID])
    known = sorted(events[c.USER_ID].astype(str).unique())
    return Trained(workspace, json.loads(metrics.read_text()), pd.read_parquet(recs), known)


def _distinct_and_ordered(scores: list[float]) -> bool:
    return len(scores) == K and all(a > b for a, b in itertools.pairwise(scores))


def test_the_ranker_keeps_many_trees(trained: Trained) -> None:
    # given the training report
    ranker = trained.metrics["ranker"]
    # then it kept more than one round, checked against one tree on requests it never saw
    assert ranker["rounds"] >= 50
    assert ranker["check_requests"] > 0
    low, high = ranker["check_ndcg@10"]["difference_ci95"]
    assert low <= high
    # and it learned from three windows' requests
    assert [w["window"] for w in ranker["learning_requests"]] == [
        "validation",
        "validation - 1",
        "validation - 2",
    ]


def test_batch_top10_of_every_known_user_has_distinct_scores(trained: Trained) -> None:
    # given `recsys recommend --all` lists
    recs = trained.recs[trained.recs[c.USER_ID].isin(trained.known)]
    assert recs[c.USER_ID].nunique() == len(trained.known)
    # then each known user's ten scores are distinct and fall with the rank
    ordered = recs.sort_values([c.USER_ID, "rank"]).groupby(c.USER_ID)["score"].agg(list)
    tied = [user for user, scores in ordered.items() if not _distinct_and_ordered(scores)]
    assert tied == []


def test_served_top10_of_known_users_has_distinct_scores(trained: Trained) -> None:
    # given the engine the service runs, on the materialised online store
    from serving.engine import Engine
    from serving.schemas import RecommendRequest
    from serving.settings import load_settings

    users = trained.known[:: max(1, len(trained.known) // 40)][:40]
    with scoped_env({"RECSYS_HOME": str(trained.workspace.home), "RECSYS_PROFILE": "local"}):
        settings = load_settings().model_copy(update={"alias": "candidate"})
        engine = Engine(trained.workspace, settings, background=False)
        try:
            answers = {u: engine.recommend(RecommendRequest(user_id=u, k=K)) for u in users}
        finally:
            engine.close()
    # then every answer is ranked (no fallback) with ten distinct, falling scores
    for user, answer in answers.items():
        assert answer.fallback is None, (user, answer.fallback)
        assert _distinct_and_ordered([item.score for item in answer.items]), user
    assert np.isfinite([i.score for a in answers.values() for i in a.items]).all()

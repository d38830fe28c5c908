"""Deliberately bad candidates, logged as real model versions, for testing and demonstrating
the canary: the recommender of an existing version with its ranker replaced by one that
scores at random (the candidates stay the same, their order does not mean anything)."""

import itertools
import logging

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


class RandomRanker:
    """A ranker whose scores are uniform noise: the same interface as
    ``recommender.ranker.Ranker`` (feature names, ``score``), no model behind it."""

    def __init__(self, feature_names: list[str], seed: int = 0) -> None:
        self.feature_names = list(feature_names)
        self.booster = None
        self.best_iteration = None
        self.seed = seed
        self._calls = itertools.count()

    def score(self, features: pd.DataFrame) -> np.ndarray:
        rng = np.random.default_rng([self.seed, next(self._calls)])
        return rng.random(len(features)).astype(np.float32)

    def __getstate__(self) -> dict:
        return {"feature_names": self.feature_names, "seed": self.seed}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["feature_names"], state["seed"])


def log_random_ranker_version(model_uri: str, model_name: str, seed: int = 0) -> str:
    """Load ``model_uri``, replace its ranker by a ``RandomRanker``, log and register the
    result under ``model_name`` (in the active MLflow experiment); returns its version."""
    import mlflow

    from recommender.mlflow_model import load_recommender, log_recommender

    model = load_recommender(model_uri)
    names = model.ranker.feature_names if model.ranker is not None else []
    model.ranker = RandomRanker(names, seed)
    with mlflow.start_run(run_name="random-ranker"):
        mlflow.set_tag("recsys.candidate", f"random ranker over {model_uri}")
        version = log_recommender(model, model_name)
    logger.info("registered %s version %s: a random ranker", model_name, version)
    return version

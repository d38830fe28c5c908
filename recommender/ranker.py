"""The XGBoost LambdaMART ranker over candidate and stored features, grouped by request."""

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recommender.config import RankerConfig

logger = logging.getLogger(__name__)


def ndcg_at_10(scores: np.ndarray, labels: np.ndarray, qid: np.ndarray) -> np.ndarray:
    """NDCG@10 of each request with a positive (binary labels; rows grouped by request, ties
    kept in row order, as the answering path keeps candidates in theirs)."""
    frame = pd.DataFrame({"q": qid, "y": labels, "s": -np.asarray(scores, dtype=np.float64)})
    rank = frame.groupby("q", sort=False)["s"].rank(method="first").to_numpy()
    gain = np.where(rank <= 10, frame["y"].to_numpy() / np.log2(rank + 1), 0.0)
    dcg = pd.Series(gain).groupby(qid, sort=False).sum().to_numpy()
    n_pos = frame.groupby("q", sort=False)["y"].sum().to_numpy().clip(max=10).astype(int)
    ideal = np.cumsum(1 / np.log2(np.arange(2, 12)))
    return dcg[n_pos > 0] / ideal[n_pos[n_pos > 0] - 1]


@dataclass(frozen=True)
class RoundChoice:
    """How many boosting rounds the ranker keeps, and the evidence for it."""

    best_iteration: int
    stopped: int
    more_trees: float  # check requests' mean NDCG@10 with the more-trees candidate
    one_tree: float  # ... with one tree
    ci: tuple[float, float]  # 95% CI of the paired difference (more - one)
    check_requests: int


def choose_rounds(more: np.ndarray, one: np.ndarray, candidate: int, stopped: int) -> RoundChoice:
    """Keep ``candidate`` rounds (more than one tree) unless one tree is better beyond noise
    on the check requests, which neither learning nor early stopping saw.

    One tree gives every candidate of a request one of a few scores, so the served order is
    mostly tie-breaking; it is kept only where the data says more trees hurt (the paired 95%
    interval of the difference lies below zero). Early in this project, with 6,000 learning
    requests from one window, more trees were worse on held-out requests: a choice made by
    measurement on each run, not once for all data."""
    diff = more - one
    n = len(diff)
    half = 1.96 * diff.std(ddof=1) / np.sqrt(n) if n > 1 else np.inf
    low, high = (
        float(diff.mean() - half) if n else -np.inf,
        float(diff.mean() + half) if n else np.inf,
    )
    worse = n > 1 and high < 0
    return RoundChoice(
        best_iteration=0 if worse or candidate == 0 else candidate,
        stopped=stopped,
        more_trees=float(more.mean()) if n else float("nan"),
        one_tree=float(one.mean()) if n else float("nan"),
        ci=(low, high),
        check_requests=n,
    )


def uninformative(matrix: np.ndarray, names: list[str]) -> list[str]:
    """The columns with one value or none at all: a feature whose input the shop lacks (no
    products table, no prices, ...) is all missing, and no tree can split on it."""
    low = np.nanmin(matrix, axis=0, initial=np.inf)
    high = np.nanmax(matrix, axis=0, initial=-np.inf)
    return [name for name, lo, hi in zip(names, low, high, strict=True) if not lo < hi]


class Ranker:
    def __init__(self, feature_names: list[str], booster=None) -> None:
        self.feature_names = list(feature_names)
        self.booster = booster
        self.curve: dict[str, list[float]] = {}
        self.best_iteration: int | None = None
        self.rounds: RoundChoice | None = None

    def matrix(self, features: pd.DataFrame) -> np.ndarray:
        """The ranker's columns in its order; a feature missing here is missing (NaN)."""
        if list(features.columns) == self.feature_names:  # (the service's frame: no reindex)
            return features.to_numpy(dtype=np.float32)
        return features.reindex(columns=self.feature_names).to_numpy(dtype=np.float32)

    def fit(
        self,
        train: tuple[pd.DataFrame, np.ndarray, np.ndarray],
        stop: tuple[pd.DataFrame, np.ndarray, np.ndarray],
        check: tuple[pd.DataFrame, np.ndarray, np.ndarray],
        config: RankerConfig,
        seed: int,
    ) -> None:
        """Each part: features, 0/1 labels, request ids. ``stop``: held-out requests early
        stopping watches; ``check``: other held-out requests, on which the kept rounds are
        checked against one tree (see ``choose_rounds``)."""
        import xgboost as xgb

        def dmatrix(part):
            x, y, qid = part
            order = np.argsort(qid, kind="stable")
            d = xgb.DMatrix(self.matrix(x.iloc[order]), label=y[order], qid=qid[order])
            d.feature_names = [f.replace("[", "(").replace("]", ")") for f in self.feature_names]
            return d

        dtrain, dstop, dcheck = dmatrix(train), dmatrix(stop), dmatrix(check)
        blank = uninformative(self.matrix(train[0]), self.feature_names)
        if blank:
            logger.info(
                "ranker: %d of %d features carry nothing in this data (missing or constant): %s",
                len(blank),
                len(self.feature_names),
                ", ".join(blank),
            )
        params = {
            "objective": "rank:ndcg",
            # early stopping watches the last metric: NDCG@10, the one the rounds are chosen on
            "eval_metric": ["ndcg@20", "ndcg@10"],
            "lambdarank_pair_method": "topk",
            "lambdarank_num_pair_per_sample": 10,
            "tree_method": "hist",
            "learning_rate": config.learning_rate,
            "max_depth": config.max_depth,
            "min_child_weight": config.min_child_weight,
            "subsample": config.subsample,
            "colsample_bytree": config.colsample_bytree,
            "seed": seed,
            "nthread": 2,
        }
        evals: dict = {}
        self.booster = xgb.train(
            params,
            dtrain,
            num_boost_round=config.n_estimators,
            evals=[(dtrain, "train"), (dstop, "validation")],
            # never stop before min_rounds: the rounds are checked below, not left to noise
            early_stopping_rounds=max(config.early_stopping_rounds, config.min_rounds),
            evals_result=evals,
            verbose_eval=False,
        )
        self.curve = {
            f"{split}_{metric}": [float(v) for v in values]
            for split, metrics in evals.items()
            for metric, values in metrics.items()
        }
        stopped = int(self.booster.best_iteration)
        watched = self.curve["validation_ndcg@10"]
        # more than one tree: early stopping's pick, or min_rounds when it picked fewer
        candidate = min(max(stopped, config.min_rounds - 1), len(watched) - 1)
        _, check_y, check_qid = check
        order = np.argsort(check_qid, kind="stable")
        per_request = {
            rounds: ndcg_at_10(
                self.booster.predict(dcheck, iteration_range=(0, rounds)),
                check_y[order],
                check_qid[order],
            )
            if len(check_qid)
            else np.zeros(0)
            for rounds in (1, candidate + 1)
        }
        self.rounds = choose_rounds(per_request[candidate + 1], per_request[1], candidate, stopped)
        self.best_iteration = self.rounds.best_iteration
        logger.info(
            "ranker: keeps %d rounds (early stopping: %d); check requests (%d): NDCG@10 "
            "%.4f with them, %.4f with one tree, difference CI [%+.4f, %+.4f]",
            self.best_iteration + 1,
            stopped + 1,
            self.rounds.check_requests,
            self.rounds.more_trees,
            self.rounds.one_tree,
            *self.rounds.ci,
        )

    def score(self, features: pd.DataFrame) -> np.ndarray:
        if len(features) == 0:
            return np.zeros(0, dtype=np.float32)
        # in place: no DMatrix for a request's few hundred rows (the matrix's columns are the
        # booster's, in its order; missing values are NaN as in training)
        limit = (0, self.best_iteration + 1) if self.best_iteration is not None else (0, 0)
        return self.booster.inplace_predict(
            self.matrix(features), iteration_range=limit, validate_features=False
        )

    def importance(self) -> pd.Series:
        gain = self.booster.get_score(importance_type="total_gain")
        return pd.Series(gain, dtype=np.float64).sort_values(ascending=False)

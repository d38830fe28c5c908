"""Judging registered versions on the lake's most recent window, the same requests for each.

Training judged each version once, on its own test window; to compare a candidate with
production the two must answer the same requests, so both are loaded from the registry and
run through the very code training evaluates with (``training.requests.window_requests``,
``Recommender.recommend_batch``, ``training.evaluate.judge``), with stored features from the
workspace's offline store as of each request.
"""

import logging
from dataclasses import dataclass, field

from recsys.errors import RecsysError
from recsys.splits import split_last_days
from recsys.workspace import Workspace
from registry.policy import WindowPolicy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """The evaluation window and what was drawn from it."""

    start: str
    end: str
    requests: int
    targets: int
    lake_version: str

    def describe(self) -> str:
        return (
            f"{self.start[:10]} to {self.end[:10]} (end exclusive), {self.requests} requests, "
            f"lake {self.lake_version}"
        )


@dataclass(frozen=True)
class Evaluation:
    version: str
    window: Window
    overall: dict[str, float]
    segments: dict[str, dict[str, float]]

    def metrics(self) -> dict[str, dict]:
        """The shape the gates read: ``{"overall": ..., "segments": ...}``."""
        return {"overall": self.overall, "segments": self.segments}


@dataclass
class Evaluator:
    """Evaluates versions of one registered model on one window; each version once per process
    (a plan compares several versions with the same production)."""

    workspace: Workspace
    model_name: str
    window: WindowPolicy
    ks: tuple[int, ...] = (10, 20)
    _done: dict[str, Evaluation] = field(default_factory=dict)
    _lake: tuple | None = None
    _features: object = None

    def _load_lake(self) -> tuple:
        from features.build import read_lake

        if self._lake is None:
            self._lake = read_lake(self.workspace)
        return self._lake

    def _feature_source(self):
        from recommender.features_source import OfflineFeatures

        if self._features is None:
            try:
                self._features = OfflineFeatures(self.workspace)
            except RecsysError:
                raise
            except Exception as exc:
                raise RecsysError(
                    f"cannot open the feature store of {self.workspace.home} "
                    f"({self.workspace.profile} profile) to evaluate versions: {exc}"
                ) from None
        return self._features

    def evaluate(self, version: str) -> Evaluation:
        if version not in self._done:
            self._done[version] = self._evaluate(version)
        return self._done[version]

    def _evaluate(self, version: str) -> Evaluation:
        from recommender.mlflow_model import load_recommender
        from recommender.state import ITEM, TS, batch_from_events, event_frame
        from training import evaluate
        from training.requests import window_requests

        events, products, users, lake_version = self._load_lake()
        uri = f"models:/{self.model_name}/{version}"
        logger.info("evaluating %s on the lake's last %d days", uri, self.window.days)
        try:
            model = load_recommender(uri)
        except Exception as exc:
            raise RecsysError(f"cannot load {uri}: {exc}") from None
        if len(products):
            model.add_products(products)  # products launched after its training
        split = split_last_days(events, 1, self.window.days)
        requests, targets = window_requests(
            events,
            split.test_start,
            split.end,
            tuple(self.window.target_events),
            self.window.requests,
            self.window.seed,
        )
        if len(requests) == 0:
            raise RecsysError(
                f"no requests in the lake's last {self.window.days} days (no "
                f"{'/'.join(self.window.target_events)} events): widen window.days in the policy"
            )
        if model.data_end >= split.test_start.timestamp():
            logger.warning(
                "%s was trained on events up to %s, inside the evaluation window (from %s): "
                "its figures here are optimistic (a fair comparison needs events neither "
                "version was trained on; train with `artefact: judged` to register the model "
                "fit before its test window)",
                uri,
                model.meta.get("data_end", model.data_end),
                split.test_start,
            )
        frame = event_frame(events, model.catalog, model.config.events)
        frame = frame[frame[ITEM].to_numpy() >= 0]
        past = frame[frame[TS] < split.end.timestamp()]
        batch = batch_from_events(requests, past, users, model.users, model.config.history_items)
        ranked = model.recommend_batch(batch, max(self.ks), self._feature_source())
        lists = {"model": evaluate.as_lists(model, ranked, requests)}
        popularity, prices = evaluate.item_context(model, frame, split.test_start.timestamp())
        overall, by_segment = evaluate.judge(
            lists, model, batch, requests, targets, self.ks, popularity, prices
        )
        window = Window(
            start=str(split.test_start),
            end=str(split.end),
            requests=len(requests),
            targets=len(targets),
            lake_version=str(lake_version),
        )
        return Evaluation(
            version=version,
            window=window,
            overall={k: float(v) for k, v in overall["model"].items()},
            segments=by_segment.get("model", {}),
        )

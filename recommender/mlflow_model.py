"""The registered form of a model version: an MLflow pyfunc holding the whole recommender.

``mlflow.pyfunc.load_model("models:/<name>@<alias>")`` gives a model that answers on its own;
``load_recommender`` gives the ``Recommender`` itself, which the service and ``recsys
recommend`` drive with their own feature source.
"""

import logging

import mlflow.pyfunc
import pandas as pd

from recommender.model import Recommender

logger = logging.getLogger(__name__)
ARTIFACT = "recommender"


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """pyfunc input: a frame with ``user_id`` (optional ``ts``, ``device``, ``country``);
    params: ``k``. Output: ``user_id, rank, item_id, score``."""

    def load_context(self, context) -> None:
        self.recommender = Recommender.load(context.artifacts[ARTIFACT])
        self.feature_source = None

    def _features(self):
        if self.feature_source is None:
            from recommender.features_source import NoFeatures, OfflineFeatures
            from recsys.workspace import Workspace

            try:
                self.feature_source = OfflineFeatures(Workspace.from_env())
            except Exception as exc:  # no feature store here: rank on what the model holds
                logger.warning("no feature store (%s): ranking without stored features", exc)
                self.feature_source = NoFeatures()
        return self.feature_source

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        k = int((params or {}).get("k", 10))
        return self.recommender.recommend(model_input, k, self._features())


def log_recommender(model: Recommender, model_name: str, **options) -> str:
    """Log ``model`` in the active run as the ``recommender`` pyfunc and register it under
    ``model_name``; returns the new version. Every version is made here, in the one form
    serving loads; ``options`` go to ``mlflow.pyfunc.log_model`` (requirements, signature,
    metadata)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        folder = model.save(Path(tmp) / ARTIFACT)
        info = mlflow.pyfunc.log_model(
            name="recommender",
            python_model=RecommenderModel(),
            artifacts={ARTIFACT: str(folder)},
            registered_model_name=model_name,
            **options,
        )
    return str(info.registered_model_version)


def load_recommender(uri: str) -> Recommender:
    """The Recommender behind a registry URI such as ``models:/recsys-recommender@production``."""
    model = mlflow.pyfunc.load_model(uri)
    return model.unwrap_python_model().recommender

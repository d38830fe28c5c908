"""The registered model as the registry commands see it: stage aliases, versions, tags.

A thin layer over ``MlflowClient`` that turns MLflow's exceptions into errors a user can act
on (an unknown version names the versions there are) and keeps the stage names in one place.
"""

import json
import logging

from recsys import tracking
from recsys.errors import RecsysError
from recsys.workspace import Workspace

logger = logging.getLogger(__name__)
MODEL_NAME = "recsys-recommender"
CANDIDATE, STAGING, CANARY, PRODUCTION, PREVIOUS = (
    "candidate",
    "staging",
    "canary",
    "production",
    "previous-production",
)
STAGES = (CANDIDATE, STAGING, CANARY, PRODUCTION, PREVIOUS)
# the aliases a version leaves when it moves up to a stage
BELOW = {
    STAGING: (CANDIDATE,),
    CANARY: (CANDIDATE, STAGING),
    PRODUCTION: (CANDIDATE, STAGING, CANARY),
}
# where the key metrics training logged for a version's run live (see training.tracking)
KEY_METRICS = {"ndcg@10": "test/ranker/ndcg_at_10", "recall@20": "test/ranker/recall_at_20"}
# the canary's desired weights, for the canary controller (PLATFORM.md section 6)
CANARY_TAGS = ("canary.version", "canary.schedule", "canary.reason")


class ModelStore:
    """One registered model in the workspace's MLflow registry."""

    def __init__(self, workspace: Workspace, model_name: str = MODEL_NAME) -> None:
        from mlflow import MlflowClient

        self.workspace = workspace
        self.name = model_name
        self.uri = tracking.use(workspace)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self._run_metrics: dict[str, dict[str, float]] = {}

    def _model(self):
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(self.name)
        except MlflowException:
            raise RecsysError(
                f"no registered model '{self.name}' in {self.uri}: run `recsys train` first"
            ) from None

    def aliases(self) -> dict[str, str]:
        """Stage -> version for every stage alias that is set."""
        aliases = self._model().aliases or {}
        return {stage: str(aliases[stage]) for stage in STAGES if stage in aliases}

    def versions(self) -> list[str]:
        found = self.client.search_model_versions(f"name='{self.name}'")
        return sorted((str(v.version) for v in found), key=int)

    def version(self, version: str):
        """The model version, or an error naming the versions that exist."""
        from mlflow.exceptions import MlflowException

        text = str(version).strip()
        if not text.isdigit():
            raise RecsysError(f"'{version}' is not a version number (versions are 1, 2, 3 ...)")
        self._model()
        try:
            return self.client.get_model_version(self.name, text)
        except MlflowException:
            known = ", ".join(self.versions()) or "none"
            raise RecsysError(
                f"unknown version {text} of '{self.name}' (versions: {known})"
            ) from None

    def tags(self, version: str) -> dict[str, str]:
        return dict(self.version(version).tags or {})

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.name, alias, str(version))

    def delete_alias(self, alias: str) -> None:
        self.client.delete_registered_model_alias(self.name, alias)

    def tag_version(self, version: str, tags: dict[str, object]) -> None:
        for key, value in tags.items():
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            self.client.set_model_version_tag(self.name, str(version), key, text)

    def model_tags(self) -> dict[str, str]:
        return dict(self._model().tags or {})

    def set_model_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_registered_model_tag(self.name, key, value)

    def delete_model_tags(self, keys: tuple[str, ...]) -> None:
        present = self.model_tags()
        for key in keys:
            if key in present:
                self.client.delete_registered_model_tag(self.name, key)

    def key_metrics(self, version: str) -> dict[str, float]:
        """The test metrics training logged for the version's run (empty if it has none)."""
        run_id = self.version(version).run_id
        if not run_id:
            return {}
        if run_id not in self._run_metrics:
            try:
                logged = self.client.get_run(run_id).data.metrics
            except Exception as exc:  # a run deleted from tracking: the version still serves
                logger.warning("run %s of version %s: %s", run_id, version, exc)
                logged = {}
            self._run_metrics[run_id] = {
                name: float(logged[key]) for name, key in KEY_METRICS.items() if key in logged
            }
        return self._run_metrics[run_id]

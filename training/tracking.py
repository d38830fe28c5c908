"""Recording a training run in MLflow and registering its model version as ``candidate``."""

import json
import logging
import subprocess
from pathlib import Path

from features import names as n
from recsys import tracking
from recsys.workspace import Workspace
from training.config import TrainConfig
from training.pipeline import TrainResult

logger = logging.getLogger(__name__)
REQUIREMENTS = (
    "xgboost",
    "implicit",
    "scikit-learn",
    "scipy",
    "pandas",
    "numpy",
    "feast",
    "mlflow",
)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def flat_metrics(report: dict) -> dict[str, float]:
    """``test/<model>/<metric>`` and ``test/segment/<segment>/<model>/<metric>`` numbers."""
    out = {}
    for model, values in report["models"].items():
        for metric, value in values.items():
            out[f"test/{model}/{metric}"] = float(value)
    for model, segs in report["segments"].items():
        for seg, values in segs.items():
            for metric, value in values.items():
                out[f"test/segment/{seg}/{model}/{metric}"] = float(value)
    for key, value in report["candidates"].items():
        out[f"validation/{key}"] = float(value)
    return {k.replace("@", "_at_"): v for k, v in out.items()}


def log_and_register(
    workspace: Workspace, config: TrainConfig, result: TrainResult, report_dir: Path
) -> dict[str, object]:
    import mlflow
    from mlflow import MlflowClient

    from recommender.mlflow_model import log_recommender

    uri = tracking.use(workspace)
    name = config.tracking.experiment
    if mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(
            name, artifact_location=tracking.artifact_root(workspace) + f"/{name}"
        )
    mlflow.set_experiment(name)
    commit = git_commit()
    with mlflow.start_run() as run:
        mlflow.log_params(_params(config))
        mlflow.set_tags(
            {
                "lake_version": result.lake_version,
                "feature_service": n.RANKER_SERVICE,
                "git_commit": commit,
                "profile": workspace.profile,
            }
        )
        mlflow.log_metrics(flat_metrics(result.metrics))
        for i, step in enumerate(result.curve.get("validation_ndcg@10", [])):
            mlflow.log_metric("learning/validation_ndcg_at_10", step, step=i)
        mlflow.log_artifacts(str(report_dir), artifact_path="report")
        version = log_recommender(
            result.model,
            config.tracking.model_name,
            pip_requirements=list(REQUIREMENTS),
            signature=signature(),
            metadata={"lake_version": result.lake_version, "feature_service": n.RANKER_SERVICE},
        )
    client = MlflowClient()
    for key, value in {
        "lake_version": result.lake_version,
        "feature_service": n.RANKER_SERVICE,
        "git_commit": commit,
        "run_id": run.info.run_id,
    }.items():
        client.set_model_version_tag(config.tracking.model_name, version, key, value)
    client.set_registered_model_alias(config.tracking.model_name, config.tracking.alias, version)
    logger.info(
        "registered %s version %s with alias '%s' (%s)",
        config.tracking.model_name,
        version,
        config.tracking.alias,
        uri,
    )
    return {
        "tracking_uri": uri,
        "run_id": run.info.run_id,
        "model_name": config.tracking.model_name,
        "version": version,
        "alias": config.tracking.alias,
    }


def signature():
    """Inputs (user_id; optional ts, device, country), outputs, and the list length ``k``."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema(
            [
                ColSpec("string", "user_id"),
                ColSpec("double", "ts", required=False),
                ColSpec("string", "device", required=False),
                ColSpec("string", "country", required=False),
            ]
        ),
        outputs=Schema(
            [
                ColSpec("string", "user_id"),
                ColSpec("long", "rank"),
                ColSpec("string", "item_id"),
                ColSpec("double", "score"),
            ]
        ),
        params=ParamSchema([ParamSpec("k", "long", 10)]),
    )


def _params(config: TrainConfig) -> dict[str, str]:
    flat: dict[str, str] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            flat[prefix] = json.dumps(value) if isinstance(value, list | tuple) else str(value)

    walk("", config.model_dump(mode="json"))
    return flat

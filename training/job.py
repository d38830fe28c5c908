"""The ``recsys train`` job: make sure the features match the lake, train, report, register."""

import json
import logging
from pathlib import Path

from recsys.errors import RecsysError
from recsys.workspace import Workspace
from training.config import TrainConfig

logger = logging.getLogger(__name__)


def ensure_features(workspace: Workspace) -> str:
    """Build and apply the feature tables when they are missing or older than the lake."""
    from features.build import build_features, features_dir
    from features.store import apply

    lake_manifest = workspace.lake / "manifest.json"
    if not lake_manifest.exists():
        raise RecsysError(f"no lake in {workspace.lake}: run `recsys ingest DIR` first")
    lake_version = json.loads(lake_manifest.read_text())["lake_version"]
    manifest = features_dir(workspace) / "manifest.json"
    built = json.loads(manifest.read_text()).get("lake_version") if manifest.exists() else None
    if built == lake_version:
        return "up to date"
    logger.info(
        "feature tables %s: building them for lake %s",
        (built and "stale") or "missing",
        lake_version,
    )
    build_features(workspace, None)
    apply(workspace)
    return "built"


def run_training(
    workspace: Workspace, config: TrainConfig, metrics_out: str | None
) -> dict[str, object]:
    from training.pipeline import train
    from training.report import write_report
    from training.tracking import log_and_register

    features = ensure_features(workspace)
    result = train(workspace, config)
    report_dir = workspace.reports / "training"
    write_report(
        report_dir,
        result.metrics,
        result.stages,
        result.importance,
        result.curve,
        config.report_k,
    )
    registered = log_and_register(workspace, config, result, report_dir)
    payload = {
        **result.metrics,
        "stages": result.stages,
        "registered": registered,
        "features": features,
        "report": str(report_dir / "report.md"),
    }
    if metrics_out:
        Path(metrics_out).parent.mkdir(parents=True, exist_ok=True)
        Path(metrics_out).write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return payload

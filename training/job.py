"""The ``recsys train`` job: make sure the features match the lake, train, report, register."""

import json
import logging
import resource
import time
from pathlib import Path

from recsys.errors import RecsysError
from recsys.workspace import Workspace
from training.config import TrainConfig

logger = logging.getLogger(__name__)


def _peak_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)


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

    started = time.perf_counter()
    features = ensure_features(workspace)
    prepared = {
        "stage": f"features ({features})",
        "seconds": round(time.perf_counter() - started, 2),
        "peak_gb": _peak_gb(),
    }
    result = train(workspace, config)
    result.stages.insert(0, prepared)
    report_dir = workspace.reports / "training"
    write_report(
        report_dir,
        result.metrics,
        result.stages,
        result.importance,
        result.curve,
        config.report_k,
    )
    started = time.perf_counter()
    registered = log_and_register(workspace, config, result, report_dir)
    result.stages.append(
        {
            "stage": "report + MLflow log and register",
            "seconds": round(time.perf_counter() - started, 2),
            "peak_gb": _peak_gb(),
        }
    )
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

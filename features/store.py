"""Opening the Feast store of a workspace's profile; apply and materialisation jobs."""

import json
import logging
import os
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from feast import FeatureStore

from features.environment import feast_environment, feature_repo, store_yaml
from features.tables import NO_TIME
from recsys.errors import RecsysError
from recsys.workspace import Workspace

logger = logging.getLogger(__name__)

REPO_MODULES = ("entities", "sources", "views", "on_demand", "services")


def _local_state_dir(workspace: Workspace) -> None:
    """File registry and SQLite online store live in $RECSYS_HOME/feast (all but production)."""
    if workspace.profile != "production":
        (workspace.home / "feast").mkdir(parents=True, exist_ok=True)


def open_store(workspace: Workspace) -> FeatureStore:
    """The FeatureStore of ``workspace`` in its profile (reads the profile's YAML)."""
    yaml = store_yaml(workspace.profile)
    if not yaml.exists():
        raise RecsysError(f"no feature_store.yaml for profile '{workspace.profile}' at {yaml}")
    _local_state_dir(workspace)
    with feast_environment(workspace):
        return FeatureStore(repo_path=str(feature_repo()), fs_yaml_file=yaml)


def compute_runtime(workspace: Workspace) -> AbstractContextManager[None]:
    """What a job's Feast calls run inside: Ray for the scale profile, nothing for the others.

    Ray is started and stopped around the job so no Ray processes outlive it; see
    ``features/ray_runtime.py``.
    """
    if workspace.profile != "scale":
        return nullcontext()
    from features.ray_runtime import ray_runtime

    return ray_runtime(workspace)


def apply(workspace: Workspace) -> dict[str, object]:
    """``feast apply`` of the repository for this workspace's profile."""
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total

    repo, yaml = feature_repo(), store_yaml(workspace.profile)
    _local_state_dir(workspace)
    started = time.perf_counter()
    cwd = os.getcwd()
    with feast_environment(workspace), compute_runtime(workspace):  # Ray starts in update_infra
        # the repo's modules read the profile at import: forget copies from another profile
        for name in REPO_MODULES:
            sys.modules.pop(name, None)
        sys.path.insert(0, str(repo))
        try:
            apply_total(load_repo_config(repo, yaml), repo, skip_source_validation=False)
        finally:
            os.chdir(cwd)
            sys.path.remove(str(repo))
    seconds = round(time.perf_counter() - started, 2)
    logger.info("applied %s (profile %s) in %.1fs", repo, workspace.profile, seconds)
    return {"profile": workspace.profile, "repo": str(repo), "seconds": seconds}


@dataclass(frozen=True)
class MaterializeResult:
    start: datetime | None
    end: datetime
    incremental: bool
    seconds: float


def features_as_of(workspace: Workspace) -> pd.Timestamp:
    from features.build import features_dir

    manifest = features_dir(workspace) / "manifest.json"
    if not manifest.exists():
        raise RecsysError("no feature tables: run `recsys features build` first")
    return pd.Timestamp(json.loads(manifest.read_text())["as_of"])


def materialize(
    workspace: Workspace, incremental: bool = False, end: datetime | None = None
) -> MaterializeResult:
    """Load the latest feature values up to ``end`` (default: the tables' as-of) online.

    Full materialisation reloads everything since the beginning; incremental loads only what
    changed since the previous run. Both are idempotent: running again writes the same values.
    """
    stop = pd.Timestamp(end if end is not None else features_as_of(workspace)).to_pydatetime()
    store = open_store(workspace)
    started = time.perf_counter()
    with feast_environment(workspace), compute_runtime(workspace):
        if incremental:
            if workspace.profile == "scale":  # Feast's Ray store fails on empty windows
                from features.ray_runtime import views_with_new_rows

                views = views_with_new_rows(store, stop)
                if views:
                    store.materialize_incremental(end_date=stop, feature_views=views)
            else:
                store.materialize_incremental(end_date=stop)
            start = None
        else:
            start = NO_TIME.to_pydatetime()
            if workspace.profile == "scale":  # (the same Ray store bug, on empty tables)
                from features.ray_runtime import views_with_new_rows

                views = views_with_new_rows(store, stop, start)
                if views:
                    store.materialize(start_date=start, end_date=stop, feature_views=views)
            else:
                store.materialize(start_date=start, end_date=stop)
    seconds = round(time.perf_counter() - started, 2)
    logger.info("materialised up to %s in %.1fs", stop, seconds)
    return MaterializeResult(start, stop, incremental, seconds)


def historical_features(
    workspace: Workspace,
    store: FeatureStore,
    entity_df: pd.DataFrame,
    service: str,
    chunk_rows: int = 250_000,
) -> pd.DataFrame:
    """Point-in-time values of a feature service for ``entity_df``, with full feature names.

    The one call training makes, whatever the profile: the scale profile goes through
    ``features.ray_retrieval`` (Feast's Ray join loses and leaks rows, see there). Entity rows
    are retrieved ``chunk_rows`` at a time: a single join of two million rows with every view
    took 21 GB; chunks keep memory bounded at the same speed. Rows keep their input order.
    """
    feature_service = store.get_feature_service(service)
    frame = entity_df.reset_index(drop=True)
    parts = []
    for start in range(0, max(len(frame), 1), chunk_rows):
        chunk = frame.iloc[start : start + chunk_rows].assign(_row=lambda f: f.index)
        if workspace.profile == "scale":
            from features.ray_retrieval import historical_features as on_ray

            with compute_runtime(workspace):
                part = on_ray(store, chunk, feature_service)
        else:
            with feast_environment(workspace):
                job = store.get_historical_features(
                    entity_df=chunk, features=feature_service, full_feature_names=True
                )
                part = job.to_df()
        parts.append(part)
        if len(frame) > chunk_rows:
            logger.info(
                "retrieved %s of %s rows",
                f"{min(start + chunk_rows, len(frame)):,}",
                f"{len(frame):,}",
            )
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return out.sort_values("_row", kind="stable").drop(columns="_row").reset_index(drop=True)

"""Where MLflow keeps runs and the model registry, per profile (PLATFORM.md section 3).

``MLFLOW_TRACKING_URI`` always wins. Otherwise the local and scale profiles use SQLite and
files inside the workspace; production uses PostgreSQL (``RECSYS_MLFLOW_URI``, or the
``RECSYS_PG_*`` settings) with artefacts under ``RECSYS_MLFLOW_ARTIFACTS``.
"""

import os
from pathlib import Path
from urllib.parse import quote

from recsys.workspace import Workspace


def tracking_uri(workspace: Workspace) -> str:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if workspace.profile == "production":
        if os.environ.get("RECSYS_MLFLOW_URI"):
            return os.environ["RECSYS_MLFLOW_URI"]
        from features.environment import setting

        # user and password percent-encoded (a password may hold "@", "/", "%", spaces);
        # sslmode as the other connections take it
        password = setting("RECSYS_PG_PASSWORD")
        auth = quote(setting("RECSYS_PG_USER"), safe="")
        auth += f":{quote(password, safe='')}" if password else ""
        return (
            f"postgresql://{auth}@{setting('RECSYS_PG_HOST')}:{setting('RECSYS_PG_PORT')}"
            f"/{quote(setting('RECSYS_PG_DATABASE'), safe='')}"
            f"?sslmode={quote(setting('RECSYS_PG_SSLMODE'), safe='')}"
        )
    folder = workspace.home / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder.resolve() / 'mlflow.db'}"


def artifact_root(workspace: Workspace) -> str:
    if os.environ.get("RECSYS_MLFLOW_ARTIFACTS"):
        return os.environ["RECSYS_MLFLOW_ARTIFACTS"]
    return Path(workspace.home / "mlflow" / "artifacts").resolve().as_uri()


def use(workspace: Workspace) -> str:
    """Point MLflow at the workspace's tracking server and registry; returns the URI."""
    import mlflow

    uri = tracking_uri(workspace)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri

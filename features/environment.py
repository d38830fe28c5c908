"""The environment the feature repo's YAML and sources read, with the platform's defaults.

One setting picks the profile (``--profile`` / RECSYS_PROFILE); connection details of the
production profile come from RECSYS_PG_* and RECSYS_REDIS_* variables with local defaults.
"""

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from recsys.workspace import Workspace

DEFAULTS: dict[str, str] = {
    "RECSYS_FEAST_PROJECT": "recsys",
    "RECSYS_PG_HOST": "127.0.0.1",
    "RECSYS_PG_PORT": "5432",
    "RECSYS_PG_DATABASE": "recsys",
    "RECSYS_PG_SCHEMA": "recsys",
    "RECSYS_PG_USER": "postgres",
    "RECSYS_PG_PASSWORD": "",
    "RECSYS_PG_SSLMODE": "prefer",
    "RECSYS_REDIS_HOST": "127.0.0.1",
    "RECSYS_REDIS_PORT": "6379",
    "RECSYS_REDIS_DB": "0",
}


def setting(name: str) -> str:
    return os.environ.get(name) or DEFAULTS[name]


def feature_repo() -> Path:
    """The Feast repository: $RECSYS_FEATURE_REPO, or ``feature_repo/`` beside this package."""
    return Path(
        os.environ.get("RECSYS_FEATURE_REPO")
        or Path(__file__).resolve().parents[1] / "feature_repo"
    )


def store_yaml(profile: str) -> Path:
    repo = feature_repo()
    return (
        repo / "feature_store.yaml"
        if profile == "local"
        else (repo / "profiles" / profile / "feature_store.yaml")
    )


def variables(workspace: Workspace) -> dict[str, str]:
    values = {name: setting(name) for name in DEFAULTS}
    values["RECSYS_HOME"] = str(workspace.home)
    values["RECSYS_PROFILE"] = workspace.profile
    return values


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in the process environment for the block, then restore what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def feast_environment(workspace: Workspace) -> AbstractContextManager[None]:
    """The variables Feast reads its YAML and the repo's sources with, for the block."""
    return environment(variables(workspace))


def pg_dsn() -> str:
    """libpq connection string of the production profile's PostgreSQL (each value quoted:
    a password may hold spaces, quotes or backslashes)."""
    values = {
        "host": setting("RECSYS_PG_HOST"),
        "port": setting("RECSYS_PG_PORT"),
        "dbname": setting("RECSYS_PG_DATABASE"),
        "user": setting("RECSYS_PG_USER"),
        "sslmode": setting("RECSYS_PG_SSLMODE"),
        "password": setting("RECSYS_PG_PASSWORD"),
    }
    return " ".join(f"{key}={_libpq_quoted(value)}" for key, value in values.items() if value)


def _libpq_quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

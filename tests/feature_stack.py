"""A real feature stack for tests: lake, feature tables, Feast apply and materialisation.

Each stack has its own workspace, Feast project and PostgreSQL schema, so stacks never share
state, and the production one is torn down (Redis keys, registry rows, schema) afterwards.
"""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from feast import FeatureStore

from features.build import build_features
from features.environment import environment
from features.online import OnlineReader
from features.store import apply, materialize, open_store
from lake.ingest import ingest
from recsys.workspace import Workspace

TEST_DATABASE = "test"


@dataclass
class Stack:
    workspace: Workspace
    store: FeatureStore
    reader: OnlineReader
    project: str


def isolated_env(project: str):
    """A Feast project and PostgreSQL schema of the test's own."""
    return environment(
        {
            "RECSYS_FEAST_PROJECT": project,
            "RECSYS_PG_SCHEMA": project,
            "RECSYS_PG_DATABASE": os.environ.get("RECSYS_PG_DATABASE", TEST_DATABASE),
            "RECSYS_PG_SSLMODE": "disable",
        }
    )


def teardown_project(store: FeatureStore, project: str) -> None:
    """This project's online rows and registry rows, nothing of anyone else's.

    Not ``FeatureStore.teardown``: in Feast 0.67 it deletes every project of the registry,
    and a SQL registry in PostgreSQL is shared by every project on the server."""
    from tests.serving_stack import delete_project_rows

    tables = [*store.list_feature_views(), *store.list_label_views()]
    store._get_provider().teardown_infra(project, tables, store.list_entities())
    delete_project_rows(store, project)


@contextmanager
def feature_stack(
    shop: Path, home: Path, profile: str, materialise: bool = True
) -> Iterator[Stack]:
    """Ingest ``shop`` and stand up its features in ``profile``; tear everything down after."""
    project = f"t{uuid.uuid4().hex[:12]}"
    with isolated_env(project):
        workspace = Workspace(home=home, profile=profile)
        try:
            ingest(shop, workspace)
            build_features(workspace)
            apply(workspace)
            if materialise:
                materialize(workspace)
            store = open_store(workspace)
            yield Stack(workspace, store, OnlineReader(store), project)
        finally:  # also when set-up failed half-way: leave no schema, keys or registry rows
            if profile == "production":
                from features.postgres import drop_schema

                try:
                    teardown_project(open_store(workspace), project)
                finally:
                    drop_schema(project)

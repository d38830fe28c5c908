"""Shared fixtures: every test gets its own workspace, so no two tests share state."""

from pathlib import Path

import pytest

from recsys.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.from_env(tmp_path / "workspace", "local")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """A redis-server of the module's own (nothing saved), for tests that stop it or must
    not share the machine's Redis."""
    from tests.serving_stack import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def drop_prefixed_tables(prefix: str, url: str = PG_URL) -> None:
    """Drop the tables a test made under its own name prefix (the database is shared)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine, only=lambda name, _: name.startswith(prefix))
        metadata.drop_all(engine)
    finally:
        engine.dispose()

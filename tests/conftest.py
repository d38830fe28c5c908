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

"""Shared fixtures: every test gets its own workspace, so no two tests share state."""

from pathlib import Path

import pytest

from recsys.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.from_env(tmp_path / "workspace", "local")

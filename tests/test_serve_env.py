"""Two services on one host keep their own /metrics: BentoML empties its Prometheus folder,
found under BENTOML_HOME, whenever a service starts, so `recsys serve` gives each port a
home of its own (checked against BentoML's own resolution of that folder)."""

import subprocess
import sys
from pathlib import Path

import pytest

from recsys.workspace import Workspace
from serving.server import environment

PROMETHEUS_DIR = (
    "from bentoml._internal.configuration.containers import BentoMLContainer; "
    "print(BentoMLContainer.prometheus_multiproc_dir.get())"
)


def _prometheus_dir(env: dict[str, str]) -> Path:
    out = subprocess.run(
        [sys.executable, "-c", PROMETHEUS_DIR], env=env, capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


@pytest.mark.parametrize("given", [None, "shared-home"])
def test_two_ports_get_two_prometheus_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str | None
) -> None:
    # given a workspace, and BENTOML_HOME unset or set once for the host
    if given is None:
        monkeypatch.delenv("BENTOML_HOME", raising=False)
    else:
        monkeypatch.setenv("BENTOML_HOME", str(tmp_path / given))
    workspace = Workspace(home=tmp_path / "ws", profile="local")
    # when the environments of services on two ports are made
    first, second = (environment(workspace, 1, None, port) for port in (3000, 3001))
    # then BentoML resolves a Prometheus folder of its own for each, below the given home
    folders = [_prometheus_dir(env) for env in (first, second)]
    assert folders[0] != folders[1]
    base = tmp_path / given if given else workspace.home / "serving" / "bentoml"
    assert all(folder.is_relative_to(base) for folder in folders), folders

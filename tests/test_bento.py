"""``bentoml build`` of the service: what the bento and its generated Dockerfile hold, and
that the built bento serves (no Docker engine here: the image is checked as described).

The build uses the options in ``pyproject.toml`` (``[tool.bentoml.build]``) and a BentoML
home of the test's own; the bento is served from outside the repository, against the tiny
shop's trained model (local profile).
"""

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from recsys import columns as c
from tests.serving_stack import (
    REPO_ROOT,
    _service_env,
    log_tail,
    promote,
    scoped_env,
    start_service,
    stop_service,
    trained,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PINNED = ("bentoml", "feast", "xgboost", "implicit", "mlflow", "redis", "evidently")


@pytest.fixture(scope="module")
def bento(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(BentoML home, bento tag) of a fresh build."""
    home = tmp_path_factory.mktemp("bentoml-home")
    bentoml = Path(sys.executable).with_name("bentoml")
    env = {
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "PATH": f"{bentoml.parent}:/usr/bin:/bin",
        "HOME": str(home),
    }
    done = subprocess.run(
        [str(bentoml), "build", "--output", "tag"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    tag = re.search(r"__tag__:(\S+)", done.stdout).group(1)
    return home, tag


def _folder(bento: tuple[Path, str]) -> Path:
    home, tag = bento
    name, _, ver = tag.partition(":")
    return home / "bentos" / name / ver


def test_the_bento_holds_the_service_and_its_code_but_no_tests(bento) -> None:
    # given the built bento's folder and manifest
    folder = _folder(bento)
    manifest = yaml.safe_load((folder / "bento.yaml").read_text())
    # then it serves the repository's service class with single-threaded math libraries
    # and without the framework's deprecation warning on every request (what `recsys serve`
    # sets too)
    from serving.server import QUIET, SINGLE_THREADED

    assert manifest["service"] == "bentos.service:RecsysService"
    assert {e["name"]: e["value"] for e in manifest["envs"]} == SINGLE_THREADED | QUIET
    # and its routes are the HTTP API's
    routes = {route["route"] for route in manifest["schema"]["routes"]}
    assert {"/recommend", "/similar_items", "/feedback", "/status"} <= routes
    # and the code the request path needs is inside, tests and benchmarks are not
    src = folder / "src"
    for module in (
        "bentos/service.py",
        "serving/engine.py",
        "recommender/model.py",
        "features/online.py",
        "feature_repo/feature_store.yaml",
        "recsys/columns.py",
    ):
        assert (src / module).is_file(), module
    assert not (src / "tests").exists() and not (src / "benchmarks").exists()


def test_the_bento_pins_the_locked_versions(bento) -> None:
    # given the bento's requirements
    text = (_folder(bento) / "env" / "python" / "requirements.txt").read_text()
    pins = dict(re.findall(r"(?m)^([A-Za-z0-9_.\-]+)==(\S+)", text))
    # then the platform's packages are pinned to the versions tested here
    for name in PINNED:
        assert pins.get(name) == version(name), name


def test_the_generated_dockerfile_builds_a_slim_non_root_image(bento) -> None:
    # given the Dockerfile bentoml generated
    dockerfile = (_folder(bento) / "env" / "docker" / "Dockerfile").read_text()
    lines = [ln.strip() for ln in dockerfile.splitlines() if ln.strip() and not ln.startswith("#")]
    # then it starts from Python 3.11 slim, adds OpenMP's runtime (XGBoost) and installs the
    # pinned requirements
    assert lines[0].startswith("FROM python:3.11-slim")
    assert any("libgomp1" in ln and ln.startswith("RUN apt-get install") for ln in lines)
    assert any("pip install -r $BENTO_PATH/env/python/requirements.txt" in ln for ln in lines)
    # and it runs as the bentoml user, single-threaded math, on port 3000
    assert "ENV OMP_NUM_THREADS=$OMP_NUM_THREADS" in lines and "ARG OMP_NUM_THREADS=1" in lines
    users = [ln for ln in lines if ln.startswith("USER ")]
    assert users == ["USER bentoml"]
    assert "EXPOSE 3000" in lines
    assert lines[-1].startswith("ENTRYPOINT")
    # and every file it copies exists in the bento
    for source in re.findall(r"^COPY --chown=\S+ (\S+) ", dockerfile, re.M):
        assert (_folder(bento) / source).exists(), source


def test_the_built_bento_serves(bento, tmp_path_factory: pytest.TempPathFactory) -> None:
    # given the tiny shop's model promoted to production, and the bento served from a folder
    # outside the repository
    model = trained(tmp_path_factory)
    with scoped_env({}):
        from recsys import tracking

        promote(tracking.tracking_uri(model.workspace))
    home, tag = bento
    env = _service_env(model.workspace.home, "local", {}, home)
    root = tmp_path_factory.mktemp("bento-serve")
    log = root / "service.log"
    process, url = start_service(env, log, target=tag, cwd=root)
    try:
        # when a known user asks for 5 items
        user = _busiest_user(model.workspace)
        response = httpx.post(f"{url}/recommend", json={"user_id": user, "k": 5}, timeout=60)
        # then the bento answers with 5 items of version 1
        assert response.status_code == 200, (response.text, log_tail(log))
        answer = response.json()
        assert len(answer["items"]) == 5 and answer["model_version"] == "1"
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
    finally:
        stop_service(process)


def _busiest_user(workspace) -> str:
    events = pd.read_parquet(workspace.table(c.EVENTS), columns=[c.USER_ID])
    return str(events[c.USER_ID].astype(str).value_counts().sort_index().idxmax())

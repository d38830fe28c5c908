"""Starting the BentoML service for a workspace: ``recsys serve`` and the demo."""

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from recsys.errors import RecsysError
from recsys.workspace import HOME_ENV, PROFILE_ENV, Workspace

logger = logging.getLogger(__name__)
SERVICE = "bentos.service:RecsysService"
REPO_ROOT = Path(__file__).resolve().parents[1]


def command(port: int, host: str) -> list[str]:
    bentoml = Path(sys.executable).with_name("bentoml")
    return [
        str(bentoml), "serve", SERVICE, "--host", host, "--port", str(port),
        "--working-dir", str(REPO_ROOT),
    ]  # fmt: skip


# a request's matrix work is small: threads of BLAS (ALS and content scores) and OpenMP
# (XGBoost) only contend with the other workers' requests (p50 34-41 ms with them, 23-26 ms
# without, one worker on 2 cores); a value set by the caller wins
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# BentoML reads ``model_fields`` from each request's pydantic instance, which pydantic 2.11
# deprecates; the warning is written again whenever a library's ``catch_warnings`` resets
# the registry of shown warnings (MLflow's, every alias check): nearly once a request, each
# costing its CPU. Set at start-up, the filter outlives those resets.
QUIET = {
    "PYTHONWARNINGS": "ignore:Accessing the 'model_fields' attribute on the instance"
    ":DeprecationWarning"
}


def environment(workspace: Workspace, workers: int, alias: str | None, port: int) -> dict[str, str]:
    env = {
        **SINGLE_THREADED,
        **QUIET,
        **os.environ,
        HOME_ENV: str(workspace.home),
        PROFILE_ENV: workspace.profile,
        "RECSYS_SERVE_WORKERS": str(workers),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    env["BENTOML_HOME"] = str(instance_home(env.get("BENTOML_HOME"), workspace, port))
    if alias:
        env["RECSYS_SERVE_ALIAS"] = alias
    return env


def instance_home(given: str | None, workspace: Workspace, port: int) -> Path:
    """BentoML's home for the service on ``port``: BentoML keeps its Prometheus files there
    and empties them when a service starts, so a second service on the host sharing the
    home would blind the first one's /metrics (and the alerts on them). Below the home the
    caller gives, else below the workspace; a service runs from source, not from the store
    a home holds."""
    base = Path(given) if given else workspace.home / "serving" / "bentoml"
    return base / f"port-{port}"


def serve(workspace: Workspace, port: int, host: str, workers: int, alias: str | None) -> int:
    """Run the service in the foreground until interrupted; returns its exit code."""
    argv = command(port, host)
    logger.info("starting %s on http://%s:%d (%d workers)", SERVICE, host, port, workers)
    return subprocess.call(argv, env=environment(workspace, workers, alias, port), cwd=REPO_ROOT)


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already accepts connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0


def start_background(
    workspace: Workspace, port: int, log: Path, workers: int = 1, timeout: float = 180.0
) -> subprocess.Popen:
    """Start the service detached from this process (it keeps answering after the caller
    exits) and wait until ``/readyz`` says a model is loaded. A port another process holds
    is refused first: that process's ``/readyz`` would pass for this service's."""
    if port_taken(port):
        raise RecsysError(f"port {port} is in use by another process: choose another port")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command(port, "127.0.0.1"),
            env=environment(workspace, workers, None, port),
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RecsysError(f"the service exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return process
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    process.terminate()
    raise RecsysError(f"the service was not ready after {timeout:.0f}s; see {log}")


def post(url: str, path: str, body: dict, timeout: float = 10.0) -> dict:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())

"""A running recommendation service for HTTP tests (PLATFORM.md section 4).

The tiny shop is generated, ingested and trained once per test session through the real CLI
(the slow part); each test module then stands up its own stack on that model with
``serving_stack``: a workspace in the module's profile with its features materialised,
version 1 promoted to ``production`` in the stack's own MLflow registry, and
``bentoml serve bentos.service:RecsysService`` started as a child process (its own process
group) on a free port, answering once ``/readyz`` says so. At the end the server is stopped
and, in the production profile, its Feast project, PostgreSQL schema and the rows it wrote to
the shared feedback tables are removed.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import pytest

from recsys import columns as c
from recsys.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVICE = "bentos.service:RecsysService"
MODEL_NAME = "recsys-recommender"
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0
# what the service, the CLI jobs and MLflow read from the environment: a stack sets its own
OWN_PREFIXES = ("RECSYS_", "MLFLOW_", "BENTOML_", "PROMETHEUS_")
FEEDBACK_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
FEEDBACK_PREFIX = "recsys_"  # serving.engine opens the log with FeedbackLog's default prefix
# the registry's gates compare versions on the lake's last 21 days: the judged model, which
# never saw them, is what these tests register (`artefact: judged`)
TRAIN_YAML = """\
split: {validation_days: 21, test_days: 21}
artefact: judged
requests: {train: 300, early_stopping: 100, test: 300}
model:
  als: {iterations: 5, factors: 16}
  ranker: {n_estimators: 30}
"""


# ------------------------------------------------------------------------------ environment
@contextmanager
def scoped_env(values: dict[str, str]) -> Iterator[None]:
    """Exactly ``values`` as this process's RECSYS_/MLFLOW_ settings for the block.

    In-process jobs (and MLflow, which exports its tracking URI into ``os.environ``) leave
    nothing behind: the caller's settings are restored afterwards.
    """
    saved = {k: v for k, v in os.environ.items() if k.startswith(OWN_PREFIXES)}
    for name in saved:
        del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        for name in [k for k in os.environ if k.startswith(OWN_PREFIXES)]:
            del os.environ[name]
        os.environ.update(saved)


def cli(home: Path, profile: str, env: dict[str, str], *args: str) -> None:
    """One ``recsys`` command, in this process, under ``env``; fails the test if it fails."""
    from recsys.cli import main

    with scoped_env(env):
        code = main(["-q", "--home", str(home), "--profile", profile, *args])
    assert code == 0, f"recsys {' '.join(args)} exited with {code}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def log_tail(path: Path, chars: int = 6_000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


# ------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class Trained:
    """The tiny shop and a local workspace holding its lake, features and registered model."""

    shop: Path
    workspace: Workspace
    metrics: dict


_TRAINED: list[Trained] = []


def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Generate (seed 0), ingest, build and apply the features, train: once per session."""
    if _TRAINED:
        return _TRAINED[0]
    root = tmp_path_factory.mktemp("serving-model")
    shop, home, config = root / "shop", root / "home", root / "train.yaml"
    config.write_text(TRAIN_YAML)
    metrics = root / "metrics.json"
    for args in (
        ("generate", "--out", str(shop), "--scale", "tiny", "--seed", "0"),
        ("ingest", str(shop)),
        ("features", "build"),
        ("features", "apply"),
        ("train", "--config", str(config), "--metrics-out", str(metrics)),
    ):
        cli(home, "local", {}, *args)
    _forget_mlflow_uri()
    workspace = Workspace(home=home.resolve(), profile="local")
    done = Trained(shop, workspace, json.loads(metrics.read_text()))
    _TRAINED.append(done)
    return done


def _forget_mlflow_uri() -> None:
    """Training pointed MLflow's process-wide tracking URI at its workspace: unset it, so no
    later test of this session talks to that registry by accident."""
    import mlflow

    with scoped_env({}):
        mlflow.set_tracking_uri(None)


def promote(tracking_uri: str, version: str = "1") -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.set_registered_model_alias(MODEL_NAME, "production", version)


# ------------------------------------------------------------------------------ the lake
@dataclass(frozen=True)
class Lake:
    """The curated tables the stack's features were built from (to pick users and items,
    and to check answers against)."""

    events: pd.DataFrame
    products: pd.DataFrame
    users: pd.DataFrame

    @classmethod
    def read(cls, workspace: Workspace) -> "Lake":
        return cls(
            pd.read_parquet(workspace.table(c.EVENTS)),
            pd.read_parquet(workspace.table(c.PRODUCTS)),
            pd.read_parquet(workspace.table(c.USERS)),
        )

    def active_users(self) -> list[str]:
        """Users by number of events, most active first (ties by id)."""
        counts = self.events[c.USER_ID].astype(str).value_counts().sort_index()
        return [str(u) for u in counts.sort_values(ascending=False, kind="stable").index]

    def product(self, item_id: str) -> pd.Series:
        return self.products.set_index(c.ITEM_ID).loc[item_id]


# ------------------------------------------------------------------------------ redis
class RedisServer:
    """A redis-server of the test's own (nothing saved), to be stopped and started again."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.log = folder / f"redis-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        import redis

        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {log_tail(self.log)}")
            try:
                if client.ping():
                    client.close()
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server not up: {log_tail(self.log)}") from None
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM and wait for the exit (the port is free again afterwards)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ------------------------------------------------------------------------------ the stack
@dataclass
class ServingStack:
    url: str
    workspace: Workspace
    lake: Lake
    env: dict[str, str]  # the RECSYS_/MLFLOW_ settings the service runs with
    log: Path
    process: subprocess.Popen
    client: httpx.Client
    training: dict = field(default_factory=dict)  # the model's `recsys train` metrics
    project: str | None = None  # the Feast project (production profile)
    request_ids: set[str] = field(default_factory=set)

    def post(self, path: str, body: object = None, content: bytes | None = None) -> httpx.Response:
        """POST JSON (or raw ``content``); remembers every request id it sees (for clean-up)."""
        if content is not None:
            headers = {"content-type": "application/json"}
            response = self.client.post(path, content=content, headers=headers)
        else:
            response = self.client.post(path, json=body)
        if isinstance(body, dict):
            for event in body.get("events") or []:
                if isinstance(event, dict) and event.get("request_id"):
                    self.request_ids.add(str(event["request_id"]))
        if response.status_code == 200 and path in ("/recommend", "/similar_items"):
            self.request_ids.add(response.json()["request_id"])
        return response

    def recommend(self, **body: object) -> dict:
        response = self.post("/recommend", body)
        assert response.status_code == 200, response.text
        return response.json()

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)

    def cli(self, *args: str) -> None:
        """A ``recsys`` job on this stack's workspace with the service's settings."""
        cli(self.workspace.home, self.workspace.profile, self.env, *args)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples in /metrics whose labels include ``labels``."""
        from prometheus_client.parser import text_string_to_metric_families

        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        total = 0.0
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    total += sample.value
        return total


def _service_env(home: Path, profile: str, settings: dict[str, str], bentoml_home: Path):
    base = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
    return (
        base
        | settings
        | {
            "RECSYS_HOME": str(home),
            "RECSYS_PROFILE": profile,
            "RECSYS_SERVE_WORKERS": "1",
            # BentoML's Prometheus files live under BENTOML_HOME: a stack of its own, so no other
            # service on this machine adds to (or wipes) this one's /metrics
            "BENTOML_HOME": str(bentoml_home),
            "BENTOML_DO_NOT_TRACK": "true",
        }
    )


PORT_TAKEN = "Address already in use"
START_ATTEMPTS = 3


def start_service(
    env: dict[str, str], log: Path, target: str = SERVICE, cwd: Path = REPO_ROOT
) -> tuple[subprocess.Popen, str]:
    """``bentoml serve`` of ``target`` (the service, or a built bento's tag) on a free port,
    ready when GET /readyz answers 200.

    Started again (up to ``START_ATTEMPTS`` times) when it exits because a port was taken:
    BentoML's process manager picks its own control port, which another process of the
    machine can take between the pick and the bind."""
    for attempt in range(1, START_ATTEMPTS + 1):
        start = log.stat().st_size if log.exists() else 0
        try:
            return _start_service_once(env, log, target, cwd)
        except RuntimeError:
            taken = PORT_TAKEN in log.read_text(errors="replace")[start:]
            if not taken or attempt == START_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _start_service_once(
    env: dict[str, str], log: Path, target: str, cwd: Path
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    bentoml = Path(sys.executable).with_name("bentoml")
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [str(bentoml), "serve", target, "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the service exited with {process.returncode}; log:\n{log_tail(log)}"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_service(process)
    raise RuntimeError(
        f"the service was not ready after {READY_TIMEOUT:.0f}s; log:\n{log_tail(log)}"
    )


def stop_service(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (BentoML's workers run their shutdown hooks,
    which flush the served-request log), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
    with suppress(ProcessLookupError):  # workers left in the group after the arbiter exited
        os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def serving_stack(
    tmp_path_factory: pytest.TempPathFactory,
    profile: str,
    redis_port: int | None = None,
    settings: dict[str, str] | None = None,
) -> Iterator[ServingStack]:
    """The service on the session's trained model, in ``profile`` (``local`` or
    ``production``; the latter needs ``redis_port``: its online store and cache).

    ``settings``: further environment for the service and the stack's CLI jobs
    (e.g. ``RECSYS_SERVE_RETRY_SECONDS``).
    """
    model = trained(tmp_path_factory)
    root = tmp_path_factory.mktemp(f"serving-{profile}")
    env = dict(settings or {})
    project = None
    if profile == "local":
        workspace = model.workspace
        with scoped_env({}):
            from recsys import tracking

            tracking_uri = tracking.tracking_uri(workspace)  # the workspace's own registry
    elif profile == "production":
        assert redis_port is not None, "the production profile needs a Redis port"
        home = (root / "home").resolve()
        workspace = Workspace(home=home, profile="production")
        project = f"t{uuid.uuid4().hex[:12]}"
        (home / "mlflow").mkdir(parents=True)
        registry = home / "mlflow" / "mlflow.db"
        shutil.copyfile(model.workspace.home / "mlflow" / "mlflow.db", registry)
        tracking_uri = f"sqlite:///{registry}"
        env = {
            "RECSYS_FEAST_PROJECT": project,
            "RECSYS_PG_SCHEMA": project,
            "RECSYS_PG_DATABASE": "test",
            "RECSYS_PG_SSLMODE": "disable",
            "RECSYS_REDIS_PORT": str(redis_port),
            "RECSYS_FEEDBACK_URL": FEEDBACK_URL,
            "MLFLOW_TRACKING_URI": tracking_uri,
        } | env  # the caller's settings win (e.g. a feedback database of its own)
    else:
        raise ValueError(f"no serving stack for profile {profile!r}")

    process = None
    stack = None
    try:
        if profile == "production":
            cli(workspace.home, profile, env, "ingest", str(model.shop))
            cli(workspace.home, profile, env, "features", "build")
            cli(workspace.home, profile, env, "features", "apply")
        cli(workspace.home, profile, env, "features", "materialize")
        promote(tracking_uri)
        service_env = _service_env(workspace.home, profile, env, root / "bentoml")
        log = root / "service.log"
        process, url = start_service(service_env, log)
        stack = ServingStack(
            url=url,
            workspace=workspace,
            lake=Lake.read(workspace),
            env=env,
            log=log,
            process=process,
            client=httpx.Client(base_url=url, timeout=60),  # past the service's 30 s
            training=model.metrics,
            project=project,
        )
        yield stack
    finally:
        if stack is not None:
            stack.client.close()
        if process is not None:
            stop_service(process)
        if profile == "production":
            try:
                if stack is not None:
                    delete_feedback_rows(stack.request_ids)
            finally:
                drop_feast_project(workspace, env, project)


def delete_feedback_rows(request_ids: set[str]) -> None:
    """Remove what this stack's service wrote to the shared feedback database: served
    responses and feedback events, both found by request id."""
    import sqlalchemy as sa

    if not request_ids:
        return
    engine = sa.create_engine(FEEDBACK_URL)
    try:
        ids = sa.bindparam("ids", expanding=True)
        with engine.begin() as connection:
            existing = set(sa.inspect(connection).get_table_names())
            for table in ("served_requests", "feedback_events"):
                name = f"{FEEDBACK_PREFIX}{table}"
                if name in existing:
                    connection.execute(
                        sa.text(f'DELETE FROM "{name}" WHERE request_id IN :ids').bindparams(ids),
                        {"ids": sorted(request_ids)},
                    )
    finally:
        engine.dispose()


def drop_feast_project(workspace: Workspace, env: dict[str, str], project: str | None) -> None:
    """This project's registry rows and its PostgreSQL schema, nothing of anyone else's.

    (``FeatureStore.teardown`` would delete every project of the shared SQL registry.)
    """
    if project is None:
        return
    from features.postgres import drop_schema
    from features.store import open_store

    with scoped_env(env):
        try:
            delete_project_rows(open_store(workspace), project)
        finally:
            drop_schema(project)


def delete_project_rows(store, project: str) -> None:
    """The registry's rows of ``project`` (of the store's SQL registry) and nothing else."""
    if any(p.name == project for p in store.list_projects()):
        store.registry.delete_project(project)
    _delete_version_history(project)  # the one table delete_project leaves behind


def _delete_version_history(project: str) -> None:
    import psycopg2

    from features.environment import pg_dsn

    with closing(psycopg2.connect(pg_dsn())) as conn, conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.feature_view_version_history')")
        if cur.fetchone()[0] is not None:
            cur.execute(
                "DELETE FROM feature_view_version_history WHERE project_id = %s", (project,)
            )

"""A registry change made by ``recsys registry apply`` reaches the running service without a
restart (the service follows the ``production`` alias), production profile.

The stack: as in ``tests/test_service_degraded.py`` (its own Redis, Feast project and copy of
the MLflow registry), the service asking the registry every second.
"""

import time

import pytest

from tests.serving_stack import MODEL_NAME, RedisServer, ServingStack, scoped_env, serving_stack
from tests.test_registry import POLICY_YAML  # the tiny model's test window

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RELOAD_SECONDS = 1.0
SWITCH_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer):
    settings = {"RECSYS_SERVE_RELOAD_SECONDS": str(RELOAD_SECONDS), "RECSYS_ACTOR": "test"}
    with serving_stack(
        tmp_path_factory, "production", redis_port=redis_server.port, settings=settings
    ) as running:
        yield running


def _register_copy(stack: ServingStack) -> str:
    """Version 1's run and artefacts registered again: a second version that passes the gates."""
    from mlflow import MlflowClient

    uri = stack.env["MLFLOW_TRACKING_URI"]
    with scoped_env({"MLFLOW_TRACKING_URI": uri}):  # the logged model is looked up there too
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        first = client.get_model_version(MODEL_NAME, "1")
        return str(
            client.create_model_version(MODEL_NAME, first.source, run_id=first.run_id).version
        )


def test_registry_apply_switches_the_running_service(stack: ServingStack, tmp_path) -> None:
    # given the service answering with version 1, and a second registered version
    user = stack.lake.active_users()[0]
    assert stack.recommend(user_id=user, k=5)["model_version"] == "1"
    version = _register_copy(stack)
    # when promotions.yaml names it as production and `recsys registry apply` runs
    wanted = tmp_path / "promotions.yaml"
    wanted.write_text(
        f"model: {MODEL_NAME}\n"
        f"production: {{version: {version}, reason: 'same model, new version'}}\n"
        "canary: null\n"
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_YAML)
    stack.cli("registry", "apply", "--file", str(wanted), "--policy", str(policy))
    # then, with no restart, /status and the answers move to the new version within seconds
    started, answer = time.monotonic(), {}
    while time.monotonic() - started < SWITCH_TIMEOUT:
        answer = stack.recommend(user_id=user, k=5, context={"device": f"d{time.time_ns()}"})
        if answer["model_version"] == version:
            break
        time.sleep(0.2)
    assert answer["model_version"] == version, answer
    assert stack.post("/status", {}).json()["model_version"] == version
    assert len(answer["items"]) == 5 and answer["fallback"] is None
    print(f"switched {time.monotonic() - started:.1f}s after apply")

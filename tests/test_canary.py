"""Canary releases end to end (PLATFORM.md section 6): the real service splitting users between
``production`` and ``canary``, the traffic simulator's shoppers answering what they are shown,
and ``recsys canary`` stepping, rolling back and promoting through the registry.

The stack: as in ``tests/test_registry_serving.py`` (production profile: its own Redis, Feast
project and copy of the MLflow registry), the service checking the registry every second,
with fault injection allowed (``RECSYS_SERVE_FAULT_INJECTION``) and its feedback and served
logs in a PostgreSQL schema of this module's own (dropped at the end). The candidates are real
model versions of the session's tiny model: copies of version 1, one with a random ranker
(``canary.candidates``), and copies whose ``canary.fault.*`` tags make the service delay or
fail their requests. Candidates are put in the ``canary`` stage with the registry's
``Lifecycle.move`` (the offline gates are tests/test_registry.py's subject, and one gate run
costs half a minute): ``recsys canary start`` then takes the version already there.
"""

import contextlib
import io
import json
import time
import uuid
from datetime import UTC, datetime

import pytest

from canary.controller import RUN_TAG
from registry.audit import AuditLog, audit_url
from serving import split
from tests.serving_stack import (
    FEEDBACK_URL,
    MODEL_NAME,
    RedisServer,
    ServingStack,
    scoped_env,
    serving_stack,
    trained,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLICY_YAML = """\
schedule: [{weight: 5, minutes: 1}]
look_seconds: 1
alpha: 0.05
min_impressions: 300
max_wait_factor: 6
ctr: {tau_relative: 0.5}
conversion: {tau_relative: 0.5}
guardrails:
  min_requests: 10
  max_error_rate_increase: 0.05
  min_errors: 3
  latency_percentile: 99
  max_latency_ratio: 2.0
  latency_slack_ms: 400
"""
RUN_TIMEOUT = 150.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer):
    import sqlalchemy as sa

    trained(tmp_path_factory)
    schema = f"t_canary_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(FEEDBACK_URL)
    with engine.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    settings = {
        "RECSYS_SERVE_RELOAD_SECONDS": "1",
        "RECSYS_SERVE_FAULT_INJECTION": "true",
        "RECSYS_SERVE_ACCESS_LOG": "0",
        "RECSYS_ACTOR": "canary-test",
        "RECSYS_FEEDBACK_URL": f"{FEEDBACK_URL}?options=-csearch_path%3D{schema}",
    }
    try:
        with serving_stack(
            tmp_path_factory, "production", redis_port=redis_server.port, settings=settings
        ) as running:
            running.versions = _register_candidates(running, tmp_path_factory.mktemp("canary"))
            (running.workspace.home / "canary-policy.yaml").write_text(POLICY_YAML)
            yield running
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def _register_candidates(stack: ServingStack, root) -> dict[str, str]:
    """Real versions in the stack's registry: copies of version 1, one with a random ranker."""
    import mlflow
    from mlflow import MlflowClient

    from canary.candidates import log_random_ranker_version

    uri = stack.env["MLFLOW_TRACKING_URI"]
    registry = mlflow.get_registry_uri()  # (training left the session's registry set here)
    with scoped_env({"MLFLOW_TRACKING_URI": uri}):
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        first = client.get_model_version(MODEL_NAME, "1")
        versions = {}
        for name in ("same", "good", "errors", "slow"):
            versions[name] = str(
                client.create_model_version(MODEL_NAME, first.source, run_id=first.run_id).version
            )
        experiment = mlflow.create_experiment(
            "canary-tests", artifact_location=(root / "artifacts").as_uri()
        )
        mlflow.set_experiment(experiment_id=experiment)
        versions["random"] = log_random_ranker_version(f"models:/{MODEL_NAME}/1", MODEL_NAME)
        client.set_model_version_tag(MODEL_NAME, versions["errors"], split.FAULT_ERROR_TAG, "0.5")
        client.set_model_version_tag(MODEL_NAME, versions["slow"], split.FAULT_DELAY_TAG, "1500")
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(registry)
    return versions


# ------------------------------------------------------------------------------ helpers
def recsys(stack: ServingStack, *args: str) -> tuple[int, str, str]:
    """``recsys ...`` in this process on the stack's workspace: exit code, stdout, stderr."""
    from recsys.cli import main

    out, err = io.StringIO(), io.StringIO()
    home = str(stack.workspace.home)
    with scoped_env(stack.env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["-q", "--home", home, "--profile", "production", *args])
    return code, out.getvalue(), err.getvalue()


def _lifecycle(stack: ServingStack):
    from registry.commands import open_lifecycle

    return open_lifecycle(stack.workspace, MODEL_NAME)


def _move(stack: ServingStack, alias: str, version: str, reason: str) -> None:
    with scoped_env(stack.env):
        _lifecycle(stack).move(alias, version, reason, "promote")


def _registry(stack: ServingStack) -> tuple[dict[str, str], dict[str, str]]:
    with scoped_env(stack.env):
        store = _lifecycle(stack).store
        return store.aliases(), store.model_tags()


def _audit(stack: ServingStack):
    with scoped_env(stack.env):
        store = _lifecycle(stack).store
        audit = AuditLog(audit_url(store.uri))
        try:
            return audit.history(MODEL_NAME)
        finally:
            audit.close()


def _simulator(stack: ServingStack, seed: int, users: int | None = None):
    from canary.simulator import Shoppers, Simulator

    shoppers = Shoppers.load(trained_shop(stack))
    return Simulator(stack.url, shoppers, seed=seed, threads=4, users=users)


def trained_shop(stack: ServingStack):
    from tests.serving_stack import _TRAINED

    return _TRAINED[0].shop


def _wait_for_canary(stack: ServingStack, version: str, weight: float) -> None:
    deadline = time.monotonic() + 60
    status = {}
    while time.monotonic() < deadline:
        status = stack.post("/status", {}).json()
        if status["canary_version"] == version and status["canary_weight"] == weight:
            return
        time.sleep(0.3)
    raise AssertionError(f"the service did not take canary {version} at {weight}%: {status}")


def _run_canary(stack: ServingStack, candidate: str, steps: str, seed: int):
    """Start the canary of ``candidate`` (already in the canary stage), shoppers visiting,
    and ``recsys canary run`` until it is decided; returns (exit code, run output, state,
    the simulator's tally)."""
    code, out, err = recsys(
        stack, "canary", "start", candidate, "--reason", "test", "--steps", steps
    )
    assert code == 0, out + err
    # (the service takes the new canary at its next registry check; until then the canary
    # it had, if any, still answers as one: shoppers start once the service has moved)
    _wait_for_canary(stack, candidate, float(steps.split(",")[0].split(":")[0]))
    simulator = _simulator(stack, seed)
    thread = simulator.start()
    try:
        started = time.monotonic()
        code, out, err = recsys(
            stack, "canary", "run", "--policy", _policy(stack), "--timeout", str(RUN_TIMEOUT)
        )
    finally:
        simulator.stop()
        thread.join()
    _, tags = _registry(stack)
    state = json.loads(tags[RUN_TAG])
    print(
        f"\ncanary v{candidate}: {state['status']} after {time.monotonic() - started:.0f}s, "
        f"{state['looks']} looks; simulator: {json.dumps(simulator.tally.to_dict())}\n"
        f"decision: {state['decision']}"
    )
    return code, out + err, state, simulator.tally


def _policy(stack: ServingStack) -> str:
    return str(stack.workspace.home / "canary-policy.yaml")


def _never_back_to_production(tally, before: float, canary: str) -> None:
    """A user once in the canary stays there while it runs (the share only grows), up to the
    decision (``before``: then the weight goes to 0, or the canary becomes production); and
    every canary answer is the canary version's (never a canary replaced before it)."""
    for user, visits in tally.seen.items():
        assert {m for t, v, m in visits if v == split.CANARY and t < before} <= {canary}, visits
        variants = [v for t, v, _ in sorted(visits) if t < before]
        if split.CANARY in variants:
            first = variants.index(split.CANARY)
            assert set(variants[first:]) == {split.CANARY}, (user, variants)


# ------------------------------------------------------------------------------ tests
def test_a_user_stays_in_one_variant_for_the_whole_canary(stack: ServingStack) -> None:
    # given a canary at 30% (a copy of production, so only the split is at stake)
    import sqlalchemy as sa

    same = stack.versions["same"]
    _move(stack, "canary", same, "stickiness test")
    code, out, err = recsys(
        stack, "canary", "start", same, "--reason", "sticky", "--steps", "30:60"
    )
    assert code == 0, out + err
    _wait_for_canary(stack, same, 30.0)
    # when 50 shoppers send 240 requests between them
    simulator = _simulator(stack, seed=3, users=50)
    tally = simulator.run(requests=240)
    # then every shopper saw one variant, the one the split function gives them
    salt = split.split_salt("recsys-canary", same)
    assert sum(tally.requests.values()) == 240 and not tally.errors
    for user, visits in tally.seen.items():
        assert {v for _, v, _ in visits} == {split.variant_of(user, 30.0, salt)}, (user, visits)
        assert {m for _, _, m in visits} == ({same} if visits[0][1] == split.CANARY else {"1"})
    in_canary = sum(visits[0][1] == split.CANARY for visits in tally.seen.values())
    repeat = sum(len(visits) > 1 for visits in tally.seen.values())
    print(f"\n{len(tally.seen)} users ({repeat} with several requests), {in_canary} in the canary")
    assert repeat >= 35 and 0.1 < in_canary / len(tally.seen) < 0.55
    # and every feedback event carries its answer's variant and version
    time.sleep(1.5)  # the served log is written behind the requests
    engine = sa.create_engine(stack.env["RECSYS_FEEDBACK_URL"])
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT e.variant, e.model_version, s.variant, s.model_version "
                    "FROM recsys_feedback_events e JOIN recsys_served_requests s "
                    "ON s.request_id = e.request_id"
                )
            ).all()
    finally:
        engine.dispose()
    assert len(rows) >= 2400 and all(r[0] == r[2] and r[1] == r[3] for r in rows)
    assert {r[0] for r in rows} == {"production", "canary"}
    # finally the canary is aborted: weight 0, alias removed, recorded
    code, out, err = recsys(stack, "canary", "abort", "--reason", "stickiness checked")
    assert code == 0, out + err
    aliases, _ = _registry(stack)
    assert "canary" not in aliases
    assert _audit(stack)[0].action == "canary-abort"


def test_a_random_ranker_is_rolled_back_before_its_weight_passes_25(stack: ServingStack) -> None:
    # given production version 1 and a candidate with a random ranker in the canary stage
    random = stack.versions["random"]
    _move(stack, "canary", random, "the bad candidate")
    # when the canary runs through 5%, 25%, 50%, 100% with shoppers visiting
    code, out, state, tally = _run_canary(stack, random, "5:0.1,25:1.5,50:0.25,100:0.25", seed=1)
    # then it is rolled back on user response (click-through or conversion), at 5% or 25%
    assert code == 1, out
    assert state["status"] == "rolled-back"
    assert state["schedule"][state["step"]]["weight"] <= 25
    assert "click-through" in state["decision"] or "conversion" in state["decision"], state
    aliases, _ = _registry(stack)
    assert aliases.get("production") == "1" and "canary" not in aliases
    record = _audit(stack)[0]
    assert (record.action, record.alias, record.from_version, record.to_version) == (
        "canary-rollback",
        "canary",
        random,
        None,
    )
    worse = [m for m in record.metrics["metrics"].values() if m["worse"]]
    assert worse and all(m["high"] < 0 and m["p_value"] < 0.05 for m in worse)
    m = worse[0]
    print(
        f"rolled back at {record.details['weight']:g}%: {m['metric']} canary {m['canary']:.4f} vs "
        f"production {m['production']:.4f}, interval [{m['low']:+.4f}, {m['high']:+.4f}], "
        f"p={m['p_value']:.2g}; impressions "
        f"{record.metrics['variants']['canary']['impressions']:.0f} canary, "
        f"{record.metrics['variants']['production']['impressions']:.0f} production"
    )
    _never_back_to_production(tally, state["decided_at"], random)
    # and the decision is in the registry's history
    code, history, _ = recsys(stack, "registry", "history", "--limit", "1")
    assert (
        code == 0
        and "canary-rollback" in history
        and m["metric"] in history.replace("click-through", "ctr")
    ), history


def test_a_better_candidate_is_promoted_through_every_step(stack: ServingStack) -> None:
    # given the random ranker in production (yesterday's bad deploy) and version 1's copy in
    # the canary stage
    random, good = stack.versions["random"], stack.versions["good"]
    _move(stack, "production", random, "a bad deploy, for the test")
    _move(stack, "canary", good, "the fix")
    since = datetime.now(UTC)
    # when the canary runs through every step
    code, out, state, tally = _run_canary(stack, good, "5:0.1,25:0.15,50:0.2,100:0.15", seed=2)
    # then it is promoted: production <- canary, previous-production <- the old production
    assert code == 0, out
    assert state["status"] == "promoted" and state["step"] == 3
    aliases, _ = _registry(stack)
    assert aliases.get("production") == good and aliases.get("previous-production") == random
    assert "canary" not in aliases
    records = _audit(stack)
    steps = [r for r in records if r.action == "canary-step" and r.to_version == good]
    assert [r.details["to_weight"] for r in reversed(steps)] == [25, 50, 100]
    promoted = next(r for r in records if r.alias == "production" and r.to_version == good)
    ctr = promoted.metrics["canary"]["metrics"]["ctr"]
    assert ctr["difference"] > 0 and not ctr["worse"]
    print(
        f"promoted: ctr canary {ctr['canary']:.4f} vs production {ctr['production']:.4f}, "
        f"interval [{ctr['low']:+.4f}, {ctr['high']:+.4f}]"
    )
    _never_back_to_production(tally, state["decided_at"], good)
    # and the A/B report of the two versions over the canary shows the lift with intervals
    report = stack.workspace.home / "ab.json"
    code, text, _ = recsys(
        stack, "canary", "report", "--a", random, "--b", good, "--since", since.isoformat(),
        "--json", str(report),
    )  # fmt: skip
    assert code == 0, text
    print(text)
    overall = json.loads(report.read_text())["all users"]["ctr"]
    assert overall["lift"] > 0 and overall["low"] > 0


@pytest.mark.parametrize(
    ("candidate", "breach"), [("errors", "error rate"), ("slow", "latency p99")]
)
def test_a_failing_or_slow_candidate_is_rolled_back_on_guardrails_alone(
    stack: ServingStack, candidate: str, breach: str
) -> None:
    # given a copy of the production model whose fault tags make the service fail half of
    # its requests, or answer 1.5 s late
    version = stack.versions[candidate]
    production = _registry(stack)[0]["production"]
    _move(stack, "canary", version, f"a {candidate} candidate")
    # when the canary runs
    code, out, state, _ = _run_canary(stack, version, "25:0.5,50:0.5,100:0.5", seed=4)
    # then the guardrail alone rolls it back, before any user-response verdict
    assert code == 1, out
    assert state["status"] == "rolled-back"
    record = _audit(stack)[0]
    assert record.action == "canary-rollback" and record.from_version == version
    breaches = record.metrics["breaches"]
    assert len(breaches) >= 1 and all(b.startswith(breach) for b in breaches), breaches
    assert _registry(stack)[0].get("production") == production
    print(f"rolled back: {breaches[0]}")


def test_bad_input_is_one_line_exit_2_and_changes_nothing(stack: ServingStack) -> None:
    before, audited = _registry(stack)[0], len(_audit(stack))
    production = before["production"]
    cases = {
        ("start", "99", "--reason", "x"): "unknown version 99",
        ("start", production, "--reason", "x"): f"version {production} is production already",
        ("start", stack.versions["same"]): "a reason is required",
        ("start", stack.versions["same"], "--reason", "x", "--steps", "25:1,5:1"): (
            "weights must increase step by step"
        ),
        ("abort", "--reason", "x"): "no canary is running",
        ("report", "--a", "six", "--b", "7"): "version A 'six' is not a version number",
        ("report", "--a", "6", "--b", "7", "--since", "yesterday"): "not an ISO-8601 time",
        ("run", "--policy", "/nonexistent.yaml"): "file not found",
    }
    for args, expected in cases.items():
        code, out, err = recsys(stack, "canary", *args)
        assert code == 2, (args, out, err)
        assert expected in err and len(err.strip().splitlines()) == 1, (args, err)
        assert err.startswith("recsys canary: error:"), err
    assert _registry(stack)[0] == before and len(_audit(stack)) == audited
    # a finished canary leaves `run --once` (the CronJob) nothing to do: exit 0
    code, out, _ = recsys(stack, "canary", "run", "--once")
    assert code == 0 and out.startswith("no canary is running"), out

"""The registry (PLATFORM.md section 5): stages as aliases, gates, audit, plan and apply.

Unit tests judge the gate logic on tiny hand-made metric dictionaries with exact verdicts.
Integration tests use the session's tiny trained model in a copy of its MLflow registry (so no
other module's registry moves), with extra versions registered from the same run's artefacts,
a deliberately worse version (the same recommender with its ranker taken out and only its
popularity source left, logged as a real model version), and the audit table in PostgreSQL
under a schema of this module's own, dropped at the end.
"""

import contextlib
import io
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from recsys.errors import RecsysError
from registry import gates
from registry.audit import AuditLog
from registry.desired import load_promotions
from registry.policy import MetricCheck, Policy, SegmentPolicy, load_policy
from tests.serving_stack import MODEL_NAME, scoped_env, trained

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
POLICY_YAML = """\
window: {days: 21, requests: 300, seed: 7}   # the tiny model's test window (TRAIN_YAML)
overall:
  - {metric: ndcg@10, tolerance: 0.005}
  - {metric: recall@20, tolerance: 0.01}
segments:
  min_requests: 20
  checks: [{metric: ndcg@10, tolerance: 0.02}]
"""


# ------------------------------------------------------------------------------ gate logic
def _metrics(overall: dict, segments: dict | None = None) -> dict:
    return {"overall": overall, "segments": segments or {}}


POLICY = Policy(
    overall=(
        MetricCheck(metric="ndcg@10", tolerance=0.01),
        MetricCheck(metric="recall@20", tolerance=0.1, relative=True),
    ),
    segments=SegmentPolicy(
        checks=(MetricCheck(metric="ndcg@10", tolerance=0.02),),
        per_segment={"new_users": (MetricCheck(metric="ndcg@10", tolerance=0.05),)},
        min_requests=10,
    ),
)
PROD = _metrics(
    {"ndcg@10": 0.20, "recall@20": 0.40},
    {
        "heavy_users": {"ndcg@10": 0.30, "requests": 50},
        "new_users": {"ndcg@10": 0.10, "requests": 40},
        "new_products": {"ndcg@10": 0.05, "requests": 3},
    },
)


@pytest.mark.unit
def test_first_candidate_passes_when_there_is_no_production() -> None:
    verdict = gates.judge(_metrics({"ndcg@10": 0.0}), None, POLICY, "1")
    assert verdict.passed
    assert verdict.checks == ()
    assert verdict.reason == (
        "version 1 passes: no production version exists yet, so there is nothing to be worse than"
    )


@pytest.mark.unit
def test_drops_within_tolerance_pass_and_at_the_limit_too() -> None:
    candidate = _metrics(
        {"ndcg@10": 0.19, "recall@20": 0.36},  # exactly 0.01 and 10% of 0.40 lower
        {
            "heavy_users": {"ndcg@10": 0.28, "requests": 50},
            "new_users": {"ndcg@10": 0.06, "requests": 40},  # its own tolerance: 0.05
            "new_products": {"ndcg@10": 0.0, "requests": 3},  # too few requests to judge
        },
    )
    verdict = gates.judge(candidate, PROD, POLICY, "2", "1")
    assert verdict.passed, verdict.reason
    assert (
        verdict.reason == "version 2 passes against production version 1: 4 checks within tolerance"
    )
    skipped = [c for c in verdict.checks if c.skipped]
    assert [(c.scope, c.note) for c in skipped] == [("new_products", "not judged: 3 requests < 10")]


@pytest.mark.unit
def test_a_refusal_names_each_failing_metric_with_both_values_and_the_tolerance() -> None:
    candidate = _metrics(
        {"ndcg@10": 0.18, "recall@20": 0.40},
        {
            "heavy_users": {"ndcg@10": 0.25, "requests": 50},
            "new_users": {"ndcg@10": 0.06, "requests": 40},
        },
    )
    verdict = gates.judge(candidate, PROD, POLICY, "3", "1")
    assert not verdict.passed
    assert [(c.scope, c.metric) for c in verdict.failures] == [
        ("overall", "ndcg@10"),
        ("heavy_users", "ndcg@10"),
    ]
    assert verdict.reason == (
        "version 3 is refused against production version 1: "
        "ndcg@10 0.1800 vs production 0.2000 (drop 0.0200 > tolerance 0.0100); "
        "heavy_users ndcg@10 0.2500 vs production 0.3000 (drop 0.0500 > tolerance 0.0200)"
    )
    # a segment the candidate lacks (no new products in its answers' window) is not judged
    assert [c.scope for c in verdict.checks if c.skipped] == ["new_products"]


@pytest.mark.unit
def test_a_segment_uses_its_own_tolerance_and_a_missing_metric_fails() -> None:
    candidate = _metrics(
        {"ndcg@10": 0.20},
        {
            "heavy_users": {"ndcg@10": 0.30, "requests": 50},
            "new_users": {"ndcg@10": 0.04, "requests": 40},
        },
    )
    verdict = gates.judge(candidate, PROD, POLICY, "4", "1")
    assert [c.describe() for c in verdict.failures] == [
        "recall@20: not computed for the candidate",
        "new_users ndcg@10 0.0400 vs production 0.1000 (drop 0.0600 > tolerance 0.0500)",
    ]


@pytest.mark.unit
def test_policy_and_desired_state_files_are_validated(tmp_path: Path) -> None:
    assert load_policy(Path("registry/policy.yaml")).overall[0].metric == "ndcg@10"
    bad = tmp_path / "policy.yaml"
    bad.write_text("overall:\n  - {metric: ndcg@10, tolerence: 0.01}\n")
    with pytest.raises(RecsysError, match="tolerence: Extra inputs are not permitted"):
        load_policy(bad)
    assert load_promotions(Path("registry/promotions.yaml")).production is None
    same = tmp_path / "same.yaml"
    same.write_text(
        "production: {version: 2, reason: a}\n"
        "canary: {version: 2, reason: b, schedule: [{weight: 5, minutes: 10}]}\n"
    )
    with pytest.raises(RecsysError, match="cannot be production and canary at once"):
        load_promotions(same)
    down = tmp_path / "down.yaml"
    down.write_text(
        "canary: {version: 3, reason: b, schedule: "
        "[{weight: 25, minutes: 10}, {weight: 5, minutes: 10}]}\n"
    )
    with pytest.raises(RecsysError, match=r"weights must increase step by step, got \[25.0, 5.0\]"):
        load_promotions(down)


@pytest.mark.unit
def test_the_audit_appends_and_reads_newest_first(tmp_path: Path) -> None:
    audit = AuditLog(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        audit.append("promote", "m", "staging", None, "1", "first", {"ndcg@10": 0.2}, who="ann")
        audit.append("promote", "m", "production", None, "1", "ship it", who="bo")
        audit.append("promote", "other", "staging", None, "7", "not ours")
        records = audit.history("m")
        assert [(r.id, r.actor, r.alias, r.to_version) for r in records] == [
            (2, "bo", "production", "1"),
            (1, "ann", "staging", "1"),
        ]
        assert records[1].metrics == {"ndcg@10": 0.2}
        assert [r.id for r in audit.history("m", limit=1)] == [2]
        # append-only: nothing in the class updates or deletes a record
        assert not [name for name in dir(AuditLog) if "update" in name or "delete" in name]
    finally:
        audit.close()


# ------------------------------------------------------------------------------ integration
@dataclass
class Env:
    home: Path
    env: dict[str, str]
    root: Path
    tracking_uri: str
    schema: str
    versions: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str) -> tuple[int, str, str]:
        """``recsys registry ...`` in this process; exit code, stdout, stderr."""
        from recsys.cli import main

        out, err = io.StringIO(), io.StringIO()
        with (
            scoped_env(self.env),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                code = main(["-q", "--home", str(self.home), "registry", *args])
            except SystemExit as exc:  # argparse
                code = int(exc.code or 0)
        return code, out.getvalue(), err.getvalue()

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def aliases(self) -> dict[str, str]:
        with scoped_env(self.env):
            aliases = self.client().get_registered_model(MODEL_NAME).aliases
        return {alias: str(version) for alias, version in aliases.items()}

    def audit_rows(self) -> list:
        with scoped_env(self.env):
            audit = AuditLog(PG_URL, self.schema)
            try:
                return audit.history(MODEL_NAME)
            finally:
                audit.close()


def _register_versions(env: Env) -> dict[str, str]:
    """Two more versions from version 1's run and artefacts, and a worse one: version 1's
    recommender without its ranker and with its popularity source only, logged for real."""
    import mlflow

    from recommender.mlflow_model import load_recommender, log_recommender

    with scoped_env(env.env):
        mlflow.set_tracking_uri(env.tracking_uri)
        mlflow.set_registry_uri(env.tracking_uri)
        client = env.client()
        first = client.get_model_version(MODEL_NAME, "1")
        copy = client.create_model_version(MODEL_NAME, first.source, run_id=first.run_id)
        worse_model = load_recommender(f"models:/{MODEL_NAME}/1")
        worse_model.ranker = None  # candidates in their own source's order
        worse_model.sources = [s for s in worse_model.sources if s.name == "popularity"]
        experiment = mlflow.create_experiment(
            "registry-tests", artifact_location=(env.root / "artifacts").as_uri()
        )
        with mlflow.start_run(experiment_id=experiment):
            worse = log_recommender(worse_model, MODEL_NAME)
        another = client.create_model_version(MODEL_NAME, first.source, run_id=first.run_id)
    return {"copy": str(copy.version), "worse": str(worse), "another": str(another.version)}


def _clear_aliases(env: Env) -> None:
    """Only ``candidate`` left: the session's registry may have been promoted by other
    modules (the serving stacks put version 1 in production) before it was copied here."""
    with scoped_env(env.env):
        client = env.client()
        for alias in client.get_registered_model(MODEL_NAME).aliases:
            if alias != "candidate":
                client.delete_registered_model_alias(MODEL_NAME, alias)


@pytest.fixture(scope="module")
def registry_env(tmp_path_factory: pytest.TempPathFactory):
    import sqlalchemy as sa

    model = trained(tmp_path_factory)
    root = tmp_path_factory.mktemp("registry")
    registry = root / "mlflow.db"
    shutil.copyfile(model.workspace.home / "mlflow" / "mlflow.db", registry)
    schema = f"t_registry_{uuid.uuid4().hex[:10]}"
    tracking_uri = f"sqlite:///{registry}"
    (root / "policy.yaml").write_text(POLICY_YAML)
    env = Env(
        home=model.workspace.home,  # the lake and features the versions are judged on
        env={
            "MLFLOW_TRACKING_URI": tracking_uri,  # this module's copy of the registry
            "RECSYS_REGISTRY_AUDIT_URL": PG_URL,
            "RECSYS_REGISTRY_AUDIT_SCHEMA": schema,
            "RECSYS_ACTOR": "registry-test",
        },
        root=root,
        tracking_uri=tracking_uri,
        schema=schema,
    )
    try:
        _clear_aliases(env)
        env.versions = _register_versions(env)
        yield env
    finally:
        import mlflow

        with scoped_env({}):
            mlflow.set_tracking_uri(None)
        engine = sa.create_engine(PG_URL)
        try:
            with engine.begin() as connection:
                connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            engine.dispose()


def _policy(env: Env) -> list[str]:
    return ["--policy", str(env.root / "policy.yaml")]


@pytest.mark.integration
@pytest.mark.slow
def test_a_version_walks_every_stage_and_rollback_restores_production(registry_env) -> None:
    env = registry_env
    copy = env.versions["copy"]
    code, out, err = env.run("promote", "1", "--to", "staging", "--reason", "first", *_policy(env))
    assert code == 0, err
    assert "no production version exists yet" in out
    for stage in ("canary", "production"):
        code, out, err = env.run("promote", "1", "--to", stage, "--reason", f"1 to {stage}")
        assert code == 0, err
    assert env.aliases() == {"production": "1"}  # it left candidate, staging and canary

    code, out, err = env.run(
        "promote", copy, "--to", "staging", "--reason", "retrain", *_policy(env)
    )
    assert code == 0, err
    assert f"version {copy} passes against production version 1" in out
    assert "| ndcg@10 | " in out and "| heavy_users |" in out  # side by side, per segment
    for stage in ("canary", "production"):
        code, out, err = env.run("promote", copy, "--to", stage, "--reason", f"{copy} to {stage}")
        assert code == 0, err
    assert env.aliases() == {"production": copy, "previous-production": "1"}

    code, out, err = env.run("list")
    assert code == 0, err
    assert re.search(rf"^production +{copy} +0\.\d{{4}} +0\.\d{{4}}  passed$", out, re.M), out

    code, out, err = env.run("rollback", "--reason", "clicks fell after the deploy")
    assert code == 0, err
    assert "production rolled back to version 1" in out
    assert env.aliases() == {"production": "1"}
    code, _, err = env.run("rollback", "--reason", "once more")
    assert code == 2 and "no previous-production version to roll back to" in err

    rows = env.audit_rows()  # PostgreSQL, newest first
    assert [(r.action, r.alias, r.from_version, r.to_version) for r in rows[:2]] == [
        ("rollback", "previous-production", "1", None),
        ("rollback", "production", copy, "1"),
    ]
    assert {r.actor for r in rows} == {"registry-test"}
    staged = next(r for r in rows if r.alias == "staging" and r.to_version == copy)
    assert staged.reason == "retrain"
    assert staged.metrics["verdict"]["passed"] is True
    assert staged.metrics["production"]["version"] == "1"
    assert staged.metrics["version"]["overall"]["ndcg@10"] > 0
    with scoped_env(env.env):
        tags = env.client().get_model_version(MODEL_NAME, copy).tags
    assert tags["registry.gates"] == "revoked (rolled back)"
    assert tags["registry.production.reason"] == f"{copy} to production"
    assert tags["registry.production.by"] == "registry-test"
    code, out, _ = env.run("history", "--limit", "3")
    assert code == 0 and "clicks fell after the deploy" in out and len(out.splitlines()) == 4


@pytest.mark.integration
@pytest.mark.slow
def test_a_worse_version_is_refused_with_each_failing_metric(registry_env) -> None:
    env = registry_env
    worse = env.versions["worse"]
    before, audited = env.aliases(), len(env.audit_rows())
    code, out, err = env.run("promote", worse, "--to", "staging", "--reason", "try", *_policy(env))
    assert code == 1
    assert f"version {worse} is refused against production version" in err
    assert "ndcg@10 " in err and "vs production " in err and "> tolerance 0.0050)" in err
    assert "**FAIL**" in out
    assert env.aliases() == before
    rows = env.audit_rows()
    assert len(rows) == audited + 1 and rows[0].action == "refused"  # the decision is recorded
    code, _, err = env.run("promote", worse, "--to", "production", "--reason", "skip the gates")
    assert code == 1 and f"version {worse} has not passed the staging gates" in err
    assert env.aliases() == before


@pytest.mark.integration
@pytest.mark.slow
def test_plan_reports_side_by_side_and_apply_twice_changes_nothing_the_second_time(
    registry_env,
) -> None:
    env = registry_env
    copy, another, worse = (env.versions[k] for k in ("copy", "another", "worse"))
    production = env.aliases()["production"]
    desired = env.root / "promotions.yaml"
    desired.write_text(
        f"production: {{version: {copy}, reason: 'retrained, same quality'}}\n"
        f"canary:\n  version: {another}\n  reason: 'the next one'\n"
        "  schedule: [{weight: 5, minutes: 30}, {weight: 50, minutes: 60}]\n"
    )
    report = env.root / "plan.md"
    code, out, err = env.run("plan", "--file", str(desired), *_policy(env), "--out", str(report))
    assert code == 0, err
    assert report.read_text() in out
    assert f"| production | {production} | {copy} | promote | passed |" in out
    assert f"| canary | - | {another} | promote | passed |" in out
    assert f"| production v{production} | v{copy} | difference | tolerance | verdict |" in out
    assert f"| canary schedule | - | v{another}: 5% for 30 min, 50% for 60 min | set |" in out
    assert env.aliases().get("canary") is None  # plan changes nothing

    code, out, err = env.run("apply", "--file", str(desired), *_policy(env))
    assert code == 0, err
    assert env.aliases() == {
        "production": copy,
        "previous-production": production,
        "canary": another,
    }
    audited = len(env.audit_rows())
    code, out, err = env.run("apply", "--file", str(desired), *_policy(env))
    assert code == 0, err
    assert out.strip() == f"nothing to change: the registry already matches {desired}"
    assert len(env.audit_rows()) == audited
    with scoped_env(env.env):
        tags = env.client().get_registered_model(MODEL_NAME).tags
    assert tags["canary.version"] == another

    refused = env.root / "refused.yaml"
    refused.write_text(desired.read_text().replace(f"version: {another}", f"version: {worse}"))
    before = env.aliases()
    code, out, err = env.run("plan", "--file", str(refused), *_policy(env))
    assert code == 1 and f"| canary | {another} | {worse} | promote | **REFUSED** |" in out
    code, out, err = env.run("apply", "--file", str(refused), *_policy(env))
    assert code == 1 and "apply refused, nothing changed" in err
    assert env.aliases() == before and len(env.audit_rows()) == audited


@pytest.mark.integration
def test_bad_input_is_one_line_exit_2_and_changes_nothing(registry_env) -> None:
    env = registry_env
    before, audited = env.aliases(), len(env.audit_rows())
    broken = env.root / "broken.yaml"
    broken.write_text("production: [\n")
    misspelt = env.root / "misspelt.yaml"
    misspelt.write_text("production: {version: 1, reason: x, weight: 5}\n")
    cases = {
        ("promote", "99", "--to", "staging", "--reason", "x"): "unknown version 99",
        ("promote", "1", "--to", "prod", "--reason", "x"): "unknown stage 'prod'",
        ("promote", "1", "--to", "staging"): "a reason is required",
        ("promote", "1", "--to", "previous-production", "--reason", "x"): "use `recsys registry",
        ("rollback", "--reason", " "): "a reason is required",
        ("plan", "--file", str(broken)): "not valid YAML",
        ("apply", "--file", str(misspelt)): "production.weight: Extra inputs are not permitted",
        ("apply", "--file", str(env.root / "none.yaml")): "file not found",
    }
    for args, expected in cases.items():
        code, out, err = env.run(*args)
        assert code == 2, (args, out, err)
        assert expected in err, (args, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("recsys registry: error:")
    assert env.aliases() == before and len(env.audit_rows()) == audited

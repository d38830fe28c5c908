"""``recsys canary ...``: start, status, run, abort, report, simulate. Input is checked before
anything moves, so a bad version, schedule, reason or time ends with a one-line error (exit
code 2); a canary that is rolled back or aborted ends ``run`` with exit code 1."""

import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from canary.controller import PROMOTED, RUNNING, Controller
from canary.policy import load_policy, parse_steps
from recsys.errors import RecsysError
from recsys.workspace import Workspace
from registry.lifecycle import GateRefused

logger = logging.getLogger(__name__)


def open_controller(
    workspace: Workspace, model_name: str, policy_path: str | None, gates_path: str | None
) -> Controller:
    from registry.commands import open_lifecycle
    from serving.feedback import database_url

    policy = load_policy(policy_path)
    lifecycle = open_lifecycle(workspace, model_name, gates_path)
    return Controller(lifecycle, policy, database_url(workspace))


def start(
    workspace: Workspace,
    version: str,
    reason: str | None,
    steps: str | None,
    model_name: str,
    policy_path: str | None,
    gates_path: str | None,
) -> int:
    schedule = parse_steps(steps) if steps else None
    controller = open_controller(workspace, model_name, policy_path, gates_path)
    try:
        state = controller.start(version, reason or "", schedule)
    except GateRefused as exc:
        print(f"recsys canary: refused: {exc}", file=sys.stderr)
        return 1
    print(state.describe())
    print(f"version {version} takes {state.weight:g}% of users; `recsys canary run` steps it on")
    return 0


def status(
    workspace: Workspace, model_name: str, policy_path: str | None, json_out: str | None
) -> int:
    controller = open_controller(workspace, model_name, policy_path, None)
    state = controller.state()
    if state is None:
        print("no canary has run")
        return 0
    print(state.describe())
    analysis = controller.look(state) if state.status == RUNNING else None
    if analysis is not None:
        print(analysis.summary())
    _write_json(
        json_out,
        {"state": state.model_dump(), "analysis": analysis.to_dict() if analysis else None},
    )
    return 0


def run(
    workspace: Workspace,
    model_name: str,
    policy_path: str | None,
    once: bool,
    timeout: float | None,
) -> int:
    controller = open_controller(workspace, model_name, policy_path, None)
    before = controller.state()
    if before is None or before.status != RUNNING:
        # (exit 0: a CronJob running --once every minute has nothing to do, not a failure)
        last = f" (the last one: {before.describe()})" if before else ""
        print(f"no canary is running: `recsys canary start VERSION --reason TEXT` first{last}")
        return 0
    state = controller.run(once=once, timeout=timeout)
    print(state.describe())
    return 0 if state.status in (RUNNING, PROMOTED) else 1


def abort(workspace: Workspace, reason: str | None, model_name: str) -> int:
    controller = open_controller(workspace, model_name, None, None)
    state = controller.abort(reason or "")
    print(state.describe())
    return 0


def report(
    workspace: Workspace,
    a: str,
    b: str,
    since: str | None,
    until: str | None,
    hours: float,
    out: str | None,
    json_out: str | None,
) -> int:
    from canary.report import ab_report, to_json
    from serving.feedback import database_url

    end = parse_time(until, "--until") if until else None
    begin = (
        parse_time(since, "--since")
        if since
        else (end or datetime.now(UTC)) - timedelta(hours=hours)
    )
    for name, value in (("A", a), ("B", b)):
        if not str(value).strip().isdigit():
            raise RecsysError(f"version {name} '{value}' is not a version number")
    result, text = ab_report(workspace, database_url(workspace), str(a), str(b), begin, end)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    _write_json(json_out, to_json(result))
    return 0


def simulate(
    url: str,
    shop: str,
    seconds: float,
    requests: int | None,
    rate: float | None,
    threads: int,
    seed: int,
    json_out: str | None,
) -> int:
    from canary.simulator import Shoppers, Simulator

    simulator = Simulator(url, Shoppers.load(shop), seed=seed, threads=threads)
    tally = simulator.run(seconds=seconds, requests=requests, rate=rate).to_dict()
    print(json.dumps(tally, indent=2))
    _write_json(json_out, tally)
    return 0


def parse_time(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RecsysError(f"{option}: '{text}' is not an ISO-8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")

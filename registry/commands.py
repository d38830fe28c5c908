"""``recsys registry ...``: list, promote, rollback, history, plan, apply (PLATFORM.md
section 5). Input is validated before anything is touched, so a bad version, stage, reason or
file ends with a one-line error, exit code 2, and an unchanged registry; a version the gates
refuse ends with exit code 1, also with nothing moved."""

import json
import logging
import sys
from pathlib import Path

from recsys.workspace import Workspace
from registry.audit import TABLE, AuditLog, audit_url
from registry.desired import DEFAULT_FILE, load_promotions
from registry.evaluation import Evaluator
from registry.lifecycle import (
    GateRefused,
    Lifecycle,
    Transition,
    require_reason,
    require_stage,
)
from registry.plan import apply_plan, make_plan, render, schedule_text
from registry.policy import load_policy
from registry.report import gate_section
from registry.store import MODEL_NAME, STAGES, ModelStore

logger = logging.getLogger(__name__)


def open_lifecycle(
    workspace: Workspace, model_name: str = MODEL_NAME, policy_path: str | None = None
) -> Lifecycle:
    """The registry of ``workspace`` with its audit table, gate policy and evaluator."""
    policy = load_policy(policy_path)
    store = ModelStore(workspace, model_name)
    audit = AuditLog(audit_url(store.uri))
    evaluator = Evaluator(workspace, model_name, policy.window, policy.ks)
    return Lifecycle(store, audit, policy, evaluator)


def _refused(message: str) -> int:
    print(f"recsys registry: refused: {message}", file=sys.stderr)
    return 1


def _print_moves(moves: list[Transition], audit: AuditLog) -> None:
    for move in moves:
        print(f"  {move.describe()}")
    if moves:
        from sqlalchemy.engine import make_url

        where = make_url(audit.url).render_as_string(hide_password=True)
        schema = f"{audit.schema}." if audit.schema else ""
        print(f"recorded in {schema}{TABLE} ({where}) and as model version tags")


def list_stages(workspace: Workspace, model_name: str, json_out: str | None) -> int:
    store = ModelStore(workspace, model_name)
    aliases = store.aliases()
    print(f"{store.name} ({store.uri})")
    print(f"{'stage':<21} {'version':>7} {'ndcg@10':>8} {'recall@20':>9}  gates")
    rows = {}
    for stage in STAGES:
        version = aliases.get(stage)
        if version is None:
            print(f"{stage:<21} {'-':>7}")
            rows[stage] = None
            continue
        metrics = store.key_metrics(version)
        gates = store.tags(version).get("registry.gates", "-")
        rows[stage] = {"version": version, "training_metrics": metrics, "gates": gates}
        print(
            f"{stage:<21} {version:>7} {metrics.get('ndcg@10', float('nan')):>8.4f} "
            f"{metrics.get('recall@20', float('nan')):>9.4f}  {gates}"
        )
    schedule = schedule_text(store.model_tags())
    print(f"canary schedule: {schedule or 'none'}")
    print("(ndcg@10, recall@20: each version's own test window in training)")
    payload = {"model": store.name, "stages": rows, "canary_schedule": schedule}
    _write_json(json_out, payload)
    return 0


def promote(
    workspace: Workspace,
    version: str,
    stage: str,
    reason: str | None,
    model_name: str,
    policy_path: str | None,
) -> int:
    stage = require_stage(stage)
    reason = require_reason(reason)
    lifecycle = open_lifecycle(workspace, model_name, policy_path)
    lifecycle.store.version(version)
    try:
        moves = lifecycle.promote(version, stage, reason)
    except GateRefused as exc:
        if lifecycle.last_gate is not None:
            print(gate_section(f"version {version} -> {stage}", lifecycle.last_gate))
        return _refused(str(exc))
    if lifecycle.last_gate is not None:
        print(gate_section(f"version {version} -> {stage}", lifecycle.last_gate))
    if not moves:
        print(f"version {version} is already {stage}: nothing changed")
        return 0
    print(f"version {version} is now {stage}:")
    _print_moves(moves, lifecycle.audit)
    return 0


def rollback(workspace: Workspace, reason: str | None, model_name: str) -> int:
    reason = require_reason(reason)
    lifecycle = open_lifecycle(workspace, model_name)
    moves = lifecycle.rollback(reason)
    print(f"production rolled back to version {moves[0].to_version}:")
    _print_moves(moves, lifecycle.audit)
    return 0


def history(workspace: Workspace, limit: int, model_name: str, json_out: str | None) -> int:
    store = ModelStore(workspace, model_name)
    audit = AuditLog(audit_url(store.uri))
    records = audit.history(store.name, limit)
    if not records:
        print(f"no transitions recorded for {store.name}")
    else:
        print(f"{'id':>4}  {'when (UTC)':<19}  {'who':<12} {'action':<15} {'stage':<19} "
              f"{'from':>4} {'to':>4}  reason")  # fmt: skip
    for r in records:
        print(
            f"{r.id:>4}  {r.at.strftime('%Y-%m-%d %H:%M:%S'):<19}  {r.actor[:12]:<12} "
            f"{r.action[:15]:<15} {r.alias:<19} {r.from_version or '-':>4} "
            f"{r.to_version or '-':>4}  {r.reason}"
        )
    _write_json(
        json_out,
        {"model": store.name, "history": [{**r.__dict__, "at": r.at.isoformat()} for r in records]},
    )
    return 0


def plan(workspace: Workspace, file: str | None, policy_path: str | None, out: str | None) -> int:
    source = str(file or DEFAULT_FILE)
    promotions = load_promotions(source)
    lifecycle = open_lifecycle(workspace, promotions.model, policy_path)
    the_plan = make_plan(lifecycle, promotions, source)
    text = render(the_plan)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
        logger.info("plan written to %s", out)
    return 1 if the_plan.refused else 0


def apply(workspace: Workspace, file: str | None, policy_path: str | None) -> int:
    source = str(file or DEFAULT_FILE)
    promotions = load_promotions(source)
    lifecycle = open_lifecycle(workspace, promotions.model, policy_path)
    the_plan = make_plan(lifecycle, promotions, source)
    if not the_plan.pending:
        print(f"nothing to change: the registry already matches {source}")
        return 0
    try:
        moves = apply_plan(lifecycle, the_plan, promotions)
    except GateRefused as exc:
        print(render(the_plan))
        return _refused(str(exc))
    print(f"applied {source}:")
    _print_moves(moves, lifecycle.audit)
    return 0


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")

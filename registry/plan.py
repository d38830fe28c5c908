"""``plan`` and ``apply`` of the desired state file: what would change in the registry, the
gates' verdict on every version that would move up, and making it so, idempotently.

``apply`` re-checks each alias just before moving it, so a change already made (by an earlier
step of the same apply, or by an earlier apply) is skipped rather than repeated.
"""

import json
import logging
from dataclasses import dataclass, field

from recsys.errors import RecsysError
from registry.desired import Promotions
from registry.lifecycle import GateRefused, GateResult, Lifecycle, Transition
from registry.report import gate_section
from registry.store import CANARY, CANARY_TAGS, PREVIOUS, PRODUCTION

logger = logging.getLogger(__name__)
SCHEDULE = "canary schedule"


@dataclass
class Change:
    stage: str  # production, canary or "canary schedule"
    current: str | None
    desired: str | None
    kind: str  # unchanged, promote, rollback, remove, set
    reason: str = ""
    gate: GateResult | None = None

    @property
    def pending(self) -> bool:
        return self.kind != "unchanged"

    @property
    def refused(self) -> bool:
        return self.gate is not None and not self.gate.verdict.passed


@dataclass
class Plan:
    source: str
    model: str
    changes: list[Change] = field(default_factory=list)

    @property
    def pending(self) -> list[Change]:
        return [change for change in self.changes if change.pending]

    @property
    def refused(self) -> list[Change]:
        return [change for change in self.changes if change.refused]


def schedule_text(tags: dict[str, str]) -> str | None:
    if "canary.schedule" not in tags:
        return None
    steps = json.loads(tags["canary.schedule"])
    text = ", ".join(f"{s['weight']:g}% for {s['minutes']:g} min" for s in steps)
    return f"v{tags.get('canary.version', '?')}: {text}"


def _desired_canary_tags(promotions: Promotions) -> dict[str, str]:
    canary = promotions.canary
    if canary is None:
        return {}
    return {
        "canary.version": canary.version,
        "canary.schedule": canary.schedule_json(),
        "canary.reason": canary.reason,
    }


def make_plan(lifecycle: Lifecycle, promotions: Promotions, source: str) -> Plan:
    """Compare the file with the registry and run the gates for every version moving up."""
    store = lifecycle.store
    aliases = store.aliases()
    plan = Plan(source, store.name)
    production = aliases.get(PRODUCTION)
    want = promotions.production
    if want is None:
        if production is not None:
            previous = aliases.get(PREVIOUS)
            hint = f" (the previous production is version {previous})" if previous else ""
            raise RecsysError(
                f"{source}: no production version given, but the registry's production is "
                f"version {production}: name the version production should be{hint}"
            )
        after = None
    else:
        store.version(want.version)
        after = want.version
        if want.version == production:
            plan.changes.append(Change(PRODUCTION, production, want.version, "unchanged"))
        elif want.version == aliases.get(PREVIOUS):
            plan.changes.append(
                Change(PRODUCTION, production, want.version, "rollback", want.reason)
            )
        else:
            gate = lifecycle.gate(want.version, production)
            plan.changes.append(
                Change(PRODUCTION, production, want.version, "promote", want.reason, gate)
            )
    canary = aliases.get(CANARY)
    wanted = promotions.canary
    if wanted is None:
        kind = "remove" if canary is not None else "unchanged"
        plan.changes.append(Change(CANARY, canary, None, kind, "no canary in the desired state"))
    else:
        store.version(wanted.version)
        if wanted.version == canary:
            plan.changes.append(Change(CANARY, canary, wanted.version, "unchanged"))
        else:
            gate = lifecycle.gate(wanted.version, after)
            plan.changes.append(
                Change(CANARY, canary, wanted.version, "promote", wanted.reason, gate)
            )
    tags = {k: v for k, v in store.model_tags().items() if k in CANARY_TAGS}
    desired_tags = _desired_canary_tags(promotions)
    plan.changes.append(
        Change(
            SCHEDULE,
            schedule_text(tags),
            schedule_text(desired_tags),
            "unchanged" if tags == desired_tags else ("set" if desired_tags else "remove"),
            wanted.reason if wanted else "no canary in the desired state",
        )
    )
    return plan


def render(plan: Plan) -> str:
    """The Markdown report of a plan (printed, and written for a pull request comment)."""
    if plan.refused:
        summary = (
            f"**Refused**: {len(plan.refused)} version(s) fail the gates; apply would change "
            "nothing."
        )
    elif plan.pending:
        summary = f"{len(plan.pending)} change(s); `recsys registry apply` makes them."
    else:
        summary = "No changes: the registry already matches the desired state."
    lines = [
        f"## Registry plan: {plan.model} ({plan.source})",
        "",
        summary,
        "",
        "| stage | now | desired | change | gates |",
        "|---|---|---|---|---|",
    ]
    for change in plan.changes:
        gates = ""
        if change.gate is not None:
            gates = "passed" if change.gate.verdict.passed else "**REFUSED**"
        elif change.kind == "rollback":
            gates = "not needed (it was production before)"
        lines.append(
            f"| {change.stage} | {change.current or '-'} | {change.desired or '-'} | "
            f"{change.kind} | {gates} |"
        )
    for change in plan.changes:
        if change.gate is not None:
            lines += ["", gate_section(f"{change.stage}: version {change.desired}", change.gate)]
            lines.append(f"Reason given: {change.reason}")
    return "\n".join(lines) + "\n"


def apply_plan(lifecycle: Lifecycle, plan: Plan, promotions: Promotions) -> list[Transition]:
    """Make the registry match the plan; nothing at all when any gate refused."""
    if plan.refused:
        raise GateRefused(
            "apply refused, nothing changed: "
            + "; ".join(change.gate.verdict.reason for change in plan.refused)
        )
    store = lifecycle.store
    done: list[Transition] = []
    for change in plan.pending:
        current = store.aliases()
        if change.stage == PRODUCTION:
            if current.get(PRODUCTION) == change.desired:
                continue
            if change.kind == "rollback":
                done += lifecycle.rollback(change.reason)
                continue
            lifecycle.record_gate(change.gate)
            done += lifecycle.to_stage(PRODUCTION, change.desired, change.reason, change.gate)
        elif change.stage == CANARY:
            if current.get(CANARY) == change.desired:
                continue
            if change.desired is None:
                done.append(lifecycle.move(CANARY, None, change.reason, "remove"))
                continue
            lifecycle.record_gate(change.gate)
            done += lifecycle.to_stage(CANARY, change.desired, change.reason, change.gate)
        elif change.stage == SCHEDULE:
            done.append(_apply_schedule(lifecycle, promotions, change))
    return done


def _apply_schedule(lifecycle: Lifecycle, promotions: Promotions, change: Change) -> Transition:
    store = lifecycle.store
    before = store.model_tags().get("canary.version")
    desired = _desired_canary_tags(promotions)
    if desired:
        store.set_model_tags(desired)
    stale = tuple(key for key in CANARY_TAGS if key not in desired)
    store.delete_model_tags(stale)
    version = promotions.canary.version if promotions.canary else None
    lifecycle.audit.append(
        "canary-schedule",
        store.name,
        CANARY,
        before,
        version,
        change.reason,
        details={"schedule": json.loads(desired.get("canary.schedule", "[]"))},
    )
    return Transition(SCHEDULE, change.current, change.desired, change.kind)

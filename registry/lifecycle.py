"""Stage transitions: promote a version, roll production back; each move recorded twice, as a
row of the audit table and as tags on the model versions it touched.

A version reaches ``staging`` only through the gates (``registry.gates``); ``canary`` and
``production`` take only versions that passed them against the production of the day (run
again if production has changed since). Promotion to ``production`` moves the old production
to ``previous-production``, the target of ``rollback``.
"""

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from recsys.errors import RecsysError
from registry import gates
from registry.audit import AuditLog, actor
from registry.evaluation import Evaluation, Evaluator
from registry.policy import Policy
from registry.store import (
    BELOW,
    CANDIDATE,
    PREVIOUS,
    PRODUCTION,
    STAGES,
    STAGING,
    ModelStore,
)

logger = logging.getLogger(__name__)
GATES_TAG = "registry.gates"
NO_PRODUCTION = "none"


class GateRefused(RecsysError):
    """The gates refused a version: nothing was moved. (The CLI exits 1, not 2.)"""


@dataclass(frozen=True)
class GateResult:
    version: str
    production: str | None
    verdict: gates.Verdict
    candidate: Evaluation
    baseline: Evaluation | None

    def evidence(self) -> dict[str, object]:
        """The metrics that justified (or refused) a move, for the audit and the tags."""
        return {
            "window": self.candidate.window.__dict__,
            "version": {"version": self.version, **self.candidate.metrics()},
            "production": (
                {"version": self.production, **self.baseline.metrics()} if self.baseline else None
            ),
            "verdict": self.verdict.to_dict(),
        }


@dataclass(frozen=True)
class Transition:
    alias: str
    from_version: str | None
    to_version: str | None
    action: str

    def describe(self) -> str:
        before = self.from_version or "-"
        after = self.to_version or "-"
        return f"{self.alias}: {before} -> {after} ({self.action})"


def require_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise RecsysError("a reason is required (--reason TEXT): say why, it goes in the audit")
    return text


def require_stage(stage: str) -> str:
    if stage not in STAGES:
        raise RecsysError(
            f"unknown stage '{stage}'; stages: {', '.join(STAGES[:-1])} "
            f"({PREVIOUS} is set by promotion to production)"
        )
    if stage == PREVIOUS:
        raise RecsysError(
            "previous-production is set when another version is promoted to production; "
            "to bring it back use `recsys registry rollback --reason TEXT`"
        )
    return stage


class Lifecycle:
    def __init__(
        self, store: ModelStore, audit: AuditLog, policy: Policy, evaluator: Evaluator
    ) -> None:
        self.store = store
        self.audit = audit
        self.policy = policy
        self.evaluator = evaluator
        self.last_gate: GateResult | None = None  # the gates' result of the latest promote

    # ------------------------------------------------------------------ gates
    def gate(self, version: str, against: str | None = None) -> GateResult:
        """Judge ``version`` against production (or the version ``against``)."""
        production = against if against is not None else self.store.aliases().get(PRODUCTION)
        candidate = self.evaluator.evaluate(version)
        baseline = self.evaluator.evaluate(production) if production else None
        verdict = gates.judge(
            candidate.metrics(),
            baseline.metrics() if baseline else None,
            self.policy,
            candidate_version=version,
            production_version=production,
        )
        return GateResult(version, production, verdict, candidate, baseline)

    def record_gate(self, result: GateResult) -> None:
        self.store.tag_version(
            result.version,
            {
                GATES_TAG: "passed" if result.verdict.passed else "refused",
                f"{GATES_TAG}.baseline": result.production or NO_PRODUCTION,
                f"{GATES_TAG}.at": datetime.now(UTC).isoformat(timespec="seconds"),
                f"{GATES_TAG}.reason": result.verdict.reason[:4000],
                f"{GATES_TAG}.window": result.candidate.window.describe(),
                f"{GATES_TAG}.metrics": {
                    "version": result.candidate.overall,
                    "production": result.baseline.overall if result.baseline else None,
                },
            },
        )

    def passed_gates(self, version: str) -> tuple[GateResult | None, dict | None]:
        """Has ``version`` passed the gates against today's production? Runs them again when
        production has changed since; ``(result, None)`` then, ``(None, stored evidence)``
        when the stored pass still holds."""
        tags = self.store.tags(version)
        production = self.store.aliases().get(PRODUCTION)
        if tags.get(GATES_TAG) != "passed":
            raise GateRefused(
                f"version {version} has not passed the staging gates "
                f"({tags.get(GATES_TAG, 'never run')}): promote it to staging first"
            )
        if (
            tags.get(f"{GATES_TAG}.baseline") == (production or NO_PRODUCTION)
            or production == version
        ):
            return None, {
                "gates": tags.get(f"{GATES_TAG}.reason"),
                "window": tags.get(f"{GATES_TAG}.window"),
                "metrics": json.loads(tags.get(f"{GATES_TAG}.metrics") or "null"),
            }
        logger.info("production moved since version %s passed the gates: judging again", version)
        result = self.gate(version, production)
        self.record_gate(result)
        if not result.verdict.passed:
            raise GateRefused(result.verdict.reason)
        return result, None

    # ------------------------------------------------------------------ moves
    def move(
        self,
        alias: str,
        version: str | None,
        reason: str,
        action: str,
        metrics: dict | None = None,
        details: dict | None = None,
    ) -> Transition:
        """Point ``alias`` at ``version`` (``None``: remove it) and record the move."""
        before = self.store.aliases().get(alias)
        if version is None:
            self.store.delete_alias(alias)
        else:
            self.store.set_alias(alias, version)
        who = actor()
        when = datetime.now(UTC).isoformat(timespec="seconds")
        self.audit.append(
            action, self.store.name, alias, before, version, reason, metrics, details, who
        )
        touched = version or before
        if touched is not None:
            prefix = f"registry.{alias}" if version is not None else f"registry.{alias}.left"
            self.store.tag_version(
                touched,
                {
                    f"{prefix}.at": when,
                    f"{prefix}.by": who,
                    f"{prefix}.reason": reason[:4000],
                    f"{prefix}.from": before or "-",
                    f"{prefix}.action": action,
                },
            )
        return Transition(alias, before, version, action)

    def _leave_lower(self, stage: str, version: str, reason: str) -> list[Transition]:
        """The lower stage aliases that still point at ``version`` are removed."""
        aliases = self.store.aliases()
        return [
            self.move(lower, None, reason, "leave", details={"version": version, "for": stage})
            for lower in BELOW.get(stage, ())
            if aliases.get(lower) == version
        ]

    def promote(self, version: str, stage: str, reason: str) -> list[Transition]:
        """Move ``version`` to ``stage`` (gated); the transitions made, empty if none was
        needed. Raises ``GateRefused`` (nothing moved) when the gates say no."""
        stage = require_stage(stage)
        reason = require_reason(reason)
        version = str(self.store.version(version).version)
        aliases = self.store.aliases()
        if aliases.get(stage) == version:
            return []
        evidence: dict | None
        if stage == CANDIDATE:
            evidence = {"training": self.store.key_metrics(version)}
        elif stage == STAGING:
            result = self.last_gate = self.gate(version)
            self.record_gate(result)
            if not result.verdict.passed:
                self.audit.append(
                    "refused",
                    self.store.name,
                    STAGING,
                    aliases.get(STAGING),
                    version,
                    reason,
                    result.evidence(),
                )
                raise GateRefused(result.verdict.reason)
            evidence = result.evidence()
        else:
            result, stored = self.passed_gates(version)
            self.last_gate = result
            evidence = result.evidence() if result else stored
        return self.to_stage(stage, version, reason, evidence=evidence)

    def to_stage(
        self,
        stage: str,
        version: str,
        reason: str,
        result: GateResult | None = None,
        evidence: dict | None = None,
    ) -> list[Transition]:
        """The moves of a promotion whose gates are settled: the alias, the old production to
        previous-production, and the lower aliases the version leaves."""
        evidence = result.evidence() if result is not None else evidence
        moves = []
        if stage == PRODUCTION:
            moves += self._to_production(version, reason, evidence)
        else:
            moves.append(self.move(stage, version, reason, "promote", evidence))
        moves += self._leave_lower(stage, version, reason)
        return moves

    def _to_production(self, version: str, reason: str, evidence: dict | None) -> list[Transition]:
        old = self.store.aliases().get(PRODUCTION)
        moves = []
        if old is not None and old != version:
            moves.append(
                self.move(
                    PREVIOUS,
                    old,
                    reason,
                    "demote",
                    details={"replaced_by": version},
                )
            )
        moves.append(self.move(PRODUCTION, version, reason, "promote", evidence))
        return moves

    def rollback(self, reason: str) -> list[Transition]:
        """Production back to ``previous-production`` in one step; the rolled-back version
        loses its gate pass (it must go through staging again)."""
        reason = require_reason(reason)
        aliases = self.store.aliases()
        target = aliases.get(PREVIOUS)
        if target is None:
            raise RecsysError(
                "no previous-production version to roll back to (it is set when a version "
                "replaces production, and cleared by a rollback)"
            )
        current = aliases.get(PRODUCTION)
        evidence = {"training": self.store.key_metrics(target)}
        moves = [
            self.move(
                PRODUCTION,
                target,
                reason,
                "rollback",
                evidence,
                details={"rolled_back": current},
            ),
            self.move(PREVIOUS, None, reason, "rollback", details={"restored": target}),
        ]
        if current is not None:
            self.store.tag_version(current, {GATES_TAG: "revoked (rolled back)"})
        return moves

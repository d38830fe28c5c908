"""The canary controller: steps the canary's weight through its schedule, looks at the two
variants at every ``look_seconds``, rolls the canary back on any breach and promotes it when
every step has passed (PLATFORM.md section 6).

Its state is a JSON tag on the registered model (``canary.run``) and the weight a tag on the
canary version (``canary.weight``, which the service reads), so ``tick`` is idempotent and any
process can carry a canary on: a long-running ``recsys canary run`` or a Kubernetes CronJob
running ``recsys canary run --once`` every minute. Every decision goes through the registry's
lifecycle (aliases moved, audit row with the analysis as its metrics, version tags).
"""

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import Field

from canary import observations
from canary.analysis import Analysis, analyse
from canary.policy import CanaryPolicy
from recsys.config import FrozenModel
from recsys.errors import RecsysError
from registry.desired import Step
from registry.lifecycle import GATES_TAG, Lifecycle, require_reason
from registry.store import CANARY, PRODUCTION
from serving.split import WEIGHT_TAG

logger = logging.getLogger(__name__)
RUN_TAG = "canary.run"
RUNNING, PROMOTED, ROLLED_BACK, ABORTED = "running", "promoted", "rolled-back", "aborted"


class RunState(FrozenModel):
    """One canary run, as kept in the ``canary.run`` tag."""

    version: str
    production: str
    schedule: tuple[Step, ...]
    step: int = 0
    started_at: float
    step_started_at: float
    status: str = RUNNING
    looks: int = 0
    p_values: dict[str, float] = Field(default_factory=dict)
    reason: str = ""
    decision: str = ""
    decided_at: float | None = None  # when the decision began (before the weight moved)

    @property
    def weight(self) -> float:
        return self.schedule[self.step].weight if self.status == RUNNING else 0.0

    def describe(self) -> str:
        steps = " -> ".join(
            f"[{s.weight:g}%]" if i == self.step and self.status == RUNNING else f"{s.weight:g}%"
            for i, s in enumerate(self.schedule)
        )
        since = datetime.fromtimestamp(self.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        text = (
            f"canary version {self.version} against production {self.production}: {self.status}"
            f", steps {steps}, started {since} UTC, {self.looks} looks"
        )
        return text + (f"\ndecision: {self.decision}" if self.decision else "")


class Controller:
    def __init__(
        self,
        lifecycle: Lifecycle,
        policy: CanaryPolicy,
        feedback_url: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.lifecycle, self.store = lifecycle, lifecycle.store
        self.policy = policy
        self.feedback_url = feedback_url
        self.clock, self.sleep = clock, sleep

    # ------------------------------------------------------------------ state
    def state(self) -> RunState | None:
        text = self.store.model_tags().get(RUN_TAG)
        return RunState.model_validate_json(text) if text else None

    def _save(self, state: RunState) -> RunState:
        self.store.set_model_tags({RUN_TAG: state.model_dump_json()})
        return state

    def _set_weight(self, version: str, weight: float) -> None:
        self.store.tag_version(version, {WEIGHT_TAG: f"{weight:g}"})

    # ------------------------------------------------------------------ start / abort
    def start(self, version: str, reason: str, schedule: tuple[Step, ...] | None = None):
        """Put ``version`` in canary (gated, unless it is the canary already) at the first
        step's weight."""
        reason = require_reason(reason)
        version = str(self.store.version(version).version)
        running = self.state()
        if running is not None and running.status == RUNNING:
            raise RecsysError(
                f"a canary of version {running.version} is running: let it finish or "
                "`recsys canary abort --reason TEXT` first"
            )
        aliases = self.store.aliases()
        production = aliases.get(PRODUCTION)
        if production is None:
            raise RecsysError("no production version: a canary is compared with production")
        if production == version:
            raise RecsysError(f"version {version} is production already")
        schedule = schedule or self._desired_schedule(version) or self.policy.schedule
        if aliases.get(CANARY) != version:
            self.lifecycle.promote(version, CANARY, reason)  # GateRefused: nothing moved
        now = self.clock()
        state = RunState(
            version=version,
            production=production,
            schedule=schedule,
            started_at=now,
            step_started_at=now,
            reason=reason,
        )
        self._set_weight(version, schedule[0].weight)
        self._save(state)
        self.lifecycle.audit.append(
            "canary-start",
            self.store.name,
            CANARY,
            production,
            version,
            reason,
            details={"schedule": [s.model_dump() for s in schedule], "weight": state.weight},
        )
        logger.info("canary of version %s started at %g%%", version, state.weight)
        return state

    def _desired_schedule(self, version: str) -> tuple[Step, ...] | None:
        """The schedule ``registry apply`` set from promotions.yaml, when it is this version's."""
        tags = self.store.model_tags()
        if tags.get("canary.version") != version or "canary.schedule" not in tags:
            return None
        return tuple(Step.model_validate(s) for s in json.loads(tags["canary.schedule"]))

    def abort(self, reason: str) -> RunState:
        reason = require_reason(reason)
        state = self.state()
        if state is None or state.status != RUNNING:
            raise RecsysError("no canary is running")
        return self._end(state, ABORTED, reason, None, "canary-abort")

    # ------------------------------------------------------------------ looking
    def look(self, state: RunState) -> Analysis:
        """The analysis of the run so far (changes nothing)."""
        obs = observations.read(
            self.feedback_url,
            datetime.fromtimestamp(state.started_at, UTC),
            versions=(state.production, state.version),
        )
        return analyse(obs, self.policy, state.p_values)

    def tick(self) -> tuple[RunState | None, Analysis | None]:
        """One look and the decision it leads to: rollback, next step, promotion, or wait."""
        state = self.state()
        if state is None or state.status != RUNNING:
            return state, None
        aliases = self.store.aliases()
        if aliases.get(CANARY) != state.version or aliases.get(PRODUCTION) != state.production:
            why = (
                f"the registry moved under the canary (canary {aliases.get(CANARY)}, "
                f"production {aliases.get(PRODUCTION)})"
            )
            return self._end(state, ABORTED, why, None, "canary-abort"), None
        analysis = self.look(state)
        state = state.model_copy(
            update={"looks": state.looks + 1, "p_values": state.p_values | analysis.p_values()}
        )
        step = state.schedule[state.step]
        logger.info(
            "canary v%s look %d at %g%%:\n%s",
            state.version,
            state.looks,
            step.weight,
            analysis.summary(),
        )
        if analysis.breached:
            why = f"canary rolled back at {step.weight:g}%: " + "; ".join(analysis.breaches)
            return self._end(state, ROLLED_BACK, why, analysis, "canary-rollback"), analysis
        elapsed = self.clock() - state.step_started_at
        if elapsed < step.minutes * 60:
            return self._save(state), analysis
        last = state.step + 1 == len(state.schedule)
        if not last:  # a step ends on time (stepping up is no verdict); breaches end it early
            return self._next_step(state, analysis), analysis
        if not analysis.promotable:
            if elapsed < step.minutes * 60 * self.policy.max_wait_factor:
                return self._save(state), analysis
            short = [
                f"{r.metric} not shown no worse than the promotion margin"
                for r in analysis.metrics.values()
                if r.non_inferior is False
            ]
            why = (
                f"canary rolled back at {step.weight:g}%: too little evidence to promote it "
                f"after {elapsed / 60:.1f} minutes ({'; '.join([*analysis.notes, *short])})"
            )
            return self._end(state, ROLLED_BACK, why, analysis, "canary-rollback"), analysis
        return self._promote(state, analysis), analysis

    def run(self, once: bool = False, timeout: float | None = None) -> RunState | None:
        """Tick every ``look_seconds`` until the canary is decided (or once)."""
        deadline = None if timeout is None else self.clock() + timeout
        while True:
            state, _ = self.tick()
            if once or state is None or state.status != RUNNING:
                return state
            if deadline is not None and self.clock() >= deadline:
                return state
            self.sleep(self.policy.look_seconds)

    # ------------------------------------------------------------------ decisions
    def _next_step(self, state: RunState, analysis: Analysis) -> RunState:
        before = state.schedule[state.step].weight
        state = state.model_copy(update={"step": state.step + 1, "step_started_at": self.clock()})
        self._set_weight(state.version, state.weight)
        reason = (
            f"canary step {before:g}% -> {state.weight:g}%: no breach after {state.looks} looks"
        )
        self.lifecycle.audit.append(
            "canary-step",
            self.store.name,
            CANARY,
            state.version,
            state.version,
            reason,
            analysis.to_dict(),
            {"from_weight": before, "to_weight": state.weight, "step": state.step},
        )
        logger.info(reason)
        return self._save(state)

    def _promote(self, state: RunState, analysis: Analysis) -> RunState:
        decided_at = self.clock()
        reason = (
            f"canary passed every step ({', '.join(f'{s.weight:g}%' for s in state.schedule)}) "
            f"in {state.looks} looks: promoted to production"
        )
        evidence = {
            "canary": analysis.to_dict(),
            "schedule": [s.model_dump() for s in state.schedule],
        }
        self.lifecycle.to_stage(PRODUCTION, state.version, reason, evidence=evidence)
        self._set_weight(state.version, 0)
        logger.info("canary version %s promoted: %s", state.version, reason)
        update = {"status": PROMOTED, "decision": reason, "decided_at": decided_at}
        return self._save(state.model_copy(update=update))

    def _end(
        self, state: RunState, status: str, reason: str, analysis: Analysis | None, action: str
    ) -> RunState:
        """Rollback or abort: weight to zero, the canary alias removed, recorded."""
        decided_at = self.clock()
        weight = state.schedule[state.step].weight
        self._set_weight(state.version, 0)
        if self.store.aliases().get(CANARY) == state.version:
            self.lifecycle.move(
                CANARY,
                None,
                reason,
                action,
                metrics=analysis.to_dict() if analysis else None,
                details={"weight": weight, "step": state.step, "looks": state.looks},
            )
        else:
            self.lifecycle.audit.append(
                action, self.store.name, CANARY, state.version, None, reason,
                analysis.to_dict() if analysis else None, {"weight": weight},
            )  # fmt: skip
        if status == ROLLED_BACK:
            self.store.tag_version(state.version, {GATES_TAG: "revoked (canary rolled back)"})
        logger.warning("canary version %s %s: %s", state.version, status, reason)
        update = {"status": status, "decision": reason[:4000], "decided_at": decided_at}
        return self._save(state.model_copy(update=update))

"""The model version the service answers with, following a registry alias.

A background thread asks the registry every ``reload_seconds`` which version the alias points
at; a new version is loaded and prepared beside the current one and then swapped in with one
reference assignment, so requests in flight finish on the version they started with and no
request ever waits for a load.

The canary follower is ``optional``: its alias is unset most of the time, which is a state, not
an error (the loaded version is dropped and every request goes to production). Each check also
keeps the tags of the alias's version, where the canary controller writes the canary's weight.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    """One prepared model version (whatever ``prepare`` builds around the recommender)."""

    version: str
    state: object
    loaded_at: float


class ModelFollower:
    def __init__(
        self,
        model_name: str,
        alias: str,
        prepare: Callable[[str, object], object],
        reload_seconds: float = 10.0,
        optional: bool = False,
    ) -> None:
        """``prepare(version, recommender)`` builds the serving state of a loaded version;
        ``optional``: an unset alias means nothing to serve (``current`` becomes None)."""
        self.model_name, self.alias = model_name, alias
        self.prepare = prepare
        self.reload_seconds = reload_seconds
        self.optional = optional
        self.current: Loaded | None = None
        # (version, tags) of the alias's version at the latest check, replaced in one piece
        self.tags: tuple[str | None, dict[str, str]] = (None, {})
        self.last_error = ""
        self.reloads = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _client(self):
        from mlflow import MlflowClient

        return MlflowClient()

    def alias_version(self) -> str:
        return str(self._client().get_model_version_by_alias(self.model_name, self.alias).version)

    def _alias(self) -> tuple[str | None, dict[str, str]]:
        """The alias's version and its tags; ``(None, {})`` when an optional alias is unset."""
        client = self._client()
        if self.optional:
            aliases = client.get_registered_model(self.model_name).aliases or {}
            if self.alias not in aliases:
                return None, {}
            found = client.get_model_version(self.model_name, str(aliases[self.alias]))
        else:
            found = client.get_model_version_by_alias(self.model_name, self.alias)
        return str(found.version), dict(found.tags or {})

    def load(self, version: str) -> Loaded:
        from recommender.mlflow_model import load_recommender

        started = time.perf_counter()
        model = load_recommender(f"models:/{self.model_name}/{version}")
        state = self.prepare(version, model)
        logger.info(
            "model %s version %s ready in %.1fs",
            self.model_name,
            version,
            time.perf_counter() - started,
        )
        return Loaded(version, state, time.time())

    def check(self) -> bool:
        """Load the alias's version if it moved; True when a new version was swapped in."""
        try:
            version, tags = self._alias()
            if version is None:
                if self.current is not None:
                    logger.info(
                        "alias %s unset: version %s unloaded", self.alias, self.current.version
                    )
                self.current, self.tags, self.last_error = None, (None, {}), ""
                return False
            if self.current is not None and version == self.current.version:
                self.tags = (version, tags)
                return False
            if self.optional:
                # the alias left the loaded version: it stops answering now, not once the new
                # one is loaded (a canary that was replaced is no canary any more)
                self.tags = (version, tags)
            loaded = self.load(version)
        except Exception as exc:  # registry or artefacts unreachable: keep serving what we have
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.warning("cannot follow %s@%s: %s", self.model_name, self.alias, exc)
            return False
        previous = self.current.version if self.current else None
        self.current = loaded
        self.tags = (version, tags)
        self.reloads += 1
        self.last_error = ""
        if previous is not None:
            logger.info("alias %s moved: version %s -> %s", self.alias, previous, loaded.version)
        return True

    def start(self) -> None:
        if self._thread is not None:
            return
        name = f"model-follower-{self.alias}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.reload_seconds):
            self.check()

    def stop(self) -> None:
        self._stop.set()

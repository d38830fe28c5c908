"""The model version the service answers with, following a registry alias.

A background thread asks the registry every ``reload_seconds`` which version the alias points
at; a new version is loaded and prepared beside the current one and then swapped in with one
reference assignment, so requests in flight finish on the version they started with and no
request ever waits for a load.
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
    ) -> None:
        """``prepare(version, recommender)`` builds the serving state of a loaded version."""
        self.model_name, self.alias = model_name, alias
        self.prepare = prepare
        self.reload_seconds = reload_seconds
        self.current: Loaded | None = None
        self.last_error = ""
        self.reloads = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _client(self):
        from mlflow import MlflowClient

        return MlflowClient()

    def alias_version(self) -> str:
        return str(self._client().get_model_version_by_alias(self.model_name, self.alias).version)

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
            version = self.alias_version()
            if self.current is not None and version == self.current.version:
                return False
            loaded = self.load(version)
        except Exception as exc:  # registry or artefacts unreachable: keep serving what we have
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.warning("cannot follow %s@%s: %s", self.model_name, self.alias, exc)
            return False
        previous = self.current.version if self.current else None
        self.current = loaded
        self.reloads += 1
        self.last_error = ""
        if previous is not None:
            logger.info("alias %s moved: version %s -> %s", self.alias, previous, loaded.version)
        return True

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="model-follower", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.reload_seconds):
            self.check()

    def stop(self) -> None:
        self._stop.set()

"""Where the platform keeps its state: one workspace directory per installation ($RECSYS_HOME).

Two workspaces never share state, so tests and demos each get their own directory.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from recsys.errors import RecsysError

Profile = Literal["local", "production", "scale"]
PROFILES: tuple[str, ...] = get_args(Profile)
HOME_ENV = "RECSYS_HOME"
PROFILE_ENV = "RECSYS_PROFILE"
DEFAULT_HOME = ".recsys"


@dataclass(frozen=True)
class Workspace:
    """Paths inside one workspace; creating the object touches nothing on disk."""

    home: Path
    profile: str = "local"

    @classmethod
    def from_env(cls, home: str | Path | None = None, profile: str | None = None) -> "Workspace":
        """Resolve the workspace from arguments, then environment, then defaults."""
        home_path = Path(home or os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()
        chosen = profile or os.environ.get(PROFILE_ENV) or "local"
        if chosen not in PROFILES:
            raise RecsysError(
                f"unknown profile '{chosen}' (from --profile or {PROFILE_ENV}); "
                f"expected one of {', '.join(PROFILES)}"
            )
        return cls(home=home_path, profile=chosen)

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    def table(self, name: str) -> Path:
        """The curated Parquet file of one contract table in the lake."""
        return self.lake / f"{name}.parquet"

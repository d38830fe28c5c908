"""Job configuration: YAML files validated into frozen pydantic models that reject unknown keys."""

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from recsys.errors import RecsysError


class FrozenModel(BaseModel):
    """Every config model: immutable, and a misspelt key is an error, not a no-op."""

    model_config = ConfigDict(frozen=True, extra="forbid")


ModelT = TypeVar("ModelT", bound=FrozenModel)


def load_yaml_model(path: str | Path, model: type[ModelT]) -> ModelT:
    """Read ``path`` as YAML into ``model``, turning every failure into one readable message."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecsysError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecsysError(f"{path}: cannot be read ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecsysError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecsysError(
            f"{path}: expected a mapping at the top level, found {type(data).__name__}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise RecsysError(f"{path}: {problems}") from None

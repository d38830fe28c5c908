"""The mapping file: how a shop's own column, event and file names map to the contract."""

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from recsys.columns import EVENT_TYPES, TABLES
from recsys.config import FrozenModel, load_yaml_model


class Mapping(FrozenModel):
    """Renames applied before validation; the identity mapping when no file is given.

    ``columns`` applies to every file (``visitorid: user_id``); ``event_types`` renames event
    values (``addtocart: cart``); values listed in ``drop_event_types`` are quarantined as
    ``dropped_event_type`` rather than rejected as unknown, so a shop can say "we know these,
    we do not use them" without losing the rows.
    """

    files: dict[str, str] = Field(default_factory=dict)
    columns: dict[str, str] = Field(default_factory=dict)
    event_types: dict[str, str] = Field(default_factory=dict)
    drop_event_types: tuple[str, ...] = ()

    @field_validator("files")
    @classmethod
    def _known_tables(cls, files: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(files) - set(TABLES))
        if unknown:
            raise ValueError(f"unknown table(s) {unknown}; expected some of {list(TABLES)}")
        return files

    @field_validator("event_types")
    @classmethod
    def _known_event_types(cls, renames: dict[str, str]) -> dict[str, str]:
        bad = {src: dst for src, dst in renames.items() if dst not in EVENT_TYPES}
        if bad:
            raise ValueError(f"event types must map to one of {list(EVENT_TYPES)}, got {bad}")
        return {src.strip().lower(): dst for src, dst in renames.items()}

    @field_validator("drop_event_types")
    @classmethod
    def _lower(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.strip().lower() for v in values)

    @model_validator(mode="after")
    def _no_overlap(self) -> "Mapping":
        both = sorted(set(self.event_types) & set(self.drop_event_types))
        if both:
            raise ValueError(f"event types both renamed and dropped: {both}")
        targets = list(self.columns.values())
        repeated = sorted({t for t in targets if targets.count(t) > 1})
        if repeated:
            raise ValueError(f"several source columns map to the same column(s): {repeated}")
        return self


def load_mapping(path: str | Path | None) -> Mapping:
    """The mapping in ``path``, or the identity mapping."""
    return Mapping() if path is None else load_yaml_model(path, Mapping)

"""``recsys train --config FILE``: every knob of a training run, validated (unknown keys fail)."""

from pathlib import Path
from typing import Literal

from pydantic import Field

from recommender.config import ModelConfig
from recsys.config import FrozenModel, load_yaml_model


class SplitConfig(FrozenModel):
    """Temporal split counted back from the day after the last event.

    Left out, the windows are chosen from the data (``recsys.splits.choose_window_days``):
    two weeks each where that holds out little of the data, shorter where the data's rhythm
    is another. One-day windows on data stamped one event a day per user (``recsys convert
    sequences``) are exactly the leave-one-out protocol of the published sequence benchmarks.
    """

    validation_days: int | None = Field(None, ge=1, description="None: chosen from the data")
    test_days: int | None = Field(None, ge=1, description="None: chosen from the data")


class RequestsConfig(FrozenModel):
    """Which events are what a user 'wanted', and how many requests each stage uses."""

    target_events: tuple[str, ...] | None = Field(
        None,
        description="event types a request is judged on; None: carts and purchases, or views "
        "where the shop logs neither (a click log)",
    )
    next_click: bool | None = Field(
        None,
        description="requests inside sessions, each judged on the next click alone; None: "
        "where the targets are views (a click log), else session starts judged on what the "
        "user then targeted",
    )
    train: int = Field(6_000, ge=10, description="validation-window requests the ranker learns on")
    early_stopping: int = Field(1_500, ge=10, description="held-out requests for early stopping")
    test: int = Field(5_000, ge=10, description="test-window requests judged once")
    windows: int = Field(
        3,
        ge=1,
        description="windows the ranker learns from: validation and the ones before it, of "
        "the same length, each answered by sources fit on the events before it",
    )
    every_session: bool = Field(
        True,
        description="the ranker learns from every session with a target event in the "
        "validation window, not only each user's first (test judges each user's first)",
    )


class TrackingConfig(FrozenModel):
    experiment: str = "recsys"
    model_name: str = "recsys-recommender"
    alias: str = "candidate"


class TrainConfig(FrozenModel):
    model: ModelConfig = ModelConfig()
    artefact: Literal["every_event", "judged"] = Field(
        "every_event",
        description="what is registered: the procedure refit on every event (the default: "
        "serving knows the latest weeks), or the judged model itself, fit before the test "
        "window (for a registry whose offline gate compares versions on the lake's recent "
        "window: a version trained on that window would be judged on what it saw)",
    )
    split: SplitConfig = SplitConfig()
    requests: RequestsConfig = RequestsConfig()
    tracking: TrackingConfig = TrackingConfig()
    ks: tuple[int, ...] = (10, 20)
    report_k: int = Field(10, ge=1)


def load_config(path: str | Path | None) -> TrainConfig:
    return TrainConfig() if path is None else load_yaml_model(path, TrainConfig)

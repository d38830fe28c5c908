"""The service's settings: a YAML file (``RECSYS_SERVE_CONFIG``) validated into a frozen model,
each value overridable by an environment variable ``RECSYS_SERVE_<NAME>``."""

import os
from pathlib import Path

from pydantic import Field

from recsys.config import FrozenModel, load_yaml_model

CONFIG_ENV = "RECSYS_SERVE_CONFIG"


class ServeConfig(FrozenModel):
    model_name: str = Field("recsys-recommender", description="registered model to serve")
    alias: str = Field("production", description="registry alias the service follows")
    canary_alias: str = Field(
        "canary",
        description="alias of the canary that takes a user-sticky share of the requests, by the "
        "weight on its version's tags ('' switches the split off: every request is the alias's)",
    )
    split_salt: str = Field(
        "recsys-canary", min_length=1, description="salt of the user hash of the canary split"
    )
    fault_injection: bool = Field(
        False,
        description="honour the canary.fault.* tags of a canary version (delay, errors): for "
        "demonstrating and testing the canary's guardrails, never in production",
    )
    candidates: int = Field(300, ge=10, le=5_000, description="candidates ranked per request")
    max_body_bytes: int = Field(
        2_000_000,
        ge=10_000,
        description="largest request body read (a 413 beyond): 1,000 feedback events fit",
    )
    cache_ttl: float = Field(300.0, ge=0, description="seconds a cached list may be served")
    item_ttl: float = Field(
        300.0,
        ge=0,
        description="seconds a product's stored features are held in-process before they are "
        "read again (they change when the online store is materialised; 0: read per request)",
    )
    reload_seconds: float = Field(10.0, gt=0, description="how often the alias is checked")
    reload_pause: float = Field(
        1.0,
        ge=0,
        le=30,
        description="seconds of pause between the steps of loading a new version beside a "
        "serving one, so requests queued behind a step are answered before the next",
    )
    store_timeout: float = Field(0.05, gt=0, description="Redis socket timeout (seconds)")
    retry_seconds: float = Field(2.0, ge=0, description="pause before retrying a failed store")
    push_seconds: float = Field(1.0, gt=0, description="retry interval of pending session pushes")
    workers: int = Field(2, ge=1, le=64, description="worker processes of `recsys serve`")
    threads: int = Field(4, ge=1, le=64, description="request threads per worker")
    switch_interval: float = Field(
        0.001, gt=0, le=0.1, description="Python's thread switch interval in a worker (seconds)"
    )
    precompute_ttl: float = Field(
        26 * 3600.0, gt=0, description="seconds a list of `recsys precompute` may be served"
    )


def load_settings(path: str | Path | None = None) -> ServeConfig:
    path = path or os.environ.get(CONFIG_ENV)
    base = load_yaml_model(path, ServeConfig) if path else ServeConfig()
    overrides = {}
    for name in ServeConfig.model_fields:
        value = os.environ.get(f"RECSYS_SERVE_{name.upper()}")
        if value is not None:
            overrides[name] = value
    return ServeConfig.model_validate(base.model_dump() | overrides) if overrides else base

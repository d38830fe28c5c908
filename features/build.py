"""``recsys features build``: the feature tables computed from the lake, written for Feast.

The tables are Parquet files in ``$RECSYS_HOME/features/`` (the file-based offline stores read
them there) and, in the production profile, also PostgreSQL tables of the same names.
"""

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import names as n
from features import tables
from features.snapshots import day_number
from lake.tables import SPECS
from recsys import columns as c
from recsys.errors import RecsysError
from recsys.workspace import Workspace

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildResult:
    as_of: pd.Timestamp
    lake_version: str
    rows: dict[str, int]
    seconds: dict[str, float]


def features_dir(workspace: Workspace) -> Path:
    return workspace.home / "features"


def table_path(workspace: Workspace, name: str) -> Path:
    return features_dir(workspace) / f"{name}.parquet"


def read_lake(workspace: Workspace) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    manifest = workspace.lake / "manifest.json"
    if not manifest.exists():
        raise RecsysError(f"no lake in {workspace.lake}: run `recsys ingest DIR` first")
    version = json.loads(manifest.read_text())["lake_version"]
    events = pd.read_parquet(workspace.table(c.EVENTS))
    products = (
        pd.read_parquet(workspace.table(c.PRODUCTS))
        if workspace.table(c.PRODUCTS).exists()
        else pd.DataFrame({c.ITEM_ID: []})
    )
    users = (
        pd.read_parquet(workspace.table(c.USERS))
        if workspace.table(c.USERS).exists()
        else pd.DataFrame({c.USER_ID: []})
    )
    return events, products, users, version


def as_of_day(events: pd.DataFrame, as_of: str | pd.Timestamp | None) -> int:
    """The day of the last snapshot: midnight after the last event, unless given."""
    if as_of is None:
        return int(day_number(events[c.TIMESTAMP]).max()) + 1
    stamp = pd.Timestamp(as_of)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(day_number(pd.Series([stamp])).iloc[0])


def compute_tables(
    events: pd.DataFrame,
    products: pd.DataFrame,
    users: pd.DataFrame,
    last_day: int,
    timings: dict[str, float] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every feature table from the three lake tables, as of midnight of ``last_day``."""
    cutoff = pd.Timestamp(last_day * 86_400, unit="s", tz="UTC")
    events = events[events[c.TIMESTAMP] < cutoff]
    jobs = {
        n.USER_ACTIVITY: lambda: tables.user_activity(events, products, last_day),
        n.USER_PROFILE: lambda: tables.user_profile(users),
        n.PRODUCT_ACTIVITY: lambda: tables.product_activity(events, last_day),
        n.PRODUCT_CATALOG: lambda: tables.product_catalog(products, events),
        n.USER_CATEGORY: lambda: tables.user_category_affinity(events, products, last_day),
        n.SESSION: lambda: tables.session_activity(events),
    }
    out = {}
    for name, job in jobs.items():
        started = time.perf_counter()
        out[name] = job()
        spent = time.perf_counter() - started
        if timings is not None:
            timings[name] = round(spent, 2)
        logger.info("features: %s, %s rows in %.1fs", name, f"{len(out[name]):,}", spent)
    return out


def missing_inputs(events: pd.DataFrame, products: pd.DataFrame, users: pd.DataFrame) -> list[str]:
    """The contract's optional tables and columns this lake does not have (``products``,
    ``events.price``, ...): the features built from them stay empty."""
    missing = []
    for name, frame in ((c.EVENTS, events), (c.PRODUCTS, products), (c.USERS, users)):
        if name != c.EVENTS and not len(frame):
            missing.append(name)
            continue
        missing += [f"{name}.{col}" for col in SPECS[name].kinds if col not in frame.columns]
    return missing


def empty_features(frames: dict[str, pd.DataFrame]) -> dict[str, list[str]]:
    """Per table, the features without a single value (a missing input, or a table with no
    rows): Feast still serves them, as missing, and the ranker cannot learn from them."""
    out = {}
    for name, frame in frames.items():
        keys = {c.USER_ID, c.ITEM_ID, n.EVENT_TIMESTAMP, n.CREATED}
        keys |= {c.CATEGORY} if name == n.USER_CATEGORY else set()  # (a key there only)
        empty = [col for col in frame.columns if col not in keys and not frame[col].notna().any()]
        if empty:
            out[name] = empty
    return out


def write_tables(frames: dict[str, pd.DataFrame], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        tmp = folder / f".{name}.parquet.tmp"
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False),
            tmp,
            compression="zstd",
            coerce_timestamps="us",
        )  # DuckDB cannot compare ns timestamps
        tmp.replace(folder / f"{name}.parquet")


def build_features(workspace: Workspace, as_of: str | None = None) -> BuildResult:
    """Compute every feature table from the lake and store it for the profile's offline store."""
    events, products, users, version = read_lake(workspace)
    last_day = as_of_day(events, as_of)
    timings: dict[str, float] = {}
    frames = compute_tables(events, products, users, last_day, timings)
    missing = missing_inputs(events, products, users)
    empty = empty_features(frames)
    if missing:
        logger.warning("features: the lake has no %s", ", ".join(missing))
    for name, columns in empty.items():
        logger.warning("features: %s has no values for %s", name, ", ".join(columns))
    started = time.perf_counter()
    write_tables(frames, features_dir(workspace))
    timings["write"] = round(time.perf_counter() - started, 2)
    if workspace.profile == "production":
        from features.postgres import load_tables

        started = time.perf_counter()
        load_tables(frames)
        timings["postgres_load"] = round(time.perf_counter() - started, 2)
    stamp = pd.Timestamp(last_day * 86_400, unit="s", tz="UTC")
    rows = {name: len(frame) for name, frame in frames.items()}
    (features_dir(workspace) / "manifest.json").write_text(
        json.dumps(
            {
                "lake_version": version,
                "as_of": stamp.isoformat(),
                "rows": rows,
                "missing_inputs": missing,
                "empty_features": empty,
            },
            indent=2,
        )
        + "\n"
    )
    return BuildResult(stamp, version, rows, timings)

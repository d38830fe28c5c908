"""``recsys monitor drift|performance``: read the workspace, compute, print, write reports."""

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from monitoring.windows import Lake, Window, last_days, load_lake, parse_window, since
from recsys import columns as c
from recsys.errors import RecsysError
from recsys.workspace import Workspace

logger = logging.getLogger(__name__)
CURRENT_DAYS = 14
REFERENCE_DAYS = 56
PERFORMANCE_DAYS = 7


def _feedback_log(workspace: Workspace) -> Any:
    from serving.feedback import FeedbackLog, database_url

    return FeedbackLog(database_url(workspace), workspace.home / "serving" / "spool")


def _write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")
        logger.info("figures written to %s", path)


def _latest(lake: Lake, served: pd.DataFrame) -> pd.Timestamp:
    stamps = [lake.events[c.TIMESTAMP].max()]
    if not served.empty:
        stamps.append(served["served_at"].max())
    return max(stamp for stamp in stamps if pd.notna(stamp))


def drift(
    workspace: Workspace,
    reference: str | None,
    current: str | None,
    thresholds_path: str | None,
    out: str | None,
    use_served: bool,
    json_path: str | None,
) -> int:
    """Exit 0 without drift, 1 with drift (the monitor workflow then dispatches retraining)."""
    from monitoring.drift import detect_drift, summary_text, write_reports
    from monitoring.thresholds import load_thresholds

    thresholds = load_thresholds(thresholds_path)
    lake = load_lake(workspace)
    served = pd.DataFrame(columns=["served_at"])
    log = _feedback_log(workspace) if use_served else None
    try:
        if current:
            current_window = parse_window(current)
        else:
            # the last days of the lake or of the service's answers, whichever is later
            now = pd.Timestamp.now(tz="UTC")
            recent = (
                log.served(since=since(now - pd.Timedelta(days=CURRENT_DAYS + 1)))
                if log is not None
                else served
            )
            current_window = last_days(_latest(lake, recent), CURRENT_DAYS)
        before = current_window.start - pd.Timedelta(days=REFERENCE_DAYS)
        reference_window = (
            parse_window(reference) if reference else Window(before, current_window.start)
        )
        if log is not None:
            # only what the windows need: a long-running service's log is large
            first = min(reference_window.start, current_window.start)
            served = log.served(since=since(first))
            logger.info("served log: %d answers since %s", len(served), first)
    finally:
        if log is not None:
            log.close()

    def within(window: Window) -> pd.DataFrame | None:
        return served[window.mask(served["served_at"])] if len(served) else None

    result = detect_drift(
        lake,
        reference_window,
        current_window,
        thresholds,
        served_reference=within(reference_window),
        served_current=within(current_window),
    )
    folder = (
        Path(out)
        if out
        else workspace.reports / "monitoring" / ("drift-" + current_window.label.replace("..", "_"))
    )
    written = write_reports(result, folder)
    print(summary_text(result))
    print("reports: " + ", ".join(str(path) for path in written))
    _write_json(json_path, result.to_dict())
    return 1 if result.drifted else 0


def performance(
    workspace: Workspace, window: str | None, new_days: float | None, json_path: str | None
) -> int:
    from monitoring.performance import online_performance

    chosen = parse_window(window) if window else None
    with _feedback_log(workspace) as log:
        first = chosen.start if chosen else pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=8)
        served = log.served(since=since(first))
        if served.empty and chosen is None:  # a quiet service: its last week of answers
            served = log.served()
        first = min(first, served["served_at"].min()) if len(served) else first
        events = log.events(since=since(first))
    if served.empty:
        raise RecsysError(
            "the service has logged no answer yet (feedback log: "
            f"{_describe_log(workspace)}); serve some requests first"
        )
    if chosen is None:
        chosen = last_days(served["served_at"].max(), PERFORMANCE_DAYS)
    lake = load_lake(workspace) if workspace.table("events").exists() else None
    if lake is None:
        logger.warning("no lake in %s: segments are not computed", workspace.lake)
    result = online_performance(served, events, chosen, lake, new_days)
    print(result.markdown())
    _write_json(json_path, result.to_dict())
    return 0


def _describe_log(workspace: Workspace) -> str:
    import sqlalchemy as sa

    from serving.feedback import database_url

    return sa.make_url(database_url(workspace)).render_as_string(hide_password=True)

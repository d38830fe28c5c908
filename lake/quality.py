"""The quality report: what came in, what was kept, what was quarantined and why."""

from typing import Any

import pandas as pd

from lake.validate import Checked
from recsys import columns as c

TIME_COLUMNS = {c.EVENTS: c.TIMESTAMP, c.PRODUCTS: c.CREATED_AT, c.USERS: c.SIGNUP_AT}


def _iso(value: pd.Timestamp) -> str | None:
    return None if pd.isna(value) else value.isoformat()


def table_report(checked: Checked) -> dict[str, Any]:
    kept, quarantine = checked.kept, checked.quarantine
    by_reason = quarantine[c.REASON].value_counts().sort_index() if len(quarantine) else None
    report: dict[str, Any] = {
        "files": checked.files,
        "rows_in": checked.rows_in,
        "rows_kept": len(kept),
        "rows_quarantined": len(quarantine),
        "quarantined_by_reason": {}
        if by_reason is None
        else {str(k): int(v) for k, v in by_reason.items()},
        "nulls": {col: int(n) for col, n in kept.isna().sum().items()},
        "extra_columns": checked.extra_columns,
    }
    if checked.truncated:
        report["cut_to_microsecond"] = dict(checked.truncated)
    time_col = TIME_COLUMNS[checked.name]
    if time_col in kept.columns:
        report["date_range"] = {
            "min": _iso(kept[time_col].min()),
            "max": _iso(kept[time_col].max()),
        }
    for col, key in ((c.USER_ID, "users"), (c.ITEM_ID, "items")):
        if col in kept.columns:
            report[key] = int(kept[col].nunique())
    if checked.name == c.EVENTS:
        report["event_types"] = {
            str(k): int(v) for k, v in kept[c.EVENT_TYPE].value_counts().sort_index().items()
        }
        report["sessions"] = int(kept[c.SESSION_ID].nunique())
    return report


def cross_checks(tables: dict[str, Checked]) -> dict[str, int]:
    """Links between tables that are worth a look but are no reason to drop an event."""
    checks: dict[str, int] = {}
    events = tables[c.EVENTS].kept
    if c.PRODUCTS in tables:
        known = tables[c.PRODUCTS].kept[c.ITEM_ID]
        checks["events_with_item_not_in_products"] = int((~events[c.ITEM_ID].isin(known)).sum())
    if c.USERS in tables:
        known = tables[c.USERS].kept[c.USER_ID]
        checks["events_with_user_not_in_users"] = int((~events[c.USER_ID].isin(known)).sum())
    return checks


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Ingestion quality report",
        "",
        f"Source: `{report['source']}`  ",
        f"Lake version: `{report['lake_version']}`",
        "",
        "| table | rows in | kept | quarantined | users | items | from | to |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, t in report["tables"].items():
        dates = t.get("date_range", {})
        lines.append(
            f"| {name} | {t['rows_in']:,} | {t['rows_kept']:,} | {t['rows_quarantined']:,} | "
            f"{_count(t.get('users'))} | {_count(t.get('items'))} | {dates.get('min') or ''} | "
            f"{dates.get('max') or ''} |"
        )
    lines += ["", "## Quarantined by reason", "", "| table | reason | rows |", "|---|---|---:|"]
    reasons = [
        (name, reason, n)
        for name, t in report["tables"].items()
        for reason, n in t["quarantined_by_reason"].items()
    ]
    lines += [f"| {name} | {reason} | {n:,} |" for name, reason, n in reasons] or [
        "| - | none | 0 |"
    ]
    events = report["tables"].get(c.EVENTS, {})
    if events.get("event_types"):
        lines += ["", "## Events kept by type", "", "| event type | rows |", "|---|---:|"]
        lines += [f"| {k} | {v:,} |" for k, v in events["event_types"].items()]
        lines += [
            "",
            f"Sessions: {events['sessions']:,} ({report['sessions_derived']:,} derived "
            f"from {report['rules']['session_gap_minutes']}-minute inactivity)",
        ]
    nulls = [
        (name, col, n) for name, t in report["tables"].items() for col, n in t["nulls"].items() if n
    ]
    if nulls:
        lines += [
            "",
            "## Empty values in kept rows",
            "",
            "| table | column | rows |",
            "|---|---|---:|",
        ]
        lines += [f"| {name} | {col} | {n:,} |" for name, col, n in nulls]
    cut = [
        (name, col, n)
        for name, t in report["tables"].items()
        for col, n in t.get("cut_to_microsecond", {}).items()
    ]
    if cut:
        lines += [
            "",
            "## Time cut to the microsecond (the lake's resolution)",
            "",
            "| table | column | rows |",
            "|---|---|---:|",
        ]
        lines += [f"| {name} | {col} | {n:,} |" for name, col, n in cut]
    if report["cross_checks"]:
        lines += ["", "## Cross-table checks", ""]
        lines += [f"- {k.replace('_', ' ')}: {v:,}" for k, v in report["cross_checks"].items()]
    if report["ignored"]:
        lines += [
            "",
            "Ignored in the source folder: " + ", ".join(f"`{p}`" for p in report["ignored"]),
        ]
    return "\n".join(lines) + "\n"

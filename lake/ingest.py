"""``recsys ingest``: a shop's folder in, the curated lake, quarantine and quality report out.

The lake is rebuilt whole and swapped in at the end, so a failed run leaves the previous lake
untouched and the same folder always gives byte-identical tables.
"""

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lake.mapping import Mapping, load_mapping
from lake.quality import cross_checks, table_report, to_markdown
from lake.readers import discover, read_table
from lake.rules import IngestRules, load_rules
from lake.sessions import derive_sessions
from lake.tables import SPECS
from lake.validate import Checked, check_events, check_products, check_users
from recsys import columns as c
from recsys.errors import RecsysError
from recsys.workspace import Workspace

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    report: dict[str, Any]
    markdown: str
    lake: Path
    quarantine: Path
    report_paths: tuple[Path, ...]


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path, compression="zstd")


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _replace_dir(new: Path, target: Path) -> None:
    """Swap ``new`` in for ``target`` so readers never see a half-written directory."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _check(
    name: str,
    folder: Path,
    paths: list[Path],
    mapping: Mapping,
    rules: IngestRules,
) -> Checked:
    raw = read_table(name, paths, mapping.columns, SPECS[name].required, folder)
    logger.info("validating %s: %s rows", name, f"{raw.rows_in:,}")
    if name == c.EVENTS:
        return check_events(raw, mapping, rules)
    if name == c.PRODUCTS:
        return check_products(raw, rules)
    return check_users(raw, rules)


def _refuse_shrinking(folder: Path, workspace: Workspace, kept: int, limit: float) -> None:
    """Stop before anything is written when the export would shrink the lake below
    ``limit`` of its events: the current lake stays as it is."""
    manifest = workspace.lake / "manifest.json"
    if not manifest.exists():
        return
    try:
        current = int(json.loads(manifest.read_text())["tables"][c.EVENTS]["rows"])
    except (ValueError, KeyError, TypeError):
        return
    if current and kept < limit * current:
        raise RecsysError(
            f"{folder}: {kept:,} events kept against {current:,} in the current lake, under "
            f"the rules' shrink_limit ({limit:.0%}); a truncated or header-only export looks "
            "like this. The current lake is left as it is; pass --replace to replace it anyway"
        )


def ingest(
    source: str | Path,
    workspace: Workspace,
    mapping_path: str | Path | None = None,
    rules_path: str | Path | None = None,
    replace: bool = False,
) -> IngestResult:
    """Validate and curate ``source`` into ``workspace``'s lake; see the module docstring.

    ``replace``: swap the lake in even when it keeps far fewer events than the current one
    (``rules.shrink_limit``)."""
    started = time.perf_counter()
    folder = Path(source).resolve()
    mapping = load_mapping(mapping_path)
    rules = load_rules(rules_path)
    found, ignored = discover(folder, mapping.files)
    if c.EVENTS not in found:
        raise RecsysError(
            f"{folder}: no events file (expected events.csv, events.parquet or an events/ folder, "
            "or name the file under 'files: events:' in the mapping)"
        )
    checked = {name: _check(name, folder, paths, mapping, rules) for name, paths in found.items()}
    events, derived = derive_sessions(checked[c.EVENTS].kept, rules.session_gap_minutes)
    checked[c.EVENTS].kept = events
    if not replace:
        _refuse_shrinking(folder, workspace, len(events), rules.shrink_limit)

    workspace.home.mkdir(parents=True, exist_ok=True)
    staging = Path(str(workspace.lake) + ".new")
    staging_q = Path(str(workspace.quarantine) + ".new")
    for path in (staging, staging_q):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    written = []
    for name, table in checked.items():
        path = staging / f"{name}.parquet"
        _write_parquet(table.kept, path)
        written.append(path)
        if len(table.quarantine):
            _write_parquet(table.quarantine, staging_q / f"{name}.parquet")
    version = _digest(written)
    report: dict[str, Any] = {
        "source": str(folder),
        "mapping": None if mapping_path is None else str(mapping_path),
        "rules": rules.model_dump(mode="json"),
        "lake_version": version,
        "tables": {name: table_report(table) for name, table in checked.items()},
        "sessions_derived": derived,
        "cross_checks": cross_checks(checked),
        "ignored": ignored,
    }
    for name, t in report["tables"].items():
        if t["rows_in"] != t["rows_kept"] + t["rows_quarantined"]:  # a bug, never a data problem
            raise AssertionError(f"{name}: rows in {t['rows_in']} != kept + quarantined")
    manifest = {
        "lake_version": version,
        "tables": {
            name: {"rows": t["rows_kept"], "file": f"{name}.parquet"}
            for name, t in report["tables"].items()
        },
        "source": str(folder),
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    _replace_dir(staging, workspace.lake)
    _replace_dir(staging_q, workspace.quarantine)

    reports_dir = workspace.reports / "ingest"
    reports_dir.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(report)
    json_path, md_path = reports_dir / "quality.json", reports_dir / "quality.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown)
    logger.info("ingested %s into lake %s in %.1fs", folder, version, time.perf_counter() - started)
    return IngestResult(
        report, markdown, workspace.lake, workspace.quarantine, (json_path, md_path)
    )

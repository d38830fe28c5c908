"""Converter for session files (one anonymous session per line: ``item item ...``).

The session-based recommendation literature (SR-GNN, GCE-GNN) ships its data sets as one
session per line, item ids in click order, oldest session first, with no user ids and no
timestamps, and its test cases as ``target<TAB>prefix items``. The converter writes the
sessions straight in the data contract's own columns, so ``recsys ingest DIR`` needs no
mapping file: every session is a new anonymous visitor ``s<line>`` with the session
``s<line>-s1`` (the id ingestion would derive), every click a ``view``. Time keeps the order
and nothing else: sessions start from ``start`` a minute apart, in file order, and a minute
passes between clicks (so none is split by an inactivity rule). Sessions overlap in time, as
a shop's visitors do: each is another visitor, so none is merged with another. Tmall's 65,286
sessions span 45 days.

The test cases go to ``holdout/``, a folder ingestion never reads (it reads only files named
after its tables), each with a request time after the last training click.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lake.sequences import open_text
from recsys import columns as c
from recsys.errors import DataFileError, RecsysError

logger = logging.getLogger(__name__)

SESSION_START_GAP_S = 60  # between two sessions' first clicks (file order)
CLICK_GAP_S = 60  # between two clicks of a session
REQUEST_DELAY_S = 3_600  # from the last training click to the first test request
REQUEST_GAP_S = 1  # between two test cases' request times
HOLDOUT = "holdout"
TEST_CASES = "test_cases.csv"
CASE_ID, TARGET, PREFIX = "case_id", "target_item_id", "prefix_item_ids"
DEFAULT_START = "2020-01-01T00:00:00Z"

HOLDOUT_README = """\
test_cases.csv: the test cases of a session data set, converted by `recsys convert sessions`.

NOT FOR INGESTION. These are the held-out answers of a benchmark; `recsys ingest` reads only
the events/products/users files of the folder above and ignores this folder.

Columns: case_id (line of the source test file), target_item_id (the item clicked next),
prefix_item_ids (the items clicked so far in the session, in order, space-separated),
timestamp (request time, ISO 8601 UTC: after the last training event, in case order).
"""


@dataclass(frozen=True)
class SessionsSummary:
    sessions: int
    clicks: int
    items: int
    single_click_sessions: int
    blank_lines: int
    test_cases: int
    test_blank_lines: int
    test_targets_unseen: int
    first_event: str
    last_event: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class _Sessions:
    lines: list[int]  # source line of each session
    items: list[list[str]]
    blank_lines: int


@dataclass(frozen=True)
class _TestCases:
    lines: list[int]
    targets: list[str]
    prefixes: list[str]
    blank_lines: int


def _report_blank(path: Path, blank: list[int]) -> None:
    if blank:
        shown = ", ".join(map(str, blank[:5])) + (", ..." if len(blank) > 5 else "")
        logger.warning("%s: skipped %d blank line(s): %s", path, len(blank), shown)


def read_sessions(path: Path) -> _Sessions:
    """Every non-blank line as a session; blank lines are skipped and counted."""
    lines, sessions, blank = [], [], []
    tab_line = 0
    try:
        with open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                tokens = line.split()
                if not tokens:
                    blank.append(number)
                    continue
                if not tab_line and "\t" in line:
                    tab_line = number
                lines.append(number)
                sessions.append(tokens)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataFileError(path, f"cannot be read as text ({exc})") from None
    if not sessions:
        raise DataFileError(path, "no sessions found", expected="'item item ...' lines")
    if tab_line:
        logger.warning(
            "%s: line %d holds a TAB, read as whitespace between items; a test file "
            "('target<TAB>prefix') belongs to --test",
            path,
            tab_line,
        )
    _report_blank(path, blank)
    return _Sessions(lines, sessions, len(blank))


def read_test_cases(path: Path) -> _TestCases:
    """``target<TAB>prefix items`` lines; a line that is not one stops the run, naming it."""
    expected = "'target<TAB>prefix items', e.g. '7<TAB>3 5 3'"
    lines, targets, prefixes, blank = [], [], [], []
    try:
        with open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    blank.append(number)
                    continue
                parts = line.rstrip("\r\n").split("\t")
                if len(parts) != 2:
                    problem = "has no TAB" if len(parts) == 1 else f"has {len(parts) - 1} TABs"
                    raise DataFileError(path, f"line {number} {problem}", expected=expected)
                target, prefix = parts[0].split(), parts[1].split()
                if not target:
                    raise DataFileError(path, f"line {number}: empty target", expected=expected)
                if len(target) > 1:
                    raise DataFileError(
                        path, f"line {number}: target has {len(target)} items", expected=expected
                    )
                if not prefix:
                    raise DataFileError(path, f"line {number}: empty prefix", expected=expected)
                lines.append(number)
                targets.append(target[0])
                prefixes.append(" ".join(prefix))
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataFileError(path, f"cannot be read as text ({exc})") from None
    if not targets:
        raise DataFileError(path, "no test cases found", expected=expected)
    _report_blank(path, blank)
    return _TestCases(lines, targets, prefixes, len(blank))


def _start_seconds(start: str) -> int:
    try:
        at = pd.Timestamp(start)
    except ValueError:
        at = pd.NaT
    if at is pd.NaT:
        raise RecsysError(
            f"--start {start!r} is not a date (expected ISO 8601, e.g. {DEFAULT_START})"
        )
    at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
    if at != at.floor("s"):
        raise RecsysError(f"--start {start!r} has a fraction of a second (expected whole seconds)")
    return int(at.timestamp())


def _iso(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds as ISO 8601 UTC with whole seconds: ``2020-01-01T00:00:00Z``."""
    text = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
    return np.char.add(text.astype(str), "Z")


def _replace(frame: pd.DataFrame, path: Path) -> None:
    """Written beside, then renamed: a failed run never leaves half a file."""
    partial = path.with_name(path.name + ".partial")
    frame.to_csv(partial, index=False)
    partial.replace(path)


def convert_sessions(
    sessions: str | Path,
    out: str | Path,
    test: str | Path | None = None,
    start: str = DEFAULT_START,
) -> SessionsSummary:
    """Write ``events.csv`` into ``out`` and, with ``test``, ``holdout/test_cases.csv``.

    Both files are read and checked before anything is written.
    """
    start_s = _start_seconds(start)
    train = read_sessions(Path(sessions))
    cases = read_test_cases(Path(test)) if test is not None else None

    lengths = np.fromiter((len(s) for s in train.items), dtype=np.int64, count=len(train.items))
    n = int(lengths.sum())
    firsts = start_s + np.arange(len(lengths), dtype=np.int64) * SESSION_START_GAP_S
    ends = np.cumsum(lengths)
    position = np.arange(n) - np.repeat(ends - lengths, lengths)
    seconds = np.repeat(firsts, lengths) + position * CLICK_GAP_S
    users = np.array([f"s{line}" for line in train.lines], dtype=object)
    events = pd.DataFrame(
        {
            c.USER_ID: np.repeat(users, lengths),
            c.ITEM_ID: [item for session in train.items for item in session],
            c.EVENT_TYPE: c.VIEW,
            c.TIMESTAMP: _iso(seconds),
            c.SESSION_ID: np.repeat(users + "-s1", lengths),
        }
    )

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "events.csv"]
    _replace(events, files[0])
    holdout = out_dir / HOLDOUT
    unseen = 0
    if cases is not None:
        holdout.mkdir(exist_ok=True)
        first_request = int(seconds.max()) + REQUEST_DELAY_S
        requests = first_request + np.arange(len(cases.targets)) * REQUEST_GAP_S
        table = pd.DataFrame(
            {
                CASE_ID: cases.lines,
                TARGET: cases.targets,
                PREFIX: cases.prefixes,
                c.TIMESTAMP: _iso(requests),
            }
        )
        files += [holdout / TEST_CASES, holdout / "README.txt"]
        _replace(table, files[1])
        files[2].write_text(HOLDOUT_README)
        unseen = int((~table[TARGET].isin(events[c.ITEM_ID])).sum())
    else:
        for stale in (holdout / TEST_CASES, holdout / "README.txt"):
            if stale.exists():
                stale.unlink()
                logger.info("removed %s of an earlier conversion (no --test given)", stale)
    logger.info(
        "wrote %s clicks of %s sessions to %s",
        f"{n:,}",
        f"{len(train.items):,}",
        out_dir,
    )
    return SessionsSummary(
        sessions=len(train.items),
        clicks=n,
        items=int(events[c.ITEM_ID].nunique()),
        single_click_sessions=int((lengths == 1).sum()),
        blank_lines=train.blank_lines,
        test_cases=0 if cases is None else len(cases.targets),
        test_blank_lines=0 if cases is None else cases.blank_lines,
        test_targets_unseen=unseen,
        first_event=str(_iso(np.array([seconds.min()]))[0]),
        last_event=str(_iso(np.array([seconds.max()]))[0]),
        files=tuple(str(f) for f in files),
    )

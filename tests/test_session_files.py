"""`recsys convert sessions`: session-per-line files (SR-GNN, GCE-GNN) into the data contract."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lake.session_files import convert_sessions
from recsys import columns as c
from recsys.errors import DataFileError, RecsysError

pytestmark = pytest.mark.unit

TRAIN = "1 2 3\n\n4\nab 5\n"  # line 2 blank, line 3 a single click, 'ab' not a number
TEST = "3\t1 2\n\n5\tab 4\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def recsys(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recsys.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


EXPECTED_EVENTS = [
    ["s1", "1", "view", "2020-01-01T00:00:00Z", "s1-s1"],
    ["s1", "2", "view", "2020-01-01T00:01:00Z", "s1-s1"],
    ["s1", "3", "view", "2020-01-01T00:02:00Z", "s1-s1"],
    ["s3", "4", "view", "2020-01-01T00:01:00Z", "s3-s1"],  # a minute after the first's start
    ["s4", "ab", "view", "2020-01-01T00:02:00Z", "s4-s1"],
    ["s4", "5", "view", "2020-01-01T00:03:00Z", "s4-s1"],
]


def test_every_click_becomes_a_view_in_order_with_exact_ids_and_times(tmp_path) -> None:
    # given three sessions, a blank line and a non-numeric item id
    train = write(tmp_path / "train.txt", TRAIN)
    # when converted
    summary = convert_sessions(train, tmp_path / "out")
    # then events.csv has the contract's columns and one row per click, in click order
    events = read(tmp_path / "out" / "events.csv")
    assert list(events.columns) == [c.USER_ID, c.ITEM_ID, c.EVENT_TYPE, c.TIMESTAMP, c.SESSION_ID]
    assert events.to_numpy().tolist() == EXPECTED_EVENTS
    # and the summary counts sessions, clicks, items, single clicks and the skipped line
    assert (summary.sessions, summary.clicks, summary.items) == (3, 6, 6)
    assert (summary.single_click_sessions, summary.blank_lines, summary.test_cases) == (1, 1, 0)
    assert (summary.first_event, summary.last_event) == (
        "2020-01-01T00:00:00Z",
        "2020-01-01T00:03:00Z",
    )
    assert summary.files == (str(tmp_path / "out" / "events.csv"),)
    assert not (tmp_path / "out" / "holdout").exists()


def test_gzip_input_gives_the_same_events(tmp_path) -> None:
    # given the same sessions gzipped
    train = write(tmp_path / "train.txt.gz", TRAIN)
    # when converted
    convert_sessions(train, tmp_path / "out")
    # then the events are those of the plain file
    assert read(tmp_path / "out" / "events.csv").to_numpy().tolist() == EXPECTED_EVENTS


def test_start_in_another_zone_is_written_in_utc(tmp_path) -> None:
    # given a start with an offset
    train = write(tmp_path / "train.txt", "7 8\n9\n")
    # when converted from that start
    convert_sessions(train, tmp_path / "out", start="2021-06-01T02:00:00+02:00")
    # then the times are UTC, a minute between clicks and between sessions' starts
    assert read(tmp_path / "out" / "events.csv")[c.TIMESTAMP].tolist() == [
        "2021-06-01T00:00:00Z",
        "2021-06-01T00:01:00Z",
        "2021-06-01T00:01:00Z",
    ]


def test_test_cases_go_to_the_holdout_after_the_last_training_click(tmp_path) -> None:
    # given sessions and test cases (a blank line among them)
    train = write(tmp_path / "train.txt", TRAIN)
    test = write(tmp_path / "test.txt.gz", TEST)
    # when converted with --test
    summary = convert_sessions(train, tmp_path / "out", test=test)
    # then each case keeps its line, target and prefix; requests start an hour after the last
    # training click (00:03), a second apart in case order
    cases = read(tmp_path / "out" / "holdout" / "test_cases.csv")
    assert list(cases.columns) == ["case_id", "target_item_id", "prefix_item_ids", c.TIMESTAMP]
    assert cases.to_numpy().tolist() == [
        ["1", "3", "1 2", "2020-01-01T01:03:00Z"],
        ["3", "5", "ab 4", "2020-01-01T01:03:01Z"],
    ]
    # and a README says the folder is not for ingestion
    readme = (tmp_path / "out" / "holdout" / "README.txt").read_text()
    assert "NOT FOR INGESTION" in readme
    assert (summary.test_cases, summary.test_blank_lines, summary.test_targets_unseen) == (2, 1, 0)
    assert len(summary.files) == 3


def test_a_run_without_test_removes_an_earlier_holdout(tmp_path) -> None:
    # given a folder converted earlier with test cases
    train = write(tmp_path / "train.txt", TRAIN)
    convert_sessions(train, tmp_path / "out", test=write(tmp_path / "test.txt", TEST))
    # when converted again without --test
    convert_sessions(train, tmp_path / "out")
    # then no stale test cases are left beside the new events
    assert not (tmp_path / "out" / "holdout" / "test_cases.csv").exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("3 1 2\n", "line 1 has no TAB"),
        ("3\t1 2\n4\t1\t2\n", "line 2 has 2 TABs"),
        ("3\t1\n\t1 2\n", "line 2: empty target"),
        ("3\t1\n4\t  \n", "line 2: empty prefix"),
        ("3 4\t1 2\n", "line 1: target has 2 items"),
        ("\n\n", "no test cases found"),
    ],
)
def test_bad_test_line_is_an_error_naming_file_and_line(tmp_path, text, problem) -> None:
    # given a test file with a bad line
    train = write(tmp_path / "train.txt", TRAIN)
    test = write(tmp_path / "test.txt", text)
    # when converted
    with pytest.raises(DataFileError) as error:
        convert_sessions(train, tmp_path / "out", test=test)
    # then the error names the file and the line, and nothing was written
    assert str(error.value).startswith(f"{test}: {problem}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("which", ["train", "test"])
def test_missing_input_file_is_an_error_naming_it(tmp_path, which) -> None:
    # given one of the two files missing
    train = tmp_path / "train.txt" if which == "train" else write(tmp_path / "train.txt", TRAIN)
    test = tmp_path / "test.txt"
    # when converted
    with pytest.raises(DataFileError) as error:
        convert_sessions(train, tmp_path / "out", test=test)
    # then the error names the missing file
    assert str(error.value) == f"{tmp_path / f'{which}.txt'}: file not found"


def test_a_file_of_blank_lines_has_no_sessions(tmp_path) -> None:
    # given only blank lines
    train = write(tmp_path / "train.txt", "\n  \n")
    # when converted, then the error says so
    with pytest.raises(DataFileError, match="no sessions found"):
        convert_sessions(train, tmp_path / "out")


def test_a_file_that_is_not_gzip_is_an_error(tmp_path) -> None:
    # given a .gz name on a plain file
    train = write(tmp_path / "train.txt", TRAIN).rename(tmp_path / "train.txt.gz")
    # when converted, then the error names the file
    with pytest.raises(DataFileError, match=r"train\.txt\.gz: cannot be read as text"):
        convert_sessions(train, tmp_path / "out")


@pytest.mark.parametrize("start", ["yesterday", "2020-01-01T00:00:00.5Z"])
def test_bad_start_is_an_error(tmp_path, start) -> None:
    # given a start that is not a date in whole seconds
    train = write(tmp_path / "train.txt", TRAIN)
    # when converted, then the error names --start
    with pytest.raises(RecsysError, match="--start"):
        convert_sessions(train, tmp_path / "out", start=start)


def test_cli_converts_and_writes_the_summary_as_json(tmp_path) -> None:
    # given a session file and a test file
    train = write(tmp_path / "train.txt", TRAIN)
    test = write(tmp_path / "test.txt", TEST)
    # when `recsys convert sessions` runs
    done = recsys("convert", "sessions", str(train), "--test", str(test),
                  "--out", str(tmp_path / "out"), "--json", str(tmp_path / "s.json"))  # fmt: skip
    # then it prints the counts and writes them as JSON
    assert done.returncode == 0, done.stderr
    assert "wrote 6 events of 3 sessions (1 of a single click) on 6 items, 2 test cases" in (
        done.stdout
    )
    figures = json.loads((tmp_path / "s.json").read_text())
    assert figures["clicks"] == 6 and figures["blank_lines"] == 1 and figures["test_cases"] == 2
    assert "skipped 1 blank line(s): 2" in done.stderr


def test_cli_error_exits_2_naming_file_and_line(tmp_path) -> None:
    # given a test file whose second line has no TAB
    train = write(tmp_path / "train.txt", TRAIN)
    test = write(tmp_path / "test.txt", "3\t1\n4 1\n")
    # when `recsys convert sessions` runs
    done = recsys("convert", "sessions", str(train), "--test", str(test),
                  "--out", str(tmp_path / "out"))  # fmt: skip
    # then it exits 2 with the file and line, no traceback
    assert done.returncode == 2
    assert f"{test}: line 2 has no TAB" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_ingest_reads_exactly_the_clicks_and_never_the_holdout(tmp_path) -> None:
    # given a converted folder whose holdout holds items no session has
    train = write(tmp_path / "train.txt", TRAIN)
    test = write(tmp_path / "test.txt", "h1\th2 h3\n")
    convert_sessions(train, tmp_path / "shop", test=test)
    # when `recsys ingest` runs on it with no mapping file
    env = {"RECSYS_HOME": str(tmp_path / "home"), "RECSYS_PROFILE": "local"}
    done = recsys("-q", "ingest", str(tmp_path / "shop"), env=env)
    assert done.returncode == 0, done.stderr
    # then the lake holds exactly the clicks, in their sessions, nothing quarantined
    lake = pd.read_parquet(tmp_path / "home" / "lake" / "events.parquet")
    lake = lake.sort_values([c.USER_ID, c.TIMESTAMP], kind="stable")
    assert len(lake) == len(EXPECTED_EVENTS)
    assert lake[[c.USER_ID, c.ITEM_ID, c.SESSION_ID]].to_numpy().tolist() == [
        [row[0], row[1], row[4]] for row in EXPECTED_EVENTS
    ]
    assert set(lake[c.EVENT_TYPE]) == {"view"}
    assert not lake[c.ITEM_ID].isin(["h1", "h2", "h3"]).any()
    # and the report names the holdout as ignored, with no session derived
    report = json.loads((tmp_path / "home" / "reports" / "ingest" / "quality.json").read_text())
    assert report["ignored"] == ["holdout"]
    assert report["sessions_derived"] == 0
    assert report["tables"]["events"]["rows_quarantined"] == 0

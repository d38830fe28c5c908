"""The command line as a user meets it: help for every command, clear errors, exit codes."""

import subprocess
import sys

import pytest

from recsys.cli import build_parser

pytestmark = pytest.mark.unit


def recsys(*args: str, home=None) -> subprocess.CompletedProcess:
    base = [sys.executable, "-m", "recsys.cli"] + (["--home", str(home)] if home else [])
    return subprocess.run(base + list(args), capture_output=True, text=True)


def _commands(parser) -> list[list[str]]:
    found = []
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, sub in action.choices.items():
            found.append([name])
            found += [[name, *rest] for rest in _commands(sub)]
    return found


@pytest.mark.parametrize("command", _commands(build_parser()), ids=" ".join)
def test_every_command_has_help(command) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*command, "--help"])
    assert done.value.code == 0


def test_bad_input_exits_2_with_a_message_naming_the_file(tmp_path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "events.csv").write_text("")
    done = recsys("ingest", str(tmp_path / "in"), home=tmp_path / "ws")
    assert done.returncode == 2
    assert "events.csv: file is empty" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_profile_is_rejected(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "recsys.cli", "ingest", str(tmp_path)],
        capture_output=True,
        text=True,
        env={"RECSYS_PROFILE": "cloud", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert "unknown profile 'cloud'" in done.stderr


def test_features_build_without_a_lake_says_what_to_run_first(tmp_path) -> None:
    done = recsys("features", "build", home=tmp_path / "ws")
    assert done.returncode == 2
    assert "run `recsys ingest DIR` first" in done.stderr


def test_unreachable_postgres_is_a_clear_error(tmp_path) -> None:
    import os

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "recsys.cli",
            "--home",
            str(tmp_path),
            "--profile",
            "production",
            "features",
            "apply",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "RECSYS_PG_PORT": "1", "RECSYS_PG_SSLMODE": "disable"},
    )
    assert done.returncode == 3
    assert "cannot reach PostgreSQL" in done.stderr and "RECSYS_PG_PORT" in done.stderr
    assert "Traceback" not in done.stderr

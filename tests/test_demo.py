"""`recsys demo` runs every stage, end to end, in its own workspace (serving is exercised
through real HTTP by tests/test_service_http.py)."""

import json

import pytest

from tests.test_cli import recsys

pytestmark = pytest.mark.integration


def test_demo_generates_ingests_and_splits_a_shop(tmp_path) -> None:
    done = recsys(
        "demo",
        "--scale",
        "tiny",
        "--no-serve",
        "--json",
        str(tmp_path / "demo.json"),
        home=tmp_path / "ws",
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads((tmp_path / "demo.json").read_text())
    events = figures["ingest"]["events"]
    assert events["rows_in"] == 20_000
    assert events["rows_in"] == events["rows_kept"] + events["rows_quarantined"]
    split = figures["split"]
    assert (
        split["train"]["events"] + split["validation"]["events"] + split["test"]["events"]
        == events["rows_kept"]
    )
    assert min(split[w]["purchases"] for w in ("train", "validation", "test")) > 0
    assert (tmp_path / "ws/lake/events.parquet").exists()
    assert "Ingestion quality report" in done.stdout
    assert figures["features"]["rows"]["user_activity"] > 0
    assert "online features of the most active user" in done.stdout
    # trained, registered and promoted; --no-serve stops before the service
    assert figures["train"]["version"] == "1"
    assert 0 < figures["train"]["ndcg@10"] <= 1
    assert "'candidate' -> 'production'" in done.stdout

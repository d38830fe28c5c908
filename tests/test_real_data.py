"""A real data set nobody here generated (Amazon review sequences) goes through ingestion."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from recsys import columns as c
from tests.conftest import REPO_ROOT, SHARED_DATA

pytestmark = pytest.mark.integration

AMAZON = SHARED_DATA / "amazon"


@pytest.mark.skipif(not AMAZON.is_dir(), reason="shared/data/amazon is not beside the repository")
def test_amazon_toys_converts_and_ingests_with_the_documented_mapping(tmp_path) -> None:
    # given the converter and mapping the README documents
    recsys = [sys.executable, "-m", "recsys.cli", "--home", str(tmp_path / "ws")]
    subprocess.run(
        [
            *recsys,
            "convert",
            "sequences",
            str(AMAZON / "Toys_and_Games.txt.gz"),
            "--attributes",
            str(AMAZON / "Toys_and_Games_item2attributes.json.gz"),
            "--out",
            str(tmp_path / "toys"),
        ],
        check=True,
        capture_output=True,
    )
    # when the result is ingested
    done = subprocess.run(
        [
            *recsys,
            "ingest",
            str(tmp_path / "toys"),
            "--mapping",
            str(REPO_ROOT / "examples/amazon/mapping.yaml"),
            "--json",
            str(tmp_path / "report.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    events = report["tables"]["events"]
    # then every interaction of the published table is kept, as purchases in order
    assert (events["rows_in"], events["rows_kept"], events["users"], events["items"]) == (
        167_597,
        167_597,
        19_412,
        11_924,
    )
    assert events["event_types"] == {"purchase": 167_597}
    assert report["tables"]["products"]["rows_kept"] == 11_924
    assert report["cross_checks"]["events_with_item_not_in_products"] == 0
    lake = pd.read_parquet(tmp_path / "ws/lake/events.parquet")
    first_user = lake[lake[c.USER_ID] == "1"].sort_values(c.TIMESTAMP)
    assert first_user[c.ITEM_ID].tolist()[:3] == ["1", "2", "3"]
    assert first_user[c.TIMESTAMP].max() == pd.Timestamp("2020-01-01", tz="UTC")
    products = pd.read_parquet(tmp_path / "ws/lake/products.parquet")
    assert products[c.ATTRIBUTES].str.split(";").str.len().min() >= 1

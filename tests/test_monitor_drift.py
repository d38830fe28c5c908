"""`recsys monitor drift` on the generated shop: the late taste shift (ground_truth/shop.json:
trending and declining leaf categories from 2026-02-01, 14 days of ramp) is flagged in the last
six weeks against the first two months, and windows without the shift are not; the served
lists' section flags lists that lost their variety and passes lists like the reference's.
Real Evidently, the real lake; the shop is seeded (scale small: at tiny scale a month holds
too few sessions for the department mix to separate shift from noise)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lake.ingest import ingest
from monitoring.drift import detect_drift
from monitoring.thresholds import load_thresholds
from monitoring.windows import Lake, load_lake, parse_window
from recsys.workspace import Workspace
from shop.generate import generate_shop

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIRST_MONTHS = "2025-04-01..2025-06-01"
SHIFTED = "2026-02-15..2026-04-01"  # the shift at full strength


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Path]:
    root = tmp_path_factory.mktemp("drift")
    generate_shop(root / "shop", scale="small", seed=0)
    workspace = Workspace.from_env(root / "ws", "local")
    ingest(root / "shop", workspace)
    return workspace, root / "shop"


@pytest.fixture(scope="module")
def lake(shop: tuple[Workspace, Path]) -> Lake:
    return load_lake(shop[0])


def test_the_late_taste_shift_is_flagged_by_the_command(shop, tmp_path: Path):
    workspace, shop_dir = shop
    out, summary = tmp_path / "report", tmp_path / "drift.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "recsys.cli",
            "--home",
            str(workspace.home),
            "monitor",
            "drift",
            "--reference",
            FIRST_MONTHS,
            "--current",
            SHIFTED,
            "--out",
            str(out),
            "--json",
            str(summary),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stdout + run.stderr  # 1: drift
    assert "DRIFT" in run.stdout
    result = json.loads(summary.read_text())
    assert result["verdict"] == "drift"
    features = result["features"]
    assert features["drifted"] and features["columns"]["department"]["drifted"]
    assert result["predictions"]["skipped"]  # no service ran on this shop
    # the categories that grew the most are the ones the shop's ground truth made trend
    truth = json.loads((shop_dir / "ground_truth" / "shop.json").read_text())
    grew = [row["value"] for row in features["movers"]["category"]["grew"]]
    assert len(set(grew) & set(truth["trending_categories"])) >= 2, grew
    shrank = [row["value"] for row in features["movers"]["department"]["shrank"]]
    declining = {path.split(" > ")[0] for path in truth["declining_categories"]}
    assert set(shrank[:3]) & declining, shrank
    assert (out / "features.html").stat().st_size > 10_000
    assert json.loads((out / "summary.json").read_text()) == result


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        (FIRST_MONTHS, "2025-06-01..2025-08-01"),  # the next two months
        ("2025-10-01..2025-12-01", "2025-12-01..2026-02-01"),  # just before the shift
    ],
)
def test_windows_without_the_shift_are_not_flagged(lake: Lake, reference: str, current: str):
    result = detect_drift(lake, parse_window(reference), parse_window(current), load_thresholds())
    assert not result.drifted, result.to_dict()["features"]


def served_lists(
    items: np.ndarray, weights: np.ndarray, start: str, n: int, seed: int
) -> pd.DataFrame:
    """Logged answers (FeedbackLog.served()'s columns): ten items each, drawn by weight."""
    rng = np.random.default_rng(seed)
    weights = weights / weights.sum()
    rows = []
    for i in range(n):
        chosen = rng.choice(items, size=10, replace=False, p=weights)
        rows.append(
            {
                "request_id": f"{start}-{i}",
                "served_at": pd.Timestamp(start, tz="UTC") + pd.Timedelta(minutes=i),
                "item_ids": list(chosen),
                "scores": sorted(rng.uniform(0, 1, size=10), reverse=True),
            }
        )
    return pd.DataFrame(rows)


def test_served_lists_lose_variety_and_are_flagged(lake: Lake):
    """Reference: lists drawn like the reference window's interactions. The same draw later is
    not drift; lists of the 20 most popular items only are (prediction mix, head share)."""
    reference, current = (
        parse_window("2026-01-01..2026-01-15"),
        parse_window("2026-01-15..2026-02-01"),
    )
    counts = lake.window(reference)["item_id"].value_counts()
    items, weights = counts.index.to_numpy(), counts.to_numpy(dtype=float)
    served_reference = served_lists(items, weights, "2026-01-02", 400, seed=1)
    similar = served_lists(items, weights, "2026-01-16", 400, seed=2)
    narrow = served_lists(items[:20], weights[:20], "2026-01-16", 400, seed=3)
    thresholds = load_thresholds()

    same = detect_drift(lake, reference, current, thresholds, served_reference, similar)
    sections = same.to_dict()
    assert not sections["predictions"]["drifted"], sections["predictions"]
    assert not sections["recommendations"]["drifted"], sections["recommendations"]

    worse = detect_drift(lake, reference, current, thresholds, served_reference, narrow)
    sections = worse.to_dict()
    assert worse.drifted
    assert sections["predictions"]["drifted"]
    assert sections["predictions"]["columns"]["popularity"]["drifted"]
    assert sections["recommendations"]["current"]["head_share"] == 1.0
    assert sections["recommendations"]["coverage_ratio"] < 0.7

"""Same seed, same bytes: generated shops must be reproducible to be useful as fixtures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from shop.generate import generate_shop

pytestmark = pytest.mark.integration

TIMING_FREE = {"seconds", "out_dir"}


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file except the manifest, which records timings and the folder."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != "manifest.json"
    }


def _manifest(root: Path) -> dict:
    data = json.loads((root / "manifest.json").read_text())
    return {k: v for k, v in data.items() if k not in TIMING_FREE}


@pytest.fixture(scope="module")
def shops(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    roots = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        roots[name] = tmp_path_factory.mktemp(f"shop_{name}")
        generate_shop(roots[name], scale="tiny", seed=seed)
    return roots


def test_same_seed_gives_identical_files(shops: dict[str, Path]) -> None:
    first, second = _digests(shops["a"]), _digests(shops["b"])
    assert set(first) >= {
        "events.parquet",
        "products.parquet",
        "users.parquet",
        "ground_truth/users.parquet",
        "ground_truth/products.parquet",
        "ground_truth/shop.json",
    }
    assert first == second
    assert _manifest(shops["a"]) == _manifest(shops["b"])


def test_different_seed_gives_different_files(shops: dict[str, Path]) -> None:
    first, other = _digests(shops["a"]), _digests(shops["c"])
    for name in ("events.parquet", "products.parquet", "users.parquet"):
        assert first[name] != other[name]


def test_csv_is_deterministic_too(tmp_path: Path) -> None:
    generate_shop(tmp_path / "x", scale="tiny", seed=5, fmt="csv")
    generate_shop(tmp_path / "y", scale="tiny", seed=5, fmt="csv")
    assert _digests(tmp_path / "x") == _digests(tmp_path / "y")

"""Value converters on tiny inputs with exact expected outputs."""

import pandas as pd
import pytest

from lake.parse import parse_bool, parse_int, parse_text, parse_timestamp

pytestmark = pytest.mark.unit

EARLIEST, LATEST = pd.Timestamp("1995-01-01", tz="UTC"), pd.Timestamp("2100-01-01", tz="UTC")


def test_naive_and_offset_timestamps_mixed_in_one_column_are_each_read_right() -> None:
    values = pd.Series(
        [
            "2025-03-01T11:00:00+01:00",
            "2025-03-01 10:00:00",
            "2025-03-01",
            "2025-03-01T05:00:00-05:00",
            "1740823200",
            "1740823200000",
        ]
    )
    parsed, bad = parse_timestamp(values, EARLIEST, LATEST)
    ten = pd.Timestamp("2025-03-01 10:00", tz="UTC")
    assert list(parsed) == [ten, ten, pd.Timestamp("2025-03-01", tz="UTC"), ten, ten, ten]
    assert not bad.any()


def test_timestamps_outside_the_plausible_range_are_bad() -> None:
    parsed, bad = parse_timestamp(pd.Series(["1970-01-01", "3000-01-01", None]), EARLIEST, LATEST)
    assert list(bad) == [True, True, False]
    assert parsed.isna().all()


def test_integers_accept_whole_floats_only() -> None:
    parsed, bad = parse_int(pd.Series(["2", "2.0", "2.5", "x", None]))
    assert list(bad) == [False, False, True, True, False]
    assert parsed.tolist()[:2] == [2, 2]


def test_booleans_in_common_spellings() -> None:
    parsed, bad = parse_bool(pd.Series(["true", "No", "1", "maybe", None]))
    assert parsed.tolist()[:3] == [True, False, True]
    assert list(bad) == [False, False, False, True, False]


def test_numeric_ids_become_text_without_decimal_point() -> None:
    assert parse_text(pd.Series([1.0, 20.0, None])).tolist() == ["1", "20", pd.NA]

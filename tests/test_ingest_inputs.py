"""Ingestion of malformed input: every bad row quarantined with its reason, every bad file named.

Whatever the input, ``rows in = rows kept + rows quarantined`` holds for every table.
"""

from pathlib import Path

import pandas as pd
import pytest

from lake.ingest import ingest
from recsys import columns as c
from recsys.errors import DataFileError, RecsysError
from recsys.workspace import Workspace

pytestmark = pytest.mark.unit

HEADER = "user_id,item_id,event_type,timestamp,price,quantity\n"
GOOD = "u1,i1,view,2025-03-01T10:00:00Z,10.0,1\n"


def write(folder: Path, name: str, text: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def run(folder: Path, workspace: Workspace, **kwargs):
    result = ingest(folder, workspace, **kwargs)
    for name, table in result.report["tables"].items():
        assert table["rows_in"] == table["rows_kept"] + table["rows_quarantined"], name
    return result


def quarantine(workspace: Workspace, table: str = c.EVENTS) -> pd.DataFrame:
    return pd.read_parquet(workspace.quarantine / f"{table}.parquet")


def lake(workspace: Workspace, table: str = c.EVENTS) -> pd.DataFrame:
    return pd.read_parquet(workspace.table(table))


def test_wrong_types_are_quarantined_with_the_original_value(tmp_path, workspace) -> None:
    # given a price that is text and a fractional quantity
    write(
        tmp_path / "in",
        "events.csv",
        HEADER
        + GOOD
        + "u1,i2,cart,2025-03-01T10:01:00Z,abc,1\n"
        + "u1,i3,cart,2025-03-01T10:02:00Z,5.0,2.5\n",
    )
    # when ingested
    result = run(tmp_path / "in", workspace)
    # then both rows are quarantined as invalid values, keeping what was sent
    q = quarantine(workspace)
    assert result.report["tables"]["events"]["quarantined_by_reason"] == {"invalid_value": 2}
    assert list(q[c.PRICE]) == ["abc", "5.0"]
    assert list(q[c.SOURCE_ROW]) == [2, 3]
    assert q[c.DETAIL].str.contains("price='abc'").any()
    assert len(lake(workspace)) == 1


def test_wrong_types_in_parquet_are_quarantined(tmp_path, workspace) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    pd.DataFrame(
        {
            c.USER_ID: [1, 2, 3],
            c.ITEM_ID: ["a", "b", "c"],
            c.EVENT_TYPE: ["view"] * 3,
            c.TIMESTAMP: [1_740_823_200, 1_740_823_200_000, 1_740_823_200],
            c.PRICE: ["1.5", "two", "3"],
        }
    ).to_parquet(folder / "events.parquet")
    result = run(folder, workspace)
    assert result.report["tables"]["events"]["quarantined_by_reason"] == {"invalid_value": 1}
    kept = lake(workspace)
    # integer ids become text ids; epoch seconds and milliseconds give the same instant
    assert sorted(kept[c.USER_ID]) == ["1", "3"]
    assert set(kept[c.TIMESTAMP]) == {pd.Timestamp("2025-03-01 10:00", tz="UTC")}


def test_missing_required_column_names_file_and_column(tmp_path, workspace) -> None:
    write(tmp_path / "in", "events.csv", "user_id,item_id,event_type\nu1,i1,view\n")
    with pytest.raises(DataFileError) as error:
        ingest(tmp_path / "in", workspace)
    message = str(error.value)
    assert "events.csv" in message and "column 'timestamp'" in message
    assert "found: user_id, item_id, event_type" in message
    assert not workspace.lake.exists()


def test_unknown_event_types_are_quarantined_unless_mapped_or_dropped(tmp_path, workspace) -> None:
    write(
        tmp_path / "in",
        "events.csv",
        HEADER
        + GOOD
        + "u1,i1,addtocart,2025-03-01T10:01:00Z,10.0,1\n"
        + "u1,i1,wishlist,2025-03-01T10:02:00Z,10.0,1\n"
        + "u1,i1,,2025-03-01T10:03:00Z,10.0,1\n",
    )
    result = run(tmp_path / "in", workspace)
    assert result.report["tables"]["events"]["quarantined_by_reason"] == {"unknown_event_type": 3}
    # with a mapping, addtocart becomes cart and wishlist is dropped on purpose
    mapping = write(
        tmp_path, "mapping.yaml", "event_types:\n  AddToCart: cart\ndrop_event_types: [wishlist]\n"
    )
    result = run(tmp_path / "in", workspace, mapping_path=mapping)
    assert result.report["tables"]["events"]["quarantined_by_reason"] == {
        "dropped_event_type": 1,
        "unknown_event_type": 1,
    }
    assert sorted(lake(workspace)[c.EVENT_TYPE]) == ["cart", "view"]


def test_timestamps_in_every_accepted_form_and_unparseable_ones(tmp_path, workspace) -> None:
    write(
        tmp_path / "in",
        "events.csv",
        HEADER
        + "u1,i1,view,2025-03-01T10:00:00Z,1,1\n"
        + "u2,i1,view,2025-03-01T11:00:00+01:00,1,1\n"
        + "u3,i1,view,2025-03-01 10:00:00,1,1\n"
        + "u4,i1,view,1740823200,1,1\n"
        + "u5,i1,view,1740823200000,1,1\n"
        + "u6,i1,view,yesterday,1,1\n"
        + "u7,i1,view,2025-13-45,1,1\n"
        + "u8,i1,view,,1,1\n"
        + "u9,i1,view,0,1,1\n",
    )
    result = run(tmp_path / "in", workspace)
    assert result.report["tables"]["events"]["quarantined_by_reason"] == {
        "unparseable_timestamp": 4
    }
    kept = lake(workspace)
    assert sorted(kept[c.USER_ID]) == ["u1", "u2", "u3", "u4", "u5"]
    assert set(kept[c.TIMESTAMP]) == {pd.Timestamp("2025-03-01 10:00", tz="UTC")}
    assert sorted(quarantine(workspace)[c.USER_ID]) == ["u6", "u7", "u8", "u9"]


def test_negative_and_impossible_prices(tmp_path, workspace) -> None:
    write(
        tmp_path / "in",
        "events.csv",
        HEADER
        + GOOD
        + "u1,i2,view,2025-03-01T10:01:00Z,-3.5,1\n"
        + "u1,i3,view,2025-03-01T10:02:00Z,0,1\n"
        + "u1,i4,view,2025-03-01T10:03:00Z,2500000,1\n"
        + "u1,i5,view,2025-03-01T10:04:00Z,,1\n",
    )
    result = run(tmp_path / "in", workspace)
    assert result.report["tables"]["events"]["quarantined_by_reason"] == {
        "impossible_price": 2,
        "negative_price": 1,
    }
    # a missing price is allowed: the column is optional
    assert sorted(lake(workspace)[c.ITEM_ID]) == ["i1", "i5"]


def test_duplicates_keep_the_first_copy(tmp_path, workspace) -> None:
    write(
        tmp_path / "in",
        "events.csv",
        HEADER + GOOD * 3 + "u1,i1,view,2025-03-01T10:00:01Z,10.0,1\n",
    )
    result = run(tmp_path / "in", workspace)
    assert result.report["tables"]["events"]["quarantined_by_reason"] == {"duplicate": 2}
    assert list(quarantine(workspace)[c.SOURCE_ROW]) == [2, 3]
    assert len(lake(workspace)) == 2


def test_empty_file_is_an_error_naming_the_file(tmp_path, workspace) -> None:
    write(tmp_path / "in", "events.csv", "")
    with pytest.raises(DataFileError, match=r"events\.csv: file is empty"):
        ingest(tmp_path / "in", workspace)


def test_header_only_file_ingests_zero_rows(tmp_path, workspace) -> None:
    write(tmp_path / "in", "events.csv", HEADER)
    result = run(tmp_path / "in", workspace)
    assert result.report["tables"]["events"]["rows_in"] == 0


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10",
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00",
        "ÿþ not utf-8 \xff\xfe".encode("latin-1") * 3,
    ],
)
def test_file_that_is_not_csv_is_an_error_naming_the_file(tmp_path, workspace, content) -> None:
    write(tmp_path / "in", "events.csv", content)
    with pytest.raises(DataFileError, match=r"events\.csv: not"):
        ingest(tmp_path / "in", workspace)


def test_text_that_is_not_a_table_fails_on_its_columns(tmp_path, workspace) -> None:
    write(tmp_path / "in", "events.csv", '{"user_id": "u1", "item_id": "i1"}\n')
    with pytest.raises(DataFileError, match="missing required column"):
        ingest(tmp_path / "in", workspace)


def test_file_that_is_not_parquet_is_an_error(tmp_path, workspace) -> None:
    write(tmp_path / "in", "events.parquet", HEADER + GOOD)
    with pytest.raises(DataFileError, match=r"events\.parquet: not a readable Parquet file"):
        ingest(tmp_path / "in", workspace)


def test_rows_that_do_not_split_are_quarantined_with_their_text(tmp_path, workspace) -> None:
    write(
        tmp_path / "in",
        "events.csv",
        HEADER
        + GOOD
        + "u1,i2,view\n"
        + "u1,i3,view,x,1,1,extra\n"
        + "u1,i4,view,2025-03-01T10:05:00Z,1,1\n",
    )
    result = run(tmp_path / "in", workspace)
    assert result.report["tables"]["events"]["quarantined_by_reason"] == {"malformed_row": 2}
    q = quarantine(workspace)
    assert list(q["raw_line"]) == ["u1,i2,view", "u1,i3,view,x,1,1,extra"]
    assert list(q[c.SOURCE_ROW]) == [2, 3]
    assert sorted(lake(workspace)[c.ITEM_ID]) == ["i1", "i4"]


def test_no_events_file_is_an_error(tmp_path, workspace) -> None:
    write(tmp_path / "in", "products.csv", "item_id\ni1\n")
    with pytest.raises(RecsysError, match="no events file"):
        ingest(tmp_path / "in", workspace)


def test_failed_run_leaves_the_previous_lake_untouched(tmp_path, workspace) -> None:
    write(tmp_path / "good", "events.csv", HEADER + GOOD)
    first = run(tmp_path / "good", workspace)
    write(tmp_path / "bad", "events.csv", "")
    with pytest.raises(DataFileError):
        ingest(tmp_path / "bad", workspace)
    manifest = (workspace.lake / "manifest.json").read_text()
    assert first.report["lake_version"] in manifest
    assert len(lake(workspace)) == 1


def test_times_finer_than_a_microsecond_are_cut_and_counted(tmp_path, workspace) -> None:
    # given events whose times carry nanoseconds: as text with 9 decimals, and as a native
    # Parquet timestamp[ns] column of products
    write(
        tmp_path / "in",
        "events.csv",
        HEADER
        + "u1,i1,view,2025-03-01T10:00:00.123456789Z,10.0,1\n"
        + "u1,i2,view,2025-03-01T10:00:01.123456000Z,10.0,1\n"
        + "u2,i1,view,not-a-time,10.0,1\n",
    )
    created = pd.Series(pd.to_datetime(["2025-01-01 00:00:00.000000001"], utc=True))
    pd.DataFrame({c.ITEM_ID: ["i1"], c.CREATED_AT: created}).to_parquet(
        tmp_path / "in" / "products.parquet"
    )
    # when ingested
    result = run(tmp_path / "in", workspace)
    # then the lake holds them to the microsecond
    assert list(lake(workspace)[c.TIMESTAMP]) == [
        pd.Timestamp("2025-03-01T10:00:00.123456Z"),
        pd.Timestamp("2025-03-01T10:00:01.123456Z"),
    ]
    assert list(lake(workspace, c.PRODUCTS)[c.CREATED_AT]) == [pd.Timestamp("2025-01-01", tz="UTC")]
    # and the report counts the kept values that lost digits (the quarantined row is not one)
    tables = result.report["tables"]
    assert tables[c.EVENTS]["cut_to_microsecond"] == {c.TIMESTAMP: 1}
    assert tables[c.PRODUCTS]["cut_to_microsecond"] == {c.CREATED_AT: 1}
    assert "Time cut to the microsecond" in result.markdown


def test_an_export_that_would_empty_the_lake_is_refused_and_the_lake_stays(
    tmp_path, workspace
) -> None:
    # given a lake of four events
    write(
        tmp_path / "good",
        "events.csv",
        HEADER + "".join(f"u{i},i{i},view,2025-03-01T10:0{i}:00Z,10.0,1\n" for i in range(4)),
    )
    before = run(tmp_path / "good", workspace).report["lake_version"]
    # when a header-only export, then one keeping one event in four, is ingested
    write(tmp_path / "empty", "events.csv", HEADER)
    write(tmp_path / "short", "events.csv", HEADER + GOOD)
    for folder in ("empty", "short"):
        with pytest.raises(RecsysError, match=r"events kept against 4 in the current lake"):
            ingest(tmp_path / folder, workspace)
        # then the lake is the one before, untouched
        assert len(lake(workspace)) == 4
    manifest = (workspace.lake / "manifest.json").read_text()
    assert before in manifest
    # and with replace, the export is taken as it is
    assert (
        run(tmp_path / "empty", workspace, replace=True).report["tables"]["events"]["rows_kept"]
        == 0
    )
    assert len(lake(workspace)) == 0


def test_a_smaller_export_within_the_limit_replaces_the_lake(tmp_path, workspace) -> None:
    # given a lake of four events, and rules that accept half
    write(
        tmp_path / "good",
        "events.csv",
        HEADER + "".join(f"u{i},i{i},view,2025-03-01T10:0{i}:00Z,10.0,1\n" for i in range(4)),
    )
    run(tmp_path / "good", workspace)
    write(
        tmp_path / "half",
        "events.csv",
        HEADER + "".join(f"u{i},i{i},view,2025-03-01T10:0{i}:00Z,10.0,1\n" for i in range(2)),
    )
    # when an export of two is ingested, then it replaces the lake
    run(tmp_path / "half", workspace)
    assert len(lake(workspace)) == 2

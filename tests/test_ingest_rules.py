"""Cleaning rules, sessions and idempotence of ingestion, on hand-made folders."""

import hashlib

import pandas as pd
import pytest

from lake.ingest import ingest
from lake.rules import IngestRules
from recsys import columns as c
from recsys.config import load_yaml_model
from recsys.errors import RecsysError
from tests.test_ingest_inputs import HEADER, lake, quarantine, run, write

pytestmark = pytest.mark.unit


def test_test_accounts_and_bulk_resellers_are_removed_whole(tmp_path, workspace) -> None:
    # given a test account, a user with a warehouse quantity and one with 21 orders in a day
    rows = [
        "test-7,i1,view,2025-03-01T10:00:00Z,1,1",
        "u1,i1,view,2025-03-01T10:00:00Z,1,1",
        "u2,i1,view,2025-03-01T09:00:00Z,1,1",
        "u2,i1,purchase,2025-03-01T10:00:00Z,1,200",
    ]
    rows += [f"u3,i{k},purchase,2025-03-02T10:{k:02d}:00Z,1,1" for k in range(21)]
    rows += ["u4,i1,purchase,2025-03-02T10:00:00Z,1,1"]
    write(tmp_path / "in", "events.csv", HEADER + "\n".join(rows) + "\n")
    result = run(tmp_path / "in", workspace)
    # then every event of those users is quarantined, and only theirs
    assert result.report["tables"]["events"]["quarantined_by_reason"] == {
        "bulk_reseller": 23,
        "test_account": 1,
    }
    assert sorted(lake(workspace)[c.USER_ID]) == ["u1", "u4"]


def test_rules_file_changes_the_thresholds(tmp_path, workspace) -> None:
    rows = [f"u3,i{k},purchase,2025-03-02T10:{k:02d}:00Z,1,1" for k in range(21)]
    write(tmp_path / "in", "events.csv", HEADER + "\n".join(rows) + "\n")
    rules = write(tmp_path, "rules.yaml", "reseller:\n  max_purchases_per_day: 50\n")
    result = run(tmp_path / "in", workspace, rules_path=rules)
    assert result.report["tables"]["events"]["rows_kept"] == 21


def test_rules_file_with_a_misspelt_key_is_rejected(tmp_path) -> None:
    rules = write(tmp_path, "rules.yaml", "reseler:\n  max_quantity: 5\n")
    with pytest.raises(RecsysError, match="reseler: Extra inputs are not permitted"):
        load_yaml_model(rules, IngestRules)


def test_sessions_are_derived_by_thirty_minutes_of_inactivity(tmp_path, workspace) -> None:
    write(
        tmp_path / "in",
        "events.csv",
        HEADER
        + "u1,i1,view,2025-03-01T10:00:00Z,1,1\n"
        + "u1,i2,view,2025-03-01T10:20:00Z,1,1\n"
        + "u1,i3,view,2025-03-01T10:50:00Z,1,1\n"
        + "u1,i4,view,2025-03-01T11:21:00Z,1,1\n"
        + "u2,i1,view,2025-03-01T10:10:00Z,1,1\n",
    )
    result = run(tmp_path / "in", workspace)
    kept = lake(workspace).set_index(c.ITEM_ID)
    users = lake(workspace)
    assert dict(
        zip(users[c.USER_ID] + "/" + users[c.ITEM_ID], users[c.SESSION_ID], strict=True)
    ) == {"u1/i1": "u1-s1", "u1/i2": "u1-s1", "u1/i3": "u1-s1", "u1/i4": "u1-s2", "u2/i1": "u2-s1"}
    assert result.report["sessions_derived"] == 3
    assert len(kept) == 5


def test_given_session_ids_are_kept_and_only_missing_ones_derived(tmp_path, workspace) -> None:
    write(
        tmp_path / "in",
        "events.csv",
        "user_id,item_id,event_type,timestamp,session_id\n"
        "u1,i1,view,2025-03-01T10:00:00Z,abc\n"
        "u1,i2,view,2025-03-01T12:00:00Z,\n",
    )
    run(tmp_path / "in", workspace)
    assert sorted(lake(workspace)[c.SESSION_ID]) == ["abc", "u1-s1"]


def test_products_and_users_rules(tmp_path, workspace) -> None:
    folder = tmp_path / "in"
    write(folder, "events.csv", HEADER + "u1,i1,view,2025-03-01T10:00:00Z,1,1\n")
    write(
        folder,
        "products.csv",
        "item_id,price,in_stock,created_at,category\n"
        "i1,10,true,2024-01-01,A > B\n"
        "i1,12,false,2024-01-01,A > B\n"
        "i2,-1,true,2024-01-01,A\n"
        "i3,5,perhaps,2024-01-01,A\n"
        ",5,true,2024-01-01,A\n",
    )
    write(
        folder,
        "users.csv",
        "user_id,age,signup_at,skin_type\n"
        "u1,34,2024-05-01,dry\n"
        "u2,430,2024-05-01,oily\n"
        "qa_bot,30,2024-05-01,\n"
        "u3,thirty,2024-05-01,\n"
        "u4,40,someday,\n",
    )
    result = run(folder, workspace)
    assert result.report["tables"]["products"]["quarantined_by_reason"] == {
        "duplicate_id": 1,
        "invalid_value": 1,
        "missing_id": 1,
        "negative_price": 1,
    }
    products = lake(workspace, c.PRODUCTS)
    assert products[c.PRICE].tolist() == [12.0]  # the last version of i1 wins
    assert result.report["tables"]["users"]["quarantined_by_reason"] == {
        "implausible_age": 1,
        "invalid_value": 1,
        "test_account": 1,
        "unparseable_timestamp": 1,
    }
    users = lake(workspace, c.USERS)
    assert users[c.USER_ID].tolist() == ["u1"]
    assert users[c.SKIN_TYPE].tolist() == ["dry"]  # free attributes are kept
    assert result.report["tables"]["users"]["extra_columns"] == ["skin_type"]
    assert quarantine(workspace, c.USERS)[c.AGE].tolist()[0] == "430"


def test_column_mapping_renames_source_columns(tmp_path, workspace) -> None:
    write(
        tmp_path / "in", "events.csv", "visitorid,itemid,event,ts\n7,42,transaction,1740823200000\n"
    )
    mapping = write(
        tmp_path,
        "map.yaml",
        "columns: {visitorid: user_id, itemid: item_id, "
        "event: event_type, ts: timestamp}\nevent_types: {transaction: purchase}\n",
    )
    run(tmp_path / "in", workspace, mapping_path=mapping)
    kept = lake(workspace)
    assert kept[[c.USER_ID, c.ITEM_ID, c.EVENT_TYPE]].values.tolist() == [["7", "42", "purchase"]]


def test_mapping_to_an_unknown_event_type_is_rejected(tmp_path, workspace) -> None:
    write(tmp_path / "in", "events.csv", HEADER)
    mapping = write(tmp_path, "map.yaml", "event_types: {addtocart: basket}\n")
    with pytest.raises(RecsysError, match="must map to one of"):
        ingest(tmp_path / "in", workspace, mapping_path=mapping)


def test_ingesting_the_same_folder_twice_gives_the_same_lake(tmp_path, workspace) -> None:
    folder = tmp_path / "in"
    write(
        folder,
        "events.csv",
        HEADER
        + "".join(
            f"u{k % 7},i{k % 11},view,2025-03-0{1 + k % 5}T10:{k % 60:02d}:00Z,{k},1\n"
            for k in range(200)
        )
        + "u1,i1,view,bad,1,1\n",
    )
    write(folder, "products.csv", "item_id,price\n" + "".join(f"i{k},{k + 1}\n" for k in range(11)))

    def digests() -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted([*workspace.lake.iterdir(), *workspace.quarantine.iterdir()])
        }

    first = run(folder, workspace)
    before = digests()
    second = run(folder, workspace)
    assert digests() == before
    assert first.report == second.report
    assert pd.read_parquet(workspace.table(c.EVENTS))[c.TIMESTAMP].is_monotonic_increasing

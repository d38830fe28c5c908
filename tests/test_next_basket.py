"""The grocery shop and the next-basket benchmark (issue 17, item 7).

The grocery shop must be reproducible and repeat-heavy by design; the benchmark's hold-out
must never let a target basket into the files the platform ingests; and the whole benchmark
(generate, hold out, ingest, train, recommend, judge) must run through the CLI at tiny scale.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys import columns as c
from recsys.errors import RecsysError
from shop.generate import generate_shop

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import next_basket as nb

pytestmark = pytest.mark.integration


def _digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != "manifest.json"
    }


@pytest.fixture(scope="module")
def grocery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("grocery")
    generate_shop(root, scale="tiny", seed=11, kind="grocery")
    return root


def _purchases(root: Path) -> pd.DataFrame:
    events = pd.read_parquet(root / "events.parquet")
    return events[events[c.EVENT_TYPE] == c.PURCHASE].sort_values(c.TIMESTAMP, kind="stable")


def test_grocery_shop_is_deterministic(grocery: Path, tmp_path: Path) -> None:
    # given the same seed again, and another seed
    generate_shop(tmp_path / "again", scale="tiny", seed=11, kind="grocery")
    generate_shop(tmp_path / "other", scale="tiny", seed=12, kind="grocery")
    # then the same seed gives the same bytes, another seed other events
    first = _digests(grocery)
    assert set(first) >= {
        "events.parquet",
        "products.parquet",
        "users.parquet",
        "ground_truth/users.parquet",
        "ground_truth/products.parquet",
        "ground_truth/shop.json",
    }
    assert _digests(tmp_path / "again") == first
    assert _digests(tmp_path / "other")["events.parquet"] != first["events.parquet"]
    manifest = json.loads((grocery / "manifest.json").read_text())
    assert manifest["kind"] == "grocery" and manifest["noise"] == {}


def test_grocery_shop_rebuys_staples_at_the_designed_share(grocery: Path) -> None:
    # given the tiny grocery shop's purchases and its hidden staples
    bought = _purchases(grocery)
    truth = pd.read_parquet(grocery / "ground_truth" / "users.parquet")
    staples = truth[[c.USER_ID, "staples"]].explode("staples").dropna()
    staples = staples.rename(columns={"staples": c.ITEM_ID}).assign(staple=True)
    # when each line is marked as a rebuy (the user bought the item in an earlier basket)
    rebuy = bought.groupby([c.USER_ID, c.ITEM_ID]).cumcount() > 0
    late = bought[bought[c.TIMESTAMP] >= bought[c.TIMESTAMP].max() - pd.Timedelta(days=30)]
    late = late.merge(staples, on=[c.USER_ID, c.ITEM_ID], how="left")
    # then most lines are rebuys (staples on cycles plus some exploration), lately mostly of
    # the staples the households hold at the end, and every household shops repeatedly
    assert 0.65 <= rebuy.mean() <= 0.85
    assert late["staple"].notna().mean() >= 0.7
    per_user = bought.groupby(c.USER_ID)[c.SESSION_ID].nunique()
    assert per_user.min() >= 2 and per_user.median() >= 10
    # and a basket is one user's session, with each item bought once in it
    assert bought.groupby(c.SESSION_ID)[c.USER_ID].nunique().max() == 1
    assert not bought.duplicated([c.SESSION_ID, c.ITEM_ID]).any()
    cycles = truth["staple_cycle_days"].explode().astype(float)
    assert (cycles >= 0.9 * truth["basket_interval_days"].min()).all()


def test_unknown_shop_kind_is_a_clear_error(tmp_path: Path) -> None:
    # when a kind the generator does not know is asked for, then the error names the choices
    with pytest.raises(RecsysError, match=r"unknown shop kind 'bakery'.*general, grocery"):
        generate_shop(tmp_path, scale="tiny", kind="bakery")


def test_hold_out_writes_no_target_basket(grocery: Path, tmp_path: Path) -> None:
    # given each user's last basket, found here independently of the benchmark
    events = pd.read_parquet(grocery / "events.parquet")
    bought = _purchases(grocery)
    last_session = bought.groupby(c.USER_ID)[c.SESSION_ID].last()
    target_rows = events[c.SESSION_ID].to_numpy() == events[c.USER_ID].map(last_session).to_numpy()
    start = events[target_rows].groupby(c.USER_ID)[c.TIMESTAMP].min()
    # when the benchmark holds them out
    held = nb.hold_out(grocery, tmp_path / "shop")
    written = pd.read_parquet(tmp_path / "shop" / "events.parquet")
    # then no event of a target session, nor any later event of its user, was written
    assert not written[c.SESSION_ID].isin(last_session.to_numpy()).any()
    assert (written[c.TIMESTAMP] < written[c.USER_ID].map(start)).all()
    # and every other row was written as it was, with the products and users beside it
    kept = events[~(events[c.TIMESTAMP] >= events[c.USER_ID].map(start))]
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), written.reset_index(drop=True))
    assert {p.name for p in (tmp_path / "shop").iterdir()} == {
        "events.parquet",
        "products.parquet",
        "users.parquet",
    }
    # and the targets are exactly the items of those sessions, for every user
    expected = events[target_rows & (events[c.EVENT_TYPE] == c.PURCHASE).to_numpy()]
    expected = expected[[c.USER_ID, c.ITEM_ID]].drop_duplicates()
    got = held.targets.sort_values([c.USER_ID, c.ITEM_ID]).reset_index(drop=True)
    assert got.equals(expected.sort_values([c.USER_ID, c.ITEM_ID]).reset_index(drop=True))
    assert held.judged == sorted(bought[c.USER_ID].unique())
    assert held.rows_out == len(written) and held.rows_in == len(events)


def test_hold_out_without_sessions_cuts_the_last_purchase_day(tmp_path: Path) -> None:
    # given a CSV log without session ids: u1 buys on two days, u2 on one day only
    source = tmp_path / "source"
    source.mkdir()
    rows = [
        ("u1", "a", "purchase", "2026-01-01T10:00:00Z"),
        ("u1", "b", "purchase", "2026-01-01T10:00:05Z"),
        ("u1", "c", "view", "2026-01-03T08:00:00Z"),  # looked at on the target's day
        ("u1", "a", "purchase", "2026-01-03T18:00:00Z"),
        ("u1", "c", "purchase", "2026-01-03T18:00:01Z"),
        ("u2", "b", "purchase", "2026-01-02T09:00:00Z"),
    ]
    pd.DataFrame(rows, columns=[c.USER_ID, c.ITEM_ID, c.EVENT_TYPE, c.TIMESTAMP]).to_csv(
        source / "events.csv", index=False
    )
    # when the benchmark holds out the last basket
    held = nb.hold_out(source, tmp_path / "shop")
    written = pd.read_csv(tmp_path / "shop" / "events.csv", dtype=str)
    # then u1's last day goes whole (view included), u2's only basket too, and only u1 is
    # judged: u2 has no earlier purchase to learn from
    assert written.values.tolist() == [list(r) for r in rows[:2]]
    assert held.targets.values.tolist() == [["u1", "a"], ["u1", "c"]]
    assert held.judged == ["u1"] and held.without_history == 1
    assert held.rebuy_share == 0.5


def test_judge_recall_and_ndcg_by_hand() -> None:
    # given a basket of three items and a list that finds two of them, at ranks 1 and 3
    targets = pd.DataFrame({nb.USER: ["u"] * 3, nb.ITEM: ["a", "b", "c"]})
    lists = pd.DataFrame({nb.USER: ["u"] * 4, "rank": [1, 2, 3, 4], nb.ITEM: ["a", "x", "c", "y"]})
    # when judged at k=2 and k=10, with a second user who got no list at all
    at10 = nb.judge(lists, targets, ["u"], 10)
    at2 = nb.judge(lists, targets, ["u", "v"], 2)
    # then recall is the share of the basket found, NDCG's ideal is over min(|basket|, k)
    ideal3 = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert at10["recall@10"] == pytest.approx(2 / 3)
    assert at10["ndcg@10"] == pytest.approx((1 + 1 / np.log2(4)) / ideal3)
    assert at2["recall@2"] == pytest.approx((1 / 3) / 2)
    assert at2["ndcg@2"] == pytest.approx((1 / (1 + 1 / np.log2(3))) / 2)


def test_personal_frequency_orders_by_baskets_then_recency_and_fills_with_popular() -> None:
    # given u's baskets: a twice, b once (latest), c once (earlier); p is popular elsewhere
    t = pd.to_datetime(["2026-01-01", "2026-01-01", "2026-01-05", "2026-01-09", "2026-01-02"])
    history = pd.DataFrame(
        {
            nb.USER: ["u", "u", "u", "u", "v"],
            nb.ITEM: ["a", "c", "a", "b", "p"],
            "basket": ["1", "1", "2", "3", "4"],
            "t": t.tz_localize("UTC"),
        }
    )
    # when u's list of four is made
    lists = nb.personal_lists(history, ["u"], ["a", "p", "b", "c"], 4)
    # then u's own items come first, most baskets first and the latest among equals, then p
    assert lists[nb.ITEM].tolist() == ["a", "b", "c", "p"]
    assert lists["rank"].tolist() == [1, 2, 3, 4]


@pytest.mark.slow
def test_benchmark_runs_end_to_end_at_tiny_scale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a tiny grocery shop, held out and run through ingest, train and recommend
    code = nb.main(
        [
            "--scale",
            "tiny",
            "--seed",
            "3",
            "--workdir",
            str(tmp_path / "bench"),
            "--json",
            str(tmp_path / "figures.json"),
        ]
    )
    printed = capsys.readouterr().out
    figures = json.loads((tmp_path / "figures.json").read_text())
    # then it prints its table with every list, and every step succeeded
    assert code == 0, printed
    for row in ("recsys (platform)", "personal frequency", "global popularity"):
        assert row in printed
    assert [s["name"] for s in figures["steps"]] == ["generate", "ingest", "train", "recommend"]
    # and the figures are proper shares; users rebuy here, so training allowed rebuys and the
    # platform's lists are mostly the users' own items, well above global popularity
    metrics = figures["metrics"]
    assert all(
        0.0 <= v["recall@10"] <= 1.0 and 0.0 <= v["ndcg@10"] <= 1.0 for v in metrics.values()
    )
    assert figures["rebuy"]["allowed"] is True
    assert figures["rebought_in_lists"] > 0.5
    platform, popular = metrics["recsys (platform)"], metrics["global popularity"]
    assert platform["ndcg@10"] > popular["ndcg@10"]

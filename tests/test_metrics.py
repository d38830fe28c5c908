"""Ranking metrics on tiny hand-made lists, every expected value worked out by hand."""

from math import log2

import pandas as pd
import pytest

from recsys import columns as c
from recsys.errors import RecsysError
from recsys.metrics import RANK, REQUEST_ID, by_segment, per_request, summarise

REQ = REQUEST_ID
TIGHT = 1e-12


def _recs(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[REQ, c.ITEM_ID, RANK])


def _targets(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[REQ, c.ITEM_ID])


# r1: targets {a, c}, list [a, b, c, d]
# r2: targets {x, y, z}, list [b, x, q, y, z]  (y, z beyond both cut-offs)
# r3: target {a}, no recommendation at all
# r4: recommendations but no target: not judged, its items m, n must not count anywhere
RECS = _recs(
    [
        ("r1", "a", 1),
        ("r1", "b", 2),
        ("r1", "c", 3),
        ("r1", "d", 4),
        ("r2", "b", 1),
        ("r2", "x", 2),
        ("r2", "q", 3),
        ("r2", "y", 4),
        ("r2", "z", 5),
        ("r4", "m", 1),
        ("r4", "n", 2),
    ]
)
TARGETS = _targets(
    [
        ("r1", "a"),
        ("r1", "c"),
        ("r1", "a"),  # duplicate: without dropping it, r1 would have 3 targets
        ("r2", "x"),
        ("r2", "y"),
        ("r2", "z"),
        ("r3", "a"),
    ]
)
KS = (2, 3)
L3 = log2(3)  # discount 1/log2(r+1) of rank 2 is 1/log2 3; of rank 1 it is 1, of rank 3 it is 1/2

# r1 @2: hit a@1. precision 1/2, recall 1/2, DCG 1, IDCG (min(2,2)=2 hits) 1 + 1/log2 3,
#        map (1/1) / min(2,2) = 1/2
# r1 @3: hits a@1, c@3. precision 2/3, recall 2/2, DCG 1 + 1/2, IDCG 1 + 1/log2 3,
#        map (1/1 + 2/3) / min(2,3) = 5/6; mrr 1/1
# r2 @2: hit x@2. precision 1/2, recall 1/3, DCG 1/log2 3, IDCG (2 hits) 1 + 1/log2 3,
#        map (1/2) / min(3,2) = 1/4
# r2 @3: hit x@2 only (y@4, z@5 are beyond k). precision 1/3, recall 1/3, DCG 1/log2 3,
#        IDCG (3 hits) 1 + 1/log2 3 + 1/2, map (1/2) / min(3,3) = 1/6; mrr 1/2
# r3: no recommendation, every metric 0
EXPECTED = {
    "r1": {
        "precision@2": 1 / 2,
        "precision@3": 2 / 3,
        "recall@2": 1 / 2,
        "recall@3": 1.0,
        "ndcg@2": 1 / (1 + 1 / L3),
        "ndcg@3": 1.5 / (1 + 1 / L3),
        "map@2": 1 / 2,
        "map@3": 5 / 6,
        "hit_rate@2": 1.0,
        "hit_rate@3": 1.0,
        "mrr": 1.0,
    },
    "r2": {
        "precision@2": 1 / 2,
        "precision@3": 1 / 3,
        "recall@2": 1 / 3,
        "recall@3": 1 / 3,
        "ndcg@2": (1 / L3) / (1 + 1 / L3),
        "ndcg@3": (1 / L3) / (1.5 + 1 / L3),
        "map@2": 1 / 4,
        "map@3": 1 / 6,
        "hit_rate@2": 1.0,
        "hit_rate@3": 1.0,
        "mrr": 1 / 2,
    },
    "r3": dict.fromkeys(
        [f"{m}@{k}" for m in ("precision", "recall", "ndcg", "map", "hit_rate") for k in KS]
        + ["mrr"],
        0.0,
    ),
}


@pytest.mark.unit
def test_per_request_gives_every_metric_at_every_cut_off() -> None:
    # given three judged requests (one without recommendations) and one unjudged request
    # when
    frame = per_request(RECS, TARGETS, ks=KS)
    # then one row per request of the targets, in their order, and the hand-computed values
    assert list(frame.index) == ["r1", "r2", "r3"]
    assert frame.index.name == REQ
    assert list(frame.columns) == [
        "precision@2",
        "precision@3",
        "recall@2",
        "recall@3",
        "ndcg@2",
        "ndcg@3",
        "map@2",
        "map@3",
        "hit_rate@2",
        "hit_rate@3",
        "mrr",
    ]
    for request, metrics in EXPECTED.items():
        for name, value in metrics.items():
            assert frame.loc[request, name] == pytest.approx(value, abs=TIGHT), (request, name)


@pytest.mark.unit
def test_request_without_recommendations_counts_as_all_miss() -> None:
    # given targets for r3 but no recommendation for it, and an empty recommendation frame
    empty = RECS.iloc[0:0]
    # when
    frame = per_request(RECS, TARGETS, ks=KS)
    nothing = per_request(empty, TARGETS, ks=KS)
    # then r3 is present with zeros, and every request is zero when nothing is recommended
    assert (frame.loc["r3"] == 0.0).all()
    assert list(nothing.index) == ["r1", "r2", "r3"]
    assert (nothing.to_numpy() == 0.0).all()


@pytest.mark.unit
def test_duplicate_targets_are_dropped_before_counting() -> None:
    # given r1 with target a listed twice: {a, a, c} is the set {a, c}
    # when
    frame = per_request(RECS, TARGETS, ks=KS)
    # then r1 has 2 targets: recall@3 = 2/2 (not 2/3), map@2 divides by min(2,2) = 2
    assert frame.loc["r1", "recall@3"] == pytest.approx(1.0, abs=TIGHT)
    assert frame.loc["r1", "map@2"] == pytest.approx(0.5, abs=TIGHT)


@pytest.mark.unit
def test_ranks_beyond_k_are_ignored_but_count_for_mrr() -> None:
    # given r9 with target t only at rank 4 of a 4-item list
    recs = _recs([("r9", "u", 1), ("r9", "v", 2), ("r9", "w", 3), ("r9", "t", 4)])
    targets = _targets([("r9", "t")])
    # when
    frame = per_request(recs, targets, ks=(1, 3))
    # then nothing hits at k = 1 or 3, while mrr sees the hit at rank 4: 1/4
    row = frame.loc["r9"]
    assert row["precision@3"] == 0.0
    assert row["recall@3"] == 0.0
    assert row["ndcg@3"] == 0.0
    assert row["map@3"] == 0.0
    assert row["hit_rate@3"] == 0.0
    assert row["hit_rate@1"] == 0.0
    assert row["mrr"] == pytest.approx(0.25, abs=TIGHT)


@pytest.mark.unit
def test_precision_divides_by_k_not_by_the_length_of_a_short_list() -> None:
    # given a one-item list that hits, judged at k = 3
    frame = per_request(_recs([("r", "a", 1)]), _targets([("r", "a")]), ks=(3,))
    # then precision@3 = 1/3, while recall, ndcg and map are perfect
    assert frame.loc["r", "precision@3"] == pytest.approx(1 / 3, abs=TIGHT)
    assert frame.loc["r", "recall@3"] == 1.0
    assert frame.loc["r", "ndcg@3"] == pytest.approx(1.0, abs=TIGHT)
    assert frame.loc["r", "map@3"] == pytest.approx(1.0, abs=TIGHT)


@pytest.mark.unit
def test_an_item_listed_twice_is_a_hit_only_once() -> None:
    # given target a listed at ranks 1 and 2
    frame = per_request(_recs([("r", "a", 1), ("r", "a", 2)]), _targets([("r", "a")]), ks=(2,))
    # then the second listing is a miss: precision@2 = 1/2, recall@2 = 1 (not 2),
    # ndcg@2 = 1/1, map@2 = (1/1)/min(1,2) = 1
    assert frame.loc["r", "precision@2"] == pytest.approx(0.5, abs=TIGHT)
    assert frame.loc["r", "recall@2"] == pytest.approx(1.0, abs=TIGHT)
    assert frame.loc["r", "ndcg@2"] == pytest.approx(1.0, abs=TIGHT)
    assert frame.loc["r", "map@2"] == pytest.approx(1.0, abs=TIGHT)


@pytest.mark.unit
def test_revenue_sums_prices_of_hits_and_a_missing_price_counts_zero() -> None:
    # given prices for a, c, y and b (b is never a hit), none for x
    prices = pd.Series({"a": 10.0, "c": 4.0, "y": 7.0, "b": 100.0})
    # when
    frame = per_request(RECS, TARGETS, ks=KS, prices=prices)
    # then r1: @2 hit a = 10, @3 hits a + c = 14; r2: only hit x (no price) = 0, y@4 is beyond
    # k; r3: 0
    assert frame["revenue@2"].to_dict() == pytest.approx({"r1": 10.0, "r2": 0.0, "r3": 0.0})
    assert frame["revenue@3"].to_dict() == pytest.approx({"r1": 14.0, "r2": 0.0, "r3": 0.0})
    assert list(frame.columns[-3:]) == ["revenue@2", "revenue@3", "mrr"]


@pytest.mark.unit
def test_revenue_columns_are_omitted_without_prices() -> None:
    frame = per_request(RECS, TARGETS, ks=KS)
    assert not [name for name in frame.columns if name.startswith("revenue")]


@pytest.mark.unit
def test_summarise_means_coverage_and_novelty() -> None:
    # given a catalogue of 10 items and interaction counts for four of them
    popularity = pd.Series({"a": 5, "b": 3, "c": 0, "x": 1})
    prices = pd.Series({"a": 10.0, "c": 4.0, "y": 7.0})
    # when
    result = summarise(
        RECS, TARGETS, ks=KS, catalogue_size=10, item_popularity=popularity, prices=prices
    )
    # then means over r1, r2, r3 (r4 is not judged)
    expected = {
        name: (EXPECTED["r1"][name] + EXPECTED["r2"][name] + EXPECTED["r3"][name]) / 3
        for name in EXPECTED["r1"]
    }
    # precision@2 = (1/2 + 1/2 + 0)/3 = 1/3, recall@3 = (1 + 1/3 + 0)/3 = 4/9, mrr = 1.5/3
    assert expected["precision@2"] == pytest.approx(1 / 3, abs=TIGHT)
    assert expected["recall@3"] == pytest.approx(4 / 9, abs=TIGHT)
    assert expected["mrr"] == pytest.approx(0.5, abs=TIGHT)
    # revenue@2 = (10 + 0 + 0)/3, revenue@3 = (14 + 0 + 0)/3
    expected["revenue@2"] = 10 / 3
    expected["revenue@3"] = 14 / 3
    # coverage@2: {a, b} of r1 and {b, x} of r2 = 3 distinct items / 10 (r4's m, n not counted)
    # coverage@3: {a, b, c, x, q} = 5 / 10
    expected["coverage@2"] = 0.3
    expected["coverage@3"] = 0.5
    # novelty: counts sum 9 over 4 items; recommended to judged requests but unknown to the
    # counts: d, q, y, z, so n_items = 8 and p(item) = (count + 1) / (9 + 8):
    # p(a) = 6/17, p(b) = 4/17, p(c) = 1/17, p(x) = 2/17, p(q) = 1/17
    # @2 pairs: (r1,a) (r1,b) (r2,b) (r2,x); @3 adds (r1,c) (r2,q)
    at2 = [log2(17 / 6), log2(17 / 4), log2(17 / 4), log2(17 / 2)]
    expected["novelty@2"] = sum(at2) / 4
    expected["novelty@3"] = (sum(at2) + log2(17) + log2(17)) / 6
    assert result == pytest.approx(expected, abs=TIGHT)
    assert list(result) == [
        "precision@2",
        "precision@3",
        "recall@2",
        "recall@3",
        "ndcg@2",
        "ndcg@3",
        "map@2",
        "map@3",
        "hit_rate@2",
        "hit_rate@3",
        "revenue@2",
        "revenue@3",
        "mrr",
        "coverage@2",
        "coverage@3",
        "novelty@2",
        "novelty@3",
    ]
    assert all(type(value) is float for value in result.values())


@pytest.mark.unit
def test_summarise_omits_optional_metrics_and_sorts_cut_offs() -> None:
    # given cut-offs out of order and repeated, and no catalogue, popularity or prices
    result = summarise(RECS, TARGETS, ks=(3, 2, 3))
    # then the same keys as for ks=(2, 3), without revenue, coverage or novelty
    assert list(result) == list(per_request(RECS, TARGETS, ks=KS).columns)


@pytest.mark.unit
def test_by_segment_averages_each_label_and_counts_its_requests() -> None:
    # given four requests; 1 is new, 2 and 3 are heavy, 4 is in no segment, and the
    # segments mention request 5 that was not judged
    per = pd.DataFrame(
        {"precision@10": [1.0, 0.5, 0.0, 0.25], "mrr": [1.0, 0.5, 0.25, 0.0]},
        index=pd.Index([1, 2, 3, 4], name=REQ),
    )
    segments = pd.Series({1: "new", 2: "heavy", 3: "heavy", 5: "light"})
    # when
    result = by_segment(per, segments)
    # then heavy = mean of 2 and 3: precision (0.5 + 0)/2, mrr (0.5 + 0.25)/2; new = request 1;
    # light has no judged request and is left out
    assert result == {
        "heavy": {"precision@10": 0.25, "mrr": 0.375, "requests": 2},
        "new": {"precision@10": 1.0, "mrr": 1.0, "requests": 1},
    }
    assert list(result) == ["heavy", "new"]
    assert type(result["heavy"]["requests"]) is int
    assert type(result["heavy"]["mrr"]) is float


@pytest.mark.unit
def test_by_segment_of_per_request_output() -> None:
    # given r1 and r2 in one segment, r3 in no segment
    per = per_request(RECS, TARGETS, ks=KS)
    # when
    result = by_segment(per, pd.Series({"r1": "all", "r2": "all"}))
    # then precision@2 = (1/2 + 1/2)/2 and mrr = (1 + 1/2)/2 over 2 requests
    assert result["all"]["precision@2"] == pytest.approx(0.5, abs=TIGHT)
    assert result["all"]["mrr"] == pytest.approx(0.75, abs=TIGHT)
    assert result["all"]["requests"] == 2


@pytest.mark.unit
@pytest.mark.parametrize(
    ("recs", "targets", "column"),
    [
        (RECS.drop(columns=[RANK]), TARGETS, RANK),
        (RECS.drop(columns=[REQ]), TARGETS, REQ),
        (RECS, TARGETS.drop(columns=[c.ITEM_ID]), c.ITEM_ID),
    ],
)
def test_a_missing_column_is_named_in_the_error(
    recs: pd.DataFrame, targets: pd.DataFrame, column: str
) -> None:
    # given a frame without a required column
    # when / then
    with pytest.raises(RecsysError, match=f"missing column.*'{column}'"):
        per_request(recs, targets, ks=KS)
    with pytest.raises(RecsysError, match=f"missing column.*'{column}'"):
        summarise(recs, targets, ks=KS)


@pytest.mark.unit
@pytest.mark.parametrize("ks", [(0,), (5, -1), ()])
def test_a_cut_off_below_one_is_refused(ks: tuple[int, ...]) -> None:
    with pytest.raises(RecsysError, match="ks:"):
        per_request(RECS, TARGETS, ks=ks)
    with pytest.raises(RecsysError, match="ks:"):
        summarise(RECS, TARGETS, ks=ks)


@pytest.mark.unit
def test_a_repeated_rank_within_a_request_is_refused() -> None:
    # given two items at rank 1 of r1
    recs = _recs([("r1", "a", 1), ("r1", "c", 1)])
    # when / then
    with pytest.raises(RecsysError, match="unique within each"):
        per_request(recs, TARGETS, ks=KS)

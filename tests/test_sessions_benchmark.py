"""The session benchmark's own judge and baselines, on tiny hand-made sessions.

The platform's figures on Tmall are only as good as the code that scores them: P@20 and
MRR@20 over every case (a case without a list is a miss, a prefix item may be the answer),
and the two baselines the platform is compared with, computed from training sessions only.
"""

import gzip
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import sessions

pytestmark = pytest.mark.unit

# clicks: a 3, b 3, c 2, d 1 (a is seen before b: the more popular on a tie)
TRAIN = [["a", "b", "c"], ["a", "b"], ["b", "c", "a"], ["d"]]


def test_judge_counts_every_case_and_the_rank_of_the_target() -> None:
    # given four cases: a hit at rank 2, a hit at rank 1 (the prefix's own item), no list,
    # and a miss
    lists = [["x", "t", "y"], ["t"], None, ["a", "b"]]
    targets = ["t", "t", "t", "z"]
    # when they are judged at 20
    got = sessions.judge(lists, targets)
    # then P@20 is 2 of 4 and MRR@20 is (1/2 + 1) / 4
    assert got == {"p@20": 0.5, "mrr@20": 0.375}


def test_judge_looks_only_at_the_first_k_items() -> None:
    # given a list whose third item is the target
    # when it is judged at 2 and at 3
    # then it misses at 2 and hits with 1/3 at 3
    assert sessions.judge([["a", "b", "t"]], ["t"], k=2) == {"p@2": 0.0, "mrr@2": 0.0}
    assert sessions.judge([["a", "b", "t"]], ["t"], k=3) == {"p@3": 1.0, "mrr@3": 1 / 3}


def test_judge_refuses_lists_that_do_not_match_the_cases() -> None:
    # given one list for two cases
    # when judged
    # then it says so instead of scoring
    with pytest.raises(ValueError, match="1 lists for 2 cases"):
        sessions.judge([["a"]], ["a", "b"])


def test_successor_of_the_last_item_with_and_without_popularity_fill() -> None:
    # given the training sessions (a -> b twice, b -> c twice, c -> a once)
    baselines = sessions.Baselines(TRAIN)
    # when the successor lists of a few prefixes are asked
    # then only the last item counts; unfilled lists hold only successors, filled ones are
    # completed with the most clicked items not already in them
    assert baselines.successor_list(["c", "a"], k=3) == ["b"]
    assert baselines.successor_list(["c", "a"], k=3, fill=True) == ["b", "a", "c"]
    assert baselines.successor_list(["a", "c"], k=3) == ["a"]
    assert baselines.successor_list(["unseen"], k=3) == []
    assert baselines.successor_list(["unseen"], k=2, fill=True) == ["a", "b"]


def test_cooccurrence_weights_each_step_back_by_0_8() -> None:
    # given the training sessions: a and b share 3 sessions, a and c 2, b and c 2
    baselines = sessions.Baselines(TRAIN)
    # when the prefix is "c a" (a is the last click: weight 1; c before it: 0.8)
    got = baselines.cooccurrence_list(["c", "a"], k=4)
    # then b scores 3 + 0.8 * 2 = 4.6, c 2, a 0.8 * 2 = 1.6 (a prefix item may be proposed),
    # and d, co-occurring with nothing, comes from the popularity fill
    assert got == ["b", "c", "a", "d"]
    assert baselines.cooccurrence_list(["c", "a"], k=2) == ["b", "c"]


def test_cases_are_read_from_the_raw_test_file(tmp_path: Path) -> None:
    # given a test file of two cases (target TAB prefix), with a blank line between them
    path = tmp_path / "test.txt.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("7\t3 5 3\n\n5\t3\n")
    # when it is read
    cases = sessions.read_cases(path)
    # then each case keeps its line number as id, its target and its prefix in click order
    assert cases["case_id"].tolist() == [1, 3]
    assert cases["target"].tolist() == ["7", "5"]
    assert cases["prefix"].tolist() == [["3", "5", "3"], ["3"]]


def test_by_repeat_judges_clicks_again_apart_from_items_new_to_the_session() -> None:
    # given a hit on a prefix item at rank 1, a miss on a prefix item, and a new item at rank 2
    lists = [["a", "x"], ["y"], ["q", "n"]]
    targets = ["a", "b", "n"]
    prefixes = [["a"], ["b", "c"], ["c"]]
    # when split by whether the target was clicked before in the session
    got = sessions.by_repeat(lists, targets, prefixes)
    # then two of three cases are clicks again, one found at rank 1; the new one at rank 2
    assert got == {
        "again_share": 2 / 3,
        "again_p@20": 0.5,
        "again_mrr@20": 0.5,
        "new_p@20": 1.0,
        "new_mrr@20": 0.5,
    }

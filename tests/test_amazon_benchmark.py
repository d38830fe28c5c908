"""The real-data benchmark never lets the answer in: each user's last item stays with the judge.

A tiny hand-made sequence file goes through the benchmark's hold-out and the product's own
converter; nothing the platform would ingest may hold a user's target, and nothing else of
the sequences may be lost.
"""

import gzip
import sys
from pathlib import Path

import pandas as pd
import pytest

from lake.sequences import ITEM, USER, convert_sequences

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import amazon

pytestmark = pytest.mark.unit

SEQUENCES = ["u1 a b c d", "u2 c a", "u3 e", "u4 b b d a"]


def test_no_target_enters_the_files_the_platform_ingests(tmp_path: Path) -> None:
    # given a sequence file (u3 has a single item; u4 reviews b twice)
    raw = tmp_path / "raw.txt.gz"
    with gzip.open(raw, "wt") as handle:
        handle.write("\n".join(SEQUENCES) + "\n")
    # when the benchmark writes the platform's input and the product converts it
    histories = tmp_path / "input" / "raw.txt.gz"
    written, held = amazon.write_histories(raw, histories)
    convert_sequences(histories, tmp_path / "shop")
    events = pd.read_csv(tmp_path / "shop" / "events.csv", dtype=str)
    # then every user's answer is held out, and u3, with nothing before it, is not written
    assert (written, held) == (3, 4)
    target, history = amazon.read_sequences(raw)
    assert dict(zip(target["user_id"], target["target"], strict=True)) == {
        "u1": "d",
        "u2": "a",
        "u3": "e",
        "u4": "a",
    }
    # and the shop files hold exactly each history, in order, and no (user, target) pair
    got = {u: g[ITEM].tolist() for u, g in events.groupby(USER, sort=True)}
    assert got == {"u1": ["a", "b", "c"], "u2": ["c"], "u4": ["b", "b", "d"]}
    pairs = set(zip(events[USER], events[ITEM], strict=True))
    assert not pairs & set(zip(target["user_id"], target["target"], strict=True))
    assert sorted(zip(history["user_id"], history["item_id"], strict=True)) == sorted(
        zip(events[USER], events[ITEM], strict=True)
    )


def test_judging_counts_every_user_of_the_file_and_flags_history_items() -> None:
    # given the targets of four users and lists for two of them
    target = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u4"], "target": ["d", "a", "e", "a"]})
    history = pd.DataFrame({"user_id": ["u1", "u1"], "item_id": ["a", "b"]})
    recs = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u2"],
            "rank": [1, 2, 1, 2],
            "item_id": ["b", "d", "a", "c"],
        }
    )
    # when judged
    out = amazon.Outcome("Toys_and_Games")
    amazon.judge(recs, target, history, out)
    # then hits at ranks 2 (u1) and 1 (u2) over all four users, and u1's 'b' is a violation
    assert out.metrics["hr@10"] == 0.5
    assert out.metrics["ndcg@10"] == pytest.approx((1 / 1.584962500721156 + 1.0) / 4)
    assert out.history_violations == 1 and out.users_with_violations == 1
    assert out.users_short_lists == 4

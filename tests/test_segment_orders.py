"""Which segments a simple list serves: exact choices on hand-made per-request figures."""

import numpy as np
import pytest

from training.segment_orders import choose

pytestmark = pytest.mark.unit


def test_a_source_better_beyond_noise_serves_its_segment_and_no_other() -> None:
    # given 60 light and 60 heavy users' requests: on light users the repeat order scores 0.5
    # against the ranker's 0.2 on every request; on heavy users both are the same
    segments = np.array(["light_users"] * 60 + ["heavy_users"] * 60)
    ranker = np.r_[np.full(60, 0.2), np.tile([0.1, 0.5], 30)]
    repeat = np.r_[np.full(60, 0.5), np.tile([0.5, 0.1], 30)]
    als = np.r_[np.full(60, 0.1), np.full(60, 0.0)]
    # when the orders are chosen
    chosen, evidence = choose({"ranker": ranker, "repeat": repeat, "als": als}, segments)
    # then light users are served by repeat, heavy users stay with the ranker
    assert chosen == {"light_users": "repeat"}
    assert evidence["light_users"]["served_by"] == "repeat"
    assert evidence["light_users"]["requests"] == 60
    assert evidence["light_users"]["difference_ci95"] == pytest.approx([0.3, 0.3])
    assert evidence["heavy_users"]["served_by"] == "ranker"
    assert evidence["heavy_users"]["ranker"] == pytest.approx(0.3)
    # and a segment without requests is reported, served by the ranker
    assert evidence["regular_users"] == {
        "requests": 0,
        "ranker": None,
        "repeat": None,
        "als": None,
        "served_by": "ranker",
    }


def test_too_few_requests_never_hand_a_segment_to_a_simple_list() -> None:
    # given a source far better than the ranker, but on 49 requests only
    segments = np.array(["regular_users"] * 49)
    chosen, evidence = choose({"ranker": np.zeros(49), "covisit": np.ones(49)}, segments)
    # then the ranker keeps the segment
    assert chosen == {}
    assert evidence["regular_users"]["served_by"] == "ranker"
    assert "difference_ci95" not in evidence["regular_users"]

"""Session-KNN on tiny hand-made sessions with exact expected votes."""

import math

import numpy as np
import pandas as pd
import pytest

from recommender.catalog import Catalog, Vocabulary
from recommender.config import SessionKnnConfig
from recommender.sources.sknn import SessionKnnSource, session_numbers
from recommender.state import ITEM, KIND, REQ, TS, WEIGHT, Batch, Exclusions
from recsys import columns as c

pytestmark = pytest.mark.unit


def _events(session_ids: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
    """Three past sessions (an event frame sorted by user and time)."""
    rows = [
        ("a", 0, 0.0, "s0"),
        ("a", 1, 60.0, "s0"),
        ("a", 2, 120.0, "s0"),
        ("a", 0, 7_200.0, "s1"),  # two hours later: another session
        ("a", 3, 7_260.0, "s1"),
        ("b", 4, 0.0, "s2"),
        ("b", 5, 60.0, "s2"),
    ]
    frame = pd.DataFrame(rows, columns=[c.USER_ID, ITEM, TS, c.SESSION_ID])
    frame[WEIGHT] = 1.0
    if not session_ids:
        frame = frame.drop(columns=c.SESSION_ID)
    return frame, Vocabulary(["a", "b"]).rows(frame[c.USER_ID])


def _batch(history: list[list[int]]) -> Batch:
    """One request per history (oldest item first), views a minute apart."""
    requests = pd.DataFrame(
        {REQ: np.arange(len(history)), c.USER_ID: [f"r{i}" for i in range(len(history))]}
    )
    requests[TS] = 1e6
    rows = [(r, item, 1e6 - 60 * (len(h) - k), 0, 1.0) for r, h in enumerate(history)
            for k, item in enumerate(h)]  # fmt: skip
    hist = pd.DataFrame(rows, columns=[REQ, ITEM, TS, KIND, WEIGHT]).astype(
        {REQ: np.int64, ITEM: np.int64}
    )
    return Batch(requests, hist, pd.DataFrame({REQ: [], ITEM: []}, dtype=np.int64))


def _fit(**config) -> SessionKnnSource:
    events, users = _events()
    source = SessionKnnSource(SessionKnnConfig(recency_weight=0.0, **config))
    source.fit(events, users, n_items=6)
    return source


def test_sessions_are_session_ids_or_runs_without_a_half_hour_pause() -> None:
    # given the same events with and without session ids
    with_ids, users = _events()
    without, _ = _events(session_ids=False)
    # then both cut them into the same three sessions
    assert session_numbers(with_ids, users).tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert session_numbers(without, users).tolist() == [0, 0, 0, 1, 1, 2, 2]


def test_votes_are_similarity_over_root_length_times_idf() -> None:
    # given a request that clicked item 0
    source = _fit()
    batch = _batch([[0]])
    pairs = pd.DataFrame({REQ: [0] * 6, ITEM: np.arange(6)})
    # when the sessions vote
    votes = source.feature_columns(batch, pairs)["sknn_score"]
    # then s0 (3 items) votes 1/sqrt(3), s1 (2 items) 1/sqrt(2), each times the item's IDF
    s0, s1 = 1 / math.sqrt(3), 1 / math.sqrt(2)
    idf_once, idf_twice = math.log(3 / 1), math.log(3 / 2)
    expected = [(s0 + s1) * idf_twice, s0 * idf_once, s0 * idf_once, s1 * idf_once, 0.0, 0.0]
    assert votes == pytest.approx(expected)


def test_the_newest_items_weigh_most_and_only_the_nearest_sessions_vote() -> None:
    # given a request that clicked 4 and then 0, and one neighbour allowed
    source = _fit(neighbours=1)
    pairs = pd.DataFrame({REQ: [0] * 6, ITEM: np.arange(6)})
    votes = source.feature_columns(_batch([[4, 0]]), pairs)["sknn_score"]
    # then 0 weighs 1 and 4 weighs 1/2: s1 (1/sqrt 2 = 0.71) beats s0 (0.58) and s2 (0.35)
    assert np.flatnonzero(votes).tolist() == [0, 3]
    assert votes[3] == pytest.approx(math.log(3) / math.sqrt(2))


def test_proposals_keep_the_best_candidates_and_the_sessions_own_items() -> None:
    # given a request that clicked item 0, two candidates asked
    source = _fit(candidates=2)
    batch = _batch([[0]])
    products = pd.DataFrame({c.ITEM_ID: [f"p{i}" for i in range(6)]})
    catalog = Catalog.build(products, pd.DataFrame({c.ITEM_ID: []}))
    exclusions = Exclusions(batch, catalog, allow_rebuy=False)
    # when it proposes
    reqs, items, scores = source.proposals(batch, exclusions)
    # then item 3 (0.78) and one of the tied 1 and 2 (0.63) come, best first
    assert reqs.tolist() == [0, 0]
    assert items[0] == 3 and items[1] in (1, 2)
    assert scores == pytest.approx([math.log(3) / math.sqrt(2), math.log(3) / math.sqrt(3)])


def test_a_grown_catalogue_has_no_votes_for_its_new_items() -> None:
    # given a fitted source and two products added after training
    source = _fit()
    source.grow(8)
    pairs = pd.DataFrame({REQ: [0] * 8, ITEM: np.arange(8)})
    # then a request is answered over the larger catalogue, the new items without votes
    votes = source.feature_columns(_batch([[0]]), pairs)["sknn_score"]
    assert len(votes) == 8 and votes[6:].tolist() == [0.0, 0.0]

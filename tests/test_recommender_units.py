"""The recommender's building blocks on tiny hand-made frames, with exact expected values.

Availability rules, top-n selection, co-visitation matrices, vocabularies, candidate merging
and the turning of stored features into ranker inputs.
"""

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix

from recommender import candidates as cand
from recommender.catalog import Catalog, Vocabulary
from recommender.config import CovisitConfig, PopularityConfig, RepeatConfig
from recommender.ranker import choose_rounds, ndcg_at_10
from recommender.sources.covisit import CovisitSource
from recommender.sources.popularity import PopularitySource, top_stable
from recommender.sources.repeat import RepeatSource
from recommender.state import (
    ITEM,
    KIND,
    REQ,
    TS,
    WEIGHT,
    Batch,
    Exclusions,
    attach_segments,
    top_n,
    top_n_sparse,
    user_segments,
)
from recommender.stored import ranker_inputs
from recsys import columns as c

pytestmark = pytest.mark.unit

DAY = 86_400.0
T0 = pd.Timestamp("2025-06-01", tz="UTC").timestamp()


def _catalog(created: dict[str, str | None]) -> Catalog:
    """Items in the given order with their launch instants (None: unknown, always available)."""
    products = pd.DataFrame(
        {
            c.ITEM_ID: list(created),
            c.CREATED_AT: pd.to_datetime(list(created.values()), utc=True),
        }
    )
    return Catalog.build(products, pd.DataFrame({c.ITEM_ID: []}))


def _batch(
    ts: list[float],
    bought: list[tuple[int, int]] = (),
    history: list[tuple[int, int, float, int, float]] = (),
) -> Batch:
    requests = pd.DataFrame(
        {
            REQ: np.arange(len(ts)),
            c.USER_ID: [f"u{i}" for i in range(len(ts))],
            "user": np.arange(len(ts)),
            TS: np.asarray(ts, dtype=np.float64),
            c.COUNTRY: "?",
            "demo": "?",
            c.DEVICE: "?",
        }
    )
    hist = pd.DataFrame(list(history), columns=[REQ, ITEM, TS, KIND, WEIGHT]).astype(
        {REQ: np.int64, ITEM: np.int64, TS: np.float64, KIND: np.int8, WEIGHT: np.float32}
    )
    bought_frame = pd.DataFrame(list(bought), columns=[REQ, ITEM], dtype=np.int64)
    return Batch(requests, hist, bought_frame, hist[[REQ, ITEM]].drop_duplicates())


# ------------------------------------------------------------------------ Exclusions
CATALOG = _catalog(
    {
        "a": "2025-01-01",  # long launched
        "b": "2025-06-01",  # launched exactly at T0
        "c": "2025-06-10",  # launched between the two requests
        "d": None,  # launch unknown: always available
    }
)
REQUEST_TS = [T0, T0 + 20 * DAY]


def _all_pairs(n_reqs: int, n_items: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            REQ: np.repeat(np.arange(n_reqs), n_items),
            ITEM: np.tile(np.arange(n_items), n_reqs),
        }
    )


def _pairs(frame: pd.DataFrame, catalog: Catalog = CATALOG) -> set[tuple[int, str]]:
    return {
        (int(r), str(catalog.items.ids[i]))
        for r, i in zip(frame[REQ].to_numpy(), frame[ITEM].to_numpy(), strict=True)
    }


def test_exclusions_drop_items_not_launched_yet_and_rebuys() -> None:
    # given request 0 at T0 (item c not launched yet) and request 1 later, who bought a and d
    batch = _batch(REQUEST_TS, bought=[(1, 0), (1, 3)])
    exclusions = Exclusions(batch, CATALOG, allow_rebuy=False)
    # when every (request, item) pair is filtered
    kept = exclusions.filter(_all_pairs(2, 4))
    # then c is gone for request 0 (a launch at the request instant counts as launched),
    # and request 1 loses its two purchases
    assert _pairs(kept) == {(0, "a"), (0, "b"), (0, "d"), (1, "b"), (1, "c")}


def test_exclusions_keep_rebuys_when_the_policy_allows_them() -> None:
    # given the same requests, but rebuys are allowed
    batch = _batch(REQUEST_TS, bought=[(1, 0), (1, 3)])
    exclusions = Exclusions(batch, CATALOG, allow_rebuy=True)
    # when
    kept = exclusions.filter(_all_pairs(2, 4))
    # then only the not-yet-launched item is excluded
    assert _pairs(kept) == {(0, "a"), (0, "b"), (0, "d"), (1, "a"), (1, "b"), (1, "c"), (1, "d")}


def test_exclusions_mask_a_dense_block_in_place_with_an_offset() -> None:
    # given the two requests and a score block holding only request 1's row
    batch = _batch(REQUEST_TS, bought=[(0, 1), (1, 0), (1, 3)])
    exclusions = Exclusions(batch, CATALOG, allow_rebuy=False)
    whole = np.ones((2, 4))
    second = np.ones((1, 4))
    # when the whole block and the single row (offset 1) are masked
    exclusions.mask_dense(whole)
    exclusions.mask_dense(second, offset=1)
    # then excluded cells are -inf: c before launch and b bought for request 0; a, d for 1
    inf = -np.inf
    assert whole.tolist() == [[1, inf, inf, 1], [inf, 1, 1, inf]]
    assert second.tolist() == [[inf, 1, 1, inf]]


def test_exclusions_mask_items_the_rules_forbid_for_every_request() -> None:
    # given the two requests and rules that leave only a and c
    batch = _batch(REQUEST_TS, bought=[(1, 0)])
    exclusions = Exclusions(batch, CATALOG, allow_rebuy=False, allowed=np.array([1, 0, 1, 0], bool))
    whole = np.ones((2, 4))
    # when masked twice (the forbidden items are found once and reused)
    exclusions.mask_dense(whole)
    exclusions.mask_dense(whole)
    # then b and d are -inf everywhere, c before its launch for request 0, a bought by 1
    inf = -np.inf
    assert whole.tolist() == [[1, inf, inf, inf], [inf, inf, 1, inf]]


# ------------------------------------------------------------------------ top n
def test_top_n_keeps_the_n_best_finite_cells_of_each_row() -> None:
    # given two rows with excluded (-inf) cells
    scores = np.array([[1.0, 5.0, 3.0, -np.inf], [-np.inf, -np.inf, 2.0, 7.0]])
    # when the best 2 and best 3 are taken, numbered from request 10
    two = top_n(scores, 2, offset=10)
    three = top_n(scores, 3, offset=10)
    # then each row keeps its best cells, and -inf cells never count as found
    as_set = lambda f: set(zip(f[REQ], f[ITEM], f["score"], strict=True))  # noqa: E731
    assert as_set(two) == {(10, 1, 5.0), (10, 2, 3.0), (11, 3, 7.0), (11, 2, 2.0)}
    assert as_set(three) == {(10, 1, 5.0), (10, 2, 3.0), (10, 0, 1.0), (11, 3, 7.0), (11, 2, 2.0)}
    # and asking for more than there are columns gives every finite cell
    assert len(top_n(scores, 9)) == 5


def test_top_n_sparse_keeps_the_n_largest_stored_values_and_skips_empty_rows() -> None:
    # given a CSR matrix with an empty middle row
    matrix = csr_matrix(np.array([[0, 2, 0, 1, 3], [0, 0, 0, 0, 0], [4, 0, 0, 0, 0]], float))
    # when the best 2 of each row are taken, numbered from request 5
    found = top_n_sparse(matrix, 2, offset=5)
    # then
    got = set(zip(found[REQ], found[ITEM], found["score"], strict=True))
    assert got == {(5, 4, 3.0), (5, 1, 2.0), (7, 0, 4.0)}


# ------------------------------------------------------------------------ co-visitation
def _covisit_events() -> tuple[pd.DataFrame, np.ndarray]:
    """Three users, sorted by user and time (an event frame)."""
    rows = [
        # user a: one session 0 -> 1 -> 2 (view, cart, purchase)
        ("a", 0, 0.0, 1.0, "s1"),
        ("a", 1, 100.0, 3.0, "s1"),
        ("a", 2, 200.0, 5.0, "s1"),
        # user b: 0 -> 2 in one session, then 3 two days later in another
        ("b", 0, 0.0, 1.0, "s2"),
        ("b", 2, 100.0, 1.0, "s2"),
        ("b", 3, 100.0 + 2 * DAY, 1.0, "s3"),
        # user c: item 1 twice, then 0 (a cart)
        ("c", 1, 0.0, 1.0, "s4"),
        ("c", 1, 50.0, 1.0, "s4"),
        ("c", 0, 100.0, 3.0, "s4"),
    ]
    frame = pd.DataFrame(rows, columns=[c.USER_ID, ITEM, TS, WEIGHT, c.SESSION_ID])
    return frame, Vocabulary(["a", "b", "c"]).rows(frame[c.USER_ID])


def _fit_covisit(neighbours: int = 100) -> CovisitSource:
    events, user_rows = _covisit_events()
    source = CovisitSource(CovisitConfig(follow_window=2, max_gap_days=1.0, neighbours=neighbours))
    source.fit(events, user_rows, n_users=3, n_items=4)
    return source


def test_covisit_follow_matrix_is_row_normalised_weight_of_what_came_next() -> None:
    # given the three users, 'next' = one of the 2 following events within 1 day
    # when
    follow = _fit_covisit().matrices["follow"].toarray()
    # then by hand (event weight of the later item / distance):
    #   0 -> 1: 3 (a);  0 -> 2: 5/2 (a) + 1 (b);  1 -> 2: 5 (a);  1 -> 0: 3 (c) + 3/2 (c);
    #   2 -> 3 is 2 days apart, 1 -> 1 is the same item: neither counts
    expected = np.array(
        [
            [0, 3 / 6.5, 3.5 / 6.5, 0],
            [4.5 / 9.5, 0, 5 / 9.5, 0],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
        ]
    )
    np.testing.assert_allclose(follow, expected, rtol=1e-12)


def test_covisit_session_matrix_is_symmetric_counts_within_one_session() -> None:
    # given the same events: pairs of the same session, 1/distance each way
    # when
    session = _fit_covisit().matrices["session"].toarray()
    # then 0-1: 1 (a) + 1 + 1/2 (c);  0-2: 1 (b) + 1/2 (a);  1-2: 1 (a);  b's 2-3 differ in
    # session; each row is then normalised
    expected = np.array(
        [
            [0, 2.5 / 4, 1.5 / 4, 0],
            [2.5 / 3.5, 0, 1 / 3.5, 0],
            [1.5 / 2.5, 1 / 2.5, 0, 0],
            [0, 0, 0, 0],
        ]
    )
    np.testing.assert_allclose(session, expected, rtol=1e-12)


def test_covisit_keeps_only_the_strongest_neighbours_before_normalising() -> None:
    # given one neighbour per item
    # when
    follow = _fit_covisit(neighbours=1).matrices["follow"].toarray()
    # then item 0 keeps 2 (3.5 > 3) and item 1 keeps 2 (5 > 4.5), each with all the mass
    assert follow.tolist() == [[0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


# ------------------------------------------------------------------------ vocabulary
def test_vocabulary_rows_are_positions_and_unknown_ids_are_minus_one() -> None:
    # given
    vocab = Vocabulary(["b", "a"])
    # when / then
    assert vocab.rows(["a", "z", "b"]).tolist() == [1, -1, 0]
    assert len(vocab) == 2


def test_vocabulary_rows_of_few_and_of_many_ids_agree() -> None:
    # given a vocabulary, and ids asked one by one (a request's few) or through an index
    vocab = Vocabulary([f"u{i}" for i in range(20)])
    asked = ["u3", "nope", "u3", "u19", "u0"]
    many = asked * 3  # (more than FEW: the index path)
    # when / then the same rows, unknown ids -1, repeated ids repeated
    assert vocab.rows(asked).tolist() == [3, -1, 3, 19, 0]
    assert vocab.rows(many).tolist() == [3, -1, 3, 19, 0] * 3
    assert vocab.rows([]).tolist() == []


def test_join_users_of_one_request_is_every_row_of_its_user_in_order() -> None:
    from recommender.state import join_users

    # given rows of three users
    rows_users = np.array(["a", "b", "a", "c", "a"], dtype=object)
    # when one request and two requests (the general path) join them
    one = join_users(np.array(["a"], dtype=object), rows_users)
    two = join_users(np.array(["a", "c"], dtype=object), rows_users)
    # then the one request gets a's rows in order, as in the general path
    assert one[0].tolist() == [0, 0, 0] and one[1].tolist() == [0, 2, 4]
    assert two[0].tolist() == [0, 0, 1, 0] and two[1].tolist() == [0, 2, 3, 4]
    assert join_users(np.array(["z"], dtype=object), rows_users)[1].tolist() == []


def test_vocabulary_add_appends_new_ids_in_order_and_keeps_known_rows() -> None:
    # given
    vocab = Vocabulary(["b", "a"])
    # when new and known ids are added
    rows = vocab.add(["c", "a", "d"])
    # then the known row is kept and the new ids come last, in the given order
    assert rows.tolist() == [2, 1, 3]
    assert vocab.ids.tolist() == ["b", "a", "c", "d"]
    assert vocab.rows(["d", "c"]).tolist() == [3, 2]


def test_vocabulary_add_returns_a_row_for_every_given_id_even_repeated_ones() -> None:
    # given ids with a repeat (the docstring: "returns the rows of all ``ids``"; Catalog.update
    # writes products[column] into facts.loc[rows], so it relies on one row per given id)
    vocab = Vocabulary(["b"])
    # when
    rows = vocab.add(["c", "b", "c"])
    # then one row per id, aligned with the input, and c is added once
    assert rows.tolist() == [1, 0, 1]
    assert vocab.ids.tolist() == ["b", "c"]


def test_vocabulary_rejects_repeated_ids() -> None:
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(["a", "a"])


# ------------------------------------------------------------------------ candidates
def _no_events() -> pd.DataFrame:
    """An empty event frame with the dtypes ``state.event_frame`` gives."""
    return pd.DataFrame(
        {
            c.USER_ID: pd.Series([], dtype=object),
            ITEM: pd.Series([], dtype=np.int64),
            TS: pd.Series([], dtype=np.float64),
            KIND: pd.Series([], dtype=np.int8),
            WEIGHT: pd.Series([], dtype=np.float32),
        }
    )


def _popularity() -> PopularitySource:
    """Popularity fitted at one instant on item i seen 6 - i times (i = 0..5)."""
    counts = [6, 5, 4, 3, 2, 1]
    events = pd.DataFrame(
        {
            c.USER_ID: "x",
            ITEM: np.repeat(np.arange(6), counts),
            TS: T0,
            WEIGHT: np.float32(2.0),
        }
    )
    source = PopularitySource(PopularityConfig(candidates=10))
    source.fit(events, user_segments(pd.DataFrame({c.USER_ID: ["x"]})), n_items=6)
    return source


def _tastes(events: list[tuple[str, int, float]]) -> PopularitySource:
    """Popularity over items 0, 1 (category A) and 2, 3 (B), fitted on ``(user, item, days
    before the last event)`` views; users h and l are 25-34 F GB, m is 55+ M DE."""
    frame = pd.DataFrame(events, columns=[c.USER_ID, ITEM, TS])
    frame[TS] = T0 - frame[TS] * DAY
    frame[WEIGHT] = np.float32(1.0)
    users = pd.DataFrame(
        {c.USER_ID: ["h", "l", "m"], c.AGE: [30, 30, 60], c.GENDER: ["F", "F", "M"]}
        | {c.COUNTRY: ["GB", "GB", "DE"]}
    )
    source = PopularitySource(PopularityConfig())
    source.fit(frame, user_segments(users), n_items=4, categories=np.array(["A", "A", "B", "B"]))
    return source


def test_segment_tastes_count_each_user_once_and_lean_on_the_age_band_and_gender() -> None:
    # given h who viewed item 0 (A) nine times, l who viewed item 2 (B) once and m who viewed
    # item 3 (B) once, all at one instant (no recency tilt)
    source = _tastes([("h", 0, 0.0)] * 9 + [("l", 2, 0.0), ("m", 3, 0.0)])
    # then the shop's category shares average the users' own: A 1/3, B 2/3; 25-34|F has one
    # user for each, mixed with 20 users' worth of the shop, and 25-34|F|GB the same with
    # 20 users' worth of 25-34|F (nine views of h count as one user)
    demo_a = (1 + 20 / 3) / 22
    joint_a = (1 + 20 * demo_a) / 22
    # and within a category, items by their (smoothed) share of its interest
    within = np.array([9.001 / 9.002, 0.001 / 9.002, 1.001 / 2.002, 1.001 / 2.002])
    expected = np.array([joint_a, joint_a, 1 - joint_a, 1 - joint_a]) * within
    np.testing.assert_allclose(source.taste("25-34|F|GB"), expected, rtol=1e-5)
    # and a country the model has no users from falls back to the age band and gender
    demo = np.array([demo_a, demo_a, 1 - demo_a, 1 - demo_a]) * within
    np.testing.assert_allclose(source.taste("25-34|F|FR"), demo, rtol=1e-5)
    # and an unknown segment to the whole shop
    shop = np.array([1 / 3, 1 / 3, 2 / 3, 2 / 3]) * within
    np.testing.assert_allclose(source.taste("?"), shop, rtol=1e-5)


def test_segment_tastes_tilt_toward_categories_in_season() -> None:
    # given h who viewed item 0 (A) 60 days before the last event and item 2 (B) at it
    source = _tastes([("h", 0, 60.0), ("h", 2, 0.0)])
    # then A, out of the recent window, all but vanishes from h's segment's list
    taste = source.taste("25-34|F|GB")
    assert taste[0] < 1e-4 * taste[2]
    assert np.argsort(-taste, kind="stable")[0] == 2


def test_user_segments_keep_the_free_categorical_attributes_of_the_users_table() -> None:
    # given a users table with a skin type (one left empty), a numeric column, a column with
    # one value only, and the contract's own columns
    users = pd.DataFrame(
        {
            c.USER_ID: ["a", "b", "c"],
            c.AGE: [30, 40, 50],
            c.GENDER: ["F", "M", "F"],
            c.COUNTRY: ["GB", "DE", "GB"],
            c.SKIN_TYPE: ["dry", None, "oily"],
            "loyalty_points": [1.0, 2.0, 3.0],
            "newsletter": ["yes", "yes", "yes"],
        }
    )
    # when the profiles are built
    profiles = user_segments(users)
    # then the skin type alone is a free attribute, an empty value a value of its own ("-")
    assert list(profiles.columns) == [c.USER_ID, "demo", "user_country", "attr:skin_type"]
    assert profiles["attr:skin_type"].tolist() == ["dry", "-", "oily"]
    # and a request of a user the table does not hold has the attribute missing (unknown)
    reqs = pd.DataFrame(
        {REQ: [0, 1, 2], c.USER_ID: ["a", "b", "z"], TS: T0, c.COUNTRY: None, c.DEVICE: None}
    )
    attached = attach_segments(reqs, profiles)
    assert attached["attr:skin_type"].tolist()[:2] == ["dry", "-"]
    assert pd.isna(attached["attr:skin_type"][2])


def _skin_tastes(attributes: list[str | None] | None = None) -> PopularitySource:
    """Popularity over items 0, 1 (category A) and 2, 3 (B) at one instant: h (25-34 F GB,
    dry skin) viewed item 0 twice, l (25-34 F GB, no skin type) items 0, 1 and 2, and m (55+
    M DE, no skin type) item 3; ``attributes``: each item's attribute tokens."""
    frame = pd.DataFrame(
        [("h", 0), ("h", 0), ("l", 0), ("l", 1), ("l", 2), ("m", 3)], columns=[c.USER_ID, ITEM]
    )
    frame[TS], frame[WEIGHT] = T0, np.float32(1.0)
    users = pd.DataFrame(
        {c.USER_ID: ["h", "l", "m"], c.AGE: [30, 30, 60], c.GENDER: ["F", "F", "M"]}
        | {c.COUNTRY: ["GB", "GB", "DE"], c.SKIN_TYPE: ["dry", None, None]}
    )
    source = PopularitySource(PopularityConfig())
    categories = np.array(["A", "A", "B", "B"])
    tokens = np.array(attributes, dtype=object) if attributes is not None else None
    source.fit(frame, user_segments(users), 4, categories, tokens)
    return source


def test_a_free_attribute_lifts_the_categories_its_users_buy() -> None:
    # given h (dry skin) all in A, l (no skin type) 2/3 in A, m (no skin type) all in B:
    # the shop's category shares are A 5/9, B 4/9 (each user counts once)
    source = _skin_tastes()
    shop_a = 5 / 9
    # then dry skin's shares are its one user mixed with 20 users' worth of the shop, and its
    # lift their ratio to the shop's; no skin type ("-") has two users, A 2/3 of one
    dry_a = (1 + 20 * shop_a) / 21
    none_a = (2 / 3 + 20 * shop_a) / 22
    lift = source.attribute_lift["attr:skin_type"]
    expected_dry = [dry_a / shop_a, (1 - dry_a) / (1 - shop_a)]
    np.testing.assert_allclose(lift["dry"], expected_dry, rtol=1e-5)
    expected_none = [none_a / shop_a, (1 - none_a) / (1 - shop_a)]
    np.testing.assert_allclose(lift["-"], expected_none, rtol=1e-5)
    # and a dry-skinned user's tastes are the segment's times the lift, renormalised
    plain = source.taste("25-34|F|GB")
    joint_a = plain[0] / source.within[0]
    tilted_a = (
        joint_a * lift["dry"][0] / (joint_a * lift["dry"][0] + (1 - joint_a) * lift["dry"][1])
    )
    expected = np.array([tilted_a, tilted_a, 1 - tilted_a, 1 - tilted_a]) * source.within
    got = source.taste("25-34|F|GB", {"attr:skin_type": "dry"})
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # and a value the model never saw, or an unknown one, leaves the segment's tastes
    np.testing.assert_allclose(source.taste("25-34|F|GB", {"attr:skin_type": "?"}), plain)
    np.testing.assert_allclose(source.taste("25-34|F|GB", {"attr:skin_type": "oily"}), plain)


def test_items_naming_a_users_attribute_value_get_the_boost_its_users_show() -> None:
    # given item 0 names dry skin ("skin_type:dry"): in category A everyone put 3 of 4 views
    # on it, dry-skinned h 2 of 2
    source = _skin_tastes(["vegan;skin_type:dry", "vegan", None, "skin_type:oily"])
    # then dry skin's share, mixed with 20 users' worth of everyone's, over everyone's is the
    # boost of item 0; oily skin has no users (everyone's share: no boost)
    boost = ((2 + 20 * 0.75) / 22) / 0.75
    within = source.within
    # and the boosts keep category A's total
    scale = (within[0] + within[1]) / (within[0] * boost + within[1])
    boosts = source.token_boost["attr:skin_type"]
    np.testing.assert_allclose(boosts["dry"], [boost * scale, scale, 1.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(boosts["oily"], [1.0, 1.0, 1.0, 1.0], rtol=1e-5)
    # and a dry-skinned user's within-category shares carry it
    got = source.taste("25-34|F|GB", {"attr:skin_type": "dry"})
    cats = got / (within * boosts["dry"])
    np.testing.assert_allclose(cats[0], cats[1], rtol=1e-5)


def test_top_stable_is_the_stable_argsort_head_without_sorting_everything() -> None:
    # given scores with many ties, around the cut too
    rng = np.random.default_rng(3)
    score = rng.integers(0, 5, size=200).astype(np.float32)
    # then every head is the stable argsort's
    for m in (0, 1, 7, 40, 199, 200, 250):
        expected = np.argsort(-score, kind="stable")[:m]
        np.testing.assert_array_equal(top_stable(score, m), expected)


def test_popularity_proposals_match_a_full_sort_per_segment_group() -> None:
    # given popularity 0 > 1 > ... > 5 and three requests: two of one segment, one bought
    # item 1 (rebuys excluded), and a third of another device
    source = _popularity()
    source.config = PopularityConfig(candidates=3, cold_candidates=4)
    requests = pd.DataFrame(
        {
            REQ: [0, 1, 2],
            c.USER_ID: ["x", "y", "z"],
            TS: T0,
            c.COUNTRY: "?",
            "demo": "?",
            c.DEVICE: ["mobile", "mobile", "desktop"],
        }
    )
    history = pd.DataFrame({REQ: [0], ITEM: [1], TS: [T0 - 1], KIND: [2], WEIGHT: [5.0]})
    batch = Batch(requests, history, pd.DataFrame({REQ: [0], ITEM: [1]}))
    exclusions = Exclusions(batch, _catalog({str(i): None for i in range(6)}), False)
    # when they are proposed
    reqs, items, scores = source.proposals(batch, exclusions)
    # then request 0 (a past: 3 candidates) gets 0, 2, 3 and the cold ones 4 each, in order
    assert reqs.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert items.tolist() == [0, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]
    # with the scores of the full blend
    blend = source._blend(requests.iloc[0])
    np.testing.assert_allclose(scores[:3], blend[[0, 2, 3]], rtol=1e-6)
    assert (np.diff(scores[3:7]) < 0).all()


def test_generate_merges_sources_by_best_rank_then_number_of_sources() -> None:
    # given a popularity source (0 > 1 > 2 > 3 > 4 > 5) and the user's own past items:
    # request 0 viewed 3 a day ago, carted 5 two days ago and bought 1 three days ago;
    # request 1 has no past
    catalog = _catalog({f"p{i}": None for i in range(6)})
    repeat = RepeatSource(RepeatConfig(candidates=10))
    repeat.fit(_no_events(), n_items=6)
    at = T0 + DAY
    batch = _batch(
        [at, at],
        bought=[(0, 1)],
        history=[
            (0, 1, at - 3 * DAY, 2, 5.0),
            (0, 5, at - 2 * DAY, 1, 3.0),
            (0, 3, at - 1 * DAY, 0, 1.0),
        ],
    )
    exclusions = Exclusions(batch, catalog, allow_rebuy=False)
    # when three candidates per request are kept
    merged = cand.generate([_popularity(), repeat], batch, exclusions, limit=3)
    # then request 0: popularity ranks 0, 2, 3, 4, 5 as 1..5 (1 was bought), repeat ranks 5
    # (a cart two days ago, 3 x 0.5^(2/14)) before 3 (a view); so the best ranks are 0 and 5
    # (1, and 5 proposed by both sources first), then 3 (2, both) before 2 (2, one source);
    # request 1: popularity alone, and rank 1000 for the source that did not propose
    rows = [
        tuple(float(v) for v in row)
        for row in merged[[REQ, ITEM, "popularity_rank", "repeat_rank", "n_sources"]].itertuples(
            index=False
        )
    ]
    assert rows == [
        (0, 5, 5, 1, 2),
        (0, 0, 1, 1000, 1),
        (0, 3, 3, 2, 2),
        (1, 0, 1, 1000, 1),
        (1, 1, 2, 1000, 1),
        (1, 2, 3, 1000, 1),
    ]
    assert list(merged.columns) == [REQ, ITEM, "popularity_rank", "repeat_rank", "n_sources"]


def test_generate_without_any_proposal_gives_an_empty_frame() -> None:
    # given a batch whose only source, the user's past, is empty
    catalog = _catalog({"p0": None})
    repeat = RepeatSource(RepeatConfig())
    repeat.fit(_no_events(), n_items=1)
    batch = _batch([T0])
    # when
    merged = cand.generate([repeat], batch, Exclusions(batch, catalog, False), limit=5)
    # then
    assert len(merged) == 0 and list(merged.columns) == [REQ, ITEM]


# ------------------------------------------------------------------------ stored features
def test_ranker_inputs_turn_strings_into_flags_and_instants_into_ages() -> None:
    # given stored features of three candidates, as Feast returns them
    now = T0
    stored = pd.DataFrame(
        {
            c.USER_ID: ["u1", "u1", "u2"],
            "request_ts": [now, now, now],
            "user_activity__favourite_category": ["Beauty > Skin", "Beauty > Skin", None],
            "product_catalog__category": ["Beauty > Skin", "Garden", None],
            "user_activity__favourite_brand": ["Acme", None, "Other"],
            "product_catalog__brand": ["Acme", None, "Zed"],
            "user_profile__avoid_attributes": ["fragrance;alcohol", None, "parabens"],
            "product_catalog__attributes": ["alcohol;fragrance;vegan", "alcohol", "vegan"],
            "session_activity__session_item_ids": ["p1;p2", None, "p10"],
            "session_activity__session_events": [2, None, 1],
            "session_activity__session_start_epoch": [now - 60, None, now - 5],
            "session_activity__session_last_epoch": [now - 30, None, now - 5],
            "user_activity__last_event_epoch": [now - 2 * DAY, np.nan, now - DAY / 2],
            "product_catalog__created_epoch": [now - 10 * DAY, now - 1 * DAY, now],
            "product_activity__views_7d": [3, 0, 1],
            "product_catalog__in_stock": [True, False, True],
            "request_context__hour": [7, 7, 8],
        }
    )
    item_ids = pd.Series(["p2", "p2", "p1"])
    # when
    got = ranker_inputs(stored, item_ids)
    # then strings become flags (an exact match of session items, not a substring), instants
    # days before the request, numbers stay; strings and keys themselves are not inputs, nor
    # the session's instants (a session given with a request has none)
    assert sorted(got.columns) == sorted(
        [
            "user_activity__last_event_days_ago",
            "product_catalog__created_days_ago",
            "product_activity__views_7d",
            "session_activity__session_events",
            "product_catalog__in_stock",
            "request_context__hour",
            "is_favourite_category",
            "is_favourite_brand",
            "avoided_attributes",
            "in_last_session",
        ]
    )
    assert got["is_favourite_category"].tolist() == [1.0, 0.0, 0.0]
    assert got["is_favourite_brand"].tolist() == [1.0, 0.0, 0.0]
    assert got["avoided_attributes"].tolist() == [2.0, 0.0, 0.0]
    assert got["in_last_session"].tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_array_equal(
        got["user_activity__last_event_days_ago"].to_numpy(), [2.0, np.nan, 0.5]
    )
    assert got["product_catalog__created_days_ago"].tolist() == [10.0, 1.0, 0.0]
    assert got["product_activity__views_7d"].tolist() == [3.0, 0.0, 1.0]
    assert got["product_catalog__in_stock"].tolist() == [1.0, 0.0, 1.0]
    assert got.index.equals(stored.index)


# ------------------------------------------------------------------------ ranker rounds
def test_ndcg_at_10_per_request_keeps_ties_in_row_order_and_skips_requests_without_positive():
    # given three requests: q0 with its positive second, q1 with two positives tied with a
    # negative listed between them, q2 without a positive
    qid = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 0])
    scores = np.array([3.0, 2.0, 1.0, 5.0, 5.0, 5.0, 1.0, 0.0])
    # when
    got = ndcg_at_10(scores, labels, qid)
    # then q0: 1/log2(3); q1: ranks 1 and 3 over the ideal ranks 1 and 2; q2 is not judged
    ideal = 1 + 1 / np.log2(3)
    np.testing.assert_allclose(got, [1 / np.log2(3), (1 + 1 / np.log2(4)) / ideal])


def test_more_trees_are_kept_unless_one_tree_is_better_beyond_noise() -> None:
    # given check requests on which 6 rounds score 0.1 above one tree in three of four requests
    one = np.array([0.2, 0.3, 0.4, 0.5])
    more = np.array([0.3, 0.4, 0.5, 0.5])
    # when the rounds are chosen
    choice = choose_rounds(more, one, candidate=5, stopped=3)
    # then the six rounds are kept, with the paired difference's mean 0.075 and its interval
    assert choice.best_iteration == 5 and choice.stopped == 3 and choice.check_requests == 4
    assert choice.more_trees == pytest.approx(0.425) and choice.one_tree == pytest.approx(0.35)
    half = 1.96 * np.std([0.1, 0.1, 0.1, 0.0], ddof=1) / 2
    assert choice.ci == pytest.approx((0.075 - half, 0.075 + half))
    # and when one tree is better on every request, beyond noise, one tree is kept
    assert choose_rounds(one, more, candidate=5, stopped=3).best_iteration == 0
    # and a difference within noise keeps the more trees
    noisy = np.array([0.5, 0.1, 0.6, 0.2])
    assert choose_rounds(noisy, np.array([0.3, 0.4, 0.4, 0.3]), 5, 3).best_iteration == 5


# ------------------------------------------------------------------------ ties
def test_top_n_keeps_and_orders_equal_scores_by_item() -> None:
    from recommender.state import top_n_arrays

    # given two rows whose 2nd to 4th best cells are equal, and a row with one finite cell
    scores = np.array(
        [
            [0.5, 0.9, 0.5, 0.1, 0.5],
            [0.5, 0.5, 0.9, 0.5, 0.0],
            [-np.inf, 0.3, -np.inf, -np.inf, -np.inf],
        ]
    )
    # when the 3 best of each are taken
    reqs, items, vals = top_n_arrays(scores, 3, offset=10)
    # then the best comes first and equal cells follow by item; -inf cells are dropped
    assert reqs.tolist() == [10, 10, 10, 11, 11, 11, 12]
    assert items.tolist() == [1, 0, 2, 2, 0, 1, 1]
    assert vals.tolist() == [0.9, 0.5, 0.5, 0.9, 0.5, 0.5, 0.3]


def test_distinct_rows_score_equal_rows_equally() -> None:
    from recommender.state import DistinctRows, block_scores

    # given a matrix whose rows 0 and 2 are equal
    matrix = np.array([[1.0, 2.0], [0.5, 0.0], [1.0, 2.0]], dtype=np.float32)
    distinct = DistinctRows(matrix)
    # then it knows of the repeat, and scores are the matrix's, equal rows bitwise equal
    assert distinct.repeats and distinct.unique.shape == (2, 2)
    rows = np.array([[3.0, 1.0], [0.0, -1.0]], dtype=np.float32)
    got = distinct.scores(rows, matrix)
    np.testing.assert_array_equal(got, block_scores(rows, matrix))
    assert (got[:, 0] == got[:, 2]).all()


def test_product_columns_hold_rows_grow_and_expire() -> None:
    from recommender.features_source import ProductColumns

    # given a holder of two columns, a number and a text, with room for two products
    held = ProductColumns(["v__price", "v__brand"], {"v__price"}, capacity=2)
    # when three products are read at t=0, one of them absent from the store
    held.store(["a", "b", "c"], [[1.5, 2, None], ["x", "y", "z"]], {"c"}, now=0.0)
    slots, stale = held.lookup(["c", "a", "new"], now=10.0, ttl=60.0)
    # then the arrays grew, the absent product and the unknown one have missing values,
    # and only the unknown one is to be read
    assert stale == ["new"]
    assert held.values[0][slots].tolist()[1] == 1.5
    assert np.isnan(held.values[0][slots][[0, 2]]).all()
    assert held.values[1][slots].tolist() == [None, "x", None]
    # and after the time to live every held product is stale again
    assert held.lookup(["a", "b"], now=60.0, ttl=60.0)[1] == ["a", "b"]
    held.clear()
    assert len(held) == 0 and held.lookup(["a"], now=61.0, ttl=60.0)[1] == ["a"]


def test_the_stalest_products_come_first_and_only_past_their_age() -> None:
    from recommender.features_source import ProductColumns

    # given four products read at 0, 10, 20 and 30 seconds
    held = ProductColumns(["v__price"], {"v__price"})
    for t, item in enumerate(["a", "b", "c", "d"]):
        held.store([item], [[float(t)]], set(), now=10.0 * t)
    # when asked at 40 s for two held 15 s or more, then the two oldest come, oldest first
    assert held.stalest(2, now=40.0, older_than=15.0) == ["a", "b"]
    # and only those old enough come, however many are asked for
    assert held.stalest(10, now=40.0, older_than=15.0) == ["a", "b", "c"]


# ------------------------------------------------------------------------ content
def test_content_is_off_when_nothing_tells_products_apart() -> None:
    # given a catalogue without category, brand or attributes (CATALOG: ids and launches)
    from recommender.config import ContentConfig
    from recommender.sources.content import ContentSource

    source = ContentSource(ContentConfig(), seed=0)
    # when the content source is fitted
    source.fit(CATALOG.facts)
    # then it is off: one zero embedding per product, and it proposes nothing
    assert source.svd is None
    assert source.embeddings.shape == (len(CATALOG), 1) and not source.embeddings.any()
    batch = _batch([T0 + 30 * DAY], history=[(0, 0, T0, 0, 1.0)])
    assert len(source.propose(batch, Exclusions(batch, CATALOG, False))) == 0
    # and a product added later is embedded as nothing too
    source.grow(pd.concat([CATALOG.facts, CATALOG.facts.iloc[:1]], ignore_index=True), [4])
    assert source.embeddings.shape == (len(CATALOG) + 1, 1) and not source.embeddings.any()


def test_content_embeds_a_catalogue_with_two_categories() -> None:
    # given a catalogue of two categories
    from recommender.config import ContentConfig
    from recommender.sources.content import ContentSource

    products = pd.DataFrame({c.ITEM_ID: ["a", "b", "c"], c.CATEGORY: ["X", "Y", "X"]})
    catalog = Catalog.build(products, pd.DataFrame({c.ITEM_ID: []}))
    source = ContentSource(ContentConfig(), seed=0)
    # when the content source is fitted
    source.fit(catalog.facts)
    # then the two products of a category share their embedding and the other differs
    emb = source.embeddings
    assert source.svd is not None
    assert np.allclose(emb[0], emb[2]) and not np.allclose(emb[0], emb[1])

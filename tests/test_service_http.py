"""The recommendation service through real HTTP, local profile (PLATFORM.md section 4).

One ``bentoml serve`` process for the module, on the tiny shop's trained model promoted to
``production`` (see ``tests/serving_stack.py``). Every answer is checked against the lake's
own tables (products.parquet, users.parquet, events.parquet).
"""

import json
import time
import uuid

import pandas as pd
import pytest

from recsys import columns as c
from tests.serving_stack import ServingStack, serving_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

K = 10
OWN_PAST_REASONS = {
    "you bought this before": c.PURCHASE,
    "you added this to your basket": c.CART,
    "you viewed this recently": c.VIEW,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    with serving_stack(tmp_path_factory, "local") as running:
        yield running


# ------------------------------------------------------------------------------ helpers
def ids(answer: dict) -> list[str]:
    return [item["item_id"] for item in answer["items"]]


def assert_answer(stack: ServingStack, answer: dict, k: int) -> None:
    """k distinct catalogue items, each explained, from version 1 on the normal path."""
    items = ids(answer)
    assert len(items) == k, answer
    assert len(set(items)) == k, items
    assert set(items) <= set(stack.lake.products[c.ITEM_ID]), items
    assert all(isinstance(i["reason"], str) and i["reason"].strip() for i in answer["items"])
    assert answer["model_version"] == "1"
    assert answer["variant"] == "production"
    assert isinstance(answer["request_id"], str) and len(answer["request_id"]) >= 16
    assert answer["fallback"] is None


def attributes(value: object) -> set[str]:
    if not isinstance(value, str):
        return set()
    return {a.strip().lower() for a in value.split(c.ATTRIBUTE_SEPARATOR) if a.strip()}


def products(stack: ServingStack) -> pd.DataFrame:
    return stack.lake.products.set_index(c.ITEM_ID)


def users_without_events(stack: ServingStack) -> pd.DataFrame:
    users = stack.lake.users
    seen = set(stack.lake.events[c.USER_ID].astype(str))
    fresh = users[~users[c.USER_ID].astype(str).isin(seen)]
    return fresh.dropna(subset=[c.AGE, c.GENDER, c.COUNTRY]).sort_values(c.USER_ID)


# ------------------------------------------------------------------------------ known user
def test_known_user_gets_k_distinct_explained_items_and_the_repeat_is_cached(
    stack: ServingStack,
) -> None:
    # given the lake's most active user
    user = stack.lake.active_users()[0]
    # when they ask for k items, twice in a row
    first = stack.post("/recommend", {"user_id": user, "k": K})
    second = stack.post("/recommend", {"user_id": user, "k": K})
    # then the first answer is computed: k distinct explained items from version 1
    assert first.status_code == 200, first.text
    answer = first.json()
    assert_answer(stack, answer, K)
    assert answer["cached"] is False
    # and the second is the cached list: the same items, in the same order, with its own id
    assert second.status_code == 200, second.text
    again = second.json()
    assert again["cached"] is True
    assert again["items"] == answer["items"]
    assert again["request_id"] != answer["request_id"]
    assert again["fallback"] is None


def test_reasons_from_the_users_own_past_name_what_they_did(stack: ServingStack) -> None:
    # given the lake's ten most active users, and what each did with each item
    events = stack.lake.events
    claims = []
    for user in stack.lake.active_users()[:10]:
        # when they ask for recommendations
        for item in stack.recommend(user_id=user, k=K)["items"]:
            if item["reason"] in OWN_PAST_REASONS:
                claims.append((user, item["item_id"], item["reason"]))
    # then some items are explained by their own past, and each such reason says what they
    # did: bought it, carted it, or viewed it
    assert claims, "no item was explained by the user's own past"
    for user, item, reason in claims:
        mine = events[(events[c.USER_ID].astype(str) == user) & (events[c.ITEM_ID] == item)]
        assert OWN_PAST_REASONS[reason] in set(mine[c.EVENT_TYPE]), (user, item, reason)


# ------------------------------------------------------------------------------ new users
def test_users_without_events_get_items_popular_with_their_demographics(
    stack: ServingStack,
) -> None:
    # given two users of users.parquet with no event at all: the youngest woman, and the
    # oldest man living in another country
    fresh = users_without_events(stack)
    women = fresh[fresh[c.GENDER] == "F"].sort_values(c.AGE, kind="stable")
    woman = women.iloc[0]
    men = fresh[(fresh[c.GENDER] == "M") & (fresh[c.COUNTRY] != woman[c.COUNTRY])]
    man = men.sort_values(c.AGE, ascending=False, kind="stable").iloc[0]
    answers = {}
    for person in (woman, man):
        # when each asks for k items (nothing but the user id)
        answer = stack.recommend(user_id=str(person[c.USER_ID]), k=K)
        # then they get k items, each popular with new customers like them in their country
        assert_answer(stack, answer, K)
        people = {"F": "women", "M": "men"}[person[c.GENDER]]
        for item in answer["items"]:
            assert item["reason"].startswith(f"popular with new {people} aged "), item
            assert f" in {person[c.COUNTRY]} this " in item["reason"], item
        answers[person[c.USER_ID]] = ids(answer)
    # and the two demographics get different lists
    assert answers[woman[c.USER_ID]] != answers[man[c.USER_ID]]


def test_brand_new_user_gets_what_is_popular_in_their_country(stack: ServingStack) -> None:
    # given a user id nobody has ever seen
    user = f"brand-new-{uuid.uuid4().hex[:8]}"
    answers = {}
    for country in ("DE", "FR"):
        # when it asks with only a country in its context
        answer = stack.recommend(user_id=user, k=K, context={"country": country})
        # then it gets k items popular with new customers in that country
        assert_answer(stack, answer, K)
        for item in answer["items"]:
            assert item["reason"].startswith("popular with new customers in "), item
            assert f" in {country} this " in item["reason"], item
        answers[country] = ids(answer)
    # and each country has its own list
    assert answers["DE"] != answers["FR"]


# ------------------------------------------------------------------------------ session
def test_anonymous_session_gets_items_that_go_with_its_items(stack: ServingStack) -> None:
    # given an anonymous shopper whose session viewed the lake's most bought product and the
    # product most often in the same sessions as it
    events = stack.lake.events
    purchases = events[events[c.EVENT_TYPE] == c.PURCHASE][c.ITEM_ID].astype(str)
    counts = purchases.value_counts().sort_index()
    first = str(counts.sort_values(ascending=False, kind="stable").index[0])
    sessions = set(events.loc[events[c.ITEM_ID] == first, c.SESSION_ID])
    along = events[events[c.SESSION_ID].isin(sessions) & (events[c.ITEM_ID] != first)]
    along = along.drop_duplicates([c.SESSION_ID, c.ITEM_ID])[c.ITEM_ID].astype(str)
    second = str(along.value_counts().sort_index().sort_values(ascending=False).index[0])
    session = [first, second]
    user = f"anonymous-{uuid.uuid4().hex[:8]}"
    # when it asks for k items with its session
    answer = stack.recommend(user_id=user, k=K, session_item_ids=session)
    # then it gets k distinct explained items
    assert_answer(stack, answer, K)
    # and at least one is there because it goes with a session item, and says which
    naming = [i for i in answer["items"] if any(s in i["reason"] for s in session)]
    assert naming, [i["reason"] for i in answer["items"]]
    for item in naming:
        assert item["reason"] in {
            f"{how} {s}" for s in session for how in ("often bought with", "similar to")
        }, item
    # and nothing is said to be bought before (an anonymous shopper bought nothing); a
    # session item comes back only where the model allows rebuying
    assert all(i["reason"] != "you bought this before" for i in answer["items"]), answer["items"]
    if not stack.training["rebuy"]["allowed"]:
        assert not set(ids(answer)) & set(session)


def test_clicks_told_to_feedback_are_the_same_session_as_items_given(stack: ServingStack) -> None:
    # given the lake's two most viewed products, clicked a, b, a (an item clicked again)
    events = stack.lake.events
    views = events.loc[events[c.EVENT_TYPE] == c.VIEW, c.ITEM_ID].astype(str)
    a, b = views.value_counts().sort_index().sort_values(ascending=False, kind="stable").index[:2]
    clicks = [a, b, a]
    told, given, without = (f"anonymous-{uuid.uuid4().hex[:8]}" for _ in range(3))
    # when one anonymous visitor's clicks are told to /feedback, a second apart
    now = time.time()
    response = stack.post(
        "/feedback",
        {
            "events": [
                {"user_id": told, "item_id": item, "event_type": "click", "timestamp": now - 3 + i}
                for i, item in enumerate(clicks)
            ]
        },
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 3, "sessions_updated": 1}
    # and that visitor asks, another gives the same items with its request, and a third
    # asks with no session at all
    after_feedback = stack.recommend(user_id=told, k=K)
    with_items = stack.recommend(user_id=given, k=K, session_item_ids=clicks)
    no_session = stack.recommend(user_id=without, k=K)
    # then the two sessions get the same list: the same items in the same order
    for answer in (after_feedback, with_items, no_session):
        assert_answer(stack, answer, K)
    assert ids(after_feedback) == ids(with_items)
    # and it is the session's list, not the one of a visitor without a session
    assert ids(with_items) != ids(no_session)


# ------------------------------------------------------------------------------ similar items
def test_similar_items_of_a_known_product(stack: ServingStack) -> None:
    # given the lake's most viewed product
    events = stack.lake.events
    counts = events[c.ITEM_ID].astype(str).value_counts().sort_index()
    product = str(counts.sort_values(ascending=False, kind="stable").index[0])
    # when similar items are asked for
    response = stack.post("/similar_items", {"item_id": product, "k": K})
    # then k distinct catalogue products come back, never the product itself, each saying
    # how it relates to the product
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_answer(stack, answer, K)
    assert product not in ids(answer)
    for item in answer["items"]:
        assert item["reason"] in (f"often bought with {product}", f"similar to {product}"), item


# ------------------------------------------------------------------------------ filters
def test_excluded_items_are_never_returned(stack: ServingStack) -> None:
    # given a known user's unfiltered list
    user = stack.lake.active_users()[1]
    base = ids(stack.recommend(user_id=user, k=K))
    excluded = base[:3]
    # when the same request excludes its first three items
    answer = stack.recommend(user_id=user, k=K, filters={"exclude_item_ids": excluded})
    # then k items still come, none of them excluded
    assert_answer(stack, answer, K)
    assert not set(ids(answer)) & set(excluded)


def test_category_filter_keeps_the_category_and_everything_below_it(stack: ServingStack) -> None:
    # given a category path prefix of products.parquet (two levels: it matches every deeper
    # category under it), the one with most products in stock
    catalogue = stack.lake.products[stack.lake.products[c.IN_STOCK].fillna(False).astype(bool)]
    levels = catalogue[c.CATEGORY].str.split(c.CATEGORY_SEPARATOR)
    prefixes = levels.str[:2].str.join(c.CATEGORY_SEPARATOR)
    prefix = str(prefixes.value_counts().sort_index().sort_values(ascending=False).index[0])
    in_prefix = catalogue[c.CATEGORY].str.startswith(prefix + c.CATEGORY_SEPARATOR)
    assert in_prefix.sum() >= K and not (catalogue[c.CATEGORY] == prefix).any()
    user = stack.lake.active_users()[1]
    # when a known user asks within it
    answer = stack.recommend(user_id=user, k=K, filters={"category": prefix})
    # then the list is full and every item's category starts with the prefix
    assert_answer(stack, answer, K)
    facts = products(stack)
    for item in ids(answer):
        assert facts.loc[item, c.CATEGORY].startswith(prefix + c.CATEGORY_SEPARATOR), item


def test_max_price_caps_every_price(stack: ServingStack) -> None:
    # given a price cap at the catalogue's lower quartile
    cap = float(stack.lake.products[c.PRICE].quantile(0.25))
    user = stack.lake.active_users()[1]
    # when a known user asks under it
    answer = stack.recommend(user_id=user, k=K, filters={"max_price": cap})
    # then the list is full and no item costs more
    assert_answer(stack, answer, K)
    facts = products(stack)
    for item in ids(answer):
        assert facts.loc[item, c.PRICE] <= cap, (item, facts.loc[item, c.PRICE], cap)


def test_avoided_attributes_of_the_request_are_never_returned(stack: ServingStack) -> None:
    # given every attribute of a known user's unfiltered list (it has some)
    user = stack.lake.active_users()[1]
    facts = products(stack)
    base = ids(stack.recommend(user_id=user, k=K))
    avoid = sorted(set().union(*(attributes(facts.loc[i, c.ATTRIBUTES]) for i in base)))
    assert avoid
    # when the same request avoids them all
    answer = stack.recommend(user_id=user, k=K, filters={"avoid_attributes": avoid})
    # then the list is full and no item carries any of them
    assert_answer(stack, answer, K)
    for item in ids(answer):
        assert not attributes(facts.loc[item, c.ATTRIBUTES]) & set(avoid), item


def test_attributes_the_user_avoids_are_never_returned(stack: ServingStack) -> None:
    # given a known user whose profile avoids attributes (users.parquet), the one whose
    # avoided attributes are carried by most products
    facts = products(stack)
    users = stack.lake.users.dropna(subset=[c.AVOID_ATTRIBUTES])
    users = users[users[c.USER_ID].isin(stack.lake.events[c.USER_ID])]
    carried = {
        str(u): sum(bool(attributes(a) & attributes(v)) for a in facts[c.ATTRIBUTES])
        for u, v in zip(users[c.USER_ID], users[c.AVOID_ATTRIBUTES], strict=True)
    }
    user = max(sorted(carried), key=carried.get)
    avoided = attributes(users.set_index(c.USER_ID).loc[user, c.AVOID_ATTRIBUTES])
    assert avoided and carried[user] > 0
    # when they ask without any filter
    answer = stack.recommend(user_id=user, k=K)
    # then no item carries an attribute they avoid
    assert_answer(stack, answer, K)
    for item in ids(answer):
        assert not attributes(facts.loc[item, c.ATTRIBUTES]) & avoided, (item, avoided)


# ------------------------------------------------------------------------------ bad requests
BAD_REQUESTS = [
    pytest.param("/recommend", {"k": 5}, ["user_id"], id="missing-user_id"),
    pytest.param("/recommend", {"user_id": "", "k": 5}, ["user_id"], id="empty-user_id"),
    pytest.param("/recommend", {"user_id": "u1", "k": 0}, ["k"], id="k-zero"),
    pytest.param("/recommend", {"user_id": "u1", "k": "a"}, ["k"], id="k-text"),
    pytest.param("/recommend", {"user_id": "u1", "k": 10_000}, ["k"], id="k-huge"),
    pytest.param("/recommend", {"user_id": "u1", "colour": "red"}, ["colour"], id="unknown-field"),
    pytest.param(
        "/recommend",
        {"user_id": "u1", "filters": {"colour": "red"}},
        ["filters", "colour"],
        id="unknown-filter",
    ),
    pytest.param(
        "/recommend",
        {"user_id": "u1", "filters": {"max_price": -1}},
        ["filters", "max_price"],
        id="negative-max_price",
    ),
    pytest.param(
        "/recommend",
        {"user_id": "u1", "context": {"timestamp": "yesterday"}},
        ["context", "timestamp"],
        id="timestamp-yesterday",
    ),
    pytest.param(
        "/recommend",
        {"user_id": "u1", "context": {"timestamp": "3000-01-01T00:00:00Z"}},
        ["context", "timestamp"],
        id="timestamp-year-3000",
    ),
    pytest.param(
        "/recommend",
        {"user_id": "u1", "context": {"timestamp": "1000-01-01"}},
        ["context", "timestamp"],
        id="timestamp-year-1000",
    ),
    pytest.param(
        "/recommend",
        {"user_id": "u1", "context": {"timestamp": 1e300}},
        ["context", "timestamp"],
        id="timestamp-epoch-huge",
    ),
    pytest.param(
        "/recommend",
        {"user_id": "u1", "session_item_ids": "p001"},
        ["session_item_ids"],
        id="session-not-a-list",
    ),
    pytest.param(
        "/feedback",
        {"events": [{"user_id": "u1", "item_id": "p001", "event_type": "like"}]},
        ["events", 0, "event_type"],
        id="feedback-like",
    ),
    pytest.param(
        "/feedback",
        {"events": [{"user_id": "u1", "event_type": "click"}]},
        ["events", 0, "item_id"],
        id="feedback-no-item_id",
    ),
    pytest.param(
        "/feedback",
        {
            "events": [
                {"user_id": "u1", "item_id": "p001", "event_type": "click", "timestamp": 1.7e12}
            ]
        },
        ["events", 0, "timestamp"],
        id="feedback-epoch-milliseconds",
    ),
    pytest.param(
        "/feedback",
        {"events": [{"user_id": "u\u0000", "item_id": "p001", "event_type": "click"}]},
        ["events", 0, "user_id"],
        id="feedback-nul-in-user_id",
    ),
    pytest.param(
        "/feedback",
        {
            "events": [
                {"user_id": "u1", "item_id": "p001", "event_type": "click", "session_id": "s\n1"}
            ]
        },
        ["events", 0, "session_id"],
        id="feedback-line-break-in-session_id",
    ),
    pytest.param(
        "/recommend",
        {"user_id": "u1", "session_item_ids": ["p001", "p\u00002"]},
        ["session_item_ids"],
        id="nul-in-session-item",
    ),
    pytest.param("/feedback", {"events": []}, ["events"], id="feedback-no-events"),
]


@pytest.mark.parametrize(("path", "body", "field"), BAD_REQUESTS)
def test_a_malformed_request_is_a_400_naming_the_field(
    stack: ServingStack, path: str, body: dict, field: list
) -> None:
    # given a request with exactly one thing wrong
    # when it is posted
    response = stack.post(path, body)
    # then it is refused with a 400 whose one error points at that field
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert [error["loc"] for error in detail] == [field], detail
    assert detail[0]["msg"]


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data", "text/plain", "application/x-www-form-urlencoded"]
)
def test_a_body_declared_as_not_json_is_a_415_naming_the_header(
    stack: ServingStack, content_type: str
) -> None:
    # given a body declared as something other than JSON (multipart without a boundary was
    # a 500 from the framework's reader)
    for path in ("/recommend", "/similar_items", "/feedback", "/status"):
        # when it is posted
        response = stack.client.post(
            path, content=b'{"user_id": "u1"}', headers={"content-type": content_type}
        )
        # then it is refused as an unsupported media type, naming the header
        assert response.status_code == 415, (path, response.text)
        assert response.json()["detail"][0]["loc"] == ["header", "content-type"]
    # and the service still answers JSON
    assert stack.post("/status", {}).status_code == 200


def test_a_body_over_the_limit_is_a_413_and_a_chunked_one_within_it_is_answered(
    stack: ServingStack,
) -> None:
    # given a /feedback body of 3 MB, over the 2 MB default (max_body_bytes)
    event = {"user_id": "u1", "item_id": "p001", "event_type": "click"}
    big = ('{"events": [' + ",".join([json.dumps(event)] * 60_000) + "]}").encode()
    assert len(big) > 3_000_000
    headers = {"content-type": "application/json"}
    # when it is sent with its length, or in chunks without one
    sized = stack.client.post("/feedback", content=big, headers=headers)
    chunked = stack.client.post(
        "/feedback",
        content=(big[i : i + 65_536] for i in range(0, len(big), 65_536)),
        headers=headers,
    )
    # then both are refused as too large, naming what gave it away
    assert (sized.status_code, chunked.status_code) == (413, 413), (sized.text, chunked.text)
    assert sized.json()["detail"][0]["loc"] == ["header", "content-length"]
    assert chunked.json()["detail"][0]["loc"] == ["body"]
    # and a chunked request within the limit is read whole and answered
    body = json.dumps({"user_id": stack.lake.active_users()[0], "k": K}).encode()
    small = stack.client.post(
        "/recommend", content=(body[i : i + 7] for i in range(0, len(body), 7)), headers=headers
    )
    assert small.status_code == 200, small.text
    assert_answer(stack, small.json(), K)


def test_a_bad_request_is_one_short_log_line_not_a_traceback(stack: ServingStack) -> None:
    # given the service's log so far
    start = stack.log.stat().st_size
    # when a request with two wrong fields is posted
    response = stack.post("/recommend", {"user_id": "", "k": 0})
    assert response.status_code == 400
    # then the log says so in one line naming both fields, with no traceback
    deadline = time.monotonic() + 5
    while "client error on /recommend" not in (added := _log_since(stack, start)):
        assert time.monotonic() < deadline, added[-2_000:]
        time.sleep(0.1)
    assert "Traceback" not in added, added[-2_000:]
    line = next(x for x in added.splitlines() if "client error on /recommend" in x)
    assert "user_id" in line and "k:" in line and "WARNING" in line, line


def _log_since(stack: ServingStack, start: int) -> str:
    with open(stack.log, "rb") as handle:
        handle.seek(start)
        return handle.read().decode(errors="replace")


def test_a_body_that_is_not_json_is_a_400_saying_so(stack: ServingStack) -> None:
    # given a body that is not JSON
    # when it is posted to /recommend
    response = stack.post("/recommend", content=b"user_id=u1&k=5")
    # then it is a 400 saying the JSON is invalid
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert [(e["type"], e["loc"]) for e in detail] == [("json_invalid", [])], detail
    assert "Invalid JSON" in detail[0]["msg"]


def test_a_boolean_k_is_a_400(stack: ServingStack) -> None:
    # given k given as a JSON boolean
    # when it is posted
    response = stack.post("/recommend", {"user_id": "u1", "k": True})
    # then it is refused, naming k
    assert response.status_code == 400, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [["k"]]


def test_similar_items_of_an_unknown_product_is_a_4xx_with_a_message(stack: ServingStack) -> None:
    # given a product id neither the model nor the catalogue has
    item = f"no-such-product-{uuid.uuid4().hex[:8]}"
    # when similar items are asked for
    response = stack.post("/similar_items", {"item_id": item, "k": K})
    # then it is a 400 whose message names the field and the id, shaped as a validation error
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert [e["loc"] for e in detail] == [["item_id"]], detail
    assert detail[0]["msg"] == f"item_id {item!r} is not in the catalogue"


def test_a_category_the_catalogue_does_not_have_is_a_400(stack: ServingStack) -> None:
    # given a category filter that is no category of the catalogue nor the start of one
    body = {"user_id": "u1", "k": K, "filters": {"category": "Beauty > No such shelf"}}
    # when it is posted
    response = stack.post("/recommend", body)
    # then it is refused, naming the filter, instead of an empty list
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert [e["loc"] for e in detail] == [["filters", "category"]], detail
    assert "'Beauty > No such shelf' is neither a category" in detail[0]["msg"]


# ------------------------------------------------------------------------------ feedback
def test_feedback_changes_the_next_recommendation(stack: ServingStack) -> None:
    # given a known user, their current list, and the leaf category with most products in
    # stock that they never touched
    lake = stack.lake
    user = lake.active_users()[2]
    touched = set(lake.events.loc[lake.events[c.USER_ID] == user, c.ITEM_ID].astype(str))
    facts = products(stack)
    touched_categories = set(facts.loc[sorted(touched), c.CATEGORY])
    stock = lake.products[lake.products[c.IN_STOCK].fillna(False).astype(bool)]
    stock = stock[~stock[c.CATEGORY].isin(touched_categories)]
    category = str(
        stock[c.CATEGORY].value_counts().sort_index().sort_values(ascending=False).index[0]
    )
    items = sorted(stock.loc[stock[c.CATEGORY] == category, c.ITEM_ID].astype(str))[:4]
    assert len(items) == 4, category
    before = stack.recommend(user_id=user, k=K)
    assert stack.recommend(user_id=user, k=K)["cached"] is True
    clicks = stack.metric("recsys_feedback_events_total", event_type="click")
    carts = stack.metric("recsys_feedback_events_total", event_type="cart")
    # when they click all four products of that category and put two in the cart
    now = time.time()
    events = [
        {"request_id": before["request_id"], "user_id": user, "item_id": item,
         "event_type": "click", "timestamp": now + i}
        for i, item in enumerate(items)
    ] + [
        {"request_id": before["request_id"], "user_id": user, "item_id": item,
         "event_type": "cart", "timestamp": now + 10 + i}
        for i, item in enumerate(items[:2])
    ]  # fmt: skip
    response = stack.post("/feedback", {"events": events})
    # then all six are accepted and the user's session is updated
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 6, "sessions_updated": 1}
    # and the next recommendation is computed afresh and differs (items or order)
    after = stack.recommend(user_id=user, k=K)
    assert_answer(stack, after, K)
    assert after["cached"] is False
    assert ids(after) != ids(before)
    # and /metrics counted the events by type
    assert stack.metric("recsys_feedback_events_total", event_type="click") == clicks + 4
    assert stack.metric("recsys_feedback_events_total", event_type="cart") == carts + 2


# ------------------------------------------------------------------------------ operations
def test_health_readiness_and_metrics(stack: ServingStack) -> None:
    # given the running service that has answered requests
    stack.recommend(user_id=stack.lake.active_users()[0], k=3)
    # when its operational endpoints are read
    # then it is alive and ready, and /metrics has the request latency histogram
    assert stack.get("/healthz").status_code == 200
    assert stack.get("/readyz").status_code == 200
    metrics = stack.get("/metrics")
    assert metrics.status_code == 200
    assert "recsys_request_seconds_bucket{" in metrics.text
    assert stack.metric("recsys_request_seconds_count", endpoint="recommend", outcome="ok") >= 1
    # and /status says which version answers with every dependency up
    status = stack.post("/status", {})
    assert status.status_code == 200, status.text
    assert status.json() == {
        "model_version": "1",
        "alias": "production",
        "canary_version": None,  # no canary alias: every request is production's
        "canary_weight": 0.0,
        "online_store": True,
        "cache": True,
        "last_error": "",
    }


def test_cache_hits_and_misses_are_counted_for_a_hit_rate(stack: ServingStack) -> None:
    # given the counters of cache lookups (the alert rules' and dashboard's hit rate)
    def lookups(result: str) -> float:
        return stack.metric("recsys_cache_lookups_total", endpoint="recommend", result=result)

    hits, misses = lookups("hit"), lookups("miss")
    # when a user asks for the same list twice (a k no other test asks for)
    user = stack.lake.active_users()[2]
    first = stack.post("/recommend", {"user_id": user, "k": 7})
    second = stack.post("/recommend", {"user_id": user, "k": 7})
    assert (first.json()["cached"], second.json()["cached"]) == (False, True)
    # then one miss and one hit are counted, and no server error
    assert (lookups("miss"), lookups("hit")) == (misses + 1, hits + 1)
    assert stack.metric("recsys_errors_total") == 0


# ------------------------------------------------------------------------------ new product
def test_similar_items_of_a_product_newer_than_the_model(stack: ServingStack) -> None:
    # given a product added to the lake's catalogue after training (a copy of a known
    # product's attributes under a new id), built and materialised into the online store
    lake = stack.workspace.table(c.PRODUCTS)
    catalogue = pd.read_parquet(lake)
    template = catalogue[catalogue[c.ATTRIBUTES].notna() & catalogue[c.IN_STOCK]].iloc[0]
    new_id = f"new-{uuid.uuid4().hex[:8]}"
    row = template.copy()
    row[c.ITEM_ID] = new_id
    row[c.CREATED_AT] = stack.lake.events[c.TIMESTAMP].max() - pd.Timedelta(days=1)
    added = pd.concat([catalogue, row.to_frame().T.astype(catalogue.dtypes)], ignore_index=True)
    added.to_parquet(lake, index=False)
    started = time.perf_counter()
    stack.cli("features", "build")
    stack.cli("features", "materialize")
    seconds = time.perf_counter() - started
    print(f"features build + materialize for a new product: {seconds:.1f}s")
    # when similar items are asked for the new product
    response = stack.post("/similar_items", {"item_id": new_id, "k": K})
    # then the service embeds it from its attributes and answers k other products
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_answer(stack, answer, K)
    assert new_id not in ids(answer)
    assert template[c.ITEM_ID] in ids(answer)  # the same attributes: the closest there is
    for item in answer["items"]:
        assert item["reason"] == f"similar to {new_id}", item


# ------------------------------------------------------------------------------ generated requests
FUZZ_EXAMPLES = 1_000  # generated requests per route and phase (schemathesis --max-examples)


def test_generated_requests_never_get_a_5xx_and_the_service_lives_on(
    stack: ServingStack, tmp_path
) -> None:
    # given the service's own OpenAPI description
    import subprocess
    import sys
    from pathlib import Path

    schemathesis = Path(sys.executable).with_name("schemathesis")
    # when schemathesis sends requests generated from it to every route (valid and not:
    # wrong types, huge numbers, odd characters, missing and extra fields, other media types)
    done = subprocess.run(
        [
            str(schemathesis), "run", f"{stack.url}/docs.json",
            "--checks", "not_a_server_error",
            "--max-examples", str(FUZZ_EXAMPLES),
            "--seed", "18",
            "--request-timeout", "30",
            "--report", "junit", "--report-dir", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=1_200,
        cwd=tmp_path,  # (its example database goes there, not into the repository)
    )  # fmt: skip
    # then no answer was a 5xx, no route failed to generate, and the service still answers
    assert done.returncode == 0, done.stdout[-6_000:]
    assert "No issues found" in done.stdout, done.stdout[-6_000:]
    assert stack.get("/readyz").status_code == 200
    assert_answer(stack, stack.recommend(user_id=stack.lake.active_users()[0], k=K), K)

"""``recsys precompute``: lists cached ahead for the most active users, production profile.

The stack: as in ``tests/test_service_degraded.py`` (Redis of the test's own), with the job
run once for the module before any request.
"""

import json

import pandas as pd
import pytest
import redis

from recsys import columns as c
from serving.cache import PREFIX, precomputed_key
from serving.precompute import most_active_users
from tests.serving_stack import RedisServer, ServingStack, serving_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = 3
KEPT = 20


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer):
    with serving_stack(tmp_path_factory, "production", redis_port=redis_server.port) as running:
        running.cli("precompute", "--users", str(USERS), "--k", str(KEPT))
        yield running


def _kept(stack: ServingStack, port: int, user: str) -> dict | None:
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        raw = client.hget(PREFIX + user, precomputed_key("1"))
        ttl = client.ttl(PREFIX + user)
    finally:
        client.close()
    return None if raw is None else json.loads(raw) | {"hash_ttl": ttl}


def test_the_most_active_users_are_counted_over_the_last_30_days(stack: ServingStack) -> None:
    # given the lake's events of its last 30 days
    events = stack.lake.events
    recent = events[events[c.TIMESTAMP] >= events[c.TIMESTAMP].max() - pd.Timedelta(days=30)]
    counts = recent[c.USER_ID].astype(str).value_counts()
    # when the most active users are asked for
    users = most_active_users(stack.workspace, USERS)
    # then they are the users with most recent events, busiest first
    assert [counts[u] for u in users] == sorted(counts.to_numpy(), reverse=True)[:USERS]


def test_each_most_active_user_has_a_list_kept_for_a_day(
    stack: ServingStack, redis_server: RedisServer
) -> None:
    # given the job ran for the 3 most active users, keeping 20 items each
    for user in most_active_users(stack.workspace, USERS):
        kept = _kept(stack, redis_server.port, user)
        # then each has a list of 20 distinct items under model version 1, kept for 26 hours
        assert kept is not None, user
        items = [i["item_id"] for i in kept["items"]]
        assert len(items) == KEPT and len(set(items)) == KEPT
        assert kept["k"] == KEPT
        assert kept["_ttl"] == 26 * 3600
        assert 25 * 3600 < kept["hash_ttl"] <= 26 * 3600 + 1


def test_a_plain_request_of_such_a_user_is_answered_from_the_kept_list(
    stack: ServingStack, redis_server: RedisServer
) -> None:
    # given the busiest user's kept list
    user = most_active_users(stack.workspace, 1)[0]
    kept = [i["item_id"] for i in _kept(stack, redis_server.port, user)["items"]]
    # when they ask for 10 items from a device no earlier request used (no exact entry)
    answer = stack.recommend(user_id=user, k=10, context={"device": "precompute-test"})
    # then the answer is the kept list's first 10, from the cache
    assert answer["cached"] is True and answer["fallback"] is None
    assert [i["item_id"] for i in answer["items"]] == kept[:10]
    # and a request for more items than were kept, or with a filter, is computed
    longer = stack.recommend(user_id=user, k=KEPT + 1, context={"device": "precompute-test"})
    assert longer["cached"] is False and len(longer["items"]) == KEPT + 1
    excluded = stack.recommend(user_id=user, k=10, filters={"exclude_item_ids": kept[:1]})
    assert excluded["cached"] is False and kept[0] not in [i["item_id"] for i in excluded["items"]]


def test_feedback_drops_the_kept_list(stack: ServingStack, redis_server: RedisServer) -> None:
    # given the second busiest user's kept list
    user = most_active_users(stack.workspace, 2)[1]
    kept = _kept(stack, redis_server.port, user)
    assert kept is not None
    # when they click an item
    item = kept["items"][0]["item_id"]
    event = {"user_id": user, "item_id": item, "event_type": "click"}
    response = stack.post("/feedback", {"events": [event]})
    assert response.status_code == 200, response.text
    # then the list is gone and their next plain request is computed
    assert _kept(stack, redis_server.port, user) is None
    assert stack.recommend(user_id=user, k=10)["cached"] is False

"""The Redis cache sends its writes from a thread: a worker reads its own lists at once, the
writes reach Redis in order, and feedback's invalidation is never undone by a list that was
computed before it (real redis-server of the module's own)."""

import json
import threading

import pytest
import redis

from serving.cache import PREFIX, RedisCache
from tests.serving_stack import RedisServer


@pytest.fixture
def client(redis_server: RedisServer):
    client = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=1)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def cache(redis_server: RedisServer):
    cache = RedisCache.connect("127.0.0.1", redis_server.port, timeout=1.0, ttl=300.0)
    yield cache
    cache.close()


def test_a_list_put_is_read_back_at_once_and_then_held_by_redis(cache, client) -> None:
    # given a list put for a user
    cache.put("u1", "v1|k", {"items": [1, 2, 3]})
    # when it is read back straight away, then the worker answers it
    assert cache.get("u1", "v1|k")["items"] == [1, 2, 3]
    # and once flushed, Redis holds it with its write time and a TTL
    assert cache.flush()
    stored = json.loads(client.hget(PREFIX + "u1", "v1|k"))
    assert stored["items"] == [1, 2, 3] and stored["_ttl"] == 300.0
    assert 0 < client.ttl(PREFIX + "u1") <= 301


def test_the_first_fresh_key_wins_over_redis_and_unsent_lists(cache, client) -> None:
    # given a precomputed list in Redis and an unsent list of the request's own key
    cache.put("u2", "v1|precomputed", {"items": ["p"]})
    assert cache.flush()
    cache.put("u2", "v1|k", {"items": ["k"]})
    # when both keys are asked, the request's own key first, then it is the one answered
    assert cache.get("u2", "v1|k", "v1|precomputed")["items"] == ["k"]
    # and a key nobody put falls through to the next one
    assert cache.get("u2", "v1|other", "v1|precomputed")["items"] == ["p"]


def test_invalidate_drops_unsent_lists_and_what_redis_holds(cache, client) -> None:
    # given lists of two users, some sent, some maybe not
    for i in range(200):
        cache.put("u3", f"v1|k{i}", {"items": [i]})
        cache.put("u4", f"v1|k{i}", {"items": [i]})
    # when feedback of u3 invalidates its lists
    assert cache.invalidate("u3") is True
    assert cache.flush()
    # then no list of u3 is served or stored afterwards, and u4's are all there
    assert cache.get("u3", "v1|k0", "v1|k199") is None
    assert client.exists(PREFIX + "u3") == 0
    assert client.hlen(PREFIX + "u4") == 200


def test_writes_racing_invalidations_never_leave_a_list_behind(cache, client) -> None:
    # given a thread putting lists of one user while another invalidates it
    stop = threading.Event()

    def keep_putting() -> None:
        i = 0
        while not stop.is_set():
            cache.put("u5", f"v1|k{i % 7}", {"items": [i]})
            i += 1

    writer = threading.Thread(target=keep_putting)
    writer.start()
    try:
        for _ in range(200):
            cache.invalidate("u5")
    finally:
        stop.set()
        writer.join()
    # when the last invalidation comes after the last put
    cache.invalidate("u5")
    assert cache.flush()
    # then nothing of the user survives it
    assert client.exists(PREFIX + "u5") == 0
    assert cache.get("u5", *(f"v1|k{i}" for i in range(7))) is None


def test_close_sends_what_is_queued(redis_server: RedisServer, client) -> None:
    # given a cache with lists put and not flushed
    cache = RedisCache.connect("127.0.0.1", redis_server.port, timeout=1.0)
    for i in range(50):
        cache.put(f"user{i}", "v1|k", {"items": [i]})
    # when it is closed
    cache.close()
    # then every list reached Redis, and a later put is not kept
    assert all(client.hexists(PREFIX + f"user{i}", "v1|k") for i in range(50))
    cache.put("late", "v1|k", {"items": []})
    assert cache.get("late", "v1|k") is None

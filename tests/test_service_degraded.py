"""Redis stopped mid-run: answers keep coming, flagged as fallback, and feedback sent meanwhile
is not lost (PLATFORM.md section 4), production profile.

The stack: offline store in a PostgreSQL schema of its own, online store and cache in a
redis-server of the test's own (nothing saved, so a restart comes back empty), the feedback
log in PostgreSQL ``test``, MLflow on a local SQLite file. The outage is played once for the
module (``outage``); each test checks one promise about it.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from features.online import OnlineReader
from features.session import SessionState
from features.store import open_store
from recsys import columns as c
from tests.serving_stack import (
    FEEDBACK_PREFIX,
    FEEDBACK_URL,
    RedisServer,
    ServingStack,
    scoped_env,
    serving_stack,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

K = 10
OUTAGE_RECOMMENDS = 20
OUTAGE_FEEDBACK = 10
RECOVERY_TIMEOUT = 30.0
RETRY_SECONDS = 1.0  # the breakers' pause after a failure (RECSYS_SERVE_RETRY_SECONDS)
CONCURRENCY = 4  # the service's request threads (RECSYS_SERVE_THREADS' default)
FEEDBACK_BATCH = 3  # events per /feedback request: 10 events in 4 requests, sent at once
NEW_PRODUCT = "outage-new-product"
# what a degraded answer may cost: the cache and store time out after 50 ms (store_timeout)
DEGRADED_SECONDS = 1.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer):
    settings = {
        "RECSYS_SERVE_PUSH_SECONDS": "0.5",
        "RECSYS_SERVE_RETRY_SECONDS": str(RETRY_SECONDS),
    }
    with serving_stack(
        tmp_path_factory, "production", redis_port=redis_server.port, settings=settings
    ) as running:
        yield running


@dataclass(frozen=True)
class Call:
    path: str
    body: dict
    response: httpx.Response
    seconds: float


@dataclass
class Outage:
    user: str
    before: dict
    status_before: dict
    first: Call  # /similar_items of a product the model does not know, Redis down
    during: list[Call]  # /recommend while Redis was down
    status_during: dict  # /status after RETRY_SECONDS without a request
    feedback: list[Call]  # /feedback requests while Redis was down
    fallbacks_counted: float  # recsys_fallbacks_total{endpoint="recommend"} over the outage
    after: dict  # the first normal answer once Redis is back
    recovery_seconds: float
    rows: pd.DataFrame  # the feedback table's rows of the events sent during the outage
    session: SessionState | None  # the user's online session at the end


def _feedback_rows(request_ids: list[str], user: str) -> pd.DataFrame:
    engine = sa.create_engine(FEEDBACK_URL)
    query = sa.text(
        "SELECT request_id, user_id, item_id, event_type, session_pushed "
        f'FROM "{FEEDBACK_PREFIX}feedback_events" '
        "WHERE request_id IN :ids AND user_id = :user ORDER BY id"
    ).bindparams(sa.bindparam("ids", expanding=True))
    try:
        with engine.connect() as connection:
            result = connection.execute(query, {"ids": request_ids, "user": user})
            return pd.DataFrame(result.all(), columns=list(result.keys()))
    finally:
        engine.dispose()


def _outage_requests(stack: ServingStack, user: str) -> list[dict]:
    """A known user, a new user with a country, an anonymous session, a filtered request."""
    popular = stack.lake.events[c.ITEM_ID].astype(str).value_counts().sort_index()
    top = [str(i) for i in popular.sort_values(ascending=False, kind="stable").index[:2]]
    kinds = [
        {"user_id": user, "k": K},
        {"user_id": "outage-new-user", "k": K, "context": {"country": "DE"}},
        {"user_id": "outage-anonymous", "k": K, "session_item_ids": top},
        {"user_id": user, "k": K, "filters": {"max_price": 100.0}},
    ]
    return [kinds[i % len(kinds)] for i in range(OUTAGE_RECOMMENDS)]


def _post_all(stack: ServingStack, path: str, bodies: list[dict]) -> list[Call]:
    """Post the bodies CONCURRENCY at a time (the service's request threads), in order."""

    def call(body: dict) -> Call:
        started = time.perf_counter()
        response = stack.post(path, body)
        return Call(path, body, response, time.perf_counter() - started)

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return list(pool.map(call, bodies))


@pytest.fixture(scope="module")
def outage(stack: ServingStack, redis_server: RedisServer) -> Outage:
    lake = stack.lake
    user = lake.active_users()[0]
    touched = set(lake.events.loc[lake.events[c.USER_ID] == user, c.ITEM_ID].astype(str))
    stock = lake.products[lake.products[c.IN_STOCK].fillna(False).astype(bool)]
    fed = [i for i in sorted(stock[c.ITEM_ID].astype(str)) if i not in touched][:OUTAGE_FEEDBACK]

    # a normal answer first
    before = stack.recommend(user_id=user, k=K)
    status_before = stack.post("/status", {}).json()
    fallbacks = stack.metric("recsys_fallbacks_total", endpoint="recommend")

    # Redis stops: requests and feedback keep coming (the first call to reach the online
    # store is a new product's similar items, see ``first``)
    redis_server.stop()
    first = _post_all(stack, "/similar_items", [{"item_id": NEW_PRODUCT, "k": K}])[0]
    during = _post_all(stack, "/recommend", _outage_requests(stack, user))
    time.sleep(RETRY_SECONDS + 0.5)  # nothing failed for longer than the breaker's pause
    status_during = stack.post("/status", {}).json()
    ids = [call.response.json()["request_id"] for call in during if call.response.is_success]
    ids = ids or ["none"]
    now = time.time()
    events = [
        {
            "request_id": ids[i % len(ids)],
            "user_id": user,
            "item_id": item,
            "event_type": ("click", "cart")[i % 2],
            "timestamp": now + i,
        }
        for i, item in enumerate(fed)
    ]
    batches = [
        {"events": events[i : i + FEEDBACK_BATCH]} for i in range(0, len(events), FEEDBACK_BATCH)
    ]
    feedback = _post_all(stack, "/feedback", batches)
    fallbacks_counted = stack.metric("recsys_fallbacks_total", endpoint="recommend") - fallbacks

    # Redis comes back empty; the features are materialised again
    redis_server.start()
    restarted = time.monotonic()
    stack.cli("features", "materialize")
    sent = sorted({e["request_id"] for e in events})
    after, rows = None, pd.DataFrame()
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while time.monotonic() < deadline:
        rows = _feedback_rows(sent, user)
        if len(rows) == len(events) and rows["session_pushed"].all():
            answer = stack.recommend(user_id=user, k=K)
            if answer["fallback"] is None:
                after = answer
                break
        time.sleep(0.25)
    recovery = time.monotonic() - restarted
    with scoped_env(stack.env):
        session = OnlineReader(open_store(stack.workspace)).read_session(user)
    return Outage(
        user=user,
        before=before,
        status_before=status_before,
        first=first,
        during=during,
        status_during=status_during,
        feedback=feedback,
        fallbacks_counted=fallbacks_counted,
        after=after or {},
        recovery_seconds=recovery,
        rows=rows,
        session=session,
    )


def test_before_the_outage_answers_come_from_the_online_store(outage: Outage) -> None:
    # given the service with Redis up
    # then a known user's answer is a normal one and every dependency is up
    assert outage.before["fallback"] is None
    assert len(outage.before["items"]) == K
    assert outage.status_before["online_store"] is True
    assert outage.status_before["cache"] is True


def test_while_redis_is_down_every_answer_comes_flagged_as_fallback(outage: Outage) -> None:
    # given Redis stopped (online store and cache gone)
    # when 20 recommendations were asked for (known, new, anonymous, filtered)
    # then each is a 200 with k items from version 1, flagged as an online-store fallback
    assert len(outage.during) == OUTAGE_RECOMMENDS
    for call in outage.during:
        assert call.response.status_code == 200, (call.body, call.response.text)
        answer = call.response.json()
        assert len(answer["items"]) == K, (call.body, answer)
        assert len({i["item_id"] for i in answer["items"]}) == K, (call.body, answer)
        assert answer["model_version"] == "1"
        assert answer["cached"] is False
        assert answer["fallback"] is not None, (call.body, answer)
        assert answer["fallback"].startswith("online store unavailable"), answer["fallback"]
        assert answer["fallback"].endswith(": ranked on the model's own data")
    # and /metrics counted every one of them as a fallback
    assert outage.fallbacks_counted == OUTAGE_RECOMMENDS


def test_while_redis_is_down_feedback_is_accepted(outage: Outage) -> None:
    # given Redis stopped
    # when ten feedback events were posted (in four requests)
    # then every event was accepted (logged durably), with no session updated yet
    assert sum(len(call.body["events"]) for call in outage.feedback) == OUTAGE_FEEDBACK
    for call in outage.feedback:
        assert call.response.status_code == 200, (call.body, call.response.text)
        accepted = len(call.body["events"])
        assert call.response.json() == {"accepted": accepted, "sessions_updated": 0}


def test_while_redis_is_down_a_new_product_is_a_4xx_saying_so(outage: Outage) -> None:
    # given Redis stopped: the catalogue of products newer than the model is out of reach
    # when similar items of a product the model does not know were asked for
    # then it is a 400 that names the item, not a 5xx
    response = outage.first.response
    assert response.status_code == 400, response.text
    assert f"item_id {NEW_PRODUCT!r} is unknown" in response.text


def test_while_redis_is_down_answers_and_acknowledgements_stay_fast(outage: Outage) -> None:
    # given Redis stopped, the answers and feedback acknowledgements above
    slowest = sorted(
        ((round(call.seconds, 1), call.path) for call in
         [outage.first, *outage.during, *outage.feedback]),
        reverse=True,
    )  # fmt: skip
    print("slowest calls during the outage:", slowest[:5])
    # then none took longer than a degraded call may (the stores time out after 50 ms)
    assert slowest[0][0] <= DEGRADED_SECONDS, slowest


def test_while_redis_is_down_status_says_so(outage: Outage) -> None:
    # given Redis stopped, and a moment without requests
    # then /status says the online store and the cache are down, version 1 still answering
    assert outage.status_during["model_version"] == "1"
    assert outage.status_during["online_store"] is False, outage.status_during
    assert outage.status_during["cache"] is False, outage.status_during


def test_once_redis_is_back_answers_are_normal_again(outage: Outage) -> None:
    # given Redis restarted (empty) and the features materialised again
    # then within seconds a known user's answer is computed on the online store again
    assert outage.after, f"no normal answer within {RECOVERY_TIMEOUT}s of the restart"
    assert outage.after["fallback"] is None
    assert outage.after["cached"] is False
    assert len(outage.after["items"]) == K
    print(f"recovered {outage.recovery_seconds:.1f}s after the restart (materialise included)")


def test_feedback_sent_during_the_outage_is_stored_and_pushed(outage: Outage) -> None:
    # given the ten events posted while Redis was down
    events = [event for call in outage.feedback for event in call.body["events"]]
    sent = [(e["request_id"], e["user_id"], e["item_id"], e["event_type"]) for e in events]
    # then each is in the feedback table exactly once, marked as pushed to the session
    rows = outage.rows
    stored = list(rows[["request_id", "user_id", "item_id", "event_type"]].itertuples(index=False))
    assert sorted(map(tuple, stored)) == sorted(sent)
    assert rows["session_pushed"].tolist() == [True] * OUTAGE_FEEDBACK


def test_the_online_session_holds_the_items_fed_back_during_the_outage(outage: Outage) -> None:
    # given the user's session read from the online store after the recovery
    session = outage.session
    # then it lists every item fed back while Redis was down
    assert session is not None
    fed = {event["item_id"] for call in outage.feedback for event in call.body["events"]}
    assert fed <= set(session.items), (sorted(fed), session.items)
    assert session.session_events >= OUTAGE_FEEDBACK


def test_a_poison_timestamp_is_refused_and_one_already_logged_is_quarantined(
    stack: ServingStack, outage: Outage
) -> None:
    # given a click from the year 3000 already in the feedback log, not yet in any session
    # (stored before the service checked the window: it broke every later session push)
    import json
    import uuid
    from datetime import UTC, datetime

    from serving.feedback import feedback_tables

    _, events, _ = feedback_tables(FEEDBACK_PREFIX)
    poison = f"poison-{uuid.uuid4().hex[:8]}"
    stack.request_ids.add(poison)
    item = str(stack.lake.products[c.ITEM_ID].iloc[0])
    database = sa.create_engine(FEEDBACK_URL)
    try:
        with database.begin() as connection:
            connection.execute(
                events.insert(),
                {
                    "event_uid": uuid.uuid4().hex,
                    "received_at": datetime.now(UTC),
                    "request_id": poison,
                    "user_id": "poisoned-user",
                    "item_id": item,
                    "event_type": "click",
                    "event_ts": datetime(3000, 1, 1, tzinfo=UTC),
                },
            )
    finally:
        database.dispose()
    # when the same instant comes to /feedback, then it is a 400 naming the field
    refused = stack.post(
        "/feedback",
        {
            "events": [
                {
                    "user_id": outage.user,
                    "item_id": item,
                    "event_type": "click",
                    "timestamp": "3000-01-01T00:00:00Z",
                }
            ]
        },
    )
    assert refused.status_code == 400, refused.text
    assert "timestamp" in refused.text and "accepted window" in refused.text
    # and a normal click still updates its user's session
    clicked = stack.post(
        "/feedback",
        {
            "events": [
                {
                    "user_id": outage.user,
                    "item_id": item,
                    "event_type": "click",
                    "request_id": f"{poison}-next",
                }
            ]
        },
    )
    assert clicked.status_code == 200, clicked.text
    assert clicked.json()["sessions_updated"] >= 1
    # then the logged poison is kept aside with its reason, and answers are normal
    spool = stack.workspace.home / "serving" / "spool"
    kept = [
        json.loads(line)
        for path in spool.glob("unpushable-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert [row["reason"] for row in kept if row["request_id"] == poison] == [
        "event_ts outside the accepted window"
    ]
    assert stack.recommend(user_id=outage.user, k=K)["fallback"] is None

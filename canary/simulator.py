"""Simulated shoppers of a generated shop, for testing and demonstrating canaries on one
machine without real users.

Each simulated request picks a shopper (more active shoppers more often), asks the running
service for recommendations and reports what the shopper did with them to ``/feedback``: an
impression for every item shown, a click with a probability that grows with how well the item
matches the shopper's hidden tastes and falls with its position, and a purchase (at the item's
price) for some clicks.

The tastes are the shop's ``ground_truth/``, used as the generator uses them: a shopping
session has one intent category, drawn from the shopper's category preferences, and lasts a
few requests; within it, an item's appeal is the shopper's taste vector against the item's
embedding plus the item's popularity, standardised over the catalogue. Items outside the
intent are clicked far less. The session's clicked items go with the next request
(``session_item_ids``, as a shop's front end sends them), so a recommender that follows the
session and the shopper's tastes earns more clicks and purchases than a random one. Shoppers
also come back to products they know: items of their own history in the shop (which the
generator drew from the same tastes) are clicked more.
"""

import json
import logging
import math
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from recsys import columns as c
from recsys.errors import RecsysError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClickModel:
    """``P(click) = sigmoid(base + slope * z + intent * in_intent + familiar * known)
    / (1 + decay * position)`` with ``z`` the item's standardised appeal to the shopper,
    ``in_intent`` whether it is in the session's intent category and ``known`` whether the
    shopper's history in the shop holds it;
    ``P(purchase | click) = sigmoid(buy_base + buy_slope * z)``; a session lasts
    ``session_requests`` requests of its shopper."""

    base: float = -4.5
    slope: float = 0.8
    intent: float = 3.0
    familiar: float = 4.0
    decay: float = 0.1
    buy_base: float = -2.0
    buy_slope: float = 0.6
    session_requests: int = 4


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def intent_weights(facts: dict) -> np.ndarray:
    """Per category, the log multiplier of session intents at the end of the shop's period (the
    generator's ``Timeline.intent_log_weights`` there): the month's season and the trend at full
    strength, from the shop's ``ground_truth/shop.json``."""
    categories = facts["categories"]
    where = {name: i for i, name in enumerate(categories)}
    weights = np.zeros(len(categories))
    month = (pd.Timestamp(facts["period"]["end"]) - pd.Timedelta(days=1)).month - 1
    for name, season in facts.get("category_seasons", {}).items():
        if name in where:
            weights[where[name]] += np.log(facts["season_profiles"][season][month])
    gain = facts.get("shift_multipliers", {})
    for key, names in (("trending", "trending_categories"), ("declining", "declining_categories")):
        for name in facts.get(names, []):
            if name in where and key in gain:
                weights[where[name]] += np.log(gain[key])
    return weights


class Shoppers:
    """The shop's ground truth: who the shoppers are and what each item means to them."""

    def __init__(
        self,
        users: pd.DataFrame,
        products: pd.DataFrame,
        categories: list[str],
        intent_log_weights: np.ndarray | None = None,
        history: pd.DataFrame | None = None,
    ):
        self.user_ids = users[c.USER_ID].astype(str).to_numpy()
        activity = users["activity"].to_numpy(dtype=np.float64)
        self.weights = activity / activity.sum()
        self.taste = np.stack(users["taste"].to_numpy()).astype(np.float64)
        preference = np.stack(users["category_preference"].to_numpy()).astype(np.float64)
        self.log_preference = np.log(np.maximum(preference * len(categories), 1e-6))
        # the season's and the trend's pull on each category at the end of the shop's period
        self.intent_log_weights = (
            np.zeros(len(categories)) if intent_log_weights is None else intent_log_weights
        )
        self.items = {item: row for row, item in enumerate(products[c.ITEM_ID].astype(str))}
        self.embedding = np.stack(products["embedding"].to_numpy()).astype(np.float64)
        where = {name: i for i, name in enumerate(categories)}
        self.category = products[c.CATEGORY].map(where).fillna(0).to_numpy(dtype=np.int64)
        self.price = products["price"].fillna(0.0).to_numpy(dtype=np.float64)
        self.log_popularity = np.log(
            np.maximum(products["popularity"].to_numpy(dtype=np.float64), 1e-9)
        )
        # the items each shopper viewed, carted or bought in the shop's history: drawn by the
        # generator from the same tastes, and the products a shopper comes back to
        self.history: dict[int, set[int]] = {}
        if history is not None:
            user_row = {u: i for i, u in enumerate(self.user_ids)}
            users = history[c.USER_ID].astype(str).map(user_row)
            items = history[c.ITEM_ID].astype(str).map(self.items)
            pairs = pd.DataFrame({"u": users, "i": items}).dropna().astype(np.int64)
            for u, part in pairs.groupby("u")["i"]:
                self.history[int(u)] = set(part.tolist())
        # each shopper's mean and spread over the whole catalogue, to standardise matches
        raw = self._raw(np.arange(len(self.user_ids)), slice(None))
        self.mean, self.std = raw.mean(axis=1), np.maximum(raw.std(axis=1), 1e-9)

    @classmethod
    def load(cls, shop: str | Path) -> "Shoppers":
        """A generated shop's folder (``recsys generate``): its ground truth and products."""
        root = Path(shop)
        truth = root / "ground_truth"
        try:
            users = pd.read_parquet(truth / "users.parquet")
            items = pd.read_parquet(truth / "products.parquet")
            prices = pd.read_parquet(root / "products.parquet", columns=[c.ITEM_ID, c.PRICE])
            facts = json.loads((truth / "shop.json").read_text())
            categories = facts["categories"]
            weights = intent_weights(facts)
            history = pd.read_parquet(root / "events.parquet", columns=[c.USER_ID, c.ITEM_ID])
        except (OSError, KeyError, ValueError) as exc:
            raise RecsysError(
                f"{root}: not a generated shop with its ground truth ({exc}); "
                "make one with `recsys generate --out DIR`"
            ) from None
        items = items.merge(prices, on=c.ITEM_ID, how="left")
        return cls(users, items, categories, weights, history)

    def _raw(self, users: np.ndarray, rows) -> np.ndarray:
        embedding = self.embedding[rows]
        return self.taste[users] @ embedding.T + self.log_popularity[rows]

    def intent(self, rng: np.random.Generator, user: int) -> int:
        """A session's intent category, drawn as the generator draws it: the shopper's
        category preferences, pulled by the season and the trend."""
        logits = self.log_preference[user] + self.intent_log_weights
        return int(np.argmax(logits + rng.gumbel(size=len(logits))))

    def match(self, user: int, item_ids: list[str]) -> np.ndarray:
        """Standardised match of each item to the shopper (NaN for an item the shop lacks)."""
        rows = np.array([self.items.get(i, -1) for i in item_ids], dtype=np.int64)
        known = rows >= 0
        z = np.full(len(rows), np.nan)
        if known.any():
            raw = self._raw(np.array([user]), rows[known])[0]
            z[known] = (raw - self.mean[user]) / self.std[user]
        return z

    def respond(
        self,
        rng: np.random.Generator,
        user: int,
        item_ids: list[str],
        model: ClickModel,
        intent: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Which shown items the shopper clicks, and which of those they buy."""
        z = np.nan_to_num(self.match(user, item_ids), nan=-3.0)
        rows = np.array([self.items.get(i, -1) for i in item_ids], dtype=np.int64)
        in_intent = (rows >= 0) & (self.category[np.maximum(rows, 0)] == intent)
        position = np.arange(len(item_ids))
        seen = self.history.get(user, ())
        known = np.array([row in seen for row in rows], dtype=bool)
        logit = model.base + model.slope * z + model.intent * in_intent + model.familiar * known
        p_click = _sigmoid(logit) / (1.0 + model.decay * position)
        clicked = rng.random(len(z)) < p_click
        bought = clicked & (rng.random(len(z)) < _sigmoid(model.buy_base + model.buy_slope * z))
        return clicked, bought


@dataclass
class Tally:
    """What the simulator saw, per variant, and every user's variants in order."""

    requests: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # by HTTP status (or exception name)
    impressions: Counter = field(default_factory=Counter)
    clicks: Counter = field(default_factory=Counter)
    purchases: Counter = field(default_factory=Counter)
    # user -> [(time, variant, model_version)]
    seen: dict[str, list[tuple[float, str, str]]] = field(default_factory=lambda: defaultdict(list))

    def to_dict(self) -> dict:
        switched = sum(1 for visits in self.seen.values() if len({v for _, v, _ in visits}) > 1)
        return {
            "requests": dict(self.requests),
            "errors": {str(k): v for k, v in self.errors.items()},
            "impressions": dict(self.impressions),
            "clicks": dict(self.clicks),
            "purchases": dict(self.purchases),
            "ctr": {v: self.clicks[v] / n for v, n in self.impressions.items() if n},
            "users": len(self.seen),
            "users_in_both_variants": switched,
        }


class Simulator:
    """Simulated shoppers sending requests and feedback to the service at ``url``."""

    def __init__(
        self,
        url: str,
        shoppers: Shoppers,
        seed: int = 0,
        threads: int = 4,
        k: int = 10,
        model: ClickModel | None = None,
        users: int | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.shoppers = shoppers
        self.seed, self.threads, self.k = seed, threads, k
        self.model = model or ClickModel()
        self.tally = Tally()
        self._lock = threading.Lock()
        # shopper -> (intent category, requests left, clicked items) of their current session
        self._sessions: dict[int, tuple[int, int, list[str]]] = {}
        self._stop = threading.Event()
        # the shoppers who visit: all, or the ``users`` most likely ones
        order = np.argsort(-shoppers.weights, kind="stable")
        self.pool = order[: users or len(order)]
        weights = shoppers.weights[self.pool]
        self.pool_weights = weights / weights.sum()

    def visit(self, client: httpx.Client, rng: np.random.Generator, user: int) -> None:
        """One request of shopper ``user`` and the feedback on what was shown."""
        user_id = str(self.shoppers.user_ids[user])
        with self._lock:
            intent, left, viewed = self._sessions.get(user, (0, 0, []))
            if left <= 0:
                intent, left, viewed = (
                    self.shoppers.intent(rng, user),
                    self.model.session_requests,
                    [],
                )
            self._sessions[user] = (intent, left - 1, viewed)
        request = {"user_id": user_id, "k": self.k, "session_item_ids": viewed[-20:]}
        try:
            answer = client.post("/recommend", json=request)
        except httpx.HTTPError as exc:
            with self._lock:
                self.tally.errors[type(exc).__name__] += 1
            return
        if answer.status_code != 200:
            with self._lock:
                self.tally.errors[answer.status_code] += 1
            return
        body = answer.json()
        variant, version = body["variant"], body["model_version"]
        items = [item["item_id"] for item in body["items"]]
        clicked, bought = self.shoppers.respond(rng, user, items, self.model, intent)
        viewed.extend(i for i, hit in zip(items, clicked, strict=True) if hit)
        now = time.time()
        events = [
            {"request_id": body["request_id"], "user_id": user_id, "item_id": item,
             "event_type": kind, "timestamp": now}
            for item, kind in [(i, "impression") for i in items]
            + [(i, "click") for i, hit in zip(items, clicked, strict=True) if hit]
        ]  # fmt: skip
        for item, hit in zip(items, bought, strict=True):
            if hit:
                price = float(self.shoppers.price[self.shoppers.items[item]])
                events.append(
                    {"request_id": body["request_id"], "user_id": user_id, "item_id": item,
                     "event_type": "purchase", "timestamp": now, "price": price}
                )  # fmt: skip
        if events:
            response = client.post("/feedback", json={"events": events})
            if response.status_code != 200:
                logger.warning("feedback refused (%s): %s", response.status_code, response.text)
        with self._lock:
            self.tally.requests[variant] += 1
            self.tally.impressions[variant] += len(items)
            self.tally.clicks[variant] += int(clicked.sum())
            self.tally.purchases[variant] += int(bought.sum())
            self.tally.seen[user_id].append((now, variant, version))

    def _worker(self, index: int, until: float, budget: list[int], pause: float) -> None:
        rng = np.random.default_rng([self.seed, index])
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set() and time.monotonic() < until:
                with self._lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                user = int(rng.choice(self.pool, p=self.pool_weights))
                self.visit(client, rng, user)
                if pause:
                    time.sleep(pause)

    def run(
        self, seconds: float = math.inf, requests: int | None = None, rate: float | None = None
    ) -> Tally:
        """Visit for ``seconds`` (or until ``requests`` were sent, or ``stop()``), at most
        ``rate`` requests a second in all (as fast as the service answers when None)."""
        until = time.monotonic() + seconds
        budget = [requests if requests is not None else 1 << 62]
        pause = self.threads / rate if rate else 0.0
        workers = [
            threading.Thread(target=self._worker, args=(i, until, budget, pause), daemon=True)
            for i in range(self.threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return self.tally

    def start(self, **kwargs) -> threading.Thread:
        """``run`` in the background (``stop()`` ends it)."""
        thread = threading.Thread(target=self.run, kwargs=kwargs, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

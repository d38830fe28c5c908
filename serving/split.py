"""The user-sticky traffic split between ``production`` and ``canary`` (PLATFORM.md section 6).

A user's bucket is a hash of the user id salted with the canary's version, so one user sees one
variant for the whole canary (the share only grows: a user in the canary at 5% is still in it
at 25%), while each new canary draws a different set of users. The service, the canary
controller and the traffic simulator all call these functions, so they agree on who is where.
"""

import hashlib

PRODUCTION = "production"
CANARY = "canary"
# tags on the canary model version, written by the canary controller (canary/controller.py)
WEIGHT_TAG = "canary.weight"  # percent of users, 0-100
# fault injection for demonstrating guardrails, honoured only on the canary variant and only
# when the service runs with RECSYS_SERVE_FAULT_INJECTION=true (serving/settings.py)
FAULT_DELAY_TAG = "canary.fault.delay_ms"
FAULT_ERROR_TAG = "canary.fault.error_rate"
BUCKETS = 10_000  # buckets of 0.01 percent


def bucket(user_id: str, salt: str) -> float:
    """The user's place in [0, 100), stable for a given salt (0.01 percent resolution)."""
    digest = hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") % BUCKETS) / (BUCKETS / 100)


def split_salt(base: str, canary_version: str) -> str:
    """The salt of one canary: the service's base salt and the canary's version."""
    return f"{base}:{canary_version}"


def variant_of(user_id: str | None, weight: float, salt: str) -> str:
    """``canary`` iff the user's bucket is below the canary's weight (percent); anonymous
    requests (no user) always get production."""
    if user_id is None or weight <= 0:
        return PRODUCTION
    return CANARY if bucket(user_id, salt) < weight else PRODUCTION


def weight_of(tags: dict[str, str]) -> float:
    """The canary weight a version's tags carry, clamped to [0, 100]; absent or unreadable
    means 0 (no traffic), never an error on the request path."""
    try:
        weight = float(tags.get(WEIGHT_TAG) or 0.0)
    except ValueError:
        return 0.0
    return min(max(weight, 0.0), 100.0) if weight == weight else 0.0


def fault_of(tags: dict[str, str]) -> tuple[float, float] | None:
    """(delay in seconds, error probability) when the version carries fault tags, else None."""
    try:
        delay = float(tags.get(FAULT_DELAY_TAG) or 0.0) / 1000.0
        rate = float(tags.get(FAULT_ERROR_TAG) or 0.0)
    except ValueError:
        return None
    if delay <= 0 and rate <= 0:
        return None
    return max(delay, 0.0), min(max(rate, 0.0), 1.0)

"""Serving figures: throughput and latency of the running service, cached and uncached, for
known users or for anonymous visitors' sessions, and a registry alias moved during a load run.

    python benchmarks/serve_load.py --home WORKSPACE [--profile production] [--workers 2]
        [--rate 100] [--duration 30] [--candidates 300] [--mix users|session] [--seed 0]
        [--move-alias] [--json FILE]

The workspace must hold a lake, materialised features and a model with alias ``production``
(``recsys demo`` leaves one; for the full shop: ``recsys generate --scale full``, ``ingest``,
``features build/apply/materialize``, ``train``, then promote). The service is started as its
own process group (``recsys serve`` equivalent) and the load comes from ``loadgen.py`` in this
process: loopback only, bounded in requests and time. Requests carry the instant just after
the data's end, so the model sees the same time a shop would see the day after training.

Two request mixes. ``users`` (the default): the lake's users, each once per cycle, uncached
then cached (``--modes``). ``session``: one uncached phase in which every request is an
anonymous visitor (an id nobody has seen, so no cached list and no stored past) carrying
``session_item_ids``, the views of a real session of the lake up to a point drawn at random
(at most 10, oldest first; drawn with ``--seed``, their lengths printed). That is the path a
new visitor takes: the session is all the model knows, so it must fit the same budget.

Acceptance (issue 5): with the full shop, production profile, 2 workers, 300 candidates:
uncached p99 < 25 ms at 100 requests/s with no errors; cached p99 < 5 ms; with
``--move-alias``: zero failed requests while the alias moves, and responses switch version.
Issue 18: ``--mix session`` under the same uncached budget (p99 < 25 ms at 100/s).
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen

from recsys import columns as c
from recsys.workspace import Workspace
from serving.server import start_background

MODEL = "recsys-recommender"
BUDGET_UNCACHED_P99_MS = 25.0
BUDGET_CACHED_P99_MS = 5.0
BUDGETS = {
    "uncached": BUDGET_UNCACHED_P99_MS,
    "cached": BUDGET_CACHED_P99_MS,
    "session": BUDGET_UNCACHED_P99_MS,  # (the session mix is uncached: every visitor is new)
}
MIXES = ("users", "session")
LONGEST_SESSION = 10
ANONYMOUS = "anonymous-visitor-"


def _users(workspace: Workspace, limit: int) -> list[str]:
    events = pd.read_parquet(workspace.table(c.EVENTS), columns=[c.USER_ID])
    return (
        events[c.USER_ID]
        .astype(str)
        .drop_duplicates()
        .sample(frac=1, random_state=0)
        .head(limit)
        .tolist()
    )


def session_prefixes(
    events: pd.DataFrame, n: int, seed: int = 0, longest: int = LONGEST_SESSION
) -> list[list[str]]:
    """``n`` sessions as a visitor's request carries them: the item ids a real session (user
    and session id) viewed, oldest first, up to a point drawn uniformly over its views (a
    visitor asks for recommendations anywhere in a visit, not only at its end), the last
    ``longest`` of them. Sessions are drawn without replacement while there are enough, so
    the mix is as varied as the shop's sessions; ``seed`` makes the draw repeatable."""
    views = events[events[c.EVENT_TYPE] == c.VIEW].sort_values(
        [c.USER_ID, c.SESSION_ID, c.TIMESTAMP], kind="stable"
    )
    group = views.groupby([c.USER_ID, c.SESSION_ID], sort=False).ngroup().to_numpy()
    starts = np.flatnonzero(np.diff(group, prepend=-1))  # (sorted: each session is one run)
    sizes = np.diff(starts, append=len(views))
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(starts), size=n, replace=n > len(starts))
    ends = starts[picked] + rng.integers(1, sizes[picked] + 1)
    items = views[c.ITEM_ID].astype(str).to_numpy()
    return [
        items[max(begin, end - longest) : end].tolist()
        for begin, end in zip(starts[picked], ends, strict=True)
    ]


def session_bodies(sessions: list[list[str]], k: int, now: float) -> list[dict]:
    """One /recommend body a session, each from an anonymous visitor: an id no lake, online
    store or cache holds, so the request is computed with the session as its only past
    (loadgen's uncached bodies, each id used once, plus the session's items)."""
    visitors = [f"{ANONYMOUS}{i:06d}" for i in range(1, len(sessions) + 1)]
    bodies = loadgen.make_bodies(visitors, "uncached", k, len(sessions), now=now)
    return [body | {"session_item_ids": s} for body, s in zip(bodies, sessions, strict=True)]


def _lengths(sessions: list[list[str]]) -> str:
    """How many requests carry 1, 2, ... items, so a reader sees what the latency is of."""
    counts = sorted(Counter(map(len, sessions)).items())
    mean = sum(map(len, sessions)) / len(sessions)
    return ", ".join(f"{size}: {count}" for size, count in counts) + f" (mean {mean:.2f})"


def _data_end(workspace: Workspace) -> float:
    events = pd.read_parquet(workspace.table(c.EVENTS), columns=[c.TIMESTAMP])
    return pd.Timestamp(events[c.TIMESTAMP].max()).timestamp() + 3600.0


def _client(workspace: Workspace):
    from mlflow import MlflowClient

    from recsys import tracking

    tracking.use(workspace)
    return MlflowClient()


def _forget_cached_lists(workspace: Workspace, before: str) -> None:
    """Drop the workspace's cached lists (production: its Redis), so an uncached run is not
    answered from an earlier run's entries for the same users and instants."""
    if workspace.profile != "production":
        return  # the local cache lives in the service's own process
    import redis

    from features.environment import setting
    from serving.cache import PREFIX

    client = redis.Redis(
        host=setting("RECSYS_REDIS_HOST"),
        port=int(setting("RECSYS_REDIS_PORT")),
        db=int(setting("RECSYS_REDIS_DB")),
    )
    dropped = 0
    batch = []
    for key in client.scan_iter(match=PREFIX + "*", count=1_000):
        batch.append(key)
        if len(batch) == 1_000:
            dropped += client.delete(*batch)
            batch = []
    if batch:
        dropped += client.delete(*batch)
    client.close()
    print(f"dropped {dropped:,} cached lists before the {before} run", file=sys.stderr)


def _move_alias(workspace: Workspace, after: float, to: str, done: dict) -> None:
    time.sleep(after)
    client = _client(workspace)
    done["from"] = client.get_model_version_by_alias(MODEL, "production").version
    client.set_registered_model_alias(MODEL, "production", to)
    done["to"], done["at"] = to, after


def _worker_cpu(pid: int) -> dict[int, float]:
    """CPU seconds used so far by each service worker under the server process ``pid``
    (BentoML's workers run ``_bentoml_impl.worker.service``)."""
    import psutil

    out = {}
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if any("worker.service" in part for part in child.cmdline()):
                times = child.cpu_times()
                out[child.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return out


def _cpu_split(before: dict[int, float], after: dict[int, float], requests: int) -> dict:
    """Each worker's CPU seconds during a phase and the CPU milliseconds per request: a
    worker doing most of the work queues requests while the other idles."""
    used = {pid: round(after[pid] - before.get(pid, 0.0), 2) for pid in sorted(after)}
    total = sum(used.values())
    return {
        "worker_cpu_s": list(used.values()),
        "cpu_ms_per_request": round(1000 * total / requests, 2) if requests else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, help="workspace with a production model")
    parser.add_argument("--profile", default="production", choices=("local", "production"))
    parser.add_argument("--port", type=int, default=3300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--move-alias", action="store_true", help="also run the alias move")
    parser.add_argument("--move-rate", type=float, help="rate of the alias-move run (--rate)")
    parser.add_argument(
        "--mix",
        default="users",
        choices=MIXES,
        help="users: the lake's users (--modes); session: anonymous visitors with sessions",
    )
    parser.add_argument("--seed", type=int, default=0, help="the session mix's draw")
    parser.add_argument(
        "--modes", default="uncached,cached", help="the users mix's phases (uncached,cached)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument(
        "--no-access-log", action="store_true", help="serve without BentoML's access log"
    )
    args = parser.parse_args()

    workspace = Workspace(Path(args.home).resolve(), args.profile)
    os.environ.update(
        {
            "RECSYS_SERVE_CANDIDATES": str(args.candidates),
            "RECSYS_SERVE_RELOAD_SECONDS": "2",
        }
    )
    if args.no_access_log:
        os.environ["RECSYS_SERVE_ACCESS_LOG"] = "0"
    log = workspace.home / "serving" / "benchmark-service.log"
    process = start_background(workspace, args.port, log, workers=args.workers)
    url = f"http://127.0.0.1:{args.port}"
    figures: dict = {"settings": vars(args)}
    try:
        n = int(args.rate * (args.duration + args.warmup)) + 10
        users = _users(workspace, n)
        now = _data_end(workspace)
        if args.mix == "session":
            columns = [c.USER_ID, c.SESSION_ID, c.ITEM_ID, c.EVENT_TYPE, c.TIMESTAMP]
            events = pd.read_parquet(workspace.table(c.EVENTS), columns=columns)
            sessions = session_prefixes(events, n, args.seed)
            figures["mix"] = f"session ({n:,} visitors drawn; items a request {_lengths(sessions)})"
            phases = {"session": session_bodies(sessions, 10, now)}
        else:
            figures["mix"] = "users"
            modes = [m for m in args.modes.split(",") if m]
            phases = {mode: loadgen.make_bodies(users, mode, 10, n, now=now) for mode in modes}
        for mode, bodies in phases.items():
            if mode != "cached":
                _forget_cached_lists(workspace, mode)
            before = _worker_cpu(process.pid)
            figures[mode] = loadgen.run_load(
                url, args.rate, args.duration, bodies, warmup=args.warmup,
                prime=mode == "cached",
            )  # fmt: skip
            # (warm-up and priming requests are in the CPU too)
            sent = figures[mode]["sent"] + figures[mode]["warmup"].get("sent", 0)
            figures[mode]["server"] = _cpu_split(before, _worker_cpu(process.pid), sent)
        if args.move_alias:
            client = _client(workspace)
            current = client.get_model_version_by_alias(MODEL, "production").version
            versions = sorted(
                int(v.version) for v in client.search_model_versions(f"name='{MODEL}'")
            )
            other = next((str(v) for v in reversed(versions) if str(v) != current), None)
            if other is None:
                sys.exit("--move-alias needs a second registered version")
            moved: dict = {}
            mover = threading.Thread(
                target=_move_alias,
                args=(workspace, args.warmup + args.duration / 3, other, moved),
            )
            mover.start()
            _forget_cached_lists(workspace, "alias-move")  # (or earlier runs' lists answer)
            bodies = loadgen.make_bodies(users, "uncached", 10, n, now=now - 86_400)
            figures["alias_move"] = loadgen.run_load(
                url, args.move_rate or args.rate, args.duration, bodies, warmup=args.warmup
            ) | {"moved": moved}
            mover.join()
            client.set_registered_model_alias(MODEL, "production", current)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
    print(f"mix: {figures['mix']}")
    print(loadgen.format_report({k: v for k, v in figures.items() if k not in ("settings", "mix")}))
    for mode, budget in BUDGETS.items():
        if mode in figures:
            p99 = figures[mode]["latency_ms"]["p99"]
            verdict = "PASS" if p99 is not None and p99 < budget else "FAIL"
            server = figures[mode]["server"]
            print(
                f"{mode}: p99 {p99} ms at {args.rate:g}/s (budget {budget} ms), "
                f"error rate {figures[mode]['error_rate']}: {verdict}; workers' CPU "
                f"{server['worker_cpu_s']} s, {server['cpu_ms_per_request']} ms a request"
            )
    if "alias_move" in figures:
        move = figures["alias_move"]
        print(
            f"alias moved {move['moved']}: error rate {move['error_rate']}, "
            f"versions answering {move['versions']['counts']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()

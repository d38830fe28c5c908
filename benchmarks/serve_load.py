"""Serving figures: throughput and latency of the running service, cached and uncached, and
a registry alias moved during a load run.

    python benchmarks/serve_load.py --home WORKSPACE [--profile production] [--workers 2]
        [--rate 100] [--duration 30] [--candidates 300] [--move-alias] [--json FILE]

The workspace must hold a lake, materialised features and a model with alias ``production``
(``recsys demo`` leaves one; for the full shop: ``recsys generate --scale full``, ``ingest``,
``features build/apply/materialize``, ``train``, then promote). The service is started as its
own process group (``recsys serve`` equivalent) and the load comes from ``loadgen.py`` in this
process: loopback only, bounded in requests and time. Requests carry the instant just after
the data's end, so the model sees the same time a shop would see the day after training.

Acceptance (issue 5): with the full shop, production profile, 2 workers, 300 candidates:
uncached p99 < 25 ms at 100 requests/s with no errors; cached p99 < 5 ms; with
``--move-alias``: zero failed requests while the alias moves, and responses switch version.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen

from recsys import columns as c
from recsys.workspace import Workspace
from serving.server import start_background

MODEL = "recsys-recommender"
BUDGET_UNCACHED_P99_MS = 25.0
BUDGET_CACHED_P99_MS = 5.0


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
        "--modes", default="uncached,cached", help="load phases to run (uncached,cached)"
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
        for mode in [m for m in args.modes.split(",") if m]:
            if mode == "uncached":
                _forget_cached_lists(workspace, "uncached")
            bodies = loadgen.make_bodies(users, mode, 10, n, now=now)
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
    print(loadgen.format_report({k: v for k, v in figures.items() if k != "settings"}))
    budgets = {"uncached": BUDGET_UNCACHED_P99_MS, "cached": BUDGET_CACHED_P99_MS}
    for mode, budget in budgets.items():
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

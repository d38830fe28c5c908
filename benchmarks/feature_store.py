"""Feature store figures on a generated shop: build, apply, materialise, retrieve, read online.

    python benchmarks/feature_store.py [--scale full] [--entity-rows 2000000] [--json FILE]

Every job runs as a child process (`recsys ...` or a retrieval script), timed, with its peak
resident memory from the kernel (``os.wait4``). Materialisation is measured into SQLite (local
profile) and Redis (production profile): full up to a week before the end, then incremental
for the last week after rebuilding the tables. The online read is one user plus 300 products
through ``features.online.OnlineReader`` on Redis, against Feast's own ``get_online_features``.
Needs PostgreSQL and Redis (database ``RECSYS_PG_DATABASE``, default ``test``).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

RETRIEVE = """
import sys, pandas as pd, numpy as np
from features import names as n
from features.store import historical_features, open_store
from recsys import columns as c
from recsys.workspace import Workspace
ws = Workspace.from_env(sys.argv[1], "local")
events = pd.read_parquet(ws.table(c.EVENTS))
rows = int(sys.argv[2])
events = events.sample(n=rows, replace=len(events) < rows, random_state=0)
products = pd.read_parquet(ws.table(c.PRODUCTS)).set_index(c.ITEM_ID)
entity = pd.DataFrame({c.USER_ID: events[c.USER_ID].to_numpy(),
                       c.ITEM_ID: events[c.ITEM_ID].to_numpy(),
                       n.EVENT_TIMESTAMP: events[c.TIMESTAMP].to_numpy()})
entity[c.CATEGORY] = entity[c.ITEM_ID].map(products[c.CATEGORY])
entity[n.REQUEST_TS] = entity[n.EVENT_TIMESTAMP].astype("int64") // 10**9
entity[n.REQUEST_DEVICE] = events[c.DEVICE].to_numpy()
store = open_store(ws)
frame = historical_features(ws, store, entity, n.RANKER_SERVICE)
assert len(frame) == rows, (len(frame), rows)
print(len(frame), frame.shape[1])
"""


def timed(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run a child and measure wall time and its own peak RSS."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = round(time.perf_counter() - started, 2)
    out = child.stdout.read().decode() if child.stdout else ""
    err = child.stderr.read().decode() if child.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{err[-3000:]}")
    return {
        "seconds": seconds,
        "peak_rss_gb": round(usage.ru_maxrss / 1024**2, 3),
        "output": out.strip().splitlines()[-1] if out.strip() else "",
    }


def online_latency(home: Path, env: dict[str, str], requests: int) -> dict[str, float]:
    os.environ.update(env)
    import numpy as np
    import pandas as pd

    from features.online import OnlineReader
    from features.store import open_store
    from recsys import columns as c
    from recsys.workspace import Workspace

    ws = Workspace.from_env(home, "production")
    store = open_store(ws)
    reader = OnlineReader(store)
    products = pd.read_parquet(ws.table(c.PRODUCTS))
    users = pd.read_parquet(ws.table(c.EVENTS), columns=[c.USER_ID])[c.USER_ID].unique()
    rng = np.random.default_rng(0)
    item_ids = products[c.ITEM_ID].to_numpy()
    categories = products[c.CATEGORY].dropna().unique()

    def request() -> tuple[str, list[str], list[str]]:
        return (
            str(rng.choice(users)),
            list(rng.choice(item_ids, 300, replace=False)),
            list(rng.choice(categories, 20, replace=False)),
        )

    figures = {}
    for name, count in (("reader", requests), ("feast_sdk", max(requests // 20, 20))):
        latencies = []
        for i in range(count + 20):
            user, items, cats = request()
            started = time.perf_counter()
            if name == "reader":
                reader.read(user, items, cats)
            else:
                store.get_online_features(
                    features=[f"product_activity:{f}" for f in ("views_7d", "views_30d", "trend")]
                    + [f"product_catalog:{f}" for f in ("price", "category", "in_stock")],
                    entity_rows=[{c.ITEM_ID: i} for i in items],
                ).to_dict()
            if i >= 20:  # warm-up
                latencies.append((time.perf_counter() - started) * 1000)
        figures[name] = {
            "p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "p99_ms": round(float(np.percentile(latencies, 99)), 2),
            "requests": count,
        }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="full", choices=("tiny", "small", "full"))
    parser.add_argument("--entity-rows", type=int, default=2_000_000)
    parser.add_argument("--requests", type=int, default=2000, help="online reads to time")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()

    project = f"bench{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "RECSYS_FEAST_PROJECT": project,
        "RECSYS_PG_SCHEMA": project,
        "RECSYS_PG_DATABASE": os.environ.get("RECSYS_PG_DATABASE", "test"),
        "RECSYS_PG_SSLMODE": "disable",
    }
    recsys = [sys.executable, "-m", "recsys.cli", "-q"]
    figures: dict[str, object] = {"scale": args.scale, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="recsys-fs-bench-") as tmp:
        shop, home = Path(tmp) / "shop", Path(tmp) / "ws"
        timed([*recsys, "generate", "--out", str(shop), "--scale", args.scale], env)
        timed([*recsys, "--home", str(home), "ingest", str(shop)], env)
        manifest_end = None
        for profile, store_name in (("local", "sqlite"), ("production", "redis")):
            base = [*recsys, "--home", str(home), "--profile", profile, "features"]
            early = timed([*base, "build", "--as-of", "2026-03-25"], env)
            apply = timed([*base, "apply"], env)
            full = timed([*base, "materialize"], env)
            build = timed([*base, "build"], env)
            incremental = timed([*base, "materialize", "--incremental"], env)
            figures[profile] = {
                "build": build,
                "build_week_earlier": early,
                "apply": apply,
                f"materialize_full_{store_name}": full,
                f"materialize_incremental_{store_name}": incremental,
            }
            manifest_end = json.loads((home / "features" / "manifest.json").read_text())
        figures["feature_rows"] = manifest_end["rows"]
        retrieval = timed([sys.executable, "-c", RETRIEVE, str(home), str(args.entity_rows)], env)
        figures["historical_retrieval"] = {"entity_rows": args.entity_rows, **retrieval}
        figures["online_read_redis"] = online_latency(home, env, args.requests)
        from features.postgres import drop_schema

        os.environ.update(env)
        drop_schema(project)
        import redis

        client = redis.Redis(
            host=env.get("RECSYS_REDIS_HOST", "127.0.0.1"),
            port=int(env.get("RECSYS_REDIS_PORT", "6379")),
            db=int(env.get("RECSYS_REDIS_DB", "0")),
        )
        for key in client.scan_iter(match=f"*{project}", count=10_000):
            client.delete(key)

    print(f"scale={args.scale} cores={os.cpu_count()} feature rows: {figures['feature_rows']}")
    print(f"{'job':<42} {'wall s':>8} {'peak GB':>8}")
    for profile in ("local", "production"):
        for job, f in figures[profile].items():
            print(f"{profile + ' ' + job:<42} {f['seconds']:>8.2f} {f['peak_rss_gb']:>8.3f}")
    r = figures["historical_retrieval"]
    print(
        f"{'historical retrieval ' + format(r['entity_rows'], ',') + ' rows (local)':<42} "
        f"{r['seconds']:>8.2f} {r['peak_rss_gb']:>8.3f}"
    )
    for name, f in figures["online_read_redis"].items():
        print(
            f"online read 1 user + 300 products, {name:<10} p50 {f['p50_ms']:.2f} ms, "
            f"p99 {f['p99_ms']:.2f} ms ({f['requests']} requests)"
        )
    reader_p99 = figures["online_read_redis"]["reader"]["p99_ms"]
    print(f"target p99 < 10 ms: {'PASS' if reader_p99 < 10 else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

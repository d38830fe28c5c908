"""The HTTP floor of the service on this machine: latency of BentoML answering a stored list.

    python benchmarks/http_floor.py [--rates 100] [--workers 2] [--threads 4] [--duration 30]

It serves ``floor_service.py`` (BentoML configured as the recommendation service, whose
/recommend only reads a 10-item list from Redis database $RECSYS_REDIS_DB, default 3) and
loads it with ``loadgen.py`` from this process, as ``serve_load.py`` loads the real service.
The cached answer of the real service does this and a little bookkeeping more, so its p99 can
be no lower than this one's: the figure says how much of the 5 ms cached budget (and the
25 ms uncached budget) BentoML itself leaves.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
import floor_service
import loadgen

REPO = Path(__file__).resolve().parents[1]


def _wait_ready(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the floor service exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"the floor service was not ready after {timeout:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="100", help="comma-separated request rates")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=3310)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()

    db = int(os.environ.get("RECSYS_REDIS_DB", "3"))
    items = [{"item_id": f"p{i:05d}", "score": 1 - i / 10, "reason": "popular"} for i in range(10)]
    redis.Redis(db=db).set(floor_service.KEY, json.dumps({"items": items}))
    env = {
        **os.environ,
        "RECSYS_SERVE_WORKERS": str(args.workers),
        "RECSYS_SERVE_THREADS": str(args.threads),
        "RECSYS_REDIS_DB": str(db),
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    bentoml = Path(sys.executable).with_name("bentoml")
    argv = [str(bentoml), "serve", "floor_service:FloorService", "--host", "127.0.0.1",
            "--port", str(args.port), "--working-dir", str(REPO / "benchmarks")]  # fmt: skip
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{args.port}"
    figures = {}
    try:
        _wait_ready(url, process)
        for rate in [float(r) for r in args.rates.split(",") if r]:
            n = int(rate * (args.duration + args.warmup)) + 10
            bodies = loadgen.make_bodies(None, "cached", 10, n)
            figures[f"{rate:g}/s"] = loadgen.run_load(
                url, rate, args.duration, bodies, warmup=args.warmup
            )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
    print(loadgen.format_report(figures))
    for name, report in figures.items():
        latency = report["latency_ms"]
        print(
            f"floor at {name}, {args.workers} workers: p50 {latency['p50']} ms, "
            f"p99 {latency['p99']} ms, error rate {report['error_rate']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()

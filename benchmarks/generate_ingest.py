"""Wall time and peak memory of `recsys generate` and `recsys ingest`, each in its own process.

    python benchmarks/generate_ingest.py [--scale full] [--format parquet] [--json FILE]

Each stage runs as a child process; its peak resident memory comes from the kernel's
accounting of that child (``os.wait4``), so it is the stage's own, not this script's. Budget
(issue 2): both stages together under 180 s, each under 6 GB. Exit code 1 when over budget.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_SECONDS = 180.0
BUDGET_GB = 6.0


def run_stage(argv: list[str]) -> dict[str, float]:
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    stderr = child.stderr.read().decode() if child.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"stage failed: {' '.join(argv)}\n{stderr}")
    return {"seconds": round(seconds, 2), "peak_rss_gb": round(usage.ru_maxrss / 1024**2, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="full", choices=("tiny", "small", "full"))
    parser.add_argument("--format", default="parquet", choices=("parquet", "csv"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()

    recsys = [sys.executable, "-m", "recsys.cli", "--quiet"]
    with tempfile.TemporaryDirectory(prefix="recsys-bench-") as tmp:
        shop, home = Path(tmp) / "shop", Path(tmp) / "ws"
        stages = {
            "generate": run_stage(
                [
                    *recsys,
                    "generate",
                    "--out",
                    str(shop),
                    "--scale",
                    args.scale,
                    "--seed",
                    str(args.seed),
                    "--format",
                    args.format,
                ]
            ),
            "ingest": run_stage(
                [
                    *recsys,
                    "--home",
                    str(home),
                    "ingest",
                    str(shop),
                    "--json",
                    str(Path(tmp) / "report.json"),
                ]
            ),
        }
        report = json.loads((Path(tmp) / "report.json").read_text())
    events = report["tables"]["events"]
    total = round(sum(s["seconds"] for s in stages.values()), 2)
    peak = max(s["peak_rss_gb"] for s in stages.values())
    ok = total < BUDGET_SECONDS and peak < BUDGET_GB
    print(f"scale={args.scale} format={args.format} seed={args.seed} cores={os.cpu_count()}")
    print(f"{'stage':<10} {'wall s':>8} {'peak RSS GB':>12}")
    for name, figures in stages.items():
        print(f"{name:<10} {figures['seconds']:>8.2f} {figures['peak_rss_gb']:>12.3f}")
    print(
        f"{'total':<10} {total:>8.2f} {peak:>12.3f}   budget {BUDGET_SECONDS:.0f} s, "
        f"{BUDGET_GB:.0f} GB: {'PASS' if ok else 'FAIL'}"
    )
    print(
        f"events in {events['rows_in']:,}, kept {events['rows_kept']:,}, "
        f"quarantined {events['rows_quarantined']:,} {events['quarantined_by_reason']}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "scale": args.scale,
                    "format": args.format,
                    "stages": stages,
                    "total_seconds": total,
                    "peak_rss_gb": peak,
                    "within_budget": ok,
                    "events": events,
                },
                indent=2,
            )
            + "\n"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Training figures on a generated shop: lake to registered version, time and memory per stage.

    python benchmarks/train.py [--scale full] [--seed 0] [--workdir DIR] [--json FILE]

Generates and ingests the shop (not timed as training), then times ``recsys train`` as a
child process (wall clock and peak resident memory from the kernel, ``os.wait4``). The stage
table comes from the run's own metrics JSON (each stage's seconds, and the process's peak
memory by the end of that stage). Feature tables are built inside the timed run when the
lake is new, so 'from lake to registered version' includes them. Budget for the full shop
(issue 17): under 5 minutes, under 8 GB.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BUDGET_SECONDS = 300
BUDGET_GB = 8.0


def run(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = b""
    assert child.stdout is not None
    for line in child.stdout:
        output += line
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{output.decode()[-4000:]}")
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "peak_gb": round(usage.ru_maxrss / 1024**2, 3),
        "output": output.decode(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="full", choices=("tiny", "small", "full"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="/tmp/recsys_train_bench")
    parser.add_argument("--config", help="training YAML (default: the built-in defaults)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()

    work = Path(args.workdir) / args.scale
    home, shop = work / "home", work / "shop"
    env = {**os.environ, "RECSYS_HOME": str(home), "RECSYS_PROFILE": "local"}
    recsys = str(Path(sys.executable).with_name("recsys"))
    if not (home / "lake" / "manifest.json").exists():
        run(
            [
                recsys,
                "generate",
                "--out",
                str(shop),
                "--scale",
                args.scale,
                "--seed",
                str(args.seed),
            ],
            env,
        )
        run([recsys, "ingest", str(shop)], env)
    metrics_file = work / "metrics.json"
    argv = [recsys, "train", "--metrics-out", str(metrics_file)]
    if args.config:
        argv += ["--config", args.config]
    total = run(argv, env)
    metrics = json.loads(metrics_file.read_text())

    print(f"recsys train on the {args.scale} shop (seed {args.seed})")
    print(f"{'stage':<42} {'seconds':>8} {'peak GB':>8}")
    for stage in metrics["stages"]:
        print(f"{stage['stage']:<42} {stage['seconds']:>8.1f} {stage['peak_gb']:>8.2f}")
    print(
        f"{'total (process, incl. start-up, MLflow)':<42} {total['seconds']:>8.1f} "
        f"{total['peak_gb']:>8.2f}"
    )
    ok = total["seconds"] < BUDGET_SECONDS and total["peak_gb"] < BUDGET_GB
    print(f"budget {BUDGET_SECONDS}s / {BUDGET_GB} GB: {'PASS' if ok else 'FAIL'}")
    print()
    print(f"{'model':<10} {'ndcg@10':>8} {'recall@20':>9}")
    for name, values in metrics["models"].items():
        print(f"{name:<10} {values['ndcg@10']:>8.4f} {values['recall@20']:>9.4f}")
    rounds = metrics["ranker"]
    print(
        f"ranker: {rounds['rounds']} rounds kept (early stopping: "
        f"{rounds['early_stopping_rounds']}); learned from "
        + ", ".join(f"{w['window']} {w['requests']:,}" for w in rounds["learning_requests"])
        + " requests"
    )
    print(f"segments served by a simple order: {metrics['segment_orders']['served_by'] or 'none'}")
    art = metrics["artefact"]
    print(
        f"judged model data end {art['judged_model_data_end']}; registered artefact data end "
        f"{art['deployed_data_end']} ({art['deployed_events']:,} events)"
    )
    ranker, als = metrics["models"]["ranker"], metrics["models"]["als"]
    margin = ranker["ndcg@10"] / max(als["ndcg@10"], 1e-12) - 1
    print(f"ranker over ALS alone, ndcg@10: {100 * margin:+.1f}%")
    print()
    print(f"{'segment':<14} {'ranker':>8} {'popular':>8} (ndcg@10)")
    for segment, values in metrics["segments"]["ranker"].items():
        popular = metrics["segments"]["popular"].get(segment, {}).get("ndcg@10", float("nan"))
        print(f"{segment:<14} {values['ndcg@10']:>8.4f} {popular:>8.4f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "total": {k: v for k, v in total.items() if k != "output"},
                    "stages": metrics["stages"],
                    "models": metrics["models"],
                    "segments": metrics["segments"],
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()

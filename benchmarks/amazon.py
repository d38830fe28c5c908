"""The platform on real data: the Amazon review sequences under the leave-one-out protocol.

    python benchmarks/amazon.py [--datasets Toys_and_Games Sports_and_Outdoors]
                                [--configs default tuned] [--data DIR]
                                [--workdir /tmp/amazon_bench] [--json FILE]

Generated shops only show that the platform finds what its own generator hid. These public
sets (S3-Rec's Sports_and_Outdoors and Toys_and_Games, see the data folder's README.md) have
published results and strong measured baselines, so they say whether the hybrid is any good.

The protocol is the published one, kept honest: each user's last item is the answer, and the
answer never enters what the platform ingests. The benchmark writes each user's sequence
without its last item (``input/<name>.txt.gz``); only that file goes through the product's
command line, as a user would run it, each data set in its own workspace
(``RECSYS_HOME=<workdir>/<name>/home``, local profile):

1. ``recsys convert sequences`` writes shop files (a user's n-th item one day after the
   (n-1)-th, every user's last remaining item on the same day);
2. ``recsys ingest`` with ``examples/amazon/mapping.yaml``;
3. for each config (``default``: no ``--config`` at all, what a new user gets; ``tuned``:
   ``examples/amazon/train.yaml``): ``recsys train``, then
   ``recsys recommend --alias candidate --all --k 20`` from the version just registered.

Each step is a child process, timed, with its peak resident memory from the kernel
(``os.wait4``). The judging is done here, independently of the platform's own evaluation: the
target is each user's last item read from the raw sequence file, HR@K and NDCG@K are averaged
over every user of the file (a user without recommendations is a miss), the whole catalogue is
ranked, and no recommended item may be in the user's history (every item before the target).
The platform's own test-window figures (the user's second-to-last item, judged by training on
a model fit before it) are printed beside them as a cross-check.
"""

import argparse
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
# beside the repository, as laid out for this project; any other folder with --data
DATA = REPO.parent / "shared" / "data" / "amazon"
DATASETS = ("Toys_and_Games", "Sports_and_Outdoors")
CONFIGS = {"default": None, "tuned": REPO / "examples/amazon/train.yaml"}
# convert -> recommend, one config, this machine: issue 17's budget is Toys' (Sports, about
# twice its size, is timed and printed, not judged on time)
BUDGET_SECONDS, BUDGET_GB = 600.0, 6.0
BUDGETED = ("Toys_and_Games",)
KS = (10, 20)
METRICS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20")

# The best published full-ranking figures (ICSRec, WSDM 2024; S3-Rec from the data folder's
# README) and the best measured baselines under the same protocol.
REFERENCE: dict[str, list[tuple[str, tuple[float | None, ...]]]] = {
    "Sports_and_Outdoors": [
        ("ICSRec, WSDM 2024 (published)", (0.0565, 0.0335, None, None)),
        ("S3-Rec (published)", (0.0385, 0.0204, 0.0607, 0.0260)),
        ("item-item KNN K=200 (measured)", (0.0476, 0.0256, None, None)),
        ("ALS 128 f., BM25 (measured)", (0.0435, 0.0237, None, None)),
        ("successor of last item (measured)", (0.0379, 0.0247, None, None)),
    ],
    "Toys_and_Games": [
        ("ICSRec, WSDM 2024 (published)", (0.1055, 0.0657, None, None)),
        ("S3-Rec (published)", (0.0700, 0.0376, 0.1065, 0.0468)),
        ("successor of last item (measured)", (0.0783, 0.0540, None, None)),
        ("item-item KNN K=200 (measured)", (0.0774, 0.0452, None, None)),
        ("ALS 128 f., BM25 (measured)", (0.0680, 0.0379, None, None)),
    ],
}
# Issue 17's resolve targets for the tuned config (the default config must be within 15% of
# the tuned one on HR@10); its further goal is in GOALS.
TARGETS: dict[str, dict[str, float]] = {
    "Sports_and_Outdoors": {"hr@10": 0.062, "ndcg@10": 0.035},
    "Toys_and_Games": {"hr@10": 0.12, "ndcg@10": 0.075},
}
GOALS: dict[str, dict[str, float]] = {
    "Sports_and_Outdoors": {"hr@10": 0.072, "ndcg@10": 0.041},
    "Toys_and_Games": {"hr@10": 0.135, "ndcg@10": 0.085},
}
DEFAULT_WITHIN = 0.15


@dataclass
class Step:
    """One CLI call: what ran, how long, how much memory, and where its output went."""

    name: str
    argv: list[str]
    seconds: float = 0.0
    peak_gb: float = 0.0
    exit_code: int = 0
    log: str = ""


@dataclass
class Outcome:
    """Everything measured on one data set, as written to ``--json``."""

    dataset: str
    config: str = "tuned"
    users: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    users_with_recs: int = 0
    users_short_lists: int = 0
    unknown_users_in_recs: int = 0
    duplicate_recs: int = 0
    history_violations: int = 0
    users_with_violations: int = 0
    platform_test: dict[str, float] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    passed: bool = False
    failures: list[str] = field(default_factory=list)
    error: str | None = None


class StepFailed(RuntimeError):
    """A CLI step exited non-zero: the benchmark stops for that data set and says where."""


def recsys_executable(given: str | None) -> str:
    """The ``recsys`` console script of this interpreter's environment, not whichever is first
    on PATH, so the benchmark judges the code of this checkout."""
    if given:
        return given
    beside = Path(sys.executable).parent / "recsys"
    if beside.exists():
        return str(beside)
    found = shutil.which("recsys")
    if not found:
        sys.exit("cannot find the `recsys` command: install the project or pass --recsys")
    return found


def workspace_env(home: Path) -> dict[str, str]:
    """The caller's environment pointed at this data set's own workspace.

    MLflow settings that would send runs elsewhere are dropped, so the registry the
    ``recommend`` step reads is the one the ``train`` step of this same run wrote.
    """
    env = dict(os.environ)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "RECSYS_MLFLOW_ARTIFACTS"):
        env.pop(name, None)
    env["RECSYS_HOME"] = str(home)
    env["RECSYS_PROFILE"] = "local"
    return env


def run_step(step: Step, env: dict[str, str], log_dir: Path, echo: bool) -> Step:
    """Run one CLI call, its output to a log file (a pipe could fill up and stall the child),
    timed, and with the child's own peak RSS from ``os.wait4`` (kilobytes on Linux)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{step.name}.log"
    step.log = str(log_path)
    print(f"  {step.name:<10} $ {' '.join(step.argv)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with log_path.open("w") as log:
        child = subprocess.Popen(
            step.argv,
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=None if echo else subprocess.STDOUT,
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    step.seconds = round(time.perf_counter() - started, 2)
    step.peak_gb = round(usage.ru_maxrss / 1024**2, 3)
    step.exit_code = child.returncode
    print(
        f"  {step.name:<10} exit {step.exit_code} in {step.seconds:.1f}s, "
        f"peak {step.peak_gb:.2f} GB",
        file=sys.stderr,
        flush=True,
    )
    if step.exit_code != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-60:]
        raise StepFailed(
            f"step '{step.name}' failed (exit {step.exit_code}): {' '.join(step.argv)}\n"
            f"log: {log_path}\n" + "\n".join(tail)
        )
    return step


def read_sequences(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Targets (each user's last item) and histories (every item before it) from the raw file.

    Read here rather than from the lake, so that what the platform ingested, dropped or
    renamed cannot change what it is judged against.
    """
    users, targets, hist_users, hist_items = [], [], [], []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            tokens = line.split()
            if len(tokens) < 2:
                continue
            user, items = tokens[0], tokens[1:]
            users.append(user)
            targets.append(items[-1])
            hist_users.extend([user] * (len(items) - 1))
            hist_items.extend(items[:-1])
    target = pd.DataFrame({"user_id": users, "target": targets})
    if target["user_id"].duplicated().any():
        raise ValueError(f"{path}: a user has more than one line")
    history = pd.DataFrame({"user_id": hist_users, "item_id": hist_items})
    return target, history


def write_histories(sequences: Path, out: Path) -> tuple[int, int]:
    """The platform's input: every line of ``sequences`` without its last item (the answer,
    which stays with the judge). A user with a single item keeps an empty history and is left
    out of the input; the judge still counts them (a miss unless the platform answers new users
    well). Returns (users written, items held out)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    written = held = 0
    with (
        gzip.open(sequences, "rt", encoding="utf-8") as src,
        gzip.open(out, "wt", encoding="utf-8") as dst,
    ):
        for line in src:
            tokens = line.split()
            if len(tokens) < 2:
                continue
            held += 1
            if len(tokens) > 2:
                dst.write(" ".join(tokens[:-1]) + "\n")
                written += 1
    return written, held


def judge(recs: pd.DataFrame, target: pd.DataFrame, history: pd.DataFrame, out: Outcome) -> None:
    """HR@K and NDCG@K over every user of the file, and the protocol's checks on the lists.

    The converter and the mapping keep the source's ids as they are (no prefix), and the
    recommendations carry them as strings, so both sides are compared as strings.
    """
    recs = recs[["user_id", "rank", "item_id"]].copy()
    recs["user_id"] = recs["user_id"].astype(str)
    recs["item_id"] = recs["item_id"].astype(str)
    recs["rank"] = recs["rank"].astype(int)
    known = recs["user_id"].isin(target["user_id"])
    out.unknown_users_in_recs = int(recs.loc[~known, "user_id"].nunique())
    recs = recs[known]
    out.duplicate_recs = int(recs.duplicated(["user_id", "item_id"]).sum())
    out.users = len(target)
    per_user = recs.groupby("user_id").size()
    out.users_with_recs = len(per_user)
    out.users_short_lists = int((per_user < max(KS)).sum()) + (out.users - len(per_user))

    hits = recs.merge(target, left_on=["user_id", "item_id"], right_on=["user_id", "target"])
    best = hits.groupby("user_id")["rank"].min()
    for k in KS:
        at_k = best[best <= k]
        out.metrics[f"hr@{k}"] = len(at_k) / out.users
        out.metrics[f"ndcg@{k}"] = sum(1.0 / math.log2(r + 1) for r in at_k) / out.users

    shown = recs[recs["rank"] <= max(KS)]
    seen = shown.merge(history, on=["user_id", "item_id"])
    out.history_violations = len(seen)
    out.users_with_violations = int(seen["user_id"].nunique())


def platform_figures(metrics_path: Path) -> dict[str, float]:
    """The platform's own test-window figures for its ranker (a cross-check: it judges a
    sample of second-to-last items with its own code, on a model fit before them)."""
    if not metrics_path.exists():
        return {}
    ranker = json.loads(metrics_path.read_text()).get("models", {}).get("ranker", {})
    return {k: float(v) for k, v in ranker.items() if k.split("@")[0] in ("ndcg", "recall", "hit")}


def verdict(out: Outcome, tuned: "Outcome | None") -> None:
    """The tuned config must reach the resolve targets; the default config must be within
    ``DEFAULT_WITHIN`` of the tuned one on HR@10; every config must obey the protocol (no
    history item recommended) and the budget."""
    if out.config == "tuned":
        for metric, bar in TARGETS[out.dataset].items():
            value = out.metrics.get(metric, 0.0)
            if not value >= bar:
                out.failures.append(f"{metric} {value:.4f} < target {bar:.4f}")
    elif tuned is not None and tuned.metrics:
        floor = (1 - DEFAULT_WITHIN) * tuned.metrics["hr@10"]
        if not out.metrics.get("hr@10", 0.0) >= floor:
            out.failures.append(
                f"hr@10 {out.metrics.get('hr@10', 0.0):.4f} < {floor:.4f} "
                f"({DEFAULT_WITHIN:.0%} below the tuned config's)"
            )
    if out.history_violations:
        out.failures.append(
            f"{out.history_violations} recommended items are in the user's history "
            f"({out.users_with_violations} users)"
        )
    seconds = sum(step.seconds for step in out.steps)
    peak = max((step.peak_gb for step in out.steps), default=0.0)
    if out.dataset in BUDGETED and (seconds > BUDGET_SECONDS or peak > BUDGET_GB):
        out.failures.append(
            f"budget: {seconds:.0f} s, {peak:.2f} GB (budget {BUDGET_SECONDS:.0f} s, "
            f"{BUDGET_GB:.0f} GB)"
        )
    out.passed = not out.failures


def run_dataset(name: str, args: argparse.Namespace, recsys: str) -> list[Outcome]:
    """Hold the answers out, convert and ingest the rest once, then train and recommend with
    each config in the same workspace (each training registers a new version and moves the
    ``candidate`` alias to it), then judge each config's lists."""
    root = args.workdir / name
    home, shop = root / "home", root / "shop"
    sequences = args.data / f"{name}.txt.gz"
    attributes = args.data / f"{name}_item2attributes.json.gz"
    histories = root / "input" / f"{name}.txt.gz"
    if root.exists():
        shutil.rmtree(root)  # a benchmark judges a clean run, never a left-over workspace
    root.mkdir(parents=True)
    written, held = write_histories(sequences, histories)
    print(
        f"{name}: {held:,} answers held out, {written:,} histories written to {histories}",
        file=sys.stderr,
        flush=True,
    )
    env = workspace_env(home)
    print(f"{name}: workspace {home}", file=sys.stderr, flush=True)
    shared = [
        Step(
            "convert",
            [
                recsys,
                "convert",
                "sequences",
                str(histories),
                "--attributes",
                str(attributes),
                "--out",
                str(shop),
            ],
        ),
        Step("ingest", [recsys, "ingest", str(shop), "--mapping", str(args.mapping)]),
    ]
    outcomes = []
    for step in shared:
        try:
            run_step(step, env, root / "logs", args.verbose)
        except StepFailed as exc:
            failed = Outcome(dataset=name, config="-", steps=shared, error=str(exc))
            failed.failures.append(f"step '{step.name}' failed")
            return [failed]
    target, history = read_sequences(sequences)
    tuned = None
    for config_name in sorted(args.configs, key=lambda n: n != "tuned"):
        out = Outcome(dataset=name, config=config_name, steps=list(shared))
        metrics_path = root / f"metrics-{config_name}.json"
        recs_path = root / f"recs-{config_name}.parquet"
        config = args.tuned if config_name == "tuned" else None
        train = [recsys, "train", "--metrics-out", str(metrics_path)]
        train += ["--config", str(config)] if config else []
        recommend = [
            recsys,
            "recommend",
            "--alias",
            "candidate",
            "--all",
            "--k",
            str(max(KS)),
            "--out",
            str(recs_path),
        ]
        try:
            for step in (
                Step(f"train:{config_name}", train),
                Step(f"recommend:{config_name}", recommend),
            ):
                out.steps.append(step)
                run_step(step, env, root / "logs", args.verbose)
        except StepFailed as exc:
            out.error = str(exc)
            out.failures.append(f"step '{out.steps[-1].name}' failed")
            outcomes.append(out)
            continue
        judge(pd.read_parquet(recs_path), target, history, out)
        out.platform_test = platform_figures(metrics_path)
        verdict(out, tuned)
        tuned = out if config_name == "tuned" else tuned
        outcomes.append(out)
    return outcomes


def fmt(value: float | None) -> str:
    return "     -" if value is None else f"{value:.4f}"


def report(out: Outcome) -> None:
    """One table per data set and config: ours next to the references, the verdict, the
    steps with their time and memory against the budget."""
    print(f"\n== {out.dataset}, {out.config} config ==")
    if out.error:
        print(f"FAIL: {out.error}")
    if out.metrics:
        print(f"users judged: {out.users:,} (with recommendations: {out.users_with_recs:,})")
        print(f"{'model':<36}" + "".join(f"{m:>9}" for m in METRICS))
        ours = "".join(f"{out.metrics[m]:>9.4f}" for m in METRICS)
        print(f"{f'recsys, {out.config} config':<36}{ours}")
        for label, values in REFERENCE[out.dataset]:
            print(f"{label:<36}" + "".join(f"{fmt(v):>9}" for v in values))
        if out.config == "tuned":
            bars = ", ".join(f"{m} >= {v:.4f}" for m, v in TARGETS[out.dataset].items())
            goals = ", ".join(f"{m} > {v:.4f}" for m, v in GOALS[out.dataset].items())
            print(f"targets: {bars}; goal: {goals}")
        else:
            print(f"target: hr@10 within {DEFAULT_WITHIN:.0%} of the tuned config's")
        print(
            f"history items recommended: {out.history_violations} "
            f"({out.users_with_violations} users); duplicate items in a list: "
            f"{out.duplicate_recs}; lists shorter than {max(KS)} or missing: "
            f"{out.users_short_lists}; users in the lists but not in the file: "
            f"{out.unknown_users_in_recs}"
        )
        if out.platform_test:
            shown = {
                k: round(v, 4) for k, v in out.platform_test.items() if k.endswith(("@10", "@20"))
            }
            print(f"platform's own test-window figures (second-to-last items): {shown}")
        print("PASS" if out.passed else "FAIL: " + "; ".join(out.failures))
    print(f"{'step':<18}{'seconds':>10}{'peak GB':>10}{'exit':>6}")
    for step in out.steps:
        print(f"{step.name:<18}{step.seconds:>10.1f}{step.peak_gb:>10.2f}{step.exit_code:>6}")
    total = sum(step.seconds for step in out.steps)
    peak = max((step.peak_gb for step in out.steps), default=0.0)
    print(
        f"{'total':<18}{total:>10.1f}{peak:>10.2f}   convert -> recommend"
        + (
            f", budget {BUDGET_SECONDS:.0f} s and {BUDGET_GB:.0f} GB"
            if out.dataset in BUDGETED
            else ""
        )
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Judge the platform on the Amazon review sequences (leave-one-out, all-item "
            "ranking, the answers never ingested) through its CLI: convert, ingest, train, "
            "recommend, then HR@10/20 and NDCG@10/20 over all users next to the published "
            "and measured reference numbers. Exit 0 when every run passes."
        )
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=DATASETS,
        default=list(DATASETS),
        help="data sets to run (default: both)",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=tuple(CONFIGS),
        default=list(CONFIGS),
        help="default: `recsys train` without --config; tuned: --tuned's YAML (default: both)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/amazon_bench"),
        help="one folder per data set: workspace, shop files, logs, metrics, recommendations",
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument(
        "--data",
        type=Path,
        default=DATA,
        help="folder of the sequence files (default: shared/data/amazon beside the repository)",
    )
    parser.add_argument(
        "--tuned", type=Path, default=CONFIGS["tuned"], help="the tuned config's training YAML"
    )
    parser.add_argument(
        "--mapping",
        type=Path,
        default=REPO / "examples/amazon/mapping.yaml",
        help="ingest mapping",
    )
    parser.add_argument("--recsys", help="the recsys command (default: this environment's)")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show the CLI's progress log on stderr"
    )
    args = parser.parse_args(argv)
    args.workdir = args.workdir.resolve()
    args.tuned = args.tuned.resolve()
    args.mapping = args.mapping.resolve()
    for name in args.datasets:
        if not (args.data / f"{name}.txt.gz").is_file():
            parser.error(f"{args.data / f'{name}.txt.gz'} not found: pass --data DIR")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    recsys = recsys_executable(args.recsys)
    outcomes = []
    for name in args.datasets:
        for outcome in run_dataset(name, args, recsys):
            report(outcome)
            outcomes.append(outcome)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "tuned_config": str(args.tuned),
            "tuned_config_text": args.tuned.read_text(),
            "targets": TARGETS,
            "goals": GOALS,
            "reference": {
                name: {label: dict(zip(METRICS, values, strict=True)) for label, values in rows}
                for name, rows in REFERENCE.items()
                if name in args.datasets
            },
            "runs": [asdict(o) for o in outcomes],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

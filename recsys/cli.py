"""The ``recsys`` command line: one entry point, a subcommand per job (PLATFORM.md section 3).

Subcommand modules are imported when their command runs, so ``recsys --help`` stays fast and
this shared package never imports the packages that build on it at module level.
"""

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from recsys import __version__
from recsys.errors import RecsysError
from recsys.workspace import HOME_ENV, PROFILE_ENV, PROFILES, Workspace

logger = logging.getLogger("recsys")

SCALES = ("tiny", "small", "full")


def _write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")
        logger.info("figures written to %s", path)


def _workspace(args: argparse.Namespace) -> Workspace:
    return Workspace.from_env(getattr(args, "home", None), getattr(args, "profile", None))


def cmd_generate(args: argparse.Namespace) -> int:
    from shop.generate import generate_shop

    started = time.perf_counter()
    summary = generate_shop(
        Path(args.out), scale=args.scale, seed=args.seed, fmt=args.format, kind=args.kind
    )
    figures = summary.to_dict()
    figures["seconds"] = round(time.perf_counter() - started, 2)
    print(
        f"generated {args.kind} shop '{args.scale}' (seed {args.seed}) in {args.out}: "
        f"{figures.get('events', 0):,} events, {figures.get('users', 0):,} users, "
        f"{figures.get('products', 0):,} products in {figures['seconds']}s"
    )
    _write_json(args.json, figures)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from lake.ingest import ingest

    result = ingest(args.source, _workspace(args), args.mapping, args.rules, args.replace)
    print(result.markdown)
    print(
        f"lake: {result.lake}\nquarantine: {result.quarantine}\n"
        f"report: {', '.join(str(p) for p in result.report_paths)}"
    )
    _write_json(args.json, result.report)
    return 0


def cmd_convert_sequences(args: argparse.Namespace) -> int:
    from lake.sequences import convert_sequences

    summary = convert_sequences(args.sequences, args.out, args.attributes, args.end, args.action)
    print(
        f"wrote {summary.events:,} events of {summary.users:,} users and {summary.items:,} items"
        f" ({summary.products:,} products with attributes): {', '.join(summary.files)}"
    )
    _write_json(args.json, summary.__dict__)
    return 0


def cmd_convert_sessions(args: argparse.Namespace) -> int:
    from lake.session_files import convert_sessions

    summary = convert_sessions(args.sessions, args.out, args.test, args.start)
    print(
        f"wrote {summary.clicks:,} events of {summary.sessions:,} sessions"
        f" ({summary.single_click_sessions:,} of a single click) on {summary.items:,} items,"
        f" {summary.test_cases:,} test cases, {summary.blank_lines + summary.test_blank_lines:,}"
        f" blank lines skipped: {', '.join(summary.files)}"
    )
    _write_json(args.json, summary.__dict__)
    return 0


def cmd_features_build(args: argparse.Namespace) -> int:
    from features.build import build_features

    result = build_features(_workspace(args), args.as_of)
    print(f"feature tables as of {result.as_of.isoformat()} from lake {result.lake_version}:")
    for name, rows in result.rows.items():
        print(f"  {name:<24} {rows:>12,} rows  {result.seconds.get(name, 0):>6.1f}s")
    _write_json(
        args.json,
        {
            "as_of": result.as_of.isoformat(),
            "lake_version": result.lake_version,
            "rows": result.rows,
            "seconds": result.seconds,
        },
    )
    return 0


def cmd_features_apply(args: argparse.Namespace) -> int:
    from features.store import apply

    figures = apply(_workspace(args))
    print(f"applied {figures['repo']} (profile {figures['profile']}) in {figures['seconds']}s")
    _write_json(args.json, figures)
    return 0


def cmd_features_materialize(args: argparse.Namespace) -> int:
    from features.store import materialize

    result = materialize(_workspace(args), incremental=args.incremental, end=args.end)
    kind = "incremental" if result.incremental else "full"
    print(f"{kind} materialisation up to {result.end.isoformat()} in {result.seconds}s")
    _write_json(
        args.json,
        {
            "incremental": result.incremental,
            "end": result.end.isoformat(),
            "seconds": result.seconds,
        },
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.job import run_training

    payload = run_training(_workspace(args), load_config(args.config), args.metrics_out)
    models = payload["models"]
    k = max(int(key.split("@")[1]) for key in models["ranker"] if key.startswith("ndcg@"))
    print(
        f"test split from {payload['split']['test_start']}: "
        f"{payload['split']['test_requests']:,} requests"
    )
    print(f"{'model':<10} {'ndcg@10':>9} {'recall@20':>10} {f'ndcg@{k}':>9}")
    for name, values in models.items():
        print(
            f"{name:<10} {values.get('ndcg@10', 0):>9.4f} {values.get('recall@20', 0):>10.4f} "
            f"{values.get(f'ndcg@{k}', 0):>9.4f}"
        )
    reg = payload["registered"]
    print(
        f"registered {reg['model_name']} version {reg['version']} as '{reg['alias']}' "
        f"({reg['tracking_uri']}); report: {payload['report']}"
    )
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from recommender.batch import read_users, recommend_to_file

    if bool(args.users) == bool(args.all):
        raise RecsysError("give exactly one of --users FILE or --all")
    users = read_users(args.users) if args.users else None
    figures = recommend_to_file(_workspace(args), args.alias, users, args.k, args.out)
    print(
        f"wrote {figures['rows']:,} recommendations for {figures['users']:,} users "
        f"from {figures['model']} to {figures['out']}"
    )
    _write_json(args.json, figures)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from serving.server import serve

    return serve(_workspace(args), args.port, args.host, args.workers, args.alias)


def cmd_precompute(args: argparse.Namespace) -> int:
    from serving.precompute import precompute

    figures = precompute(_workspace(args), args.users, args.k, args.alias)
    print(
        f"cached {figures['stored']:,} lists of {args.k} items for the {figures['users']:,} "
        f"most active users (model version {figures['model_version']}, "
        f"{figures['skipped']:,} skipped: online store unreachable) in {figures['seconds']} s"
    )
    _write_json(args.json, figures)
    return 0 if figures["skipped"] == 0 else 1


def cmd_registry_list(args: argparse.Namespace) -> int:
    from registry.commands import list_stages

    return list_stages(_workspace(args), args.model, args.json)


def cmd_registry_promote(args: argparse.Namespace) -> int:
    from registry.commands import promote

    return promote(_workspace(args), args.version, args.to, args.reason, args.model, args.policy)


def cmd_registry_rollback(args: argparse.Namespace) -> int:
    from registry.commands import rollback

    return rollback(_workspace(args), args.reason, args.model)


def cmd_registry_history(args: argparse.Namespace) -> int:
    from registry.commands import history

    return history(_workspace(args), args.limit, args.model, args.json)


def cmd_registry_plan(args: argparse.Namespace) -> int:
    from registry.commands import plan

    return plan(_workspace(args), args.file, args.policy, args.out)


def cmd_registry_apply(args: argparse.Namespace) -> int:
    from registry.commands import apply

    return apply(_workspace(args), args.file, args.policy)


def cmd_monitor_drift(args: argparse.Namespace) -> int:
    from monitoring.commands import drift

    return drift(
        _workspace(args),
        args.reference,
        args.current,
        args.thresholds,
        args.out,
        not args.no_served,
        args.json,
    )


def cmd_monitor_performance(args: argparse.Namespace) -> int:
    from monitoring.commands import performance

    return performance(_workspace(args), args.window, args.new_days, args.json)


def cmd_canary_start(args: argparse.Namespace) -> int:
    from canary.commands import start

    return start(
        _workspace(args), args.version, args.reason, args.steps, args.model, args.policy,
        args.gates,
    )  # fmt: skip


def cmd_canary_status(args: argparse.Namespace) -> int:
    from canary.commands import status

    return status(_workspace(args), args.model, args.policy, args.json)


def cmd_canary_run(args: argparse.Namespace) -> int:
    from canary.commands import run

    return run(_workspace(args), args.model, args.policy, args.once, args.timeout)


def cmd_canary_abort(args: argparse.Namespace) -> int:
    from canary.commands import abort

    return abort(_workspace(args), args.reason, args.model)


def cmd_canary_report(args: argparse.Namespace) -> int:
    from canary.commands import report

    return report(
        _workspace(args), args.a, args.b, args.since, args.until, args.hours, args.out, args.json
    )


def cmd_canary_simulate(args: argparse.Namespace) -> int:
    from canary.commands import simulate

    return simulate(
        args.url, args.shop, args.seconds, args.requests, args.rate, args.threads, args.seed,
        args.json,
    )  # fmt: skip


def cmd_demo(args: argparse.Namespace) -> int:
    from recsys.demo import run_demo

    figures = run_demo(
        _workspace(args),
        scale=args.scale,
        seed=args.seed,
        serve=not args.no_serve,
        port=args.port,
    )
    _write_json(args.json, figures)
    return 0


def _timestamp(text: str) -> Any:
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date or instant: {text!r}") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _common(parser: argparse.ArgumentParser, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--home",
        default=default,
        metavar="DIR",
        help=f"workspace directory (default: ${HOME_ENV} or ./.recsys)",
    )
    parser.add_argument(
        "--profile",
        default=default,
        choices=PROFILES,
        help=f"where state lives (default: ${PROFILE_ENV} or local)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show debug messages",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show only warnings and errors",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys",
        description="Personalised recommendations for e-commerce: generate or ingest a shop's "
        "data, build features, train, register, serve.",
        epilog="Every command accepts --help. State lives in one workspace directory.",
    )
    parser.add_argument("--version", action="version", version=f"recsys {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str,
        handler: Callable[[argparse.Namespace], int],
        help_text: str,
        description: str,
        parent: Any = sub,
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(
            name,
            help=help_text,
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(p, top=False)
        p.set_defaults(handler=handler)
        return p

    p = command(
        "demo",
        cmd_demo,
        "run the platform's loop on a generated shop",
        "The whole loop on the embedded local profile: generate a shop, ingest it,\n"
        "build and materialise the features, train, register, promote to production,\n"
        "start the service in the background and print sample recommendations (a known\n"
        "user, a new user, an anonymous session, similar items). The service keeps\n"
        "answering after the demo ends (its log and pid are in $RECSYS_HOME/serving/).",
    )
    p.add_argument("--scale", choices=SCALES, default="small", help="shop size (default: small)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--no-serve", action="store_true", help="stop before starting the service")
    p.add_argument("--port", type=int, default=3000, help="service port (default: 3000)")
    p.add_argument("--json", metavar="FILE", help="also write the demo's figures as JSON")

    p = command(
        "generate",
        cmd_generate,
        "write a generated shop in the data contract",
        "Write a realistic generated shop (events, products, users) with its hidden "
        "ground truth in ground_truth/. Deterministic for a given seed.\n\n"
        "scales: tiny = 2K users, 500 products, 20K events; small = 20K, 5K, 200K;\n"
        "        full = 200K users, 50K products, 2M events; all over 12 months.\n"
        "--kind grocery: baskets every few days, mostly each household's own staples on\n"
        "        personal cycles, over 4 months; tiny = 150 households, 200 products;\n"
        "        small = 1.5K, 1.5K; full = 15K, 6K (about as many events as the general\n"
        "        shop of the same scale).",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--scale", choices=SCALES, default="small", help="shop size (default: small)")
    p.add_argument(
        "--kind",
        choices=("general", "grocery"),
        default="general",
        help="general: a department store (default); grocery: repeat-purchase baskets",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--format",
        choices=("parquet", "csv"),
        default="parquet",
        help="file format (default: parquet)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the counts and timings as JSON")

    p = command(
        "ingest",
        cmd_ingest,
        "validate a data folder into the workspace's lake",
        "Read events (required), products and users (optional) as CSV or Parquet, "
        "validate them, derive sessions, remove noise by the rules, de-duplicate and "
        "write the curated lake. Every rejected row is kept in the quarantine with its "
        "reason; the quality report is printed and saved as JSON and Markdown.",
    )
    p.add_argument("source", metavar="DIR", help="folder holding events.csv|parquet etc.")
    p.add_argument(
        "--mapping", metavar="FILE", help="YAML renaming source columns / event types (see README)"
    )
    p.add_argument("--rules", metavar="FILE", help="YAML overriding the cleaning rules")
    p.add_argument(
        "--replace",
        action="store_true",
        help="replace the lake even when the export keeps fewer events than the rules' "
        "shrink_limit share (50%%) of the current lake's (refused otherwise)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the quality report to FILE")

    p = command(
        "features",
        lambda a: 2,
        "build, apply and materialise the Feast features",
        "Feature store jobs for the selected profile (--profile / RECSYS_PROFILE): "
        "build computes the feature tables from the lake, apply registers the Feast "
        "repository (feature_repo/), materialize loads the online store.",
    )
    feats = p.add_subparsers(dest="features_command", metavar="JOB", required=True)
    p = command(
        "build",
        cmd_features_build,
        "compute the feature tables from the lake",
        "Compute every feature table (daily snapshots of user and product activity, "
        "user-category affinity, profiles, catalogue, session states) from the lake and "
        "write them where the profile's offline store reads them.",
        parent=feats,
    )
    p.add_argument(
        "--as-of", metavar="DATE", help="last snapshot day (default: midnight after the last event)"
    )
    p.add_argument("--json", metavar="FILE", help="also write row counts and timings as JSON")
    p = command(
        "apply",
        cmd_features_apply,
        "register the feature repository (feast apply)",
        "Run `feast apply` on feature_repo/ with the profile's feature_store.yaml.",
        parent=feats,
    )
    p.add_argument("--json", metavar="FILE", help="also write the timing as JSON")
    p = command(
        "materialize",
        cmd_features_materialize,
        "load the online store",
        "Materialise the latest feature values into the online store: all of them, or "
        "with --incremental only what changed since the previous run. Idempotent.",
        parent=feats,
    )
    p.add_argument(
        "--incremental",
        action="store_true",
        help="only what changed since the previous materialisation",
    )
    p.add_argument(
        "--end",
        type=_timestamp,
        metavar="DATE",
        help="materialise up to this instant (default: the tables' as-of)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the timing as JSON")

    p = command(
        "train",
        cmd_train,
        "train candidates + ranker, evaluate, register as 'candidate'",
        "Split the lake in time (train | validation | test), fit the candidate sources\n"
        "(ALS, co-visitation, content, popularity, repurchase), fit the XGBoost ranker on\n"
        "Feast point-in-time features, compare with baselines once on the test window,\n"
        "log the run to MLflow and register the model with alias 'candidate'.\n"
        "Builds the feature tables first when they are missing or older than the lake.",
    )
    p.add_argument("--config", metavar="FILE", help="training YAML (see examples/train.yaml)")
    p.add_argument("--metrics-out", metavar="FILE", help="write the metrics as JSON")

    p = command(
        "recommend",
        cmd_recommend,
        "batch top-K lists from a registry alias",
        "Recommendations for the users of a CSV/Parquet file with a user_id column (or\n"
        "--all known users) from the model behind a registry alias, written as CSV or\n"
        "Parquet by the extension of --out: user_id, rank, item_id, score.",
    )
    p.add_argument("--alias", default="production", help="registry alias (default: production)")
    p.add_argument("--users", metavar="FILE", help="file with a user_id column")
    p.add_argument("--all", action="store_true", help="every user the model knows")
    p.add_argument("--k", type=int, default=10, help="list length (default: 10)")
    p.add_argument("--out", required=True, metavar="FILE", help="output .csv or .parquet")
    p.add_argument("--json", metavar="FILE", help="also write the counts as JSON")

    p = command(
        "serve",
        cmd_serve,
        "start the BentoML recommendation service",
        "Serve /recommend, /similar_items, /feedback, /healthz, /readyz and /metrics for\n"
        "the workspace's profile, answering with the model behind a registry alias\n"
        "(production by default) and switching when the alias moves. Settings: a YAML file\n"
        "in RECSYS_SERVE_CONFIG, or RECSYS_SERVE_<SETTING> variables (serving/settings.py).",
    )
    p.add_argument("--port", type=int, default=3000, help="port (default: 3000)")
    p.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    p.add_argument("--alias", help="registry alias to follow (default: production)")

    p = command(
        "precompute",
        cmd_precompute,
        "cache lists for the most active users ahead of their requests (nightly)",
        "Compute each of the --users most active users' plain list (no filters, no session\n"
        "items) with the service's own request path and keep it in the Redis cache for\n"
        "RECSYS_SERVE_PRECOMPUTE_TTL seconds (default 26 h), under the model version behind\n"
        "the alias. The service answers a plain request of such a user from it until their\n"
        "next feedback. Production profile only.",
    )
    p.add_argument("--users", type=_positive, default=10_000, help="how many (default: 10000)")
    p.add_argument("--k", type=_positive, default=50, help="list length kept (default: 50)")
    p.add_argument("--alias", help="registry alias (default: the service's, production)")
    p.add_argument("--json", metavar="FILE", help="also write the counts as JSON")

    p = command(
        "registry",
        lambda a: 2,
        "model stages, promotion gates, audit history, desired state",
        "The registered model's stages are MLflow aliases: candidate (just trained),\n"
        "staging (passed the offline gates), canary (taking a share of traffic),\n"
        "production and previous-production (the rollback target). Every transition is\n"
        "recorded with who ($RECSYS_ACTOR, $GITHUB_ACTOR or the OS user), when, why and\n"
        "the metrics that justified it, in the registry database's recsys_registry_audit\n"
        "table and as model version tags. Gates: registry/policy.yaml.",
    )
    reg = p.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    model_help = "registered model (default: recsys-recommender)"
    policy_help = "gate policy YAML (default: registry/policy.yaml)"
    p = command(
        "list",
        cmd_registry_list,
        "stages and the versions behind them",
        "Each stage alias, the version it points to, the version's test metrics from\n"
        "training (ndcg@10, recall@20) and its gate status; and the canary schedule.",
        parent=reg,
    )
    p.add_argument("--model", default="recsys-recommender", help=model_help)
    p.add_argument("--json", metavar="FILE", help="also write the stages as JSON")
    p = command(
        "promote",
        cmd_registry_promote,
        "move a version to a stage (gated)",
        "Move VERSION to a stage: candidate, staging, canary or production.\n"
        "staging runs the gates of the policy file: the version and production are judged\n"
        "on the same recent window of the lake, and the version must not be worse beyond\n"
        "the tolerances, overall and per segment (a refusal names each failing metric,\n"
        "exit code 1). canary and production take only versions that passed the gates\n"
        "(judged again if production has changed since). Promoting to production moves the\n"
        "old production to previous-production.\n\n"
        "example: recsys registry promote 4 --to staging --reason 'weekly retrain'",
        parent=reg,
    )
    p.add_argument("version", metavar="VERSION", help="model version number")
    p.add_argument(
        "--to", required=True, metavar="STAGE", help="candidate, staging, canary, production"
    )
    p.add_argument("--reason", metavar="TEXT", help="why (required; recorded in the audit)")
    p.add_argument("--model", default="recsys-recommender", help=model_help)
    p.add_argument("--policy", metavar="FILE", help=policy_help)
    p = command(
        "rollback",
        cmd_registry_rollback,
        "production back to previous-production, in one step",
        "Point production at the previous-production version, clear previous-production\n"
        "and revoke the rolled-back version's gate pass (it must pass staging again).\n\n"
        "example: recsys registry rollback --reason 'conversion dropped 8% after deploy'",
        parent=reg,
    )
    p.add_argument("--reason", metavar="TEXT", help="why (required; recorded in the audit)")
    p.add_argument("--model", default="recsys-recommender", help=model_help)
    p = command(
        "history",
        cmd_registry_history,
        "the audit of transitions, newest first",
        "Every recorded transition: when, who, action, stage, from and to version, reason.\n"
        "--json writes them with the metrics that justified each.",
        parent=reg,
    )
    p.add_argument("--limit", type=_positive, default=20, help="how many (default: 20)")
    p.add_argument("--model", default="recsys-recommender", help=model_help)
    p.add_argument("--json", metavar="FILE", help="also write the records as JSON")
    p = command(
        "plan",
        cmd_registry_plan,
        "compare the desired state file with the registry (gates run)",
        "Read the desired state (production version, canary version and schedule, each\n"
        "with a reason), compare it with the registry, run the gates for every version\n"
        "that would move up, and print a Markdown report: metrics side by side with\n"
        "production, per segment, verdicts. Changes nothing. Exit code 1 if a gate refuses.",
        parent=reg,
    )
    p.add_argument(
        "--file", metavar="FILE", help="desired state (default: registry/promotions.yaml)"
    )
    p.add_argument("--policy", metavar="FILE", help=policy_help)
    p.add_argument("--out", metavar="FILE", help="also write the report (e.g. a PR comment)")
    p = command(
        "apply",
        cmd_registry_apply,
        "make the registry match the desired state file",
        "Run the plan and, if every gate passes, move the aliases and set the canary\n"
        "schedule, recording each transition. Idempotent: when the registry already\n"
        "matches, it says so and changes nothing.",
        parent=reg,
    )
    p.add_argument(
        "--file", metavar="FILE", help="desired state (default: registry/promotions.yaml)"
    )
    p.add_argument("--policy", metavar="FILE", help=policy_help)

    p = command(
        "monitor",
        lambda a: 2,
        "drift and online-performance reports",
        "After deployment: is the data still like the training data, are the served lists\n"
        "still healthy, and what do users do with them. Windows are FROM..TO (dates or\n"
        "instants, UTC when naive, TO excluded), e.g. 2026-03-01..2026-04-01.",
    )
    mon = p.add_subparsers(dest="monitor_command", metavar="ACTION", required=True)
    p = command(
        "drift",
        cmd_monitor_drift,
        "Evidently drift reports; exit code 1 on drift",
        "Compare a current window with a reference window and judge it by the thresholds\n"
        "file (default monitoring/thresholds.yaml):\n"
        "  features         the lake's events: department, category, price, device,\n"
        "                   country, event type (Evidently DataDriftPreset);\n"
        "  predictions      the lists the service logged: scores, department, category,\n"
        "                   popularity band, price of the recommended items, against the\n"
        "                   reference window's served lists (or, when the service logged\n"
        "                   none then, against what users interacted with);\n"
        "  recommendations  coverage, novelty, share of popular ('head') items.\n"
        "Writes features.html, predictions.html (Evidently) and summary.json to --out.\n"
        "Exit code 0: no drift; 1: drift beyond a threshold (the monitor workflow then\n"
        "dispatches retraining); 2: an error.\n\n"
        "example: recsys monitor drift --reference 2025-04-01..2025-06-01 \\\n"
        "             --current 2026-02-15..2026-04-01",
        parent=mon,
    )
    p.add_argument(
        "--current",
        metavar="FROM..TO",
        help="window judged (default: the last 14 days of the lake and the served log)",
    )
    p.add_argument(
        "--reference",
        metavar="FROM..TO",
        help="the training reference (default: the 56 days before the current window)",
    )
    p.add_argument("--thresholds", metavar="FILE", help="thresholds YAML")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="report folder (default: $RECSYS_HOME/reports/monitoring/drift-FROM_TO)",
    )
    p.add_argument("--no-served", action="store_true", help="lake only: do not read the served log")
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    p = command(
        "performance",
        cmd_monitor_performance,
        "click-through, conversion, revenue per request, by version, day, segment",
        "Online performance from the feedback log: each feedback event counts for the\n"
        "served answer its request_id names. ctr = clicks / impressions, conversion =\n"
        "purchases / impressions, revenue per request = attributed purchase revenue /\n"
        "served requests; by model version and variant, by day and model version, and by\n"
        "segment (new, light, regular, heavy users and new products, as offline\n"
        "evaluation defines them, from the lake).",
        parent=mon,
    )
    p.add_argument(
        "--window",
        metavar="FROM..TO",
        help="requests served in this window (default: the served log's last 7 days)",
    )
    p.add_argument(
        "--new-days",
        type=float,
        metavar="DAYS",
        help="a product this young counts as new (default: the training config's, 30)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")

    p = command(
        "canary",
        lambda a: 2,
        "canary releases: user-sticky split, live analysis, automatic rollback",
        "A new version takes a growing share of users (a stable hash of the user id, so\n"
        "one user sees one variant) through a schedule of steps. At every look the\n"
        "controller compares canary and production on errors, a latency percentile and\n"
        "user response from /feedback (click-through and conversion per impression, by a\n"
        "sequential test that stays valid however often it looks). A breach rolls the\n"
        "canary back at once; passing every step promotes it to production. Each decision\n"
        "is recorded in the registry history with its statistics. Policy: canary/policy.yaml;\n"
        "see canary/README.md.",
    )
    can = p.add_subparsers(dest="canary_command", metavar="ACTION", required=True)
    canary_policy_help = "canary policy YAML (default: canary/policy.yaml)"
    p = command(
        "start",
        cmd_canary_start,
        "put a version in canary at the schedule's first weight",
        "Promote VERSION to the canary stage (it must have passed the staging gates) unless\n"
        "it is the canary already, and give it the first step's share of users. The\n"
        "schedule: --steps, else the one `registry apply` set for this version from\n"
        "registry/promotions.yaml, else the policy's.\n\n"
        "example: recsys canary start 7 --reason 'new ALS factors' --steps 5:30,25:60,100:30",
        parent=can,
    )
    p.add_argument("version", metavar="VERSION", help="model version number")
    p.add_argument("--reason", metavar="TEXT", help="why (required; recorded in the audit)")
    p.add_argument(
        "--steps", metavar="W:MIN,...", help="schedule: weight percent and minutes per step"
    )
    p.add_argument("--model", default="recsys-recommender", help=model_help)
    p.add_argument("--policy", metavar="FILE", help=canary_policy_help)
    p.add_argument("--gates", metavar="FILE", help=policy_help)
    p = command(
        "status",
        cmd_canary_status,
        "the canary's step and a live analysis (changes nothing)",
        "The running (or last) canary: version, step, looks, decision; and, while it runs,\n"
        "both variants side by side with the sequential test's intervals.",
        parent=can,
    )
    p.add_argument("--model", default="recsys-recommender", help=model_help)
    p.add_argument("--policy", metavar="FILE", help=canary_policy_help)
    p.add_argument("--json", metavar="FILE", help="also write state and analysis as JSON")
    p = command(
        "run",
        cmd_canary_run,
        "look, step, roll back or promote until the canary is decided",
        "Analyse every look_seconds; roll back on any breach, move to the next step when\n"
        "a step's minutes have passed with the minimum sample and no breach, promote after\n"
        "the last. --once: a single look and decision (a CronJob's way). Exit code 0 while\n"
        "running or promoted, 1 when rolled back or aborted.",
        parent=can,
    )
    p.add_argument("--once", action="store_true", help="one look and decision, then exit")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="stop looking after this")
    p.add_argument("--model", default="recsys-recommender", help=model_help)
    p.add_argument("--policy", metavar="FILE", help=canary_policy_help)
    p = command(
        "abort",
        cmd_canary_abort,
        "end the canary now: weight 0, canary alias removed",
        "example: recsys canary abort --reason 'incident 42: freeze releases'",
        parent=can,
    )
    p.add_argument("--reason", metavar="TEXT", help="why (required; recorded in the audit)")
    p.add_argument("--model", default="recsys-recommender", help=model_help)
    p = command(
        "report",
        cmd_canary_report,
        "A/B report of two versions over a period, per segment",
        "Lift of version B over version A with 95% intervals on click-through, conversion\n"
        "and revenue per request, overall and per user segment (new, light, regular,\n"
        "heavy), from the service's served log and /feedback. Users are the unit.\n\n"
        "example: recsys canary report --a 6 --b 7 --since 2026-11-20T00:00",
        parent=can,
    )
    p.add_argument("--a", required=True, metavar="VERSION", help="version A (the baseline)")
    p.add_argument("--b", required=True, metavar="VERSION", help="version B")
    p.add_argument("--since", metavar="TIME", help="ISO-8601 start (default: --hours ago)")
    p.add_argument("--until", metavar="TIME", help="ISO-8601 end (default: now)")
    p.add_argument("--hours", type=float, default=24.0, help="period without --since (24)")
    p.add_argument("--out", metavar="FILE", help="also write the Markdown report")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p = command(
        "simulate",
        cmd_canary_simulate,
        "simulated shoppers of a generated shop send requests and feedback",
        "Shoppers of a generated shop (its ground_truth/) ask the running service for\n"
        "recommendations and send feedback: impressions, clicks that follow their hidden\n"
        "tastes, purchases. Lets a canary run end to end on one machine.\n\n"
        "example: recsys canary simulate --url http://127.0.0.1:3000 --shop shop/ --seconds 600",
        parent=can,
    )
    p.add_argument("--url", default="http://127.0.0.1:3000", help="the service")
    p.add_argument("--shop", required=True, metavar="DIR", help="a `recsys generate` folder")
    p.add_argument("--seconds", type=float, default=60.0, help="how long (default: 60)")
    p.add_argument("--requests", type=_positive, help="stop after this many requests")
    p.add_argument("--rate", type=float, help="requests a second in all (default: as fast)")
    p.add_argument("--threads", type=_positive, default=4, help="concurrent shoppers (4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--json", metavar="FILE", help="also write the tally as JSON")

    p = command(
        "convert",
        lambda a: 2,
        "turn research data sets into shop files",
        "Converters for public data sets that are not shop exports.",
    )
    conv = p.add_subparsers(dest="format_name", metavar="FORMAT", required=True)
    p = command(
        "sequences",
        cmd_convert_sequences,
        "one line per user: 'user item item ...'",
        "Convert a sequence file (e.g. the Amazon review sequences) into events.csv, "
        "one day between a user's items, ending on --end; with --attributes, also "
        "products.csv. Ingest the result with examples/amazon/mapping.yaml.",
        parent=conv,
    )
    p.add_argument("sequences", metavar="FILE", help="sequence file (.txt or .txt.gz)")
    p.add_argument("--attributes", metavar="FILE", help="JSON {item: [attribute ids]} (.gz ok)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--end", default="2020-01-01", help="date of every user's last item")
    p.add_argument("--action", default="review", help="event name written (default: review)")
    p.add_argument("--json", metavar="FILE", help="also write the counts as JSON")
    p = command(
        "sessions",
        cmd_convert_sessions,
        "one anonymous session per line: 'item item ...' (SR-GNN, GCE-GNN)",
        "Convert a session file of the session-based recommendation literature into\n"
        "events.csv in the data contract's own columns (ingest it with no mapping file).\n\n"
        "TRAIN_FILE: one session per line, item ids in click order, separated by\n"
        "whitespace, oldest session first; blank lines are skipped and counted.\n"
        "--test FILE: one test case per line, 'target<TAB>prefix items' (the items\n"
        "clicked so far in a later session, in order).\n\n"
        "events.csv: every click of line N is a view of visitor sN in session sN-s1;\n"
        "sessions start from --start a minute apart, a minute between clicks (ISO 8601\n"
        "UTC, whole seconds), so ingestion neither splits nor merges them (each is\n"
        "another visitor).\n"
        "holdout/test_cases.csv (with --test): case_id (line), target_item_id,\n"
        "prefix_item_ids (space-separated), timestamp (a request time an hour after the\n"
        "last click, a second apart); recsys ingest ignores holdout/.\n\n"
        "example: recsys convert sessions train_sessions.txt.gz --test test.txt.gz "
        "--out shop/",
        parent=conv,
    )
    p.add_argument("sessions", metavar="TRAIN_FILE", help="session file (.txt or .txt.gz)")
    p.add_argument("--test", metavar="FILE", help="test cases 'target<TAB>prefix' (.gz ok)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    p.add_argument(
        "--start", default="2020-01-01T00:00:00Z", help="time of the first click (ISO 8601)"
    )
    p.add_argument("--json", metavar="FILE", help="also write the counts as JSON")
    return parser


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def _unreachable_service(exc: BaseException) -> str | None:
    """A one-line explanation when a store the profile needs cannot be reached, else None."""
    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 5:
        chain.append(chain[-1].__cause__)
    for error in chain:
        kind = f"{type(error).__module__}.{type(error).__name__}"
        if "psycopg" in kind or kind.startswith("sqlalchemy.exc.OperationalError"):
            return (
                f"cannot reach PostgreSQL ({str(error).strip().splitlines()[0]}); check "
                "RECSYS_PG_HOST, RECSYS_PG_PORT, RECSYS_PG_DATABASE, RECSYS_PG_USER"
            )
        if kind.startswith("redis.exceptions.") and "Connection" in kind:
            return f"cannot reach Redis ({error}); check RECSYS_REDIS_HOST, RECSYS_REDIS_PORT"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    try:
        return args.handler(args)
    except RecsysError as exc:
        print(f"recsys {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        reason = _unreachable_service(exc)
        if reason is None:
            raise
        print(f"recsys {args.command}: error: {reason}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

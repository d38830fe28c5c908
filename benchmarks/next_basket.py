"""Next basket: does the platform beat "your most-bought items" where people rebuy?

    python benchmarks/next_basket.py [--scale small] [--seed 0] [--workdir DIR]
    python benchmarks/next_basket.py --shop DIR      # any shop folder in the data contract

In a grocery shop most of a basket is what the household bought before, so each user's own
most-bought items (personal frequency) is the bar a recommender has to clear. Protocol:

1. the shop: ``recsys generate --kind grocery`` (or the folder given by ``--shop``);
2. hold-out: each user's last basket (the session of their latest purchase; purchases of the
   same UTC day when the log has no sessions) is the target. Every event of that user from the
   start of that basket on is removed, and the shop files are written without them into the
   workdir: the target never enters what the platform ingests. Products and users are copied;
3. ``recsys ingest``, ``recsys train`` (``--config`` or the defaults), and
   ``recsys recommend --alias candidate --all --k 10``, each a child process, timed, with its
   peak resident memory;
4. judging, here and not by the platform: recall@10 (share of the basket's distinct items in
   the list) and NDCG@10 (the basket as relevant set, ideal DCG over min(|basket|, 10)),
   averaged over every user with a target basket and at least one earlier purchase (a user
   without a list scores 0), for the platform and for two lists made from the same held-out
   files: personal frequency (the user's items by the number of baskets they were in, the
   most recent first among equals, filled up with popular items) and global popularity.
"""

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from amazon import Step, StepFailed, recsys_executable, run_step, workspace_env

USER, ITEM, KIND, TIME, SESSION = "user_id", "item_id", "event_type", "timestamp", "session_id"
PURCHASE = "purchase"
TABLES = ("events", "products", "users")
K = 10
DECAY_HALF_LIFE_DAYS = 28.0


class BenchmarkError(RuntimeError):
    """The shop folder cannot be judged: says which file and what is wrong."""


@dataclass
class HoldOut:
    """What the hold-out removed and what it judges against."""

    targets: pd.DataFrame  # user_id, item_id: the distinct items of each user's last basket
    judged: list[str]  # users with a target and at least one earlier purchase
    users: int = 0  # users with a purchase at all
    without_history: int = 0  # users whose only basket is the target (not judged)
    rows_in: int = 0
    rows_out: int = 0
    basket_mean: float = 0.0
    rebuy_share: float = 0.0  # share of target items the user had bought before


@dataclass
class Outcome:
    shop: str
    holdout: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    rebuy: dict[str, object] = field(default_factory=dict)
    rebought_in_lists: float = 0.0
    steps: list[Step] = field(default_factory=list)
    error: str | None = None


def find_table(folder: Path, stem: str) -> Path | None:
    """``stem.parquet`` or ``stem.csv`` in ``folder`` (the contract's file names)."""
    found = [
        folder / f"{stem}.{ext}"
        for ext in ("parquet", "csv")
        if (folder / f"{stem}.{ext}").exists()
    ]
    if len(found) > 1:
        raise BenchmarkError(f"{folder}: both {found[0].name} and {found[1].name}; keep one")
    return found[0] if found else None


def read_events(path: Path) -> pd.DataFrame:
    """The events file as it is (CSV cells as text, so they are written back unchanged)."""
    try:
        if path.suffix == ".parquet":
            frame = pq.read_table(path).to_pandas()
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise BenchmarkError(f"{path}: cannot be read ({exc})") from None
    missing = [name for name in (USER, ITEM, KIND, TIME) if name not in frame]
    if missing:
        raise BenchmarkError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(frame.columns)})"
        )
    return frame


def event_times(path: Path, column: pd.Series) -> pd.Series:
    """UTC instants of the timestamp column: datetimes, ISO text, or epoch seconds/ms."""
    if pd.api.types.is_datetime64_any_dtype(column):
        times = pd.to_datetime(column, utc=True)
    else:
        numeric = pd.to_numeric(column, errors="coerce")
        if numeric.notna().all():
            unit = "ms" if numeric.abs().max() > 1e11 else "s"
            times = pd.to_datetime(numeric, unit=unit, utc=True)
        else:
            times = pd.to_datetime(column, utc=True, format="mixed", errors="coerce")
    bad = times.isna() & column.notna() & (column.astype(str) != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise BenchmarkError(f"{path}: column {TIME}, row {row}: not a time: {column.iloc[row]!r}")
    return times


def baskets(events: pd.DataFrame, times: pd.Series) -> pd.Series:
    """A basket key per row: the session id, or the UTC day where the log has no session."""
    day = times.dt.strftime("day-%Y-%m-%d")
    if SESSION not in events:
        return day
    session = events[SESSION].astype("string")
    return session.where(session.notna() & (session != ""), day).astype(str)


def hold_out(source: Path, dest: Path) -> HoldOut:
    """Write ``source``'s shop into ``dest`` without each user's last basket and what follows.

    Everything of a user at or after the first event of their last basket's session goes:
    the basket itself and the views that led to it. Other rows are written as they were.
    """
    events_path = find_table(source, "events")
    if events_path is None:
        raise BenchmarkError(f"{source}: no events.parquet or events.csv")
    events = read_events(events_path)
    times = event_times(events_path, events[TIME])
    user = events[USER].astype(str)
    key = baskets(events, times)
    bought = (events[KIND].astype(str) == PURCHASE).to_numpy()
    if not bought.any():
        raise BenchmarkError(f"{events_path}: no '{PURCHASE}' events: nothing to judge")

    purchases = pd.DataFrame({USER: user[bought], "basket": key[bought], "t": times[bought]})
    last = purchases.sort_values("t", kind="stable").groupby(USER).tail(1)
    target_basket = last.set_index(USER)["basket"]
    in_target = (key == user.map(target_basket)).to_numpy()
    if SESSION in events:
        starts = times[in_target].groupby(user[in_target]).min()
    else:  # the day's first moment: views earlier that day may have led to the basket
        starts = times[in_target].dt.floor("D").groupby(user[in_target]).min()
    cut = user.map(starts)
    keep = ~(cut.notna() & (times >= cut)).to_numpy()

    target_rows = in_target & bought
    targets = pd.DataFrame(
        {USER: user[target_rows].to_numpy(), ITEM: events[ITEM].astype(str)[target_rows].to_numpy()}
    ).drop_duplicates()
    history = pd.DataFrame(
        {USER: user[keep & bought], ITEM: events[ITEM].astype(str)[keep & bought]}
    )
    judged = sorted(set(targets[USER]) & set(history[USER]))
    seen = targets.merge(history.drop_duplicates(), on=[USER, ITEM])
    out = HoldOut(
        targets=targets[targets[USER].isin(judged)].reset_index(drop=True),
        judged=judged,
        users=int(purchases[USER].nunique()),
        without_history=int(targets[USER].nunique() - len(judged)),
        rows_in=len(events),
        rows_out=int(keep.sum()),
    )
    mine = out.targets
    out.basket_mean = float(mine.groupby(USER).size().mean()) if len(mine) else 0.0
    out.rebuy_share = float(len(seen[seen[USER].isin(judged)]) / max(len(mine), 1))

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if events_path.suffix == ".parquet":
        table = pq.read_table(events_path)
        pq.write_table(table.filter(pa.array(keep)), dest / events_path.name)
    else:
        events[keep].to_csv(dest / events_path.name, index=False)
    for stem in TABLES[1:]:
        path = find_table(source, stem)
        if path is not None:
            shutil.copy2(path, dest / path.name)
    return out


def purchase_history(folder: Path) -> pd.DataFrame:
    """The purchases of the held-out files (what the platform was given): user, item, basket, t."""
    path = find_table(folder, "events")
    events = read_events(path)
    times = event_times(path, events[TIME])
    bought = (events[KIND].astype(str) == PURCHASE).to_numpy()
    return pd.DataFrame(
        {
            USER: events[USER].astype(str)[bought].to_numpy(),
            ITEM: events[ITEM].astype(str)[bought].to_numpy(),
            "basket": baskets(events, times)[bought].to_numpy(),
            "t": times[bought].to_numpy(),
        }
    )


def popular_items(history: pd.DataFrame) -> list[str]:
    """Items by the number of baskets they were in, over every user (ties by item id)."""
    counts = history.drop_duplicates([USER, "basket", ITEM]).groupby(ITEM).size()
    frame = counts.rename("n").reset_index().sort_values(["n", ITEM], ascending=[False, True])
    return frame[ITEM].tolist()


def popularity_lists(users: list[str], popular: list[str], k: int) -> pd.DataFrame:
    top = popular[:k]
    return pd.DataFrame(
        {
            USER: np.repeat(users, len(top)),
            "rank": np.tile(np.arange(1, len(top) + 1), len(users)),
            ITEM: np.tile(top, len(users)),
        }
    )


def personal_lists(
    history: pd.DataFrame,
    users: list[str],
    popular: list[str],
    k: int,
    half_life_days: float | None = None,
) -> pd.DataFrame:
    """Each user's own items by how many baskets held them (the latest first among equals),
    or by baskets weighted by ``0.5 ** (age / half_life_days)`` when a half-life is given;
    short lists are filled with the most popular items the user has not bought."""
    lines = history.drop_duplicates([USER, "basket", ITEM])
    if half_life_days is None:
        lines = lines.assign(w=1.0)
    else:
        end = lines.groupby(USER)["t"].transform("max")
        age = (end - lines["t"]).dt.total_seconds() / 86_400.0
        lines = lines.assign(w=0.5 ** (age / half_life_days))
    scores = lines.groupby([USER, ITEM]).agg(score=("w", "sum"), last=("t", "max")).reset_index()
    scores = scores.sort_values([USER, "score", "last", ITEM], ascending=[True, False, False, True])
    own = scores.groupby(USER).head(k)
    own_by_user = own.groupby(USER)[ITEM].apply(list).to_dict()
    rows_user, rows_item = [], []
    for user in users:
        chosen = own_by_user.get(user, [])
        if len(chosen) < k:
            taken = set(chosen)
            chosen = (
                chosen
                + [i for i in popular[: k + len(chosen)] if i not in taken][: k - len(chosen)]
            )
        rows_user.extend([user] * len(chosen))
        rows_item.extend(chosen)
    frame = pd.DataFrame({USER: rows_user, ITEM: rows_item})
    return frame.assign(rank=frame.groupby(USER).cumcount() + 1)


def judge(lists: pd.DataFrame, targets: pd.DataFrame, users: list[str], k: int) -> dict[str, float]:
    """recall@k and NDCG@k per user (ideal DCG over min(|basket|, k)), averaged over ``users``."""
    lists = lists[[USER, "rank", ITEM]].astype({USER: str, ITEM: str})
    lists = lists[(lists["rank"] <= k) & lists[USER].isin(users)]
    hits = lists.merge(targets, on=[USER, ITEM])
    gain = 1.0 / np.log2(hits["rank"].to_numpy(dtype=float) + 1.0)
    dcg = pd.Series(gain, index=hits[USER].to_numpy()).groupby(level=0).sum()
    size = targets.groupby(USER).size()
    ideal_table = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
    ideal = pd.Series(ideal_table[np.minimum(size.to_numpy(), k)], index=size.index)
    found = hits.groupby(USER).size()
    recall = (found / size).reindex(users).fillna(0.0)
    ndcg = (dcg / ideal).reindex(users).fillna(0.0)
    return {
        f"recall@{k}": float(recall.mean()),
        f"ndcg@{k}": float(ndcg.mean()),
        "users": len(users),
    }


def training_rebuy(metrics_path: Path) -> dict[str, object]:
    """The repurchase policy training chose on validation (``rebuy`` of its report)."""
    if not metrics_path.exists():
        return {}
    return json.loads(metrics_path.read_text()).get("rebuy", {})


def run(args: argparse.Namespace, recsys: str) -> Outcome:
    root = args.workdir
    if root.exists():
        shutil.rmtree(root)  # a benchmark judges a clean run, never a left-over workspace
    root.mkdir(parents=True)
    env = workspace_env(root / "home")
    logs = root / "logs"
    out = Outcome(shop=str(args.shop) if args.shop else f"grocery {args.scale} seed {args.seed}")
    source = args.shop
    try:
        if source is None:
            source = root / "source"
            generate = [recsys, "generate", "--kind", "grocery", "--scale", args.scale]
            generate += ["--seed", str(args.seed), "--out", str(source)]
            out.steps.append(run_step(Step("generate", generate), env, logs, args.verbose))
        shop = root / "shop"
        held = hold_out(source, shop)
        metrics_path, recs_path = root / "metrics.json", root / "recs.parquet"
        train = [recsys, "train", "--metrics-out", str(metrics_path)]
        if args.config:
            train += ["--config", str(args.config)]
        argvs = {
            "ingest": [recsys, "ingest", str(shop)],
            "train": train,
            "recommend": [
                *(recsys, "recommend", "--alias", "candidate", "--all"),
                *("--k", str(args.k), "--out", str(recs_path)),
            ],
        }
        for name, argv in argvs.items():
            out.steps.append(run_step(Step(name, argv), env, logs, args.verbose))
    except (StepFailed, BenchmarkError) as exc:
        out.error = str(exc)
        return out

    out.holdout = {
        "users": held.users,
        "judged": len(held.judged),
        "without_history": held.without_history,
        "rows_in": held.rows_in,
        "rows_removed": held.rows_in - held.rows_out,
        "basket_mean": round(held.basket_mean, 2),
        "target_rebuy_share": round(held.rebuy_share, 4),
    }
    history = purchase_history(shop)
    popular = popular_items(history)
    recs = pd.read_parquet(recs_path).astype({USER: str, ITEM: str})
    lists = {
        "recsys (platform)": recs,
        "personal frequency": personal_lists(history, held.judged, popular, args.k),
        f"personal frequency, {DECAY_HALF_LIFE_DAYS:g}-day decay": personal_lists(
            history, held.judged, popular, args.k, DECAY_HALF_LIFE_DAYS
        ),
        "global popularity": popularity_lists(held.judged, popular, args.k),
    }
    out.metrics = {
        name: judge(frame, held.targets, held.judged, args.k) for name, frame in lists.items()
    }
    out.rebuy = training_rebuy(metrics_path)
    shown = recs[(recs["rank"] <= args.k) & recs[USER].isin(held.judged)]
    again = shown.merge(history[[USER, ITEM]].drop_duplicates(), on=[USER, ITEM])
    out.rebought_in_lists = float(len(again) / max(len(shown), 1))
    return out


def report(out: Outcome, k: int) -> None:
    print(f"\n== next basket: {out.shop} ==")
    if out.holdout:
        h = out.holdout
        print(
            f"users judged: {h['judged']:,} of {h['users']:,} with a purchase "
            f"({h['without_history']:,} have only the target basket); rows held out: "
            f"{h['rows_removed']:,} of {h['rows_in']:,}; mean basket {h['basket_mean']} items, "
            f"{100 * h['target_rebuy_share']:.1f}% of them bought by the user before"
        )
    if out.metrics:
        print(f"{'list':<40}{f'recall@{k}':>11}{f'ndcg@{k}':>11}")
        for name, values in out.metrics.items():
            print(f"{name:<40}{values[f'recall@{k}']:>11.4f}{values[f'ndcg@{k}']:>11.4f}")
        print(
            f"repurchase policy chosen by training: {out.rebuy or 'unknown'}; share of the "
            f"platform's items the user had bought: {100 * out.rebought_in_lists:.1f}%"
        )
    if out.error:
        print(f"FAIL: {out.error}")
    print(f"{'step':<10}{'seconds':>10}{'peak GB':>10}{'exit':>6}")
    for step in out.steps:
        print(f"{step.name:<10}{step.seconds:>10.1f}{step.peak_gb:>10.2f}{step.exit_code:>6}")
    print(f"{'total':<10}{sum(step.seconds for step in out.steps):>10.1f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Hold out each user's last basket, run the platform through its CLI (ingest, "
            "train, recommend) and print recall and NDCG of its lists next to personal "
            "frequency and global popularity."
        )
    )
    parser.add_argument(
        "--shop",
        type=Path,
        help="a shop folder in the data contract (default: generate a grocery shop)",
    )
    parser.add_argument(
        "--scale", choices=("tiny", "small", "full"), default="small", help="generated shop size"
    )
    parser.add_argument("--seed", type=int, default=0, help="generated shop seed")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "next_basket_bench",
        help="workspace, held-out shop files, logs, lists (emptied first)",
    )
    parser.add_argument("--config", type=Path, help="training YAML (default: the defaults)")
    parser.add_argument("--k", type=int, default=K, help="list length judged (default: 10)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--recsys", help="the recsys command (default: this environment's)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the CLI's log")
    args = parser.parse_args(argv)
    args.workdir = args.workdir.resolve()
    if args.shop is not None:
        args.shop = args.shop.resolve()
        if not args.shop.is_dir():
            parser.error(f"--shop {args.shop}: not a folder")
    if args.config is not None:
        args.config = args.config.resolve()
    if args.k < 1:
        parser.error("--k must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = run(args, recsys_executable(args.recsys))
    report(out, args.k)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(out), indent=2, default=str) + "\n")
    return 1 if out.error else 0


if __name__ == "__main__":
    sys.exit(main())

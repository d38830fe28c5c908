"""How well can anyone recommend to a new user? The generator's hidden truth as a ceiling.

    python benchmarks/cold_start_ceiling.py [--workdir /tmp/recsys_train_bench/full]
                                            [--windows 4] [--test] [--ablations] [--json FILE]

A new user's first request comes at the start of a session, with nothing but a profile (age
band, gender, country, free attributes) and the request's context. On a generated shop the
truth behind what they then cart or buy is known (``shop/ground_truth`` and the generator's
seed), so this script scores, on every new-user request of each two-week window before the
test split (and of the test split itself with ``--test``):

- ``global``: the platform's global popularity baseline (``training.evaluate.popular``);
- ``cold list``: the popularity source's own list, what the platform answers a new user with
  (sources fitted on the events before the window, as training does);
- ``segment truth``: the generator's own choice model with the user's segment in place of the
  user: the segment's mean category preference, taste and price sensitivity, the leaf season
  and the late shift of the request's day. Nothing that uses only what a new user brings can
  be expected to beat it;
- ``user truth``: the same with the user's own hidden preferences, which no model can know.

Each is NDCG@10 over the window's new-user requests (a request with no hit scores 0), with a
paired bootstrap 95% interval of the difference from ``global``. The workdir is the one
``benchmarks/train.py`` leaves (``home`` with the ingested lake, ``shop`` with the ground
truth); no model is registered or changed.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

K = 10
WINDOW = pd.Timedelta(days=14)
BOOTSTRAP = 2000
logger = logging.getLogger(__name__)


class Truth:
    """The generated shop's hidden world, rebuilt from the manifest's scale and seed."""

    def __init__(self, shop: Path) -> None:
        from shop.catalogue import build_catalogue
        from shop.generate import DEFAULT_PERIOD, STREAMS, resolve_scale
        from shop.taxonomy import load_taxonomy
        from shop.timeline import build_timeline
        from shop.users import build_population

        manifest = json.loads((shop / "manifest.json").read_text())
        streams = dict(
            zip(
                STREAMS,
                np.random.default_rng(manifest["seed"]).spawn(len(STREAMS)),
                strict=True,
            )
        )
        spec = resolve_scale(manifest["scale"])
        tax = load_taxonomy()
        self.timeline = build_timeline(tax, DEFAULT_PERIOD)
        self.cat = build_catalogue(streams["catalogue"], tax, spec.products, DEFAULT_PERIOD)
        self.pop = build_population(streams["users"], tax, spec.users, DEFAULT_PERIOD)
        truth = shop / "ground_truth"
        users = pd.read_parquet(truth / "users.parquet", columns=["user_id"])["user_id"]
        items = pd.read_parquet(truth / "products.parquet", columns=["item_id"])["item_id"]
        self.user_row = pd.Series(np.arange(len(users)), index=users.astype(str).to_numpy())
        self.item_row = pd.Series(np.arange(len(items)), index=items.astype(str).to_numpy())
        self.n_leaves = len(tax.leaves)
        self.leaf = self.cat.leaf.astype(np.int64)
        self.log_popularity = np.log(self.cat.popularity)
        self.mean_taste = self.pop.taste.mean(axis=0)
        segment = self.pop.segment
        present = np.unique(segment)
        self.segment_of = {
            s: (
                self.pop.preference[segment == s].mean(axis=0),
                self.pop.taste[segment == s].mean(axis=0),
                float(self.pop.price_sensitivity[segment == s].mean()),
            )
            for s in present
        }

    def scores(
        self,
        user: int,
        at_ms: int,
        by_segment: bool,
        with_taste: bool = True,
        with_day: bool = True,
    ) -> np.ndarray:
        """Probability-like score of every product for one session starting at ``at_ms``: the
        session's leaf (preference x season x shift), the item within the leaf (taste,
        popularity, price: the funnel's score as a softmax) and the chance to cart it.

        ``with_taste=False`` puts the shop's mean taste in place of the user's or segment's, and
        ``with_day=False`` leaves out the season and shift of the day: how much each is worth."""
        cat, pop = self.cat, self.pop
        if by_segment:
            preference, taste, sensitivity = self.segment_of[pop.segment[user]]
        else:
            preference, taste = pop.preference[user], pop.taste[user]
            sensitivity = float(pop.price_sensitivity[user])
        if not with_taste:
            taste = self.mean_taste
        logit = np.log(preference + 1e-12)
        if with_day:
            logit = logit + self.timeline.intent_log_weights(np.array([at_ms]))[0]
        leaf_p = np.exp(logit - logit.max())
        leaf_p /= leaf_p.sum()
        launched = cat.created_ms <= at_ms
        score = taste @ cat.embedding.T + self.log_popularity - sensitivity * cat.log_price_ratio
        score = np.where(launched, np.exp(score - score[launched].max()), 0.0)
        leaf = self.leaf
        within = score / np.maximum(np.bincount(leaf, score, self.n_leaves)[leaf], 1e-300)
        cart = np.exp(-0.5 * sensitivity * np.maximum(cat.log_price_ratio, 0.0))
        return leaf_p[leaf] * within * cart


# the truth's lists: ``Truth.scores`` options of each (the last two with ``--ablations``)
TRUTHS = {
    "segment truth": {"by_segment": True},
    "user truth": {"by_segment": False},
    "segment, no taste": {"by_segment": True, "with_taste": False},
    "segment, no day": {"by_segment": True, "with_day": False},
}


def truth_lists(truth: Truth, model, batch, requests: pd.DataFrame, options: dict):
    """Top-K items by the truth's scores, in the model's catalogue, allowed by its rules."""
    from recommender.state import ITEM, REQ

    to_truth = truth.item_row.reindex(model.catalog.items.ids.astype(str)).to_numpy()
    known = ~np.isnan(to_truth)
    to_truth = np.where(known, to_truth, 0).astype(np.int64)
    exclusions = model.exclusions(batch)
    reqs, items = [], []
    for req, user_id, at in zip(
        batch.requests[REQ].to_numpy(),
        requests["user_id"].to_numpy(),
        requests["ts"].to_numpy(),
        strict=True,
    ):
        user = truth.user_row.get(str(user_id))
        if user is None or user >= truth.pop.size:  # a noise account: no truth to use
            continue
        score = np.where(known, truth.scores(int(user), int(at * 1000), **options)[to_truth], 0)
        top = np.argsort(-score, kind="stable")[: K * 6]
        allowed = top[exclusions.keep(np.full(len(top), req), top)][:K]
        reqs.append(np.full(len(allowed), req))
        items.append(allowed)
    ranked = pd.DataFrame({REQ: np.concatenate(reqs), ITEM: np.concatenate(items)})
    return ranked.assign(rank=ranked.groupby(REQ, sort=False).cumcount() + 1)


def interval(diff: np.ndarray, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    means = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(BOOTSTRAP)]
    return [round(float(x), 5) for x in np.percentile(means, [2.5, 97.5])]


def judge_window(
    truth, events, frame, catalog, users, cfg, start, end, label, truths
) -> pd.DataFrame:
    """NDCG@10 of every new-user request of one window, one column per list."""
    from recommender.model import Recommender
    from recommender.state import REQ, batch_from_events
    from recsys import metrics
    from training import evaluate
    from training.pipeline import chosen_targets
    from training.requests import window_requests

    model = Recommender.fit(
        frame[frame["ts"] < start.timestamp()],
        catalog,
        users,
        cfg.model,
        only=("popularity",),
    )
    target_events, _ = chosen_targets(events, cfg)  # training's own choice
    requests, targets = window_requests(events, start, end, target_events, len(events), seed=0)
    past = frame[frame["ts"] < end.timestamp()]
    batch = batch_from_events(requests, past, users, model.users, cfg.model.history_items)
    new = ~batch.requests[REQ].isin(batch.history[REQ].unique()).to_numpy()
    requests = requests[new].reset_index(drop=True)
    targets = targets[targets[metrics.REQUEST_ID].isin(requests[metrics.REQUEST_ID])]
    batch = batch_from_events(requests, past, users, model.users, cfg.model.history_items)
    ranked = {
        "global": evaluate.popular(model, batch, K),
        "cold list": model.recommend_batch(batch, K, None, sources=[model.source("popularity")]),
        **{name: truth_lists(truth, model, batch, requests, TRUTHS[name]) for name in truths},
    }
    out = pd.DataFrame(index=requests[metrics.REQUEST_ID].to_numpy())
    for name, lists in ranked.items():
        lists = evaluate.as_lists(model, lists, requests)
        per = metrics.per_request(lists, targets, ks=(K,))[f"ndcg@{K}"]
        out[name] = per.reindex(out.index).fillna(0.0).to_numpy()
    out["window"] = label
    return out


def summary(frame: pd.DataFrame, label: str, seed: int) -> dict:
    names = [col for col in frame if col != "window"]
    row = {"window": label, "new_user_requests": len(frame)}
    for name in names:
        row[name] = {
            "ndcg@10": round(float(frame[name].mean()), 5),
            "hits": int((frame[name] > 0).sum()),
        }
        if name != "global":
            row[name]["vs_global_ci95"] = interval((frame[name] - frame["global"]).to_numpy(), seed)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir",
        default="/tmp/recsys_train_bench/full",
        help="benchmarks/train.py's workdir for the scale (home/ and shop/)",
    )
    parser.add_argument(
        "--windows", type=int, default=4, help="two-week windows before the test split to judge"
    )
    parser.add_argument(
        "--test",
        action="store_true",
        help="also judge the test split (the platform's final-report window)",
    )
    parser.add_argument(
        "--ablations",
        action="store_true",
        help="also the segment truth without its taste, and without the day's season and shift",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from features.build import read_lake
    from recommender.catalog import Catalog
    from recommender.state import event_frame
    from recsys.splits import split_last_days
    from recsys.workspace import Workspace
    from training.config import TrainConfig
    from training.pipeline import chosen_windows

    work = Path(args.workdir)
    if not (work / "shop" / "ground_truth").is_dir() or not (work / "home" / "lake").is_dir():
        sys.exit(f"{work}: no shop/ground_truth or home/lake (run benchmarks/train.py first)")
    truth = Truth(work / "shop")
    cfg = TrainConfig()
    events, products, users, _ = read_lake(Workspace.from_env(work / "home"))
    windows = chosen_windows(events, cfg)  # training's own choice, so the same windows
    split = split_last_days(events, windows["validation_days"], windows["test_days"])
    catalog = Catalog.build(products, events)
    frame = event_frame(events, catalog, cfg.model.events)
    windows = [
        (f"val-{w}", split.test_start - WINDOW * w, split.test_start - WINDOW * (w - 1))
        for w in range(args.windows, 0, -1)
    ]
    if args.test:
        windows.append(("test", split.test_start, split.end))
    truths = list(TRUTHS)[: 4 if args.ablations else 2]
    rows, pooled = [], []
    for label, start, end in windows:
        judged = judge_window(truth, events, frame, catalog, users, cfg, start, end, label, truths)
        rows.append(summary(judged, f"{label} ({start.date()})", cfg.model.seed))
        if label != "test":
            pooled.append(judged)
        print_row(rows[-1])
    if pooled:
        rows.append(summary(pd.concat(pooled), "validation windows pooled", cfg.model.seed))
        print_row(rows[-1])
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def print_row(row: dict) -> None:
    print(f"\n{row['window']}: {row['new_user_requests']:,} new-user requests")
    print(f"  {'list':<19}{'ndcg@10':>9}{'hits':>6}   vs global, 95% CI")
    for name, fig in row.items():
        if not isinstance(fig, dict):
            continue
        ci = fig.get("vs_global_ci95")
        shown = f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else ""
        print(f"  {name:<19}{fig['ndcg@10']:>9.4f}{fig['hits']:>6}   {shown}", flush=True)


if __name__ == "__main__":
    main()

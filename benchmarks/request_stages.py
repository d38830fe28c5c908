"""Where one uncached /recommend spends its CPU, stage by stage, in-process (no HTTP).

    python benchmarks/request_stages.py --home WORKSPACE [--profile production] [--users 2100]
        [--requests 2000] [--cprofile N]

The workspace must hold a model with alias ``production`` and its online store (the same as
``serve_load.py``). Each stage's function is wrapped with a timer; the figures are mean
milliseconds per request over ``--requests`` requests of distinct users, after 50 requests of
warm-up. Stages nest (``features`` holds ``features.fetch_columns``), so they do not add up to
the total. Run it single-threaded as the service runs (``OMP_NUM_THREADS=1
OPENBLAS_NUM_THREADS=1``).
"""

import argparse
import collections
import functools
import os
import time
from pathlib import Path

import pandas as pd

from recsys.workspace import Workspace


def _timer(totals: dict[str, float]):
    """A function that replaces ``owner.name`` by a wrapper adding its time to ``label``."""

    def wrap(owner: object, name: str, label: str) -> None:
        function = getattr(owner, name)

        @functools.wraps(function)
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - started

        setattr(owner, name, timed)

    return wrap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, help="workspace with a production model")
    parser.add_argument("--profile", default="production", choices=("local", "production"))
    parser.add_argument("--users", type=int, default=2100, help="users sampled")
    parser.add_argument("--requests", type=int, default=2000, help="requests timed")
    parser.add_argument(
        "--cprofile", type=int, metavar="N", help="also print cProfile's N costliest functions"
    )
    args = parser.parse_args()

    import recommender.candidates as candidates
    import recommender.stored as stored
    import serving.engine as engine_module
    from serving.cache import MemoryCache
    from serving.engine import Engine
    from serving.schemas import RecommendRequest
    from serving.settings import load_settings

    workspace = Workspace(Path(args.home).resolve(), args.profile)
    engine = Engine(workspace, load_settings(), background=False)
    engine.cache = MemoryCache(0.0, max_users=1)  # every request computed
    totals: dict[str, float] = collections.defaultdict(float)
    wrap = _timer(totals)
    state = engine.current
    model = state.model
    for name in ("batch", "candidates", "features"):
        wrap(model, name, name)
    wrap(model.ranker, "score", "ranker.score")
    if state.features is not None:
        wrap(state.features, "fetch_columns", "features.fetch_columns")
        wrap(state.features.reader, "read_columns", "reader.read_columns")
    wrap(state.rules, "mask", "rules.mask")
    wrap(engine_module.reasons, "explain", "reasons.explain")
    wrap(engine, "_online_user", "engine._online_user")
    wrap(engine, "_items", "engine._items")
    for source in model.sources:
        wrap(source, "proposals", f"src.{source.name}.proposals")
        if hasattr(source, "feature_columns"):
            wrap(source, "feature_columns", f"src.{source.name}.feature_columns")
    for module, name in (
        (candidates, "describe_columns"),
        (candidates, "generate"),
        (stored, "ranker_input_columns"),
    ):
        wrap(module, name, f"{module.__name__.split('.')[-1]}.{name}")

    events = pd.read_parquet(workspace.table("events"), columns=["user_id", "timestamp"])
    end = events["timestamp"].max().timestamp() + 3600
    users = events["user_id"].astype(str).drop_duplicates()
    users = users.sample(min(args.users, len(users)), random_state=0).tolist()

    def request(user: str, i: int) -> RecommendRequest:
        body = {"user_id": user, "k": 10, "context": {"timestamp": end + i}}
        return RecommendRequest.model_validate(body)

    for i, user in enumerate(users[:50]):
        engine.recommend(request(user, i))
    totals.clear()
    timed = users[50 : 50 + args.requests]
    profiler = None
    if args.cprofile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started, cpu_started = time.perf_counter(), time.process_time()
    for i, user in enumerate(timed):
        engine.recommend(request(user, i))
    total = (time.perf_counter() - started) / len(timed) * 1000
    cpu = (time.process_time() - cpu_started) / len(timed) * 1000
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.cprofile)
    # (CPU time holds on a busy machine, where the stages' wall times stretch)
    print(
        f"total {total:.2f} ms/request, CPU {cpu:.2f} ms/request over {len(timed)} requests "
        f"(pid {os.getpid()})"
    )
    for label, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"{label:40s} {seconds / len(timed) * 1000:6.2f}")
    engine.close()


if __name__ == "__main__":
    main()

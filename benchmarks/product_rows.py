"""What reading the whole catalogue's product rows from the online store costs: the read a
service does when it prepares a model version, and, a slice each second, in the background.

    python benchmarks/product_rows.py --home WORKSPACE [--profile production] [--chunk 250]

The workspace's online store must be materialised. Prints the products read, wall and CPU
seconds (the CPU is the worker's, taken from the requests' share of Python's lock).
"""

import argparse
import time
from pathlib import Path

import pandas as pd

from recsys.workspace import Workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, help="workspace with a materialised store")
    parser.add_argument("--profile", default="production", choices=("local", "production"))
    parser.add_argument("--chunk", type=int, default=250, help="products per read (250)")
    args = parser.parse_args()

    from features.environment import feast_environment
    from features.online import OnlineReader
    from features.store import open_store
    from recommender.features_source import OnlineFeatures

    workspace = Workspace(Path(args.home).resolve(), args.profile)
    with feast_environment(workspace):
        reader = OnlineReader(open_store(workspace), timeout=1.0)
    ids = pd.read_parquet(workspace.table("products"), columns=["item_id"])["item_id"]
    features = OnlineFeatures(reader)
    started, cpu = time.perf_counter(), time.process_time()
    read = features.refresh(ids.astype(str).to_numpy(dtype=object), 0.0, chunk=args.chunk)
    print(
        f"{read} products in reads of {args.chunk}: {time.perf_counter() - started:.2f} s wall, "
        f"{time.process_time() - cpu:.2f} s CPU"
    )


if __name__ == "__main__":
    main()

"""How a request scored alone differs from the same request scored within a batch.

    python benchmarks/alone_vs_batch.py --home WORKSPACE [--profile production] [--users 2000]
        [--alias production] [--n 100]

The service scores one request at a time, training and ``recsys recommend`` score blocks of
rows; for ALS (and content) BLAS computes a single row as a matrix-vector product, a block as
a matrix product, which round in the last bits differently. This prints, for the model behind
``--alias``, the largest difference between a user's ALS scores alone and within a block of
``--users`` rows, and how many users' top ``--n`` ALS items come out in another order.
"""

import argparse
from pathlib import Path

import numpy as np

from recsys.workspace import Workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, help="workspace with a registered model")
    parser.add_argument("--profile", default="production", choices=("local", "production"))
    parser.add_argument("--alias", default="production")
    parser.add_argument("--users", type=int, default=2000, help="users compared")
    parser.add_argument("--n", type=int, default=100, help="length of the compared top lists")
    args = parser.parse_args()

    from recommender.mlflow_model import load_recommender
    from recommender.state import block_scores, top_n_arrays
    from recsys import tracking

    tracking.use(Workspace(Path(args.home).resolve(), args.profile))
    model = load_recommender(f"models:/recsys-recommender@{args.alias}")
    als = model.source("als")
    users = als.user_factors[: args.users]
    block = block_scores(users, als.item_factors)
    largest, reordered = 0.0, 0
    for row in range(len(users)):
        alone = block_scores(users[row : row + 1], als.item_factors)
        largest = max(largest, float(np.abs(alone[0] - block[row]).max()))
        mine = top_n_arrays(alone, args.n)[1]
        theirs = top_n_arrays(block[row : row + 1], args.n)[1]
        reordered += not np.array_equal(mine, theirs)
    print(
        f"ALS, {len(users)} users x {als.item_factors.shape[0]} items: largest difference "
        f"{largest:.3g}; top {args.n} in another order for {reordered} users"
    )


if __name__ == "__main__":
    main()

"""``recsys recommend``: top-K lists for many users from a registry alias, to CSV or Parquet.

It answers through ``Recommender.recommend``, the method the service calls; stored features
come from Feast's offline store as of the model's data end (the service reads them online).
"""

import logging
from pathlib import Path

import pandas as pd

from recsys import columns as c
from recsys.errors import DataFileError, RecsysError
from recsys.workspace import Workspace

logger = logging.getLogger(__name__)
OUTPUT_COLUMNS = (c.USER_ID, "rank", c.ITEM_ID, "score")
CHUNK_USERS = 5_000


def read_users(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.exists():
        raise RecsysError(f"{path}: file not found")
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
    except Exception as exc:
        raise DataFileError(path, f"cannot be read ({exc})", expected="CSV or Parquet") from None
    if c.USER_ID not in frame:
        raise DataFileError(
            path,
            "no such column",
            column=c.USER_ID,
            expected=f"a '{c.USER_ID}' column; found: {', '.join(map(str, frame.columns))}",
        )
    users = frame[c.USER_ID].dropna().astype(str)
    if users.empty:
        raise DataFileError(path, "no user ids", column=c.USER_ID)
    return list(pd.unique(users))


def recommend_to_file(
    workspace: Workspace,
    alias: str,
    users: list[str] | None,
    k: int,
    out: str | Path,
    model_name: str = "recsys-recommender",
) -> dict[str, object]:
    from recommender.features_source import OfflineFeatures
    from recommender.mlflow_model import load_recommender
    from recsys import tracking

    out = Path(out)
    if out.suffix not in (".csv", ".parquet"):
        raise RecsysError(f"--out {out}: the extension must be .csv or .parquet")
    if k < 1:
        raise RecsysError("--k must be at least 1")
    tracking.use(workspace)
    uri = f"models:/{model_name}@{alias}"
    try:
        model = load_recommender(uri)
    except Exception as exc:
        raise RecsysError(f"cannot load {uri}: {exc}") from None
    if workspace.table(c.PRODUCTS).exists():
        added = model.add_products(pd.read_parquet(workspace.table(c.PRODUCTS)))
        if added:
            logger.info("%d products unknown to the model were added to its catalogue", added)
    if users is None:
        users = list(model.users.ids)
    features = OfflineFeatures(workspace)
    parts = []
    for start in range(0, len(users), CHUNK_USERS):
        chunk = pd.DataFrame({c.USER_ID: users[start : start + CHUNK_USERS]})
        parts.append(model.recommend(chunk, k, features))
        logger.info("recommended for %s of %s users", f"{start + len(chunk):,}", f"{len(users):,}")
    result = pd.concat(parts, ignore_index=True)[list(OUTPUT_COLUMNS)]
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        result.to_csv(out, index=False)
    else:
        result.to_parquet(out, index=False)
    return {"users": len(users), "rows": len(result), "out": str(out), "model": uri}

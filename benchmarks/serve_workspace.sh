#!/usr/bin/env bash
# The workspace serve_load.py and request_stages.py measure: the full generated shop (seed 0),
# features materialised into Redis (production profile), a model trained and given alias
# production (version 1) and a second version of the same model (the alias-move run).
#
#     bash benchmarks/serve_workspace.sh DIR      (some 25 minutes on 2 cores)
#
# It uses its own Feast project, PostgreSQL schema and Redis database (3), so it leaves the
# machine's other workspaces alone; export the same variables before the benchmarks:
#     RECSYS_FEAST_PROJECT=recsys_bench RECSYS_PG_SCHEMA=recsys_bench RECSYS_PG_DATABASE=test
#     RECSYS_REDIS_DB=3 MLFLOW_TRACKING_URI=sqlite:///DIR/mlflow.db
set -euo pipefail
home=$(realpath -m "${1:?usage: serve_workspace.sh DIR}")
mkdir -p "$home"
export RECSYS_HOME=$home RECSYS_FEAST_PROJECT=recsys_bench RECSYS_PG_SCHEMA=recsys_bench
export RECSYS_PG_DATABASE=${RECSYS_PG_DATABASE:-test} RECSYS_REDIS_DB=${RECSYS_REDIS_DB:-3}
export MLFLOW_TRACKING_URI=sqlite:///$home/mlflow.db
step() { echo "== $(date +%T) $*"; }
step generate; recsys generate --scale full --seed 0 --out "$home/shop"
step ingest; recsys ingest "$home/shop"
step "features (production)"
recsys --profile production features build
recsys --profile production features apply
recsys --profile production features materialize
step "features (local) and train"
recsys features build
recsys features apply
recsys train
step "alias production -> 1, version 2 from version 1's files"
python - <<'PY'
from mlflow import MlflowClient

client = MlflowClient()
name = "recsys-recommender"
v1 = client.get_model_version(name, "1")
client.set_registered_model_alias(name, "production", "1")
if len(client.search_model_versions(f"name='{name}'")) < 2:
    client.create_model_version(name, v1.source, run_id=v1.run_id)
print({v.version: v.aliases for v in client.search_model_versions(f"name='{name}'")})
PY
step done

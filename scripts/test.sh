#!/usr/bin/env bash
# Runs every test of the project: Rust (format, lints, unit, integration, crash), the runnable
# examples against a real server, and the Python SDK's suite in its own venv.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# Where cargo puts binaries (CARGO_TARGET_DIR may move it).
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

# What tracked files look like now: the tests must leave them so (screenshots included).
tracked_files() { git status --porcelain=v1 --untracked-files=no 2>/dev/null; git diff --binary 2>/dev/null | sha256sum; }
tracked_before=$(tracked_files)

echo "== cargo fmt"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo build"
cargo build --release --workspace --all-targets
export ERRANDS_BIN="$target/release/errands"

echo "== the README's server command resolves to the server"
cargo run --release -q -- serve --help | grep -q -- "--listen"

# Right after `cargo run --release` built the server as `-p errands` builds it, so the wheel's
# build (maturin, same target dir and profile) finds it compiled and only packs it.
echo "== the Python wheel carries the server (fresh venv, no cargo on PATH)"
bash scripts/test-wheel.sh

echo "== the container image (podman build, its filesystem run in a chroot)"
bash scripts/test-image.sh

echo "== PostgreSQL for the tests that need it"
bash scripts/postgres.sh

echo "== cargo test"
cargo test --release --workspace

echo "== the server's integration tests again, on PostgreSQL"
ERRANDS_TEST_STORE=postgres cargo test --release -p errands-server --tests

echo "== examples against a real server"
scratch=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$ERRANDS_BIN" serve --memory --listen "127.0.0.1:$port" >"$scratch/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$scratch"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.1
done
ERRANDS_URL="http://127.0.0.1:$port" "$target/release/examples/quickstart" | tee "$scratch/quickstart.out"
grep -q "result: cat.png.320px.webp" "$scratch/quickstart.out"

echo "== the HTTP API against its OpenAPI document"
bash scripts/api-contract.sh

if [ -f python/ci.sh ]; then
  echo "== python"
  bash python/ci.sh
fi

if [ -f dashboard-tests/run.sh ]; then
  echo "== dashboard in a real browser"
  bash dashboard-tests/run.sh
fi
echo "== fuzz targets, a bounded run each"
bash scripts/fuzz.sh
echo "== tracked files are as they were"
if [ "$(tracked_files)" != "$tracked_before" ]; then
  echo "the tests changed tracked files:"
  git status --short --untracked-files=no
  exit 1
fi
echo "== all tests passed"

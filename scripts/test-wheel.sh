#!/usr/bin/env bash
# The Python wheel carries the server: build it with maturin (reusing the workspace's release
# build), install it into a fresh venv, and use it as someone without Rust would: PATH stripped
# of cargo, rustup and this repository's target directory, working from a directory outside the
# repository. Checks `errands serve --memory`, `errands-worker app:app` running a job enqueued
# through the client, and the pytest fixture of errands.testing finding the server by itself.
#
# Usage: bash scripts/test-wheel.sh   (scripts/test.sh runs it after the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cache="${XDG_CACHE_HOME:-$HOME/.cache}/errands"

# maturin from PyPI, in a venv kept between runs.
maturin_venv="$cache/maturin-venv"
if [[ ! -x "$maturin_venv/bin/maturin" ]]; then
  python3 -m venv "$maturin_venv"
  "$maturin_venv/bin/pip" install --quiet "maturin>=1.7,<2"
fi

scratch=$(mktemp -d)
server_pid=""
worker_pid=""
cleanup() {
  for pid in $worker_pid $server_pid; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

echo "-- build the wheel"
# Through python/pyproject.toml's build backend, as `pip install ./python` builds it, with the
# cached maturin (its hooks run `maturin` from PATH). Same target dir and profile as
# `cargo build --release`, so cargo finds the server built already and only packs it (it
# would say "Compiling errands" otherwise).
started=$(date +%s.%N)
PATH="$maturin_venv/bin:$PATH" "$maturin_venv/bin/pip" wheel --verbose --no-deps --no-build-isolation \
  --wheel-dir "$scratch/wheels" ./python >"$scratch/maturin.log" 2>&1 \
  || { cat "$scratch/maturin.log"; exit 1; }
elapsed=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$started" "$(date +%s.%N)")
wheel=$(ls "$scratch"/wheels/errands-*.whl)
compiled=$(grep -c "Compiling " "$scratch/maturin.log" || true)
echo "built $(basename "$wheel") ($(du -h "$wheel" | cut -f1)) in ${elapsed}s; crates compiled: $compiled"

echo "-- install it into a fresh venv"
venv="$scratch/venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "$wheel" "pytest>=8" "pytest-asyncio>=0.24"

# What a user without Rust has: the venv, and the system's directories minus anything of
# cargo, rustup or this repository.
clean_path="$venv/bin"
IFS=: read -ra dirs <<<"$PATH"
for dir in "${dirs[@]}"; do
  case "$dir" in
    "" | *cargo* | *rustup* | "$root"* | "$target"*) ;;
    *) clean_path="$clean_path:$dir" ;;
  esac
done
outside="$scratch/outside"
mkdir -p "$outside"
cd "$outside"
export PATH="$clean_path"
unset ERRANDS_BIN ERRANDS_URL ERRANDS_TOKEN CARGO_TARGET_DIR
if command -v cargo rustc >/dev/null; then
  echo "cargo is still on PATH: $(command -v cargo rustc)" >&2
  exit 1
fi
[[ "$(command -v errands)" == "$venv/bin/errands" ]] || { echo "errands resolves to $(command -v errands)" >&2; exit 1; }

echo "-- errands serve --memory, from the wheel"
port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
errands serve --memory --listen "127.0.0.1:$port" >"$scratch/server.log" 2>&1 &
server_pid=$!
export ERRANDS_URL="http://127.0.0.1:$port"
python - "$ERRANDS_URL" <<'EOF'
import sys, time, urllib.request
deadline = time.monotonic() + 30
while True:
    try:
        with urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=1) as reply:
            if reply.status == 200:
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("the wheel's errands server never answered /healthz")
    time.sleep(0.05)
EOF

echo "-- errands-worker app:app runs a job enqueued through the client"
cat >app.py <<'EOF'
import errands

app = errands.App()


@app.task
async def shout(ctx: errands.Context, word: str) -> str:
    return word.upper() + "!"
EOF
errands-worker app:app >"$scratch/worker.log" 2>&1 &
worker_pid=$!
python - <<'EOF' || { cat "$scratch/worker.log" "$scratch/server.log"; exit 1; }
import asyncio
from app import app, shout


async def main() -> None:
    job = await shout.enqueue("wheel")
    result = await job.result(timeout=30)
    assert result == "WHEEL!", result
    print(f"job {job.id} completed by errands-worker: {result}")
    await app.close()


asyncio.run(main())
EOF
kill "$worker_pid" "$server_pid"
wait "$worker_pid" "$server_pid" 2>/dev/null || true
worker_pid=""
server_pid=""
unset ERRANDS_URL

echo "-- the pytest fixture starts the server without ERRANDS_BIN"
cat >test_fixture.py <<'EOF'
import errands
from errands.testing import find_binary, run_worker

app = errands.App()


@app.task
async def add(ctx: errands.Context, a: int, b: int) -> int:
    return a + b


def test_finds_the_wheels_server() -> None:
    import sys
    from pathlib import Path

    assert Path(find_binary()).parent == Path(sys.executable).parent


async def test_job_through_fixture(errands_server) -> None:
    async with run_worker(app):
        job = await add.enqueue(2, 3)
        assert await job.result(timeout=10) == 5
    await app.close()
EOF
python -m pytest -q -p no:cacheprovider -o asyncio_mode=auto \
  -o asyncio_default_fixture_loop_scope=function test_fixture.py
echo "wheel: all checks passed"

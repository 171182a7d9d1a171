#!/usr/bin/env bash
# Browser tests of the dashboard: headless Debian Chromium driven by playwright-core, against a
# real `errands serve --memory`. Installs what it needs (chromium, the npm packages).
#
#   bash dashboard-tests/run.sh          # binary from ERRANDS_BIN, else target/release/errands
#   ERRANDS_REFRESH_DOCS_IMAGES=1 bash dashboard-tests/run.sh   # also rewrites docs/*.png
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$here"

if [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

echo "== npm packages"
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi

bin="${ERRANDS_BIN:-$root/target/release/errands}"
if [ ! -x "$bin" ]; then
  echo "== building errands"
  (cd "$root" && cargo build --release -p errands)
fi
export ERRANDS_BIN="$bin"

# Screenshots go to a scratch directory (the README's images in docs/ only with
# ERRANDS_REFRESH_DOCS_IMAGES=1), so a test run changes no tracked file.
screenshots=$(mktemp -d)
export SCREENSHOT_DIR="${SCREENSHOT_DIR:-$screenshots}"

port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
log=$(mktemp)
"$ERRANDS_BIN" serve --memory --listen "127.0.0.1:$port" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"; rm -rf "$screenshots"' EXIT
export ERRANDS_URL="http://127.0.0.1:$port"
for _ in $(seq 100); do
  curl -sf "$ERRANDS_URL/healthz" >/dev/null && break
  sleep 0.1
done
curl -sf "$ERRANDS_URL/healthz" >/dev/null || { echo "the server did not start:"; cat "$log"; exit 1; }

echo "== dashboard browser tests against $ERRANDS_URL"
node --test --test-reporter=spec ./*.test.js || { echo "== server log"; tail -50 "$log"; exit 1; }

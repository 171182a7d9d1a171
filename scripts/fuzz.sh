#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time, starting from its seeds in
# fuzz/corpus/<target>/, and fails if any target crashes (a panic, a failed assertion, an input
# slower than FUZZ_INPUT_TIMEOUT seconds). Needs only the stable toolchain: `--sanitizer none`
# keeps cargo-fuzz off the nightly-only -Z flags (the targets are safe Rust, so coverage-guided
# assertions are what finds bugs here, not AddressSanitizer).
#
#   FUZZ_SECONDS=20          time per target
#   FUZZ_INPUT_TIMEOUT=10    seconds one input may take
#   ERRANDS_FUZZ_TARGET_DIR  build directory (kept between runs so CI rebuilds only our crates)
#   FUZZ_TARGETS="a b"       run only these targets
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

cargo_fuzz_version=0.13.2
seconds=${FUZZ_SECONDS:-20}
input_timeout=${FUZZ_INPUT_TIMEOUT:-10}
export CARGO_TARGET_DIR=${ERRANDS_FUZZ_TARGET_DIR:-$HOME/.cache/errands/fuzz-target}

# cargo-fuzz lands in ~/.cargo/bin, which outlives the clone, so it is built once per machine.
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi

cargo fmt --check
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
cargo fuzz build --sanitizer none

# New inputs a run discovers go to a scratch directory (libFuzzer writes to the first corpus
# directory it is given), so the seeds in the repository stay as committed.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in $targets; do
  echo "-- fuzz $target for ${seconds}s"
  mkdir -p "$scratch/$target"
  if ! cargo fuzz run --sanitizer none "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout="$input_timeout" -print_final_stats=1 \
    >"$scratch/$target.log" 2>&1; then
    # The panic message, then the input (bytes and base64) and the artifact's path under
    # fuzz/artifacts/ to replay with `cargo fuzz run --sanitizer none TARGET FILE`.
    sed -n '/panicked at/,/stack backtrace/p' "$scratch/$target.log"
    tail -n 30 "$scratch/$target.log"
    failed+=("$target")
  else
    grep -E '^(Done|stat::number_of_executed_units)' "$scratch/$target.log" || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets that crashed: ${failed[*]}" >&2
  exit 1
fi
echo "-- fuzz: no crash in" $targets

#!/usr/bin/env bash
# The checks CI runs, in order of cost: fmt, clippy, the quick crash matrix (every cell),
# the whole test suite under line coverage with a 90% gate (ci/coverage.sh), then the
# README's test command, whose summary ends the output.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# Honour CARGO_TARGET_DIR (CI sets it to share a build cache); the test log goes there too.
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$target_dir"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== crash matrix (quick: every cell of ci/matrix.toml)"
bash ci/crash-matrix.sh --quick
echo "== line coverage (the test suite under cargo llvm-cov, 90% gate)"
bash ci/coverage.sh
echo "== tests (the README's command)"
cargo test --workspace 2>&1 | tee "$target_dir/ci-test.log"
# Repeat the test runner's totals as the last line, so CI's summary is the test outcome.
awk '/^test result:/ { split($0, a, /[ ;]+/); for (i = 1; i <= NF; i++) { if ($i ~ /passed/) p += $(i-1); if ($i ~ /failed/) f += $(i-1); if ($i ~ /ignored/) s += $(i-1) } } END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$target_dir/ci-test.log"

#!/usr/bin/env bash
# The whole test suite, run once, under line coverage (cargo llvm-cov): the test log goes to
# $CARGO_TARGET_DIR/coverage-test.log, the per-file table to $CARGO_TARGET_DIR/coverage.txt, a
# line per crate and the total to stdout, and the run fails when the workspace's line
# coverage is under COVERAGE_MIN_LINES percent (default 90).
# Installs cargo-llvm-cov (and the llvm-tools component it needs) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
target_dir=${CARGO_TARGET_DIR:-target}
min_lines=${COVERAGE_MIN_LINES:-90}
mkdir -p "$target_dir"
if command -v rustup >/dev/null; then
  # Read the whole list first: `grep -q` closing the pipe early would fail it under pipefail.
  components=$(rustup component list --installed)
  if ! grep -q '^llvm-tools' <<<"$components"; then
    rustup component add llvm-tools-preview
  fi
fi
if ! cargo llvm-cov --version >/dev/null 2>&1; then
  cargo install cargo-llvm-cov --locked
fi
# The tests' own exit status decides first: a failing test fails the run before coverage.
cargo llvm-cov --workspace --no-report 2>&1 | tee "$target_dir/coverage-test.log"
# A process killed while it wrote its profile at exit (the tests SIGKILL and SIGINT real
# processes) leaves a profile cut short, and one such file makes llvm-profdata refuse the
# whole merge. Drop those: they were never complete evidence of anything.
profdata=$(find "$(rustc --print sysroot)" -name llvm-profdata -type f | head -n 1)
if [[ -n $profdata ]]; then
  for profile in "$target_dir"/llvm-cov-target/*.profraw; do
    [[ -e $profile ]] || continue
    if ! "$profdata" show "$profile" >/dev/null 2>&1; then
      echo "coverage: dropping $profile, a profile cut short by a kill"
      rm -f "$profile"
    fi
  done
fi
cargo llvm-cov report > "$target_dir/coverage.txt"
# Lines and missed lines are the 8th and 9th columns of llvm-cov's table; add them up per
# crate (the first path component).
awk -v min="$min_lines" '
  $1 ~ /\.rs$/ { split($1, p, "/"); lines[p[1]] += $8; missed[p[1]] += $9 }
  $1 == "TOTAL" { total = $8; total_missed = $9 }
  END {
    for (c in lines) printf "line coverage %-10s %6.2f%% (%d of %d lines)\n", c, 100 * (lines[c] - missed[c]) / lines[c], lines[c] - missed[c], lines[c]
    pct = 100 * (total - total_missed) / total
    printf "line coverage %-10s %6.2f%% (%d of %d lines), gate %s%%\n", "workspace", pct, total - total_missed, total, min
    if (pct < min) { printf "line coverage %.2f%% is under the %s%% gate (per file: %s)\n", pct, min, FILENAME; exit 1 }
  }' "$target_dir/coverage.txt"

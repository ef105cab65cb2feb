#!/usr/bin/env bash
# The crash matrix (ci/matrix.toml): every durability mode x fault x workload profile cell,
# each a campaign from a seed derived from the matrix seed and the cell's name, so a red
# cell reruns alone from the command its row prints. CI runs it with --quick.
# Usage: ci/crash-matrix.sh [--release] [torture matrix flags: --quick --cell GLOB --shard i/n
#        --seed S --json ...]
# Writes the JUnit report to $CARGO_TARGET_DIR/crash-matrix.junit.xml (target/ by default)
# and keeps findings under $ARTIFACTS_DIR (default $CARGO_TARGET_DIR/crash-artifacts).
# Exits as torture does: 1 on a finding, 3 on a harness failure, 2 on a usage error.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=
if [[ ${1:-} == --release ]]; then
  profile=--release
  shift
fi
cargo build -q $profile -p torture
# Honour CARGO_TARGET_DIR (CI sets it to share a build cache): the binary is where cargo put it.
target_dir=${CARGO_TARGET_DIR:-target}
bin=$target_dir/$([[ $profile == --release ]] && echo release || echo debug)/torture
artifacts=${ARTIFACTS_DIR:-$target_dir/crash-artifacts}
junit=$target_dir/crash-matrix.junit.xml
# stdout is the matrix's own (a table, or JSON Lines with --json).
echo "crash matrix: artifacts under $artifacts, JUnit report $junit" >&2
"$bin" matrix --artifacts "$artifacts" --junit "$junit" "$@"

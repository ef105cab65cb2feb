#!/usr/bin/env bash
# The crash matrix: every durability mode x kill kind, each cell a fixed number of crash
# cycles from a fixed base seed (so a failing cell replays exactly), with power loss,
# recovery crashes and corruption checks mixed in on about one cycle in four.
# Usage: ci/crash-matrix.sh [cycles-per-cell] [base-seed] [--release]
# Exits 1 on the first cell with a finding, 3 on a harness failure.
set -euo pipefail
cd "$(dirname "$0")/.."
cycles=${1:-40}
seed=${2:-0x5eed}
profile=${3:-}
cargo build -q $profile -p torture
# Honour CARGO_TARGET_DIR (CI sets it to share a build cache): the binary is where cargo put it.
target_dir=${CARGO_TARGET_DIR:-target}
bin=$target_dir/$([[ $profile == --release ]] && echo release || echo debug)/torture
artifacts=${ARTIFACTS_DIR:-$target_dir/crash-artifacts}
echo "crash matrix: $cycles cycles per cell, base seed $seed, artifacts under $artifacts"
for mode in strict batched async; do
  for kill in offset watch time io-error; do
    echo "== mode=$mode kill=$kill"
    "$bin" run --cycles "$cycles" --jobs 2 --seed "$seed" --mode "$mode" --kill "$kill" \
      --artifacts "$artifacts"
  done
done

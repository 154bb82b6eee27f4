#!/usr/bin/env bash
# The function-matching study of docs/results.md: its two experiment files (ResNet-18 and
# MobileNetV2 students) side by side, one libtorch thread each. On 2 cores that takes less
# wall time than the two files one after the other with two threads: libtorch's second thread
# buys these small 32x32 steps little (MobileNetV2: nothing; docs/results.md), a second process
# a whole core.
#
#   scripts/function-matching-study.sh           # the study, with tch
#   scripts/function-matching-study.sh --quick   # a smoke run of both files
#
# Arguments go to both `kd run` commands. Each file's progress goes to its log next to its run
# directory (runs/function-matching-r18.log, runs/function-matching-mnv2.log). Stopping the
# script stops both runs; run it again and each resumes from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --features tch
mkdir -p runs
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
start=$SECONDS
pids=()
for student in r18 mnv2; do
  OMP_NUM_THREADS=1 cargo run -q --features tch -- run \
    "examples/studies/function_matching_$student.toml" --backend tch "$@" \
    > "runs/function-matching-$student.log" 2>&1 &
  pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
trap - EXIT
took=$((SECONDS - start))
echo "function-matching study: $((took / 60)) min $((took % 60)) s wall time, exit status $status"
for student in r18 mnv2; do
  tail -n 12 "runs/function-matching-$student.log"
done
exit "$status"

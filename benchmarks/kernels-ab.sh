#!/usr/bin/env bash
# Old vs new CPU kernels in one go, without the Swift build: compiles benchmarks/kernels-ab.c
# against CServalKernels' C sources at BASE (default: HEAD~1) and at the working tree, checks
# the new kernels against scalar, then prints the model-shape timings of both side by side.
# Usage: benchmarks/kernels-ab.sh [BASE]     (needs clang; single thread, thread CPU time)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${1:-HEAD~1}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
git -C "$ROOT" archive "$BASE" Sources/CServalKernels | tar -x -C "$TMP"
# The harness calls the roofline probes; an older tree without them borrows today's files.
if ! grep -q sv_int8_peak "$TMP/Sources/CServalKernels/include/serval_kernels.h"; then
  for f in roofline.c dispatch.c include/serval_kernels.h; do
    cp "$ROOT/Sources/CServalKernels/$f" "$TMP/Sources/CServalKernels/$f"
  done
fi
build() { (cd "$1" && clang -O3 -fno-math-errno -mf16c -I include -I . ./*.c "$ROOT/benchmarks/kernels-ab.c" -o "$2" -lpthread -lm); }
build "$TMP/Sources/CServalKernels" "$TMP/old"
build "$ROOT/Sources/CServalKernels" "$TMP/new"
"$TMP/new" c
echo "== $BASE  ||  working tree  (load: $(cut -d' ' -f1-3 /proc/loadavg))"
paste <("$TMP/old" m | tail -n +2) <("$TMP/new" m | tail -n +2) | sed 's/\t/   ||   /'
"$TMP/new" p | tail -n +2

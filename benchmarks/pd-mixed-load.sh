#!/bin/bash
# Issue 20's point, measured: inter-token latency of a steady stream of short chats, alone and with
# occasional long prompts mixed in, under PD (a prefill server on core 0, a decode server on core 1,
# `launch-router --pd-disaggregation`) against the same two cores as two plain servers behind the
# round-robin router. Run on a quiet machine with at least 2 cores:
#     benchmarks/pd-mixed-load.sh [SERVAL_BIN] [MODEL]        (outputs under $OUT, default /tmp/pd-mixed)
set -euo pipefail
B=${1:-.build/release/serval}; M=${2:-$(scripts/fetch-default-model)}
OUT=${OUT:-/tmp/pd-mixed}; mkdir -p "$OUT"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
ready() { for _ in $(seq 1 240); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 0.5; done
  echo "server on port $1 did not come up" >&2; exit 1; }
start() { local core=$1 log=$2; shift 2; taskset -c "$core" "$B" "$@" > "$OUT/$log.log" 2>&1 & pids+=($!); }
SHORT=(--dataset-name random --random-input-len 128 --random-output-len 64 --random-range-ratio 1
  --request-rate 1 --num-prompts 40)
LONG=(--dataset-name random --random-input-len 2048 --random-output-len 8 --random-range-ratio 1
  --request-rate 0.1 --num-prompts 3)
load() {  # $1 router port, $2 label: the short stream alone, then with the long prompts beside it
  "$B" bench-serving --port "$1" --tokenizer "$M" "${SHORT[@]}" --seed 1 > "$OUT/$2-alone.txt" 2>&1
  "$B" bench-serving --port "$1" --tokenizer "$M" "${LONG[@]}" --seed 2 > "$OUT/$2-long.txt" 2>&1 &
  local lp=$!
  "$B" bench-serving --port "$1" --tokenizer "$M" "${SHORT[@]}" --seed 3 > "$OUT/$2-mixed.txt" 2>&1
  wait "$lp"
}
stop() { cleanup; pids=(); sleep 1; }

# PD: prefill on core 0, decode on core 1, the router beside them.
start 0 prefill launch-server --model-path "$M" --port 32101 --threads 1 --disaggregation-mode prefill \
  --disaggregation-bootstrap-port 32102
start 1 decode launch-server --model-path "$M" --port 32103 --threads 1 --disaggregation-mode decode
ready 32101; ready 32103
start 0,1 pd-router launch-router --port 32100 --pd-disaggregation --prefill http://127.0.0.1:32101 32102 \
  --decode http://127.0.0.1:32103
ready 32100
load 32100 pd
stop

# Plain: two servers, one core each, round robin.
start 0 plain0 launch-server --model-path "$M" --port 32111 --threads 1
start 1 plain1 launch-server --model-path "$M" --port 32112 --threads 1
ready 32111; ready 32112
start 0,1 plain-router launch-router --port 32110 --policy round_robin \
  --worker-urls http://127.0.0.1:32111 http://127.0.0.1:32112
ready 32110
load 32110 plain
stop

for f in pd-alone pd-mixed plain-alone plain-mixed; do
  echo "== $f"; grep -E "TTFT|ITL|Output token throughput|Successful|Failed" "$OUT/$f.txt" || tail -5 "$OUT/$f.txt"
done

#!/bin/bash
# The overlap scheduler on one GPU (about 4 minutes on an H100): the 8B-shaped dummy model behind
# `launch-server --device cuda`, serving issue 15's load (64 streams, 512 in / 256 out exactly, 256
# prompts) with the overlap schedule on (the default) and off (--disable-overlap-schedule), twice each,
# alternating. For each run: what /get_server_info says about the overlap, output tok/s, median TPOT
# and TTFT, failures, and the server's GPU-idle meter lines (one per 500 steps: idle share between
# steps, mean gap, mean step).
# Carry .device-carry as for scripts/device-check-all.sh. Log: $OUT/overlap.txt.
# Run: bash scripts/device-check-overlap.sh
set -o pipefail
Q=$OUT/overlap.txt
source "$(dirname "$0")/device-lib.sh"
[ -f /tmp/smol4.gguf ] || xz -dc $C/smol4.gguf.xz > /tmp/smol4.gguf
serve_ab() {  # label, then extra launch-server flags
  local label=$1; shift
  echo "== $label" >> $Q
  $B launch-server --device cuda --model-path $C/llama8b --load-format dummy --tokenizer-path /tmp/smol4.gguf \
    --port 31000 --served-model-name m "$@" > /tmp/srv-overlap.log 2>&1 &
  local sp=$!
  for i in $(seq 1 240); do grep -q "fired up" /tmp/srv-overlap.log && break; sleep 0.25; done
  curl -s localhost:31000/get_server_info | python3 -c \
    "import json,sys; print('disable_overlap_schedule:', json.load(sys.stdin).get('disable_overlap_schedule'))" >> $Q
  timeout 100 $B bench-serving --backend serval --port 31000 --tokenizer /tmp/smol4.gguf --model m \
    --dataset-name random --random-input-len 512 --random-output-len 256 --random-range-ratio 1 \
    --num-prompts 256 --max-concurrency 64 2>&1 \
    | grep "Output token throughput\|Median TPOT\|Median TTFT\|Failed\|rror" >> $Q
  kill $sp; wait $sp 2>/dev/null
  grep "overlap schedule\|idle between steps" /tmp/srv-overlap.log | tail -4 >> $Q
}
for round in 1 2; do
  serve_ab "round $round: overlap on (default)"
  el "overlap on $round"
  serve_ab "round $round: overlap off" --disable-overlap-schedule
  el "overlap off $round"
done

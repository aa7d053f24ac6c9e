#!/bin/bash
# The CUDA fp8 KV cache (`--kv-cache-dtype fp8_e4m3|fp8_e5m2`, issue 16 item 4) in one device call (about
# 4 minutes on an H100): its selftest cases (the fp8 writes' bytes, decode / extend / MLA attention over
# fp8 caches, fp8 page copies) and the backend seam (CPU and GPU fp8 pools fed the same rows: outputs and
# bytes compared), the DeepSeek fixtures and the default GGUF's first blocks CPU against GPU with an fp8
# cache on both, bench-cuda's attention lines (bf16 and fp8_e4m3 side by side), and bench-one-batch of the
# 8B and V2-Lite shapes with bf16 and fp8_e4m3 caches interleaved (A B A B).
# Carry .device-carry as for scripts/device-check-all.sh (serval.xz, smol4.gguf.xz, llama8b/config.json,
# v2lite.json). Log: $OUT/fp8kv.txt.   Run: bash scripts/device-check-fp8kv.sh
set -o pipefail
Q=$OUT/fp8kv.txt
source "$(dirname "$0")/device-lib.sh"
timeout 240 $B selftest --device cuda --only fp8_e4m3 --only fp8_e5m2 --only "backend seam" 2>&1 \
  | grep -v "^ok \|^PASS" >> $Q
el selftest
[ -f /tmp/smol4.gguf ] || xz -dc $C/smol4.gguf.xz > /tmp/smol4.gguf
for m in $F/v2-lite $F/v3 /tmp/smol4.gguf; do
  for kv in fp8_e4m3 fp8_e5m2; do
    echo "== $m --kv-cache-dtype $kv" >> $Q
    timeout 90 $B selftest --device cuda --only none --model-path $m --model-steps 8 --kv-cache-dtype $kv 2>&1 \
      | grep "model check\|reference\|prompt \|graph check\|rror" >> $Q
  done
done
el models
timeout 150 $B bench-cuda --decode-batches "" 2>&1 | grep "copy\|decode attention\|extend attention\|mla decode" >> $Q
el bench-cuda
W=/tmp/v2lite; mkdir -p $W; cp $C/v2lite.json $W/config.json
for round in 1 2; do
  for kv in bf16 fp8_e4m3; do
    echo "== round $round, --kv-cache-dtype $kv" >> $Q
    timeout 90 $B bench-one-batch --device cuda --model-path $C/llama8b --load-format dummy --batch-size 1 64 \
      --input-len 512 --output-len 32 --kv-cache-dtype $kv 2>&1 | grep "Prefill\|median\|KV pool\|rror" >> $Q
    timeout 90 $B bench-one-batch --device cuda --model-path $W --load-format dummy --batch-size 1 32 \
      --input-len 512 --output-len 16 --kv-cache-dtype $kv 2>&1 | grep "Prefill\|median\|KV pool\|rror" >> $Q
  done
done
el bench-one-batch

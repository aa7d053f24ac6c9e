#!/bin/bash
# The shortest whole check (about 4 minutes on an H100) for a session left with under 5 minutes of
# device time: the full selftest (every op, seam, NCCL), V2-Lite-shaped decode at batch 1 and 32, the
# 8B shapes' decode at batch 1 and 64, bench-cuda (copy bandwidth, GEMV, attention, MLA), the V3 fixture
# against the CPU, the CUDA PD pair (scripts/pd-cuda-device-check.sh, cut at 60 s) and, last, the 8B
# server under 64 streams (issue 15's serving figure, cut at 90 s) and batch 256 x 512-token prompts.
# Carry .device-carry as for scripts/device-check-all.sh. Log: $OUT/short.txt (PD: $OUT/pd.txt).
# Run: bash scripts/device-check-short.sh
set -o pipefail
Q=$OUT/short.txt
source "$(dirname "$0")/device-lib.sh"
timeout 60 $B selftest --device cuda --require-nccl 2>&1 | grep -v "^PASS\|^ok " >> $Q
el selftest
W=/tmp/v2lite; mkdir -p $W; cp $C/v2lite.json $W/config.json
timeout 90 $B bench-one-batch --device cuda --model-path $W --load-format dummy --batch-size 1 32 \
  --input-len 128 --output-len 16 2>&1 | grep "Decode.  median\|Prefill\|rror" >> $Q
el v2lite
timeout 60 $B bench-one-batch --device cuda --model-path $C/llama8b --load-format dummy --batch-size 1 64 \
  --input-len 128 --output-len 24 2>&1 | grep "Decode.  median\|Prefill\|rror" >> $Q
el 8b
timeout 60 $B bench-cuda --decode-batches "" 2>&1 | grep "copy\|mla\|gemv smem\|decode attention" >> $Q
el bench-cuda
timeout 30 $B selftest --device cuda --only none --model-path $F/v3 --model-steps 8 2>&1 \
  | grep "model check\|reference\|rror" >> $Q
el model
OUT=/tmp/pd-out timeout 60 bash "$(dirname "$0")/pd-cuda-device-check.sh" > /dev/null 2>&1
cp /tmp/pd-out/pd.txt $OUT/pd.txt
el pd
# Issue 15's serving figure: the 8B shapes behind the server, 64 streams of 512 in / 256 out.
serve_8b 90
el serve
# A 131,072-token prefill (more tokens than grid.y's 65,535: eb152b8's fix) and 256-sequence decode.
timeout 90 $B bench-one-batch --device cuda --model-path $C/llama8b --load-format dummy --batch-size 256 \
  --input-len 512 --output-len 8 2>&1 | grep "Decode.  median\|Prefill\|rror" >> $Q
el 8b-256

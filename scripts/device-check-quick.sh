#!/bin/bash
# The shortest device call for issues 16/17 (about 3 minutes on an H100), for a session with little
# device time left: the DeepSeek kernels (MLA on tensor cores, per-head products, warp routing), the KV
# page copies and the NCCL phases of `selftest --device cuda --only`, V2-Lite-shaped decode at batch 1
# and 32, the MLA decode micro-benchmark (bench-cuda), and one DeepSeek fixture CPU against GPU.
# Carry .device-carry as for scripts/device-check-all.sh (serval.xz, smol4.gguf.xz, v2lite.json).
# Log: $OUT/quick.txt.   Run: bash scripts/device-check-quick.sh
set -o pipefail
Q=$OUT/quick.txt
source "$(dirname "$0")/device-lib.sh"
timeout 90 $B selftest --device cuda --require-nccl --only mla --only head_matmul --only moe --only "kv pages" \
  --only nccl >> $Q 2>&1
el selftest
W=/tmp/v2lite; mkdir -p $W; cp $C/v2lite.json $W/config.json
timeout 150 $B bench-one-batch --device cuda --model-path $W --load-format dummy --batch-size 1 32 \
  --input-len 128 --output-len 16 2>&1 | grep -v "GiB of weights" >> $Q
el v2lite
timeout 60 $B bench-cuda --mla-only 2>&1 | grep "copy\|mla" >> $Q
el bench-cuda
timeout 60 $B selftest --device cuda --only none --model-path $F/v3 --model-steps 8 2>&1 | grep "model check\|prompt \|rror" >> $Q
el model

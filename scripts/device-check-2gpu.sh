#!/bin/bash
# Issue 22 on a machine with two GPUs (nvidia-h100-x2 / nvidia-h200-x2), in one call of about 8 minutes:
#   1. NCCL all-reduce bandwidth between two rank processes on a GPU each: `serval bench-allreduce
#      --device cuda --ranks 2` (each size checked exactly against the host's sum first; 1 MiB, 64 MiB,
#      1 GiB), then PyTorch's (benchmarks/torch-allreduce.py 2) in the same call: time, algbw, busbw;
#   2. the one-rank NCCL selftest on GPU 0 and GPU 1;
#   3. scripts/device-check-cuda-tp.sh for MODELS (default "smol4 8b"): with two GPUs the TP=2 ranks get a
#      GPU each (--base-gpu-id 0, --gpu-id-step 1), so the collectives are NCCL and decode runs in CUDA
#      graphs; greedy tokens and teacher-forced top-1 against TP=1, bench-serving at concurrency 1 and 32.
# Carry .device-carry as for the other device checks (serval.xz, smol4.gguf.xz, llama8b/config.json).
# Log: $OUT/2gpu.txt (and $OUT/cudatp.txt from step 3). Run: bash scripts/device-check-2gpu.sh
set -o pipefail
Q=$OUT/2gpu.txt
source "$(dirname "$0")/device-lib.sh"
echo "GPUs: $(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)" >> $Q
echo "== serval bench-allreduce --device cuda --ranks 2" >> $Q
timeout 180 $B bench-allreduce --device cuda --ranks 2 >> $Q 2>&1 || echo "   exit $?" >> $Q
el allreduce-serval
echo "== benchmarks/torch-allreduce.py 2" >> $Q
timeout 180 python3 benchmarks/torch-allreduce.py 2 >> $Q 2>&1 || echo "   exit $?" >> $Q
el allreduce-torch
for g in 0 1; do
  echo "== NCCL selftest, one rank on GPU $g" >> $Q
  CUDA_VISIBLE_DEVICES=$g timeout 120 $B selftest --device cuda --require-nccl --only nccl 2>&1 \
    | grep -i "nccl\|passed\|FAIL" >> $Q
done
el selftest-nccl
MODELS=${MODELS:-smol4 8b} bash "$(dirname "$0")/device-check-cuda-tp.sh"
cat $OUT/cudatp.txt >> $Q

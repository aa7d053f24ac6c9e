#!/bin/bash
# Decode-path A/B on one GPU (about 6 minutes on an H100): the full selftest, bench-cuda (copy
# bandwidth, every GEMV variant, decode attention, MLA), then the 8B-shaped dummy model's batch-1 decode
# under each launch/GEMV setting in turn (default = programmatic dependent launch + the bulk-copy GEMV;
# SERVAL_CUDA_PDL=0; SERVAL_CUDA_PDL=0 SERVAL_CUDA_GEMV=smem, the kernels before both), DeepSeek-V2-Lite
# shapes likewise, the 8B at batch 64 / 256 and one 4096-token prefill per extend kernel
# (EXTEND_KERNELS, default "mma2"), the V3 fixture against the CPU, and the 8B server under 64 streams.
# Carry .device-carry as for scripts/device-check-all.sh. Log: $OUT/ab.txt.
# Run: bash scripts/device-check-decode-ab.sh
set -o pipefail
Q=$OUT/ab.txt
source "$(dirname "$0")/device-lib.sh"
timeout 90 $B selftest --device cuda 2>&1 | grep -v "^PASS\|^ok " >> $Q
el selftest
timeout 90 $B bench-cuda --decode-batches "" 2>&1 | grep "copy\|mla\|gemv\|decode attention\|extend\|launch" >> $Q
el bench-cuda
ab() {  # label, env..., then bench-one-batch arguments after --
  local label=$1; shift; local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  echo "== $label" >> $Q
  env "${envs[@]}" timeout 90 $B bench-one-batch --device cuda --load-format dummy "$@" 2>&1 \
    | grep "Decode.  median\|Prefill\|rror" >> $Q
}
L8="--model-path $C/llama8b"
W=/tmp/v2lite; mkdir -p $W; cp $C/v2lite.json $W/config.json
for round in 1 2; do
  ab "8b b1 pdl+bulk" X=1 -- $L8 --batch-size 1 --input-len 128 --output-len 32
  ab "8b b1 bulk, no pdl" SERVAL_CUDA_PDL=0 -- $L8 --batch-size 1 --input-len 128 --output-len 32
  ab "8b b1 smem, no pdl" SERVAL_CUDA_PDL=0 SERVAL_CUDA_GEMV=smem -- $L8 --batch-size 1 --input-len 128 --output-len 32
  ab "8b b1 smem + pdl" SERVAL_CUDA_GEMV=smem -- $L8 --batch-size 1 --input-len 128 --output-len 32
done
el 8b-b1
ab "v2lite b1 32 128 pdl" X=1 -- --model-path $W --batch-size 1 32 128 --input-len 128 --output-len 16
ab "v2lite b1 32 128 no pdl" SERVAL_CUDA_PDL=0 -- --model-path $W --batch-size 1 32 128 --input-len 128 --output-len 16
el v2lite
ab "8b b64" X=1 -- $L8 --batch-size 64 --input-len 128 --output-len 24
ab "8b b64 no pdl" SERVAL_CUDA_PDL=0 -- $L8 --batch-size 64 --input-len 128 --output-len 24
ab "8b b256 x 512" X=1 -- $L8 --batch-size 256 --input-len 512 --output-len 8
for e in ${EXTEND_KERNELS:-mma2}; do
  ab "8b prefill 4096 extend=$e" SERVAL_CUDA_EXTEND=$e -- $L8 --disable-cuda-graph --batch-size 1 --input-len 4096 \
    --output-len 4
done
el 8b-batch
for m in v3 v3-fp8 fp8:v3-fp8; do
  echo "== $m" >> $Q
  [ "${m%%:*}" = fp8 ] && export SERVAL_CUDA_FP8=1  # the fp8 weights kept as fp8 on the GPU
  timeout 30 $B selftest --device cuda --only none --model-path $F/${m#fp8:} --model-steps 8 2>&1 \
    | grep "model check\|reference\|rror\|fp8" >> $Q
done
unset SERVAL_CUDA_FP8
el model
serve_8b 90
el serve

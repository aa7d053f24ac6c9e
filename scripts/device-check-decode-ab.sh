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
export NCCL_NVLS_ENABLE=0
C=.device-carry; B=/tmp/serval; T0=$(date +%s); F=Tests/ServalTestSupport/Fixtures/deepseek; Q=$OUT/ab.txt
el() { echo "[t=$(( $(date +%s) - T0 ))s] $*" >> $Q; }
xz -dc $C/serval.xz > $B; chmod +x $B
source "$(dirname "$0")/device-env.sh"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> $Q
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
timeout 30 $B selftest --device cuda --only none --model-path $F/v3 --model-steps 8 2>&1 \
  | grep "model check\|reference\|rror" >> $Q
el model
xz -dc $C/smol4.gguf.xz > /tmp/smol4.gguf
$B launch-server --device cuda --model-path $C/llama8b --load-format dummy --tokenizer-path /tmp/smol4.gguf \
  --port 31000 --served-model-name m > /tmp/srv8b.log 2>&1 &
SP=$!
for i in $(seq 1 240); do grep -q "fired up" /tmp/srv8b.log && break; sleep 0.25; done
timeout 90 $B bench-serving --backend serval --port 31000 --tokenizer /tmp/smol4.gguf --model m --dataset-name random \
  --random-input-len 512 --random-output-len 256 --random-range-ratio 1 --num-prompts 256 --max-concurrency 64 2>&1 \
  | grep "Output token throughput\|Median TPOT\|Median TTFT\|Failed" >> $Q
kill $SP; wait $SP 2>/dev/null
grep "idle between steps\|programmatic" /tmp/srv8b.log | tail -3 >> $Q
el serve

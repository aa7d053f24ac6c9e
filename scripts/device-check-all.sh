#!/bin/bash
# One device call for issues 15, 16 and 17 (about 5 minutes on an H100): the selftest with NCCL (each
# phase named) and again under NCCL_GRAPH_REGISTER=0 / NCCL_CUMEM_ENABLE=0, the DeepSeek fixtures CPU
# against GPU (near-tie verdict), a --device cuda DeepSeek server (/generate twice, chat), 8B-shaped
# serving at 64 streams (512 in / 256 out, --random-range-ratio 1), V2-Lite-shaped decode at batch
# 1/32/128, `bench-cuda` (GEMM, GEMV, attention, MLA decode), an ncu per-kernel profile of batch-1 decode
# and an ncu stall analysis of the MLA decode kernel.
# Logs under $OUT: nccl.txt, models.txt, dsserver.txt, serve.txt, v2lite.txt, benchcuda.txt, profile.txt,
# mla-ncu.txt.
# Carry .device-carry with: serval.xz (`swift build -c release --static-swift-stdlib --product serval
# --scratch-path .build-static`, strip, `xz -T2 -6`), smol4.gguf.xz (scripts/truncate-gguf.py: the first
# 3 blocks of the default GGUF, what fits the 64 MiB carry beside the binary and the tree),
# llama8b/config.json (Llama-3.1-8B shapes) and v2lite.json (DeepSeek-V2-Lite shapes, as in
# scripts/deepseek-device-check.sh). At most 8 files come back from $OUT, so logs are grouped.
# Run: bash scripts/device-check-all.sh   (from the repository root, carry .device-carry; SKIP_NCU=1 skips
# the two Nsight Compute parts)
set -o pipefail
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
C=.device-carry; B=/tmp/serval; T0=$(date +%s); F=Tests/ServalTestSupport/Fixtures/deepseek
el() { echo "[t=$(( $(date +%s) - T0 ))s] $*"; }
xz -dc $C/serval.xz > $B; chmod +x $B
xz -dc $C/smol4.gguf.xz > /tmp/smol4.gguf
source "$(dirname "$0")/device-env.sh"
N=$OUT/nccl.txt
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $N 2>&1
( time NCCL_DEBUG=WARN timeout 200 $B selftest --device cuda --require-nccl ) 2>&1 | grep -v "^PASS\|^ok " >> $N
el selftest >> $N
R=$OUT/v2lite.txt
W=/tmp/v2lite; mkdir -p $W; cp $C/v2lite.json $W/config.json
( time timeout 180 $B bench-one-batch --device cuda --model-path $W --load-format dummy \
    --batch-size 1 32 128 --input-len 128 --output-len 16 ) 2>&1 | grep -v "GiB of weights" >> $R
el v2lite >> $R
G=$OUT/benchcuda.txt
timeout 150 $B bench-cuda --decode-batches "" > $G 2>&1
el bench-cuda >> $G
M=$OUT/models.txt
for m in v2-lite v3 v3-fp8 v3/model-q8_0.gguf; do
  echo "== $m" >> $M
  timeout 60 $B selftest --device cuda --model-path $F/$m --model-steps 8 2>&1 | grep "model check\|reference\|prompt \|rror" >> $M
done
# The fp8 fixture again with its fp8 weights dequantized to bf16 at load (the default keeps the dense
# linears fp8 on the GPU: fp8 GEMV and dequant + GEMM).
echo "== v3-fp8 SERVAL_CUDA_FP8=0" >> $M
SERVAL_CUDA_FP8=0 timeout 60 $B selftest --device cuda --only none --model-path $F/v3-fp8 --model-steps 8 2>&1 \
  | grep "model check\|reference\|prompt \|rror\|fp8" >> $M
el models >> $M
# Where a decode step's time goes: Nsight Compute's per-kernel durations (clocks left alone) over a
# short batch-1 run of each model; the summary groups by kernel name (count, mean duration).
P=$OUT/profile.txt
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$SKIP_NCU" ] && NCU=  # SKIP_NCU=1: no profiles (about 90 s less, for a call short of device time)
if [ -n "$NCU" ]; then
  # Decode steps only: the launches of the warm-up and the two prefills are skipped.
  for ms in "$W 2500" "$C/llama8b 1500"; do
    set -- $ms; m=$1
    echo "== $m (launches $2 on)" >> $P
    timeout 90 $NCU --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel \
      --launch-skip $2 --launch-count 1500 $B bench-one-batch --device cuda --model-path $m --load-format dummy \
      --batch-size 1 --input-len 64 --output-len 24 2>&1 \
      | grep -E "^  [A-Za-z_]|gpu__time_duration|Invocations|decode|prefill|rror" | head -300 >> $P
  done
else
  echo "no ncu" >> $P
fi
el profile >> $P
# The MLA decode kernel's limiters (issue 16): one launch of the 16-head 64 x 4k case under Nsight
# Compute's throughput, warp-state, scheduler, occupancy and source-level stall sections.
A=$OUT/mla-ncu.txt
[ -n "$NCU" ] && timeout 120 $NCU --clock-control none --section SpeedOfLight --section WarpStateStats \
  --section SchedulerStats --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis \
  --section SourceCounters -k regex:sv_mla_decode_mma --launch-skip 3 --launch-count 1 \
  $B bench-cuda --mla-only --mla-cases 16:64:4096 > $A 2>&1
el mla-ncu >> $A
V=$OUT/dsserver.txt
$B launch-server --device cuda --model-path $F/v3 --port 31100 > /tmp/ds-srv.log 2>&1 &
SP=$!
for i in $(seq 1 120); do grep -q "fired up" /tmp/ds-srv.log && break; sleep 0.25; done
for i in 1 2; do
  curl -s localhost:31100/generate -H 'content-type: application/json' \
    -d '{"text": "The quick brown fox jumps over the lazy dog", "sampling_params": {"max_new_tokens": 8, "temperature": 0}}' >> $V; echo >> $V
done
curl -s localhost:31100/v1/chat/completions -H 'content-type: application/json' \
  -d '{"model": "x", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8, "temperature": 0}' >> $V; echo >> $V
kill $SP; wait $SP 2>/dev/null; grep -v "POST\|GET" /tmp/ds-srv.log | tail -8 >> $V
el ds-server >> $V
S=$OUT/serve.txt
# The 8B shapes' decode at batch 1 / 64 / 256 (issue 15's figures; CUDA graphs).
timeout 120 $B bench-one-batch --device cuda --model-path $C/llama8b --load-format dummy --batch-size 1 64 256 \
  --input-len 128 --output-len 24 2>&1 | grep -v "GiB of weights" >> $S
el "8B bench-one-batch" >> $S
$B launch-server --device cuda --model-path $C/llama8b --load-format dummy --tokenizer-path /tmp/smol4.gguf --port 31000 --served-model-name m > /tmp/srv8b.log 2>&1 &
SP=$!
for i in $(seq 1 240); do grep -q "fired up" /tmp/srv8b.log && break; sleep 0.25; done
el "8B server ready" >> $S
timeout 150 $B bench-serving --backend serval --port 31000 --tokenizer /tmp/smol4.gguf --model m --dataset-name random --random-input-len 512 --random-output-len 256 --random-range-ratio 1 --num-prompts 256 --max-concurrency 64 2>&1 | grep -v "^.\[" >> $S
el bench-serving >> $S
kill $SP; wait $SP 2>/dev/null
grep -v "POST\|GET" /tmp/srv8b.log | grep -i "idle\|error\|kernels\|loaded" | tail -6 >> $S
# NCCL diagnosis last (only after a failure): the variants, then NCCL_DEBUG=INFO.
grep -q "FAIL nccl" $N && for v in NCCL_GRAPH_REGISTER=0 NCCL_CUMEM_ENABLE=0 "NCCL_GRAPH_REGISTER=0 NCCL_CUMEM_ENABLE=0"; do
  echo "== $v" >> $N
  env $v NCCL_DEBUG=WARN timeout 100 $B selftest --device cuda --require-nccl 2>&1 | grep -i "nccl" >> $N
done
echo "== NCCL_DEBUG=INFO" >> $N
grep -q "FAIL nccl" $N && NCCL_DEBUG=INFO timeout 100 $B selftest --device cuda --require-nccl 2>&1 | grep -i "nccl\|fail" | tail -60 >> $N
el nccl-variants >> $N

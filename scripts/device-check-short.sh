#!/bin/bash
# The shortest whole check (about 4 minutes on an H100) for a session left with under 5 minutes of
# device time: the full selftest (every op, seam, NCCL), V2-Lite-shaped decode at batch 1 and 32, the
# 8B shapes' decode at batch 1 and 64, bench-cuda (copy bandwidth, GEMV, attention, MLA), the V3 fixture
# against the CPU, the CUDA PD pair (scripts/pd-cuda-device-check.sh, cut at 60 s) and, last, the 8B
# server under 64 streams (issue 15's serving figure, cut at 90 s) and batch 256 x 512-token prompts.
# Carry .device-carry as for scripts/device-check-all.sh. Log: $OUT/short.txt (PD: $OUT/pd.txt).
# Run: bash scripts/device-check-short.sh
set -o pipefail
export NCCL_NVLS_ENABLE=0
C=.device-carry; B=/tmp/serval; T0=$(date +%s); F=Tests/ServalTestSupport/Fixtures/deepseek; Q=$OUT/short.txt
el() { echo "[t=$(( $(date +%s) - T0 ))s] $*" >> $Q; }
xz -dc $C/serval.xz > $B; chmod +x $B
source "$(dirname "$0")/device-env.sh"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> $Q
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
xz -dc $C/smol4.gguf.xz > /tmp/smol4.gguf
$B launch-server --device cuda --model-path $C/llama8b --load-format dummy --tokenizer-path /tmp/smol4.gguf \
  --port 31000 --served-model-name m > /tmp/srv8b.log 2>&1 &
SP=$!
for i in $(seq 1 240); do grep -q "fired up" /tmp/srv8b.log && break; sleep 0.25; done
timeout 90 $B bench-serving --backend serval --port 31000 --tokenizer /tmp/smol4.gguf --model m --dataset-name random \
  --random-input-len 512 --random-output-len 256 --random-range-ratio 1 --num-prompts 256 --max-concurrency 64 2>&1 \
  | grep "Output token throughput\|Median TPOT\|Median TTFT\|Failed" >> $Q
kill $SP; wait $SP 2>/dev/null
grep "idle between steps" /tmp/srv8b.log | tail -2 >> $Q
el serve
# A 131,072-token prefill (more tokens than grid.y's 65,535: eb152b8's fix) and 256-sequence decode.
timeout 90 $B bench-one-batch --device cuda --model-path $C/llama8b --load-format dummy --batch-size 256 \
  --input-len 512 --output-len 8 2>&1 | grep "Decode.  median\|Prefill\|rror" >> $Q
el 8b-256

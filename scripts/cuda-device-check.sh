#!/bin/bash
# One device call: selftest (ops, seam, model checks), OpenAI integration tests on a --device cuda
# server, 8B-dummy bench-one-batch (graphs / eager), copy + GEMM peaks, 8B serving. Logs under $OUT.
set -o pipefail
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
C=.device-carry; B=/tmp/serval; T0=$(date +%s)
left() { echo $(( ${1} - ($(date +%s) - T0) )); }
xz -dc $C/serval.xz > $B; chmod +x $B
xz -dc $C/smol4.gguf.xz > /tmp/smol4.gguf
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.mem --format=csv > $OUT/smi.txt 2>&1
L=""; for n in libnvrtc.so.13 libcublasLt.so.13; do p=$(ldconfig -p | grep -m1 "$n" | awk '{print $NF}'); [ -z "$p" ] && p=$(find / -name "$n" -not -path '*/proc/*' 2>/dev/null | head -1); [ -n "$p" ] && L="$L:$(dirname $p)"; done
export SERVAL_CUDA_LIB_DIR=${L#:} SERVAL_CUDA_CACHE=/tmp/svcache
echo "lib dirs: $SERVAL_CUDA_LIB_DIR; python $(python3 --version 2>&1); uptime $(uptime)" >> $OUT/smi.txt
S=$OUT/selftest.txt
( time timeout 150 $B selftest --device cuda --model-path $C/smolbf16 --load-format dummy ) >> $S 2>&1
( time timeout 100 $B selftest --device cuda --model-path /tmp/smol4.gguf --model-steps 24 ) 2>&1 | grep -v "^PASS" >> $S
echo "[t=$(( $(date +%s) - T0 ))s]" >> $S
P=$OUT/pytest.txt
pip install -q --no-index --find-links $C/pyw --target /tmp/pyd openai jsonschema > $P 2>&1
( SERVAL_BIN=$B SERVAL_MODEL=/tmp/smol4.gguf SERVAL_SERVER_ARGS="--device cuda" PYTHONPATH=/tmp/pyd timeout ${PYT:-150} python3 -m pytest -q -p no:cacheprovider tests/integration/test_openai_api.py tests/integration/test_structured_outputs.py tests/integration/test_prompt_logprobs.py 2>&1 | tail -30 ) >> $P
grep -h -i "cuda\|error\|KV pool" /tmp/serval-server-*.log 2>/dev/null | sort | uniq -c | head -20 >> $P
echo "[t=$(( $(date +%s) - T0 ))s]" >> $P
R=$OUT/bench.txt
( time timeout 130 $B bench-one-batch --device cuda --model-path $C/llama8b --load-format dummy --batch-size 1 64 256 --input-len 128 --output-len 24 --result-filename $OUT/bench.jsonl ) >> $R 2>&1
( time timeout 110 $B bench-one-batch --device cuda --disable-cuda-graph --model-path $C/llama8b --load-format dummy --batch-size 1 --input-len 128 4096 --output-len 16 --result-filename $OUT/bench.jsonl ) >> $R 2>&1
timeout 60 $B bench-cuda --decode-batches "" --json-out $OUT/benchcuda.json >> $R 2>&1
echo "[t=$(( $(date +%s) - T0 ))s]" >> $R
V=$OUT/serve.txt
if [ $(left 560) -gt 90 ]; then
  S0=$(date +%s%N)
  $B launch-server --device cuda --model-path $C/llama8b --load-format dummy --tokenizer-path /tmp/smol4.gguf --port 31000 --served-model-name m8b > /tmp/srv8b.log 2>&1 &
  SP=$!
  for i in $(seq 1 200); do grep -q "fired up" /tmp/srv8b.log && break; sleep 0.25; done
  echo "ready after $(( ($(date +%s%N) - S0) / 1000000 )) ms" >> $V
  timeout $(( $(left 575) - 5 )) $B bench-serving --backend serval --port 31000 --tokenizer /tmp/smol4.gguf --model m8b --dataset-name random --random-input-len 512 --random-output-len 256 --num-prompts 128 --max-concurrency 64 >> $V 2>&1
  kill $SP; sleep 1; grep -v "POST\|GET" /tmp/srv8b.log | tail -15 >> $V
fi
echo "[t=$(( $(date +%s) - T0 ))s]" >> $V

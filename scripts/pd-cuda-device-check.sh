#!/bin/bash
# Prefill-decode disaggregation on one GPU (issue 20): a --device cuda prefill server and a --device cuda
# decode server (each --mem-fraction-static 0.3) behind `serval launch-router --pd-disaggregation` must
# give one plain --device cuda server's greedy tokens. The KV crosses as bf16 slot bytes (the CUDA
# pool's gather kernel -> pinned memory -> TCP -> pinned memory -> scatter kernel), over loopback TCP:
# the NCCL transfer backend stays refused (two processes on one GPU cannot form an NCCL group). Also
# runs `selftest --device cuda` (its "kv pages" cases) and a CPU decode server (bf16 pool) fetching
# from the CUDA prefill server. Prints PASS/FAIL lines (also to $OUT/pd.txt), logs under $OUT.
# Carry .device-carry: serval.xz (static release binary, xz) and smol4.gguf.xz (scripts/truncate-gguf.py:
# the default GGUF's first 3 blocks), as scripts/device-check-all.sh does.
# Run: bash scripts/pd-cuda-device-check.sh   (from the repository root, carry .device-carry)
set -o pipefail
export PYTHONUNBUFFERED=1
C=.device-carry; B=/tmp/serval; M=/tmp/smol4.gguf; T0=$(date +%s); OUT=${OUT:-/tmp/pd-out}; mkdir -p $OUT
R=$OUT/pd.txt; : > $R
say() { echo "$*" | tee -a $R; }
el() { say "[t=$(( $(date +%s) - T0 ))s] $*"; }
xz -dc $C/serval.xz > $B; chmod +x $B
xz -dc $C/smol4.gguf.xz > $M
L=""; for n in libnvrtc.so.13 libcublasLt.so.13; do
  p=$(ldconfig -p | grep -m1 "$n" | awk '{print $NF}')
  [ -z "$p" ] && p=$(python3 -c "import nvidia, os; print(next((os.path.join(r, '$n') for d in nvidia.__path__ for r, _, fs in os.walk(d) if '$n' in fs), ''))" 2>/dev/null)
  [ -z "$p" ] && p=$(find / -name "$n" -not -path '/proc/*' 2>/dev/null | head -1)
  [ -n "$p" ] && L="$L:$(dirname $p)"
done
export SERVAL_CUDA_LIB_DIR=${L#:} SERVAL_CUDA_CACHE=/tmp/svcache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> $R 2>&1

# 1. The pool's page copies against their reference (and every other kernel: warms the cache).
timeout 150 $B selftest --device cuda > $OUT/selftest.txt 2>&1
grep "kv pages" $OUT/selftest.txt | sed 's/^/selftest: /' | tee -a $R
grep -q "FAIL.*kv pages" $OUT/selftest.txt && say "FAIL selftest kv pages" || \
  { grep -q "PASS.*kv pages\|ok .*kv pages" $OUT/selftest.txt && say "PASS selftest kv pages" || say "FAIL selftest kv pages (no such lines)"; }
tail -1 $OUT/selftest.txt | sed 's/^/selftest: /' | tee -a $R
el selftest

PIDS=()
start() {  # name port args...: starts a server, waits until it is healthy
  local name=$1 port=$2; shift 2
  "$@" > $OUT/$name.log 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 480); do
    curl -sf localhost:$port/health > /dev/null 2>&1 && { el "$name up"; return 0; }
    kill -0 ${PIDS[-1]} 2>/dev/null || break
    sleep 0.25
  done
  say "FAIL $name did not start"; tail -5 $OUT/$name.log | tee -a $R; return 1
}
stop_all() { for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; for p in "${PIDS[@]}"; do wait $p 2>/dev/null; done; PIDS=(); }
trap stop_all EXIT
PROMPTS=("The capital of France is" "def fibonacci(n):" "Once upon a time, in a small village by the sea, there lived")
ids() {  # port prompt: the greedy output ids (or the error)
  curl -s -m 120 localhost:$1/generate -H 'content-type: application/json' -d "$(python3 -c '
import json, sys
print(json.dumps({"text": sys.argv[1], "sampling_params": {"temperature": 0, "max_new_tokens": 16, "ignore_eos": True}}))' "$2")" |
    python3 -c 'import json, sys; d = json.loads(sys.stdin.read() or "{}"); print(d.get("output_ids", d))'
}

# 2. The plain server's tokens.
declare -A WANT
if start plain 31000 $B launch-server --device cuda --model-path $M --port 31000 --mem-fraction-static 0.3; then
  for p in "${PROMPTS[@]}"; do WANT[$p]=$(ids 31000 "$p"); say "plain: $p -> ${WANT[$p]}"; done
fi
stop_all

# 3. Prefill + decode on the same GPU, the router in front.
start prefill 31010 $B launch-server --device cuda --model-path $M --port 31010 --mem-fraction-static 0.3 \
  --disaggregation-mode prefill --disaggregation-bootstrap-port 31011 --chunked-prefill-size 8 &&
start decode 31020 $B launch-server --device cuda --model-path $M --port 31020 --mem-fraction-static 0.3 \
  --disaggregation-mode decode --disaggregation-decode-timeout 60 &&
start router 31030 $B launch-router --port 31030 --pd-disaggregation \
  --prefill http://127.0.0.1:31010 31011 --decode http://127.0.0.1:31020
for round in 1 2; do  # the second round hits the decode side's radix cache
  for p in "${PROMPTS[@]}"; do
    got=$(ids 31030 "$p")
    [ -n "${WANT[$p]}" ] && [ "$got" == "${WANT[$p]}" ] && say "PASS pd round $round: $p -> $got" || \
      say "FAIL pd round $round: $p -> $got (plain: ${WANT[$p]})"
  done
done
el pd

# 4. A CPU decode server (bf16 pool: the same bytes) fetching from the CUDA prefill server.
if start cpudecode 31040 $B launch-server --device cpu --model-path $M --port 31040 --kv-cache-dtype bf16 \
  --disaggregation-mode decode --disaggregation-decode-timeout 60; then
  body='{"text": "The capital of France is", "sampling_params": {"temperature": 0, "max_new_tokens": 4},
         "bootstrap_host": "127.0.0.1", "bootstrap_port": 31011, "bootstrap_room": 777}'
  curl -s -m 60 localhost:31040/generate -H 'content-type: application/json' -d "$body" > $OUT/cpudecode.json &
  CP=$!
  curl -s -m 60 localhost:31010/generate -H 'content-type: application/json' -d "$body" > /dev/null
  wait $CP
  grep -q '"output_ids"' $OUT/cpudecode.json && ! grep -q '"abort"' $OUT/cpudecode.json && \
    say "PASS cpu decode from cuda prefill: $(head -c 300 $OUT/cpudecode.json)" || \
    say "FAIL cpu decode from cuda prefill: $(head -c 600 $OUT/cpudecode.json)"
fi
stop_all
for f in prefill decode; do grep -i "error\|warning\|abort" $OUT/$f.log | grep -v "POST\|GET" | tail -3 | sed "s/^/$f: /" | tee -a $R; done
el done
say "$(grep -c '^PASS' $R) PASS, $(grep -c '^FAIL' $R) FAIL"

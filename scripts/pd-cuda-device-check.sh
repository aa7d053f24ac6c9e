#!/bin/bash
# Prefill-decode disaggregation on one GPU (issue 20): a --device cuda prefill server and a --device cuda
# decode server (each --max-total-tokens 32768: a fraction of the memory would leave nothing to the
# servers started after the first) behind `serval launch-router --pd-disaggregation` must give one plain --device cuda server's greedy tokens (same --chunked-prefill-size on both, 8, so a
# prompt crosses in several chunks). The KV crosses as bf16 slot bytes (the CUDA pool's gather kernel
# -> pinned memory -> TCP -> pinned memory -> scatter kernel) over loopback TCP. Then the same pair with
# --disaggregation-transfer-backend nccl (pages GPU to GPU over an NCCL send/recv link per server pair):
# on one GPU NCCL normally refuses two ranks of one link ("Duplicate GPU detected"); the script then prints
# that error as an INFO line (the request ends with it; the TCP rounds above are the one-GPU PD check) and
# PASS when NCCL did accept it and the tokens match. On a machine with two or more GPUs (nvidia-h100-x2)
# the nccl prefill server runs on GPU 0 and the decode server on GPU 1 and their tokens must match. The NCCL page path itself runs in one process in the
# selftest's "nccl kv pages" cases (a one-rank link sends to itself). Models: the 3-block
# SmolLM2 GGUF (GQA, 3 kv heads x 64), a dummy-weight Llama of 2 kv heads x 128 (GQA, 16-byte rows
# kernel), the tiny DeepSeek-V3 fixture (MLA latent 32 + rope 8: the 2-byte kernel). Also runs
# `selftest --device cuda` (its "kv pages" cases) and, per model, a CPU decode server (--kv-cache-dtype
# bf16: the same bytes) fetching from the CUDA prefill server. Prompts are token ids (no tokenizer
# needed). Prints PASS/FAIL lines (also to $OUT/pd.txt); server logs under $OUT/logs.
# Carry .device-carry: serval.xz (static release binary, xz) and smol4.gguf.xz (scripts/truncate-gguf.py:
# the default GGUF's first 3 blocks), as scripts/device-check-all.sh does. SERVAL=path runs that binary
# instead of unpacking serval.xz; DEVICE=cpu runs the same servers on the CPU (a dry run of this script,
# no selftest); PORT0 moves the five ports (default 31000..31040).
# Run: bash scripts/pd-cuda-device-check.sh   (from the repository root, carry .device-carry)
set -o pipefail
export PYTHONUNBUFFERED=1
C=.device-carry; D=${DEVICE:-cuda}; P=${PORT0:-31000}; T0=$(date +%s); OUT=${OUT:-/tmp/pd-out}; mkdir -p $OUT $OUT/logs
R=$OUT/pd.txt; : > $R
say() { echo "$*" | tee -a $R; }
el() { say "[t=$(( $(date +%s) - T0 ))s] $*"; }
if [ -n "$SERVAL" ]; then B=$SERVAL; else B=/tmp/serval; xz -dc $C/serval.xz > $B; chmod +x $B; fi
[ -f $C/smol4.gguf.xz ] && xz -dc $C/smol4.gguf.xz > /tmp/smol4.gguf
mkdir -p /tmp/gqa128 && cat > /tmp/gqa128/config.json <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 1024, "intermediate_size": 2816,
 "num_attention_heads": 8, "num_key_value_heads": 2, "num_hidden_layers": 4, "vocab_size": 32000,
 "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "max_position_embeddings": 4096, "tie_word_embeddings": false,
 "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"}
JSON
source "$(dirname "$0")/device-env.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> $R 2>&1

# 1. The pool's page copies against their reference (and every other kernel: warms the cache).
[ "$D" == cuda ] && timeout 200 $B selftest --device cuda > $OUT/selftest.txt 2>&1
grep "kv pages" $OUT/selftest.txt 2>/dev/null | sed 's/^/selftest: /' | tee -a $R
if [ "$D" != cuda ]; then say "(DEVICE=$D: no selftest)"
elif grep -q "FAIL.*kv pages" $OUT/selftest.txt; then say "FAIL selftest kv pages"
elif grep -q "^ok .*kv pages" $OUT/selftest.txt; then say "PASS selftest kv pages"
else say "FAIL selftest kv pages (no such lines)"; fi
if [ "$D" == cuda ]; then
  if grep -q "FAIL.*nccl kv pages" $OUT/selftest.txt; then say "FAIL selftest nccl kv pages"
  elif [ "$(grep -c '^ok .*nccl kv pages' $OUT/selftest.txt)" == 3 ]; then say "PASS selftest nccl kv pages (gqa, mla, mla 2-byte)"
  else say "FAIL selftest nccl kv pages (missing: $(grep 'nccl kv' $OUT/selftest.txt | head -1))"; fi
fi
grep "passed, .* failed" $OUT/selftest.txt 2>/dev/null | sed 's/^/selftest: /' | tee -a $R
el selftest

PIDS=()
start() {  # name port args...: starts a server, waits until it is healthy
  local name=$1 port=$2; shift 2
  "$@" > $OUT/logs/$name.log 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 600); do
    curl -sf localhost:$port/health > /dev/null 2>&1 && return 0
    kill -0 ${PIDS[-1]} 2>/dev/null || break
    sleep 0.25
  done
  say "FAIL $name did not start"; tail -5 $OUT/logs/$name.log | tee -a $R; return 1
}
stop_all() { for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; for p in "${PIDS[@]}"; do wait $p 2>/dev/null; done; PIDS=(); }
trap stop_all EXIT
PROMPTS=("1,72,101,108,108,111" "5,17,99,200,3,45,67,89,23,11,150,42,7,8,9,10,11,12,13"
  "$(seq -s, 20 2 110),$(seq -s, 30 3 120)")
body() {  # ids [extra json]
  echo "{\"input_ids\": [$1], \"sampling_params\": {\"temperature\": 0, \"max_new_tokens\": 16, \"ignore_eos\": true}$2}"
}
ids() {  # port ids: the greedy output ids (or the answer when there are none)
  curl -s -m 120 localhost:$1/generate -H 'content-type: application/json' -d "$(body $2)" |
    python3 -c 'import json, sys; t = sys.stdin.read(); d = json.loads(t or "{}")
print(d["output_ids"] if "output_ids" in d else t[:400])'
}
ids_or_abort() {  # port ids: the greedy output ids, or the abort message / the answer when there are none
  curl -s -m 120 localhost:$1/generate -H 'content-type: application/json' -d "$(body $2)" |
    python3 -c 'import json, sys; t = sys.stdin.read(); d = json.loads(t or "{}")
f = (d.get("meta_info") or {}).get("finish_reason") or {}
print(("abort: " + str(f.get("message"))) if f.get("type") == "abort" else d["output_ids"] if "output_ids" in d else t[:400])'
}

check() {  # name model-args...: plain vs PD on the GPU, then a CPU decode server from the GPU prefill server
  local name=$1; shift
  local cp=(--chunked-prefill-size 8 --random-seed 1)
  declare -A WANT
  if start $name-plain $P $B launch-server --device $D "$@" --port $P --max-total-tokens 32768 "${cp[@]}"; then
    for p in "${PROMPTS[@]}"; do WANT[$p]=$(ids $P "$p"); done
  fi
  stop_all
  start $name-prefill $((P + 10)) $B launch-server --device $D "$@" --port $((P + 10)) --max-total-tokens 32768 "${cp[@]}" \
      --disaggregation-mode prefill --disaggregation-bootstrap-port $((P + 11)) &&
    start $name-decode $((P + 20)) $B launch-server --device $D "$@" --port $((P + 20)) --max-total-tokens 32768 "${cp[@]}" \
      --disaggregation-mode decode --disaggregation-decode-timeout 60 &&
    start $name-router $((P + 30)) $B launch-router --port $((P + 30)) --pd-disaggregation \
      --prefill http://127.0.0.1:$((P + 10)) $((P + 11)) --decode http://127.0.0.1:$((P + 20))
  for round in 1 2; do  # the second round hits the decode side's radix cache
    local i=0
    for p in "${PROMPTS[@]}"; do
      i=$((i + 1))
      got=$(ids $((P + 30)) "$p")
      if [ -n "${WANT[$p]}" ] && [ "$got" == "${WANT[$p]}" ]; then say "PASS $name pd round $round prompt $i: $got"
      else say "FAIL $name pd round $round prompt $i: $got (plain: ${WANT[$p]})"; fi
    done
  done
  stop_all
  # The same pair over NCCL. On one GPU both servers share it (NCCL usually refuses: shown, not failed); with
  # two or more GPUs (nvidia-smi -L) the prefill server runs on GPU 0 and the decode server on GPU 1
  # (CUDA_VISIBLE_DEVICES) and must give the plain server's tokens, twice (the second round skips the prefix
  # the decode side cached: pages sent from a later slot).
  local G=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU') pv=() dv=() where="one GPU"
  if [ "$G" -ge 2 ]; then pv=(CUDA_VISIBLE_DEVICES=0); dv=(CUDA_VISIBLE_DEVICES=1); where="GPU 0 -> GPU 1"; fi
  if [ "$D" == cuda ] && start $name-ncclprefill $((P + 10)) env NCCL_DEBUG=WARN "${pv[@]}" $B launch-server --device $D "$@" --port $((P + 10)) --max-total-tokens 32768 "${cp[@]}" \
      --disaggregation-mode prefill --disaggregation-bootstrap-port $((P + 11)) --disaggregation-transfer-backend nccl &&
    start $name-nccldecode $((P + 20)) env NCCL_DEBUG=WARN "${dv[@]}" $B launch-server --device $D "$@" --port $((P + 20)) --max-total-tokens 32768 "${cp[@]}" \
      --disaggregation-mode decode --disaggregation-decode-timeout 60 --disaggregation-transfer-backend nccl &&
    start $name-ncclrouter $((P + 30)) $B launch-router --port $((P + 30)) --pd-disaggregation \
      --prefill http://127.0.0.1:$((P + 10)) $((P + 11)) --decode http://127.0.0.1:$((P + 20)); then
    local refused=
    for round in 1 2; do
      local i=0
      for p in "${PROMPTS[@]}"; do
        i=$((i + 1))
        got=$(ids_or_abort $((P + 30)) "$p")
        if [ -n "${WANT[$p]}" ] && [ "$got" == "${WANT[$p]}" ]; then say "PASS $name nccl pd ($where) round $round prompt $i: $got"
        elif [ "$G" -lt 2 ] && echo "$got" | grep -qi "nccl\|duplicate"; then
          say "INFO $name nccl pd on one GPU refused by NCCL (expected; TCP above is the one-GPU check): $(echo "$got" | head -c 300)"
          grep -a -i "nccl\|duplicate" $OUT/logs/$name-ncclprefill.log $OUT/logs/$name-nccldecode.log | tail -4 | sed "s/^/  /" | tee -a $R
          refused=1; break
        else say "FAIL $name nccl pd ($where) round $round prompt $i: $got (plain: ${WANT[$p]})"; fi
      done
      [ -n "$refused" ] && break
    done
  fi
  stop_all
  local pk=(); [ "$D" == cpu ] && pk=(--kv-cache-dtype bf16)  # DEVICE=cpu: the bf16 pool a CUDA server has
  start $name-cpuprefill $((P + 10)) $B launch-server --device $D "$@" --port $((P + 10)) --max-total-tokens 32768 "${cp[@]}" "${pk[@]}" \
      --disaggregation-mode prefill --disaggregation-bootstrap-port $((P + 11)) &&
  if start $name-cpudecode $((P + 40)) $B launch-server --device cpu "$@" --port $((P + 40)) --kv-cache-dtype bf16 "${cp[@]}" \
      --disaggregation-mode decode --disaggregation-decode-timeout 60; then
    local b=$(body "${PROMPTS[1]}" ", \"bootstrap_host\": \"127.0.0.1\", \"bootstrap_port\": $((P + 11)), \"bootstrap_room\": 777")
    curl -s -m 100 localhost:$((P + 40))/generate -H 'content-type: application/json' -d "$b" > $OUT/logs/$name-cpu.json &
    local cpid=$!
    curl -s -m 100 localhost:$((P + 10))/generate -H 'content-type: application/json' -d "$b" > /dev/null
    wait $cpid
    if grep -q '"output_ids"' $OUT/logs/$name-cpu.json && ! grep -q '"abort"' $OUT/logs/$name-cpu.json; then
      say "PASS $name cpu decode (bf16 pool) from the cuda prefill: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["output_ids"])' $OUT/logs/$name-cpu.json) (gpu: ${WANT[${PROMPTS[1]}]})"
    else say "FAIL $name cpu decode from the cuda prefill: $(head -c 600 $OUT/logs/$name-cpu.json)"; fi
  fi
  stop_all
  for f in prefill decode ncclprefill nccldecode cpuprefill cpudecode; do
    [ -f $OUT/logs/$name-$f.log ] || continue
    grep -a -i "error\|warning\|abort" $OUT/logs/$name-$f.log | grep -v "POST\|GET" | tail -3 | sed "s/^/$name-$f: /" | tee -a $R
  done
  el $name
}

[ -f /tmp/smol4.gguf ] && check smol4 --model-path /tmp/smol4.gguf
check gqa128 --model-path /tmp/gqa128 --load-format dummy --skip-tokenizer-init
check deepseek-v3 --model-path Tests/ServalTestSupport/Fixtures/deepseek/v3
say "$(grep -c '^PASS' $R) PASS, $(grep -c '^FAIL' $R) FAIL"

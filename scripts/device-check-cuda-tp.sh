#!/bin/bash
# Tensor parallelism on CUDA with ONE GPU (about 6 minutes on an H100): TP=1 against TP=2 (two rank
# processes on the same GPU, host-staged collectives, decode eager) on
#   smol4     the first blocks of the default SmolLM2 GGUF (smol4.gguf.xz: real weights, dequantized to bf16),
#   smol-bf16 SmolLM2-135M shapes (30 layers, 9 heads / 3 KV heads: an uneven 1 + 2 KV-head split), dummy bf16,
#   8b        the Llama-3.1-8B-shaped dummy (.device-carry/llama8b/config.json);
# for each: the greedy tokens of fixed prompts through /generate (temperature 0, ignore_eos) must be
# TP=1's exactly (PASS/FAIL per model, the first differing position otherwise), TP=1's continuations
# teacher-forced through both (top-1 agreement >= 0.99 PASS/FAIL, TP=1's top-2 gap at each flip), then bench-serving (128 in / 128 out) at
# concurrency 1 and 32 for both (output throughput, median TPOT/TTFT), and the startup lines (GPU placement,
# communicator, CUDA graphs off, KV pool). Then the NCCL parts one GPU allows: `selftest --only nccl` and
# `--only "tp communicators"` (the NCCL and host-staged communicators tied to a backend: held-back ops queued
# before a collective, NCCL captured in a graph and replayed, a host-staged capture refused), and the
# refusals (SERVAL_TP_COMMUNICATOR=nccl on a shared GPU, --base-gpu-id beyond the GPUs, EPLB on CUDA). Between
# them, DP attention and EP on the tiny DeepSeek fixtures (DP_FIXTURES, default "v2-lite v3 v2-group"): one GPU
# against DP attention 2 (tp 2 and 4), EP 2, DP attention 2 + EP 2, greedy tokens equal (PASS/FAIL).
# MODELS picks the models (default "smol4 smol-bf16 8b"). ALLREDUCE=1 also runs TP=2 under SERVAL_TP_LAYOUT=all-reduce (tokens reported, not judged).
# Carry .device-carry as for scripts/device-check-all.sh (serval.xz, smol4.gguf.xz, llama8b/config.json).
# Log: $OUT/cudatp.txt (PASS/FAIL lines; grep "^PASS\|^FAIL").
# Run: bash scripts/device-check-cuda-tp.sh
set -o pipefail
Q=$OUT/cudatp.txt
source "$(dirname "$0")/device-lib.sh"
xz -dc $C/smol4.gguf.xz > /tmp/smol4.gguf
S=/tmp/smolbf16; mkdir -p $S
cat > $S/config.json <<'EOF'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
 "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
 "max_position_embeddings": 8192, "rms_norm_eps": 1e-05, "rope_theta": 100000, "tie_word_embeddings": true,
 "hidden_act": "silu", "torch_dtype": "bfloat16"}
EOF
pass() { echo "PASS $*" >> $Q; }
fail() { echo "FAIL $*" >> $Q; }

# serve NAME PORT TP [env...] -- launch-server args: starts a server, waits for it (or its exit).
serve() {
  local name=$1 port=$2 tp=$3; shift 3; local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  env "${envs[@]}" $B launch-server --device cuda --port $port --served-model-name m --tp-size $tp "$@" \
    > /tmp/srv-$name.log 2>&1 &
  SP=$!
  for i in $(seq 1 720); do
    grep -q "fired up" /tmp/srv-$name.log && return 0
    kill -0 $SP 2>/dev/null || break
    sleep 0.25
  done
  echo "== $name: the server did not come up; its log:" >> $Q
  tail -20 /tmp/srv-$name.log >> $Q
  kill $SP 2>/dev/null; wait $SP 2>/dev/null
  return 1
}
stop() { kill $SP 2>/dev/null; wait $SP 2>/dev/null; }

# Greedy output ids of fixed prompts (ids below every model's vocabulary), one JSON list per line.
greedy() {
  python3 - "$1" > "$2" <<'EOF'
import json, os, sys, urllib.request
port = sys.argv[1]
prompts = [[1, 4093, 2751, 28, 253, 1117, 30], [504, 3458, 282, 4649, 314], [19, 9, 3, 47, 511, 2001, 33, 7, 8, 900],
           list(range(100, 400, 3))]
if os.environ.get("SMALL_VOCAB"):  # the DeepSeek fixtures' 259 ids
    prompts = [[p % 250 + 3 for p in ids] for ids in prompts]
for ids in prompts:
    body = json.dumps({"input_ids": ids, "sampling_params": {"temperature": 0, "max_new_tokens": 48,
                                                             "ignore_eos": True}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/generate", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        print(json.dumps(json.load(r)["output_ids"]))
EOF
}

# Teacher forcing: each prompt plus TP=1's greedy continuation (all but its last token) scored in one
# prefill (max_new_tokens 0, prompt logprobs from the prompt's last position on); one JSON list per
# prompt of [top-1 id, top-1 logprob, top-2 logprob] per position, into $3.
teacher() {  # port, TP=1's token file, output file
  python3 - "$1" "$2" > "$3" <<'EOF'
import json, sys, urllib.request
port, tp1 = sys.argv[1], [json.loads(l) for l in open(sys.argv[2])]
prompts = [[1, 4093, 2751, 28, 253, 1117, 30], [504, 3458, 282, 4649, 314], [19, 9, 3, 47, 511, 2001, 33, 7, 8, 900],
           list(range(100, 400, 3))]
for ids, out in zip(prompts, tp1):
    body = json.dumps({"input_ids": ids + out[:-1], "sampling_params": {"max_new_tokens": 0},
                       "return_logprob": True, "logprob_start_len": len(ids) - 1, "top_logprobs_num": 2}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/generate", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        tops = json.load(r)["meta_info"]["input_top_logprobs"]
    print(json.dumps([[t[0][1], t[0][0], t[1][0]] for t in tops if t]))
EOF
}

# judge NAME: top-1 agreement of TP=2 with TP=1 over every teacher-forced position (issue 22: >= 0.99),
# and for each flip TP=1's own gap between its two best logprobs (a near-tie flips on rounding).
judge() {
  python3 - /tmp/tf-$1-tp1 /tmp/tf-$1-tp2 "$1" <<'EOF'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
pairs = [(x, y) for pa, pb in zip(a, b) for x, y in zip(pa, pb)]
same = sum(x[0] == y[0] for x, y in pairs)
gaps = sorted(x[1] - x[2] for x, y in pairs if x[0] != y[0])
print(f"   teacher-forced top-1: {same}/{len(pairs)} = {same / max(1, len(pairs)):.4f}"
      + (f"; TP=1's top-2 gap at the flips: {', '.join(f'{g:.4f}' for g in gaps[:8])}" if gaps else ""))
print("PASS" if pairs and same / len(pairs) >= 0.99 else "FAIL", f"{sys.argv[3]}: teacher-forced top-1 >= 0.99")
EOF
}

bench() {  # port label
  for conc in 1 32; do
    local n=$(( conc == 1 ? 8 : 64 ))
    echo "-- $2 concurrency $conc" >> $Q
    timeout 100 $B bench-serving --backend serval --port $1 --tokenizer /tmp/smol4.gguf --model m \
      --dataset-name random --random-input-len 128 --random-output-len 128 --random-range-ratio 1 \
      --num-prompts $n --max-concurrency $conc > /tmp/bench.txt 2>&1
    local rc=$?
    grep "Output token throughput\|Median TPOT\|Median TTFT\|Failed\|rror" /tmp/bench.txt >> $Q
    [ $rc -eq 0 ] || echo "   bench-serving exit $rc$( [ $rc -eq 124 ] && echo ' (timed out after 100 s)')" >> $Q
  done
}

# compare NAME: the TP=2 tokens against TP=1's.
compare() {
  if cmp -s /tmp/tok-$1-tp1 /tmp/tok-$1-tp2 && [ -s /tmp/tok-$1-tp1 ]; then
    pass "$1: TP=2 ($(nvidia-smi -L | wc -l) GPU(s)) greedy tokens = TP=1's ($(wc -l < /tmp/tok-$1-tp1) prompts x 48)"
  else
    fail "$1: TP=2 greedy tokens differ from TP=1's"
    python3 - /tmp/tok-$1-tp1 /tmp/tok-$1-tp2 >> $Q <<'EOF'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
for i, (x, y) in enumerate(zip(a, b)):
    d = next((k for k, (p, q) in enumerate(zip(x, y)) if p != q), None)
    print(f"   prompt {i}: " + ("same" if d is None and len(x) == len(y) else f"first difference at token {d}: {x[d:d+4]} vs {y[d:d+4]}"))
if len(a) != len(b): print(f"   {len(a)} vs {len(b)} prompts answered")
EOF
  fi
}

run_model() {  # NAME, then launch-server model args
  local name=$1; shift
  echo "== $name" >> $Q
  for tp in 1 2; do
    if serve $name-tp$tp 31000 $tp X=1 -- "$@"; then
      grep "Tensor parallel\|CUDA graphs are off\|KV pool\|KV cache capacity\|Loaded" /tmp/srv-$name-tp$tp.log \
        | sed "s/^/   tp$tp: /" >> $Q
      greedy 31000 /tmp/tok-$name-tp$tp || echo "   tp$tp: /generate failed" >> $Q
      teacher 31000 /tmp/tok-$name-tp1 /tmp/tf-$name-tp$tp || echo "   tp$tp: teacher forcing failed" >> $Q
      bench 31000 "$name tp$tp"
      stop
      grep -i "error\|fatal" /tmp/srv-$name-tp$tp.log | head -5 | sed "s/^/   tp$tp log: /" >> $Q
    fi
    el "$name tp$tp"
  done
  compare $name
  [ -s /tmp/tf-$name-tp1 ] && [ -s /tmp/tf-$name-tp2 ] && judge $name >> $Q
  if [ -n "$ALLREDUCE" ] && serve $name-ar 31000 2 SERVAL_TP_LAYOUT=all-reduce -- "$@"; then
    greedy 31000 /tmp/tok-$name-ar
    stop
    cmp -s /tmp/tok-$name-tp1 /tmp/tok-$name-ar && echo "   all-reduce layout: same tokens" >> $Q \
      || echo "   all-reduce layout: tokens differ (not judged: partial sums in another order)" >> $Q
  fi
}

MODELS=${MODELS:-smol4 smol-bf16 8b}
[[ " $MODELS " == *" smol4 "* ]] && run_model smol4 --model-path /tmp/smol4.gguf
[[ " $MODELS " == *" smol-bf16 "* ]] && run_model smol-bf16 --model-path $S --load-format dummy --tokenizer-path /tmp/smol4.gguf
[[ " $MODELS " == *" 8b "* ]] && run_model 8b --model-path $C/llama8b --load-format dummy --tokenizer-path /tmp/smol4.gguf \
  --context-length 8192

# DP attention and expert parallelism on CUDA ranks (issue 22's layouts, all ranks on this one GPU,
# host-staged collectives, decode eager): the tiny DeepSeek fixtures' greedy tokens on one GPU against
# DP attention 2 over 2 ranks (one rank a group) and over 4 (two a group: the heads split inside each),
# EP 2, and DP attention 2 + EP 2.
run_dp() {  # NAME (a fixture)
  local name=$1 dir=$F/$1
  echo "== $name: DP attention, EP" >> $Q
  export SMALL_VOCAB=1
  if serve $name-one 31000 1 X=1 -- --model-path $dir; then greedy 31000 /tmp/tok-$name-one; stop; fi
  local i=0
  for layout in "2 --dp-size 2 --enable-dp-attention" "4 --dp-size 2 --enable-dp-attention" "2 --ep-size 2" \
    "2 --dp-size 2 --enable-dp-attention --ep-size 2"; do
    i=$((i + 1))
    set -- $layout
    local tp=$1; shift
    if serve $name-l$i 31000 $tp X=1 -- --model-path $dir "$@"; then
      grep "DP attention\|expert\|CUDA graphs are off\|KV pool" /tmp/srv-$name-l$i.log | head -4 \
        | sed "s/^/   --tp-size $layout: /" >> $Q
      greedy 31000 /tmp/tok-$name-l$i || echo "   --tp-size $layout: /generate failed" >> $Q
      stop
      grep -i "error\|fatal" /tmp/srv-$name-l$i.log | head -5 | sed "s/^/   log: /" >> $Q
      if cmp -s /tmp/tok-$name-one /tmp/tok-$name-l$i && [ -s /tmp/tok-$name-one ]; then
        pass "$name: --tp-size $layout greedy tokens = one GPU's"
      else
        fail "$name: --tp-size $layout greedy tokens differ from one GPU's"
      fi
    fi
    el "$name --tp-size $layout"
  done
  unset SMALL_VOCAB
}
for f in ${DP_FIXTURES:-v2-lite v3 v2-group}; do run_dp $f; done

echo "== NCCL on one GPU" >> $Q
timeout 120 $B selftest --device cuda --require-nccl --only nccl --only "tp communicators" 2>&1 \
  | grep -i "nccl\|tp communicators\|passed\|FAIL" >> $Q
[ ${PIPESTATUS[0]} -eq 0 ] && pass "selftest nccl + tp communicators" || fail "selftest nccl + tp communicators"
el selftest

echo "== refusals" >> $Q
refused() {  # label, expected text, then the command
  local label=$1 want=$2; shift 2
  local out; out=$(timeout 120 "$@" 2>&1); local rc=$?
  if [ $rc -ne 0 ] && grep -q -- "$want" <<< "$out"; then pass "refused: $label"
  else fail "refused: $label (exit $rc): $(tail -2 <<< "$out")"; fi
}
N=$(nvidia-smi -L | wc -l)
# --gpu-id-step N puts both ranks on GPU 0 whatever the GPU count (ordinals are taken modulo it).
refused "SERVAL_TP_COMMUNICATOR=nccl with two ranks on one GPU" "share GPU 0" \
  env SERVAL_TP_COMMUNICATOR=nccl $B launch-server --device cuda --port 0 --tp-size 2 --gpu-id-step $N \
  --model-path /tmp/smol4.gguf
refused "--base-gpu-id $N on a machine with $N GPU(s)" "names no GPU" \
  $B launch-server --device cuda --port 0 --base-gpu-id $N --model-path /tmp/smol4.gguf
refused "--enable-eplb on CUDA" "runs on CPU ranks only" \
  $B launch-server --device cuda --port 0 --tp-size 2 --ep-size 2 --enable-eplb --model-path /tmp/smol4.gguf
el refusals

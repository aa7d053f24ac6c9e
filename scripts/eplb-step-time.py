#!/usr/bin/env python3
"""Step time of an expert-parallel DeepSeek server on 2 CPU ranks, with and without EPLB / TBO
(docs/eplb.md, docs/benchmarks.md).

For each configuration: starts `serval launch-server --tp-size 2 --ep-size 2 --log-level debug`
on MODEL, records the expert distribution over a fixed workload (CONCURRENCY requests at once,
PROMPT-token prompts, NEW tokens each, run ROUNDS times), and reports the prefill forward time per
1000 prompt tokens and the decode steps' forward times (from the engine's `step:` debug lines),
the CPU seconds each rank process used over the workload, and each MoE layer's balancedness. The
first configuration's dump is what `--init-expert-location` places from.

  SERVAL_BIN=.build/debug/serval python3 scripts/eplb-step-time.py MODEL [--port N] [--repeat 3] ...
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from urllib import request

STEP = re.compile(r"step: (\d+) decode, (\d+) prefill \((\d+) tokens\), \d+ waiting; forward ([\d.]+) ms")


def call(base, path, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    req = request.Request(base + path, data=data, method="POST", headers={"Content-Type": "application/json"})
    with request.urlopen(req, timeout=600) as r:
        return r.read()


def serve(binary, model, port, flags, log):
    args = [binary, "launch-server", "--model-path", model, "--port", str(port), "--tp-size", "2", "--ep-size", "2",
            "--max-total-tokens", "8192", "--kv-cache-dtype", "f32", "--log-level", "debug", *flags]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            request.urlopen(base + "/health", timeout=2)
            return proc, base
        except Exception:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {open(log.name).read()[-2000:]}")
            time.sleep(0.5)
    raise SystemExit("server not healthy")


def cpu_seconds(pid):
    """User + system CPU time of one process (all its threads)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rank_pids(proc):
    """Rank 0 (the server) and the rank processes it started."""
    children = []
    for task in os.listdir(f"/proc/{proc.pid}/task"):
        children += open(f"/proc/{proc.pid}/task/{task}/children").read().split()
    return [proc.pid] + [int(c) for c in children]


def workload(base, a, seed):
    """Distinct prompts per seed (no radix-cache hits between the warm-up and the measured run)."""
    prompts = [[(13 * i + 5 * j + 101 * seed) % 240 + 10 for j in range(a.prompt)]
               for i in range(a.concurrency * a.rounds)]
    def one(p):
        body = {"input_ids": p, "sampling_params": {"temperature": 0, "max_new_tokens": a.new, "ignore_eos": True}}
        return json.loads(call(base, "/generate", body))["output_ids"]
    out = []
    with ThreadPoolExecutor(a.concurrency) as pool:
        for r in range(a.rounds):
            out += list(pool.map(one, prompts[r * a.concurrency:(r + 1) * a.concurrency]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--port", type=int, default=0, help="loopback port of the servers (0: a free one)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--redundant", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="run the configurations this many times, interleaved")
    ap.add_argument("--chunk", type=int, default=64, help="--chunked-prefill-size of the server")
    a = ap.parse_args()
    binary = os.environ.get("SERVAL_BIN", ".build/debug/serval")
    if a.port == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            a.port = s.getsockname()[1]
    tmp = tempfile.mkdtemp(prefix="eplb-step-")
    dump_path = os.path.join(tmp, "dump.json")
    configs = [
        ("trivial placement", []),
        ("trivial + TBO", ["--enable-two-batch-overlap"]),
        (f"placed from the dump, {a.redundant} redundant",
         ["--init-expert-location", dump_path, "--ep-num-redundant-experts", str(a.redundant)]),
        (f"placed from the dump, {a.redundant} redundant + TBO",
         ["--init-expert-location", dump_path, "--ep-num-redundant-experts", str(a.redundant),
          "--enable-two-batch-overlap"]),
    ]
    reference = None
    for name, flags in configs * a.repeat:
        log = open(os.path.join(tmp, f"log-{len(flags)}-{abs(hash(name))}.txt"), "w")
        proc, base = serve(binary, a.model, a.port, ["--chunked-prefill-size", str(a.chunk), *flags], log)
        try:
            workload(base, a, seed=1)  # warm
            with open(log.name) as f:
                start = len(f.read())
            pids = rank_pids(proc)
            cpu0 = [cpu_seconds(p) for p in pids]
            call(base, "/start_expert_distribution_record")
            tokens = workload(base, a, seed=0)
            call(base, "/stop_expert_distribution_record")
            cpu = [cpu_seconds(p) - c for p, c in zip(pids, cpu0)]
            dump = json.loads(call(base, "/dump_expert_distribution_record"))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        if not os.path.exists(dump_path):
            json.dump(dump, open(dump_path, "w"))
        reference = reference or tokens
        with open(log.name) as f:
            steps = [m.groups() for m in STEP.finditer(f.read()[start:])]
        prefill = [(float(ms), int(t)) for d, p, t, ms in steps if int(p) > 0 and int(t) >= 32]
        decode = [float(ms) for d, p, t, ms in steps if int(p) == 0]
        per_token = sum(ms for ms, _ in prefill) / sum(t for _, t in prefill)
        bal = ", ".join(f"{b:.2f}" for b in dump["balancedness"])
        def fig(v):
            return f"median {statistics.median(v):6.1f} min {min(v):6.1f} ms ({len(v)} steps)"
        load = " ".join(open("/proc/loadavg").read().split()[:3])
        ranks = "/".join(f"{c:.2f}" for c in cpu)
        print(f"{name:42s} prefill {per_token * 1000:6.1f} ms per 1000 tokens ({len(prefill)} steps)  "
              f"decode {fig(decode)}  balancedness [{bal}]  "
              f"CPU s per rank {ranks}  same tokens: {tokens == reference}  load {load}", flush=True)
    print("load average:", open("/proc/loadavg").read().split()[:3])


if __name__ == "__main__":
    sys.exit(main())

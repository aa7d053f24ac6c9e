#!/usr/bin/env python3
"""Decode throughput of one `serval launch-server` layout: B concurrent greedy requests of
O output tokens each (ignore_eos), output tokens / wall time, after one warm-up round.

    benchmarks/tp-decode.py --binary .build/release/serval --model MODEL -- --tp-size 2
    benchmarks/tp-decode.py --binary .build/release/serval --model MODEL -- --threads 2 --mmap-weights
"""
import argparse
import concurrent.futures as cf
import socket
import subprocess
import sys
import time

import requests


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("server_args", nargs="*")
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([a.binary, "launch-server", "--model-path", a.model, "--port", str(port),
                             "--random-seed", "1", *a.server_args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while True:
            try:
                if requests.get(base + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.time() > deadline or proc.poll() is not None:
                sys.exit("server did not start")
            time.sleep(0.3)

        def one(i):
            r = requests.post(base + "/generate", json={
                "input_ids": [1 + (i * 7 + k) % 1000 for k in range(8)],
                "sampling_params": {"temperature": 0, "max_new_tokens": a.output_len, "ignore_eos": True}},
                timeout=600)
            r.raise_for_status()
            return len(r.json()["output_ids"])

        for b in a.batch:
            rates = []
            for rnd in range(a.rounds + 1):
                t0 = time.time()
                with cf.ThreadPoolExecutor(b) as ex:
                    n = sum(ex.map(one, range(b)))
                if rnd > 0:
                    rates.append(n / (time.time() - t0))
            rates.sort()
            print(f"{' '.join(a.server_args) or '(defaults)'}: batch {b}: {rates[len(rates) // 2]:.1f} output tok/s "
                  f"(median of {a.rounds}, each {b} x {a.output_len} tokens incl. an 8-token prefill)")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()

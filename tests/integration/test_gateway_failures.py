"""The gateway when workers die: retries, health marking, recovery, mid-stream errors."""
import json
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from gateway_helpers import Router, start_worker, url_of


def test_kill_one_of_three_during_a_burst_loses_nothing_and_traffic_returns_after_restart():
    ws = [start_worker() for _ in range(3)]
    router = Router(ws, "--health-failure-threshold", "1", "--health-success-threshold", "1",
                    "--health-check-interval-secs", "1", "--retry-initial-backoff-ms", "10",
                    "--cb-timeout-duration-secs", "2", policy="round_robin")
    victim = ws[1]
    restarted = None
    try:
        done = Counter()
        lock = threading.Lock()
        killed = threading.Event()

        def one(i):
            r = router.generate(f"Request number {i}: say something", max_new_tokens=4, timeout=120)
            with lock:
                done[r.status_code] += 1
                if sum(done.values()) >= 40 and not killed.is_set():
                    killed.set()
                    victim.proc.send_signal(signal.SIGKILL)
            return r.status_code

        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(one, range(200)))
        assert killed.is_set()
        assert Counter(codes) == Counter({200: 200}), Counter(codes)

        deadline = time.time() + 15
        while True:
            state = {w["url"]: w for w in router.workers()}
            if not state[url_of(victim)]["is_healthy"]:
                break
            assert time.time() < deadline, state
            time.sleep(0.2)
        metrics = router.get("/metrics").text
        assert f'smg_worker_health{{worker="{url_of(victim)}"}} 0.0' in metrics

        # Right after the burst, the worker comes back at the same address: it is marked
        # healthy and, once its circuit half-opens (--cb-timeout-duration-secs), gets its
        # share of traffic again.
        port = victim.port
        victim.stop()
        restarted = start_worker(port=port)
        deadline = time.time() + 30
        while True:
            w = {w["url"]: w for w in router.workers()}[url_of(victim)]
            if w["is_healthy"] and w["circuit_state"] != "open":
                break
            assert time.time() < deadline, w
            time.sleep(0.2)
        before = router.routed()[url_of(victim)]
        for i in range(9):
            assert router.generate(f"after restart {i}").status_code == 200
        assert router.routed()[url_of(victim)] - before == 3
    finally:
        router.stop()
        for w in ws:
            w.stop()
        if restarted:
            restarted.stop()


def test_mid_stream_worker_death_ends_with_an_error_event():
    w = start_worker()
    router = Router([w], "--disable-retries", policy="round_robin")
    try:
        body = {"text": "Tell me a very long story about dragons.",
                "sampling_params": {"max_new_tokens": 400, "temperature": 0, "ignore_eos": True}, "stream": True}
        got_error = None
        start = time.time()
        with router.post("/generate", json=body, stream=True, timeout=60) as r:
            assert r.status_code == 200
            n = 0
            for line in r.iter_lines():
                if not line.startswith(b"data: "):
                    continue
                n += 1
                if n == 2:
                    w.proc.send_signal(signal.SIGKILL)
                payload = line[6:]
                if payload != b"[DONE]" and "error" in json.loads(payload):
                    got_error = json.loads(payload)["error"]
        assert got_error is not None, "stream ended without an error event"
        assert "mid-stream" in got_error["message"]
        assert time.time() - start < 30
    finally:
        router.stop()
        w.stop()

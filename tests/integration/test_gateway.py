"""The model gateway (`serval launch-router`) in front of real Serval workers on loopback."""
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from gateway_helpers import Router, start_worker, url_of


@pytest.fixture(scope="module")
def workers():
    ws = [start_worker() for _ in range(3)]
    yield ws
    for w in ws:
        w.stop()


def spread(router, n, make_text, threads=1, headers=None):
    before = router.routed()
    def one(i):
        r = router.generate(make_text(i), headers=headers or {})
        assert r.status_code == 200, r.text
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(n)))
    after = router.routed()
    return {u: after[u] - before.get(u, 0) for u in after}


def test_round_robin_spreads_evenly(workers):
    router = Router(workers, policy="round_robin")
    try:
        counts = spread(router, 30, lambda i: f"count to {i}")
        assert sorted(counts.values()) == [10, 10, 10]
    finally:
        router.stop()


@pytest.mark.parametrize("policy", ["random", "power_of_two", "least_load", "bucket"])
def test_load_policies_use_every_worker(workers, policy):
    router = Router(workers, policy=policy)
    try:
        counts = spread(router, 30, lambda i: "x" * (i * 7 + 1), threads=3)
        assert sum(counts.values()) == 30
        assert sum(1 for v in counts.values() if v > 0) >= 2, counts
    finally:
        router.stop()


def test_consistent_hashing_keeps_a_key_on_one_worker(workers):
    router = Router(workers, policy="consistent_hashing")
    try:
        same = spread(router, 12, lambda i: f"q{i}", headers={"X-SMG-Routing-Key": "user-42"})
        assert sorted(same.values()) == [0, 0, 12]
        before = router.routed()
        for i in range(30):
            assert router.generate(f"q{i}", headers={"X-SMG-Routing-Key": f"user-{i}"}).status_code == 200
        after = router.routed()
        assert sum(1 for u in after if after[u] > before[u]) >= 2
    finally:
        router.stop()


def test_prefix_hash_groups_a_shared_prefix(workers):
    router = Router(workers, "--prefix-token-count", "8", policy="prefix_hash")
    try:
        prefix = "You are a terse assistant. Answer in one word only. "
        same = spread(router, 9, lambda i: prefix + f"Item {i}?")
        assert sorted(same.values()) == [0, 0, 9]
    finally:
        router.stop()


def test_cache_aware_sticks_shared_prefixes_and_spreads_unrelated(workers):
    router = Router(workers, policy="cache_aware")
    try:
        system = "You are a helpful assistant for a space agency. Keep answers short and exact. " * 3
        sticky = spread(router, 10, lambda i: system + f"Question {i}: how far is planet {i}?")
        assert sorted(sticky.values()) == [0, 0, 10]
        unrelated = spread(router, 12, lambda i: f"{i} unrelated " + chr(65 + i) * (10 + i), threads=4)
        assert sum(1 for v in unrelated.values() if v > 0) >= 2, unrelated
        metrics = router.get("/metrics").text
        assert 'smg_router_cache_hits_total{policy="cache_aware"}' in metrics
    finally:
        router.stop()


def test_streaming_passes_through(workers):
    router = Router(workers[:1], policy="round_robin")
    try:
        body = {"model": "smollm2", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8,
                "stream": True, "temperature": 0}
        with router.post("/v1/chat/completions", json=body, stream=True) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            events = [line for line in r.iter_lines() if line.startswith(b"data: ")]
        assert events[-1] == b"data: [DONE]"
        assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"
        models = router.get("/v1/models").json()
        assert models["data"][0]["id"] == "smollm2"
        assert router.get("/get_model_info").status_code == 200
    finally:
        router.stop()


def test_worker_added_at_run_time_gets_traffic(workers):
    router = Router(workers[:1], policy="round_robin")
    try:
        r = router.post("/workers", json={"url": workers[1].base})
        assert r.status_code == 202, r.text
        wid = r.json()["id"]
        assert r.headers["location"] == f"/workers/{wid}"
        deadline = time.time() + 20
        while router.get(f"/workers/{wid}").json()["health"] != "healthy":
            assert time.time() < deadline
            time.sleep(0.2)
        counts = spread(router, 10, lambda i: f"hello {i}")
        assert counts[url_of(workers[1])] == 5
        # The legacy spelling, then removal: the removed worker drains and disappears.
        assert router.post("/add_worker", params={"url": workers[2].base}).status_code == 200
        assert len(router.get("/list_workers").json()["urls"]) == 3
        assert router.delete(f"/workers/{wid}").status_code == 202
        deadline = time.time() + 10
        while any(w["id"] == wid for w in router.workers()):
            assert time.time() < deadline
            time.sleep(0.1)
        loads = router.get("/get_loads").json()["workers"]
        assert len(loads) == 2 and all(l["status"] == 200 for l in loads)
        assert router.post("/flush_cache").status_code == 200
    finally:
        router.stop()


def test_bad_admin_input_gets_4xx(workers):
    router = Router(workers[:1], policy="round_robin")
    try:
        assert router.post("/workers", data=b"{not json").status_code == 400
        assert router.post("/workers", json={"urll": "x"}).status_code == 400
        assert router.post("/workers", json={"url": "localhost:99999"}).status_code == 400
        assert router.post("/workers", json={"url": "http://127.0.0.1:1/path"}).status_code == 400
        assert router.post("/workers", json={"url": workers[0].base}).status_code == 409
        assert router.delete("/workers/worker-999").status_code == 404
        assert router.get("/workers/worker-999").status_code == 404
        assert router.post("/add_worker").status_code == 400
        assert router.post("/add_worker", params={"url": "ftp://x"}).status_code == 400
        assert router.post("/remove_worker", params={"url": "http://127.0.0.1:9"}).status_code == 404
        assert router.post("/remove_worker", params={"url": "::bad::"}).status_code == 400
        assert router.get("/nope").status_code == 404
        assert router.get("/generate").status_code == 405
    finally:
        router.stop()


def test_overload_gives_429_not_timeouts(workers):
    router = Router(workers[:1], "--max-concurrent-requests", "1", "--queue-size", "1", policy="round_robin")
    try:
        def one(i):
            return router.generate(f"Write a long story number {i}", max_new_tokens=24, timeout=60)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(8)))
        codes = Counter(r.status_code for r in results)
        assert codes[429] >= 4, codes
        assert set(codes) <= {200, 429}, codes
        rejected = next(r for r in results if r.status_code == 429)
        assert int(rejected.headers["retry-after"]) >= 1
        assert 'smg_http_rate_limit_total{decision="rejected"}' in router.get("/metrics").text
    finally:
        router.stop()


def test_api_key_and_payload_limit(workers):
    router = Router(workers[:1], "--max-payload-size", "2000", policy="round_robin", wait_ready=False)
    try:
        deadline = time.time() + 20
        while router.healthy_count() < 1:
            assert time.time() < deadline
            time.sleep(0.2)
        assert router.generate("x" * 5000).status_code == 413
    finally:
        router.stop()
    keyed = Router([], "--api-key", "sekrit", policy="round_robin")
    try:
        assert keyed.get("/workers").status_code == 401
        assert keyed.get("/workers", headers={"Authorization": "Bearer sekrit"}).status_code == 200
        assert keyed.get("/health").status_code == 200
    finally:
        keyed.stop()

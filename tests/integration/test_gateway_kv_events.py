"""Workers' KV-cache events (`--kv-events-config`, GET /kv_events) and the router that routes on
them (`launch-router --kv-events`)."""
import json
import queue
import subprocess
import threading
import time

import requests

from conftest import Server, find_binary
from gateway_helpers import WORKER_ARGS, Router, url_of

KV = ("--kv-events-config", '{"publisher": "http", "block_size": 16}')
M64 = (1 << 64) - 1


def block_hash(parent, tokens):
    """docs/gateway.md's block hash, written independently of the Swift one."""
    h = (parent ^ 0x9E3779B97F4A7C15) & M64
    for t in tokens:
        h = ((h ^ (t & 0xFFFFFFFF)) * 0x100000001B3) & M64
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & M64
    h ^= h >> 33
    return h & 0x7FFFFFFFFFFFFFFF


def chain(tokens, block_size):
    out, parent = [], 0
    for k in range(len(tokens) // block_size):
        parent = block_hash(parent, tokens[k * block_size:(k + 1) * block_size])
        out.append(parent)
    return out


def follow(url, frames, stop):
    with requests.get(url + "/kv_events", stream=True, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if stop.is_set():
                return
            if line.startswith(b"data: "):
                frames.put(json.loads(line[6:]))


def prompt(n):
    return f"System {n}: " + " ".join(f"word{i % 37}" for i in range(120)) + f" Question {n}?"


def test_a_worker_publishes_the_blocks_its_cache_stores():
    w = Server(*WORKER_ARGS, *KV)
    stop = threading.Event()
    try:
        frames = queue.Queue()
        threading.Thread(target=follow, args=(w.base, frames, stop), daemon=True).start()
        first = frames.get(timeout=20)
        assert first["seq"] == 0 and first["block_size"] == 16
        assert first["events"][0] == {"type": "AllBlocksCleared"}

        text = prompt(1)
        ids = requests.post(w.base + "/tokenize", json={"prompt": text}, timeout=30).json()["tokens"]
        r = requests.post(w.base + "/generate", json={"text": text, "sampling_params": {"max_new_tokens": 2}},
                          timeout=120)
        assert r.status_code == 200
        stored = set()
        deadline = time.time() + 20
        want = set(chain(ids, 16))
        while not want <= stored:
            assert time.time() < deadline, (len(stored), len(want))
            f = frames.get(timeout=20)
            for e in f["events"]:
                if e["type"] == "BlockStored":
                    stored.update(e["block_hashes"])
        # A second subscriber's snapshot holds the same blocks.
        frames2 = queue.Queue()
        threading.Thread(target=follow, args=(w.base, frames2, stop), daemon=True).start()
        snap = frames2.get(timeout=20)
        snapshot = {h for e in snap["events"] if e["type"] == "BlockStored" for h in e["block_hashes"]}
        assert want <= snapshot

        # Flushing the cache clears every block.
        assert requests.post(w.base + "/flush_cache", timeout=30).status_code == 200
        deadline = time.time() + 20
        while True:
            f = frames.get(timeout=20)
            if any(e["type"] == "AllBlocksCleared" for e in f["events"]):
                break
            assert time.time() < deadline
    finally:
        stop.set()
        w.stop()


def test_kv_events_are_off_by_default_and_bad_configs_are_refused():
    w = Server(*WORKER_ARGS)
    try:
        r = requests.get(w.base + "/kv_events", timeout=10)
        assert r.status_code == 404
        assert "--kv-events-config" in r.json()["error"]["message"]
    finally:
        w.stop()
    binary = str(find_binary())
    for bad in ('{"publisher": "zmq"}', '{"publisher": "http", "endpoint": "tcp://*:5557"}', "nope",
                '{"publisher": "http", "block_size": 0}'):
        p = subprocess.run([binary, "launch-server", "--kv-events-config", bad], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode != 0
        assert "--kv-events-config" in p.stderr, p.stderr
    p = subprocess.run([binary, "launch-router", "--kv-events", "--policy", "round_robin"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode != 0 and "--kv-events" in p.stderr, p.stderr


def test_the_router_sends_a_prefix_where_a_worker_really_holds_it():
    # ws[1] publishes and is primed directly (the router never sees that request); ws[2]
    # does not publish and falls back to the approximate tree.
    ws = [Server(*WORKER_ARGS, *KV), Server(*WORKER_ARGS, *KV), Server(*WORKER_ARGS)]
    router = None
    try:
        text = prompt(7)
        r = requests.post(ws[1].base + "/generate", json={"text": text, "sampling_params": {"max_new_tokens": 1}},
                          timeout=120)
        assert r.status_code == 200
        router = Router(ws, "--kv-events", policy="cache_aware")
        deadline = time.time() + 20
        while True:
            state = {w["url"]: w for w in router.workers()}
            if state[url_of(ws[0])]["kv_events"] and state[url_of(ws[1])]["kv_events"]:
                break
            assert time.time() < deadline, state
            time.sleep(0.2)
        assert state[url_of(ws[1])]["kv_cached_blocks"] > 0
        assert state[url_of(ws[2])]["kv_events"] is False  # no stream: the approximate tree
        before = router.routed()
        for q in range(3):
            r = router.generate(text + f" More {q}.")
            assert r.status_code == 200
            assert r.json()["meta_info"]["cached_tokens"] >= 16 * 8
        after = router.routed()
        assert after[url_of(ws[1])] - before[url_of(ws[1])] == 3, (before, after)
    finally:
        if router:
            router.stop()
        for w in ws:
            w.stop()

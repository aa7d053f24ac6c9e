"""Concurrency, KV pressure, client disconnects, prefix caching, graceful shutdown."""
import asyncio
import signal
import threading
import time

import requests

from conftest import MODEL, Server


def _stream_count(client_factory, n, max_tokens, prompt_of):
    import openai

    async def one(client, i):
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt_of(i)}], max_tokens=max_tokens,
            temperature=0.8, stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
        usage, finish = None, None
        async for ch in stream:
            if ch.usage:
                usage = ch.usage
            if ch.choices and ch.choices[0].finish_reason:
                finish = ch.choices[0].finish_reason
        return usage.completion_tokens, finish

    async def main():
        client = client_factory()
        try:
            return await asyncio.gather(*(one(client, i) for i in range(n)))
        finally:
            await client.close()

    return asyncio.run(main())


def test_256_concurrent_streams(server):
    import openai
    # The openai client allows 1000 connections by default, enough for 256 streams at once.
    factory = lambda: openai.AsyncOpenAI(base_url=server.base + "/v1", api_key="none", max_retries=0, timeout=600)
    results = _stream_count(factory, 256, 8, lambda i: f"Request number {i}: tell me something.")
    assert results == [(8, "length")] * 256


def test_small_kv_pool_retracts_and_completes():
    import openai
    s = Server("--max-total-tokens", "600", "--context-length", "512")
    try:
        factory = lambda: openai.AsyncOpenAI(base_url=s.base + "/v1", api_key="none", max_retries=0, timeout=600)
        # 16 requests x ~(30 prompt + 96 output) tokens need far more than 600 KV slots at once.
        results = _stream_count(factory, 16, 96, lambda i: f"Story {i}: once upon a time in a faraway land there was")
        assert results == [(96, "length")] * 16
    finally:
        s.stop()


def test_disconnect_frees_kv(server):
    deadline = time.time() + 60
    while server.load()["num_reqs"] != 0 and time.time() < deadline:
        time.sleep(0.2)
    baseline = server.load()["num_tokens"]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Count to one thousand."}], "max_tokens": 2000,
            "stream": True, "ignore_eos": True}
    r = requests.post(server.base + "/v1/chat/completions", json=body, stream=True, timeout=60)
    lines = r.iter_lines()
    got = 0
    for line in lines:
        if line.startswith(b"data: "):
            got += 1
        if got >= 5:
            break
    assert server.load()["num_reqs"] == 1
    r.close()
    deadline = time.time() + 30
    load = server.load()
    while (load["num_reqs"] != 0 or load["num_tokens"] > baseline + 64) and time.time() < deadline:
        time.sleep(0.2)
        load = server.load()
    assert load["num_reqs"] == 0
    # What stays is at most the prompt and the few generated tokens, now in the radix cache.
    assert load["num_tokens"] <= baseline + 64, load


def _ttft(server, prompt):
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 1, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    r = requests.post(server.base + "/v1/completions", json=body, stream=True, timeout=120)
    first = None
    usage = None
    import json
    for line in r.iter_lines():
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        j = json.loads(line[6:])
        if first is None and j["choices"] and j["choices"][0]["text"] is not None:
            first = time.perf_counter() - t0
        if j.get("usage"):
            usage = j["usage"]
    return first, usage


def test_shared_prefix_is_cached(server):
    prefix = " ".join(f"Fact {i}: the number {i} squared is {i * i}." for i in range(80))
    t_cold, u_cold = _ttft(server, prefix + " Question A: what is 3 squared?")
    t_warm, u_warm = _ttft(server, prefix + " Question B: what is 4 squared?")
    assert u_cold["prompt_tokens"] > 500
    assert u_warm["prompt_tokens_details"]["cached_tokens"] > 400
    assert t_warm < t_cold


def test_sigterm_drains_in_flight_requests():
    s = Server()
    result = {}

    def consume():
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 64,
                "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
        r = requests.post(s.base + "/v1/chat/completions", json=body, stream=True, timeout=120)
        events = [line for line in r.iter_lines() if line.startswith(b"data: ")]
        result["events"] = events

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.5)
    s.proc.send_signal(signal.SIGTERM)
    t.join(120)
    code = s.proc.wait(60)
    s.log.close()
    assert result["events"][-1] == b"data: [DONE]"
    import json
    assert json.loads(result["events"][-2][6:])["usage"]["completion_tokens"] == 64
    assert code == 0

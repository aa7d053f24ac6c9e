"""Chat and completions through the official `openai` client and plain HTTP."""
import json

import requests

from conftest import MODEL


def test_health_and_models(server):
    assert requests.get(server.base + "/health").status_code == 200
    models = server.openai().models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_chat_non_streaming(server):
    r = server.openai().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=16, temperature=0)
    c = r.choices[0]
    assert r.object == "chat.completion"
    assert c.message.role == "assistant"
    assert isinstance(c.message.content, str) and c.message.content
    assert c.finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 16
    assert r.usage.prompt_tokens > 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_streaming_matches_non_streaming(server):
    client = server.openai()
    messages = [{"role": "user", "content": "Name three colors."}]
    full = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=20, temperature=0)
    stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=20, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == full.choices[0].message.content
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_sse_framing_with_curl_like_client(server):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True}
    r = requests.post(server.base + "/v1/chat/completions", json=body, stream=True, timeout=60)
    assert r.headers["content-type"].startswith("text/event-stream")
    raw = r.content.decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for e in events[:-2]:
        assert e.startswith("data: ")
        json.loads(e[len("data: "):])


def test_completions(server):
    client = server.openai()
    r = client.completions.create(model=MODEL, prompt="The quick brown fox", max_tokens=8, temperature=0)
    assert r.object == "text_completion"
    assert 0 < r.usage.completion_tokens <= 8
    streamed = "".join(ch.choices[0].text for ch in client.completions.create(
        model=MODEL, prompt="The quick brown fox", max_tokens=8, temperature=0, stream=True) if ch.choices)
    assert streamed == r.choices[0].text


def test_n_choices(server):
    r = server.openai().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Tell me a word."}], max_tokens=6, n=3, temperature=1.0,
        extra_body={"ignore_eos": True})
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    assert r.usage.completion_tokens == 3 * 6
    assert all(isinstance(c.message.content, str) for c in r.choices)


def test_logprobs(server):
    r = server.openai().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say yes."}], max_tokens=5, temperature=0,
        logprobs=True, top_logprobs=3, extra_body={"ignore_eos": True})
    content = r.choices[0].logprobs.content
    assert len(content) == 5
    for item in content:
        assert item.logprob <= 0
        assert len(item.top_logprobs) == 3
        # Greedy: the chosen token is the most likely one.
        assert abs(item.top_logprobs[0].logprob - item.logprob) < 1e-4
    assert "".join(i.token for i in content) == r.choices[0].message.content

    c = server.openai().completions.create(model=MODEL, prompt="One, two,", max_tokens=4, temperature=0, logprobs=2,
                                           extra_body={"ignore_eos": True})
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 4


def test_stop_strings(server):
    client = server.openai()
    base = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=24, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    assert len(base) > 6
    stop = base[3:5]
    r = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=24, temperature=0, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert stop not in r.choices[0].text
    assert base.startswith(r.choices[0].text)


def test_seed_reproducibility(server):
    client = server.openai()
    kw = dict(model=MODEL, messages=[{"role": "user", "content": "Write a story."}], max_tokens=24, temperature=1.0)
    a = client.chat.completions.create(seed=1234, **kw).choices[0].message.content
    b = client.chat.completions.create(seed=1234, **kw).choices[0].message.content
    assert a == b


def test_generate_native(server):
    r = server.post("/generate", json={"text": "Hello, my name is", "sampling_params": {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True}})
    assert r.status_code == 200
    j = r.json()
    meta = j["meta_info"]
    assert meta["completion_tokens"] == 6
    assert meta["finish_reason"] == {"type": "length", "length": 6}
    assert len(j["output_ids"]) == 6
    assert meta["prompt_tokens"] > 0 and "cached_tokens" in meta and meta["e2e_latency"] > 0

    batch = server.post("/generate", json={"text": ["a", "b"], "sampling_params": {"max_new_tokens": 2}}).json()
    assert isinstance(batch, list) and len(batch) == 2


def test_info_routes(server):
    assert server.get("/get_model_info").json()["is_generation"] is True
    info = server.get("/get_server_info").json()
    assert info["max_total_num_tokens"] > 0
    assert info["disable_overlap_schedule"] is True  # off by default on the CPU (--enable-overlap-schedule)
    assert server.get("/health_generate").status_code == 200
    metrics = server.get("/metrics").text
    for name in ("sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage", "sglang:cache_hit_rate",
                 "sglang:gen_throughput", "sglang:prompt_tokens_total", "sglang:generation_tokens_total",
                 "sglang:num_requests_total", "sglang:time_to_first_token_seconds_bucket",
                 "sglang:inter_token_latency_seconds_bucket", "sglang:e2e_request_latency_seconds_bucket"):
        assert f'{name}{{model_name="{MODEL}"' in metrics, name

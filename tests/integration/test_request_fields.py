"""SGLang request fields beyond the basics: token_ids_logprob on /generate."""
import math

import pytest

from conftest import MODEL


def test_token_ids_logprob_reports_the_named_ids_each_step(server):
    ids = [11, 260, 1535]
    r = server.post("/generate", json={
        "text": "The capital of France is",
        "sampling_params": {"temperature": 0, "max_new_tokens": 4},
        "return_logprob": True, "top_logprobs_num": 2, "token_ids_logprob": ids, "logprob_start_len": 0,
    })
    assert r.status_code == 200, r.text
    meta = r.json()["meta_info"]
    out = meta["output_token_ids_logprobs"]
    assert len(out) == 4
    for step, chosen in zip(out, meta["output_token_logprobs"]):
        assert [e[1] for e in step] == ids
        assert all(e[0] <= 0 and math.isfinite(e[0]) for e in step)
        # A named id that is also the chosen token has the chosen token's logprob.
        for lp, tid, _ in step:
            if tid == chosen[1]:
                assert abs(lp - chosen[0]) < 1e-5
    # Prompt rows too: a leading null, then one list per scored prompt token.
    inp = meta["input_token_ids_logprobs"]
    assert inp[0] is None and len(inp) == meta["prompt_tokens"]
    assert all([e[1] for e in row] == ids for row in inp[1:])


def test_token_ids_logprob_per_prompt_in_a_batch(server):
    r = server.post("/generate", json={
        "text": ["Hello", "Goodbye"], "sampling_params": {"temperature": 0, "max_new_tokens": 2},
        "return_logprob": True, "token_ids_logprob": [[5], [6, 7]],
    })
    assert r.status_code == 200, r.text
    a, b = r.json()
    assert [e[1] for e in a["meta_info"]["output_token_ids_logprobs"][0]] == [5]
    assert [e[1] for e in b["meta_info"]["output_token_ids_logprobs"][0]] == [6, 7]


@pytest.mark.parametrize("body", [
    {"text": "x", "return_logprob": True, "token_ids_logprob": [10**9]},
    {"text": "x", "return_logprob": True, "token_ids_logprob": [-3]},
    {"text": "x", "return_logprob": True, "token_ids_logprob": [[[1]]]},
    {"text": "x", "return_logprob": True, "token_ids_logprob": [[1], [2]]},
    {"text": "x", "return_logprob": True, "token_ids_logprob": "1,2"},
    {"text": "x", "token_ids_logprob": [1]},
])
def test_bad_token_ids_logprob_is_a_400(server, body):
    r = server.post("/generate", json=body)
    assert r.status_code == 400, r.text
    assert "token_ids_logprob" in r.json()["error"]["message"] or "token_ids_logprob" in (r.json()["error"]["param"] or "")


def test_stop_regex_ends_the_request_with_the_pattern(server):
    # Greedy output of this prompt contains digits soon; the regex stops at the first one.
    body = {"text": "Count: 1, 2, 3, 4, 5,", "sampling_params": {"temperature": 0, "max_new_tokens": 32,
                                                               "stop_regex": "[0-9]"}}
    r = server.post("/generate", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": "[0-9]"}
    assert any(ch.isdigit() for ch in out["text"])
    # Streaming gives the same text.
    import json
    text = None
    with server.post("/generate", json={**body, "stream": True}, stream=True) as s:
        for line in s.iter_lines():
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                text = json.loads(line[6:])["text"]
    assert text == out["text"]
    c = server.post("/v1/completions", json={"model": MODEL, "prompt": "Count: 1, 2, 3,", "max_tokens": 16,
                                             "temperature": 0, "stop_regex": ["[0-9]"]}).json()
    assert c["choices"][0]["finish_reason"] == "stop"
    assert c["choices"][0]["matched_stop"] == "[0-9]"
    bad = server.post("/generate", json={"text": "x", "sampling_params": {"stop_regex": "(unclosed"}})
    assert bad.status_code == 400 and "stop_regex" in bad.json()["error"]["message"]


def sse_chunks(server, path, body):
    import json
    out = []
    with server.post(path, json=body, stream=True) as s:
        assert s.status_code == 200, s.text
        for line in s.iter_lines():
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                out.append(json.loads(line[6:]))
    return out


@pytest.mark.parametrize("path,extra", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Tell me a story."}]}),
    ("/v1/completions", {"prompt": "Once upon a time"}),
])
def test_continuous_usage_stats_on_every_chunk(server, path, extra):
    body = {"model": MODEL, "max_tokens": 8, "temperature": 0, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}, **extra}
    chunks = sse_chunks(server, path, body)
    content = [c for c in chunks if c["choices"] and c["choices"][0].get("finish_reason") is None
               and (c["choices"][0].get("delta", {}).get("content") or c["choices"][0].get("text"))]
    assert content, chunks
    seen = [c["usage"]["completion_tokens"] for c in content]
    assert all("usage" in c for c in content)
    assert seen == sorted(seen) and seen[-1] <= 8
    assert all(c["usage"]["total_tokens"] == c["usage"]["prompt_tokens"] + c["usage"]["completion_tokens"]
               for c in content)
    assert chunks[-1]["usage"]["completion_tokens"] == 8
    if path == "/v1/chat/completions":
        # SGLang's deltas carry reasoning_content (null for a model without reasoning).
        assert all("reasoning_content" in c["choices"][0]["delta"] and c["choices"][0]["delta"]["reasoning_content"] is None
                   for c in content)
    # Without the option, content chunks carry no usage.
    plain = sse_chunks(server, path, {**body, "stream_options": {"include_usage": True}})
    assert not any("usage" in c for c in plain[:-1])


def test_unknown_model_and_lora_names_in_sglangs_words(server):
    r = server.post("/v1/chat/completions", json={"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == f"The model `gpt-9` does not exist. The served model name is `{MODEL}`."
    r = server.post("/v1/completions", json={"model": MODEL + ":my-adapter", "prompt": "x"})
    assert r.status_code == 400
    assert "LoRA is not enabled" in r.json()["error"]["message"]


def test_abort_request_aborts_exactly_the_named_request_of_a_batch(server):
    import threading
    import time
    result = {}

    # The request to abort asks for far more tokens than any machine makes before the abort
    # lands; the abort is repeated until the batch returns, so it cannot arrive too early.
    def run():
        result["r"] = server.post("/generate", json={
            "text": ["Tell me a very long story.", "Write a very long poem."], "rid": ["keep-7", "kill-7"],
            "sampling_params": [{"temperature": 0, "max_new_tokens": 40, "ignore_eos": True},
                                {"temperature": 0, "max_new_tokens": 6000, "ignore_eos": True}]})

    t = threading.Thread(target=run)
    t.start()
    while t.is_alive():
        time.sleep(0.2)
        assert server.post("/abort_request", json={"rid": "kill-7"}).status_code == 200
        t.join(0.1)
    keep, kill = result["r"].json()
    assert kill["meta_info"]["finish_reason"]["type"] == "abort"
    assert kill["meta_info"]["completion_tokens"] < 6000
    assert keep["meta_info"]["finish_reason"] == {"type": "length", "length": 40}


def test_skip_tokenizer_init_takes_and_returns_ids():
    from conftest import Server
    s = Server("--skip-tokenizer-init", "--enable-cache-report")
    try:
        ids = [504, 3575, 282, 4649, 314]
        r = s.post("/generate", json={"input_ids": ids, "sampling_params": {"temperature": 0, "max_new_tokens": 5}})
        assert r.status_code == 200, r.text
        out = r.json()
        assert len(out["output_ids"]) == 5 and out["text"] == ""
        assert s.post("/generate", json={"text": "hi"}).status_code == 400
        chat = s.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
        assert chat.status_code == 400 and "skip-tokenizer-init" in chat.json()["error"]["message"]
        c = s.post("/v1/completions", json={"model": MODEL, "prompt": ids, "max_tokens": 3, "temperature": 0})
        assert c.status_code == 200, c.text
        assert s.get("/get_server_info").json()["skip_tokenizer_init"] is True
    finally:
        s.stop()


@pytest.mark.parametrize("key,value", [("seed", 3), ("temprature", 0.5), ("custom_params", {}), ("no_stop_trim", True)])
def test_unknown_or_unsupported_sampling_params_are_400s(server, key, value):
    r = server.post("/generate", json={"text": "x", "sampling_params": {key: value}})
    assert r.status_code == 400, r.text
    assert f"sampling_params.{key}" in r.json()["error"]["message"]


def test_return_hidden_states_needs_the_flag(server):
    r = server.post("/generate", json={"text": "x", "return_hidden_states": True})
    assert r.status_code == 400 and "--enable-return-hidden-states" in r.json()["error"]["message"]
    r = server.post("/generate", json={"text": "x", "return_hidden_states": "yes"})
    assert r.status_code == 400


def test_return_hidden_states_every_position_run():
    import math
    from conftest import Server
    s = Server("--enable-return-hidden-states")
    try:
        body = {"text": "The capital of France is", "return_hidden_states": True,
                "sampling_params": {"temperature": 0, "max_new_tokens": 4, "ignore_eos": True}}
        first = s.post("/generate", json=body)
        assert first.status_code == 200, first.text
        meta = first.json()["meta_info"]
        states = meta["hidden_states"]
        prompt, outputs = states[0], states[1:]
        assert len(prompt) == meta["prompt_tokens"] and len(outputs) == meta["completion_tokens"] - 1
        assert all(len(v) == 576 and all(math.isfinite(x) for x in v) for v in prompt + outputs)
        # Asked again, the prompt is recomputed (the radix cache supplies no rows) and gives the same states.
        again = s.post("/generate", json=body).json()["meta_info"]
        assert again["cached_tokens"] == 0
        for a, b in zip(prompt, again["hidden_states"][0]):
            assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4
        # The prompt plus the first output token: its last position is the first output's decode row.
        ids = first.json()["output_ids"]
        ext = s.post("/generate", json={"input_ids": s.post("/tokenize", json={"prompt": body["text"]}).json()["tokens"]
                                        + ids[:1], "return_hidden_states": True,
                                        "sampling_params": {"temperature": 0, "max_new_tokens": 1}}).json()
        last = ext["meta_info"]["hidden_states"][0][-1]
        scale = max(abs(x) for x in outputs[0])
        assert max(abs(x - y) for x, y in zip(last, outputs[0])) < 2e-2 * scale
        # The OpenAI routes give the last position's vector per choice; streaming it is refused.
        c = s.post("/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 2, "return_hidden_states": True})
        assert c.status_code == 200 and len(c.json()["choices"][0]["hidden_states"]) == 576
        c = s.post("/v1/completions", json={"model": MODEL, "prompt": "Hi", "stream": True, "return_hidden_states": True})
        assert c.status_code == 400
    finally:
        s.stop()


def test_return_sampling_mask_gives_each_tokens_support(server):
    body = {"text": "Once upon a time", "return_sampling_mask": True,
            "sampling_params": {"temperature": 1.0, "top_k": 8, "top_p": 0.9, "sampling_seed": 5,
                                "max_new_tokens": 6, "ignore_eos": True}}
    r = server.post("/generate", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    masks = out["meta_info"]["output_token_sampling_mask"]
    assert len(masks) == len(out["output_ids"]) == 6
    for mask, token in zip(masks, out["output_ids"]):
        assert token in mask and 1 <= len(mask) <= 8 and mask == sorted(set(mask))
    # Greedy: the chosen token alone. Unbounded (no top_k): refused, as SGLang does.
    greedy = server.post("/generate", json={**body, "sampling_params": {"temperature": 0, "max_new_tokens": 3}}).json()
    assert greedy["meta_info"]["output_token_sampling_mask"] == [[t] for t in greedy["output_ids"]]
    r = server.post("/generate", json={**body, "sampling_params": {"temperature": 1.0, "max_new_tokens": 3}})
    assert r.status_code == 400 and "top_k" in r.json()["error"]["message"]
    assert "output_token_sampling_mask" not in server.post("/generate", json={"text": "x"}).json()["meta_info"]

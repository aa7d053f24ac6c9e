"""Structured outputs, part two, through the real server: jump-forward (the text a grammar
forces is appended re-tokenized, without a forward pass per token) against
--disable-jump-forward, and SGLang's structural_tag on the OpenAI routes and /generate."""
import json
import re

import jsonschema
import pytest

from conftest import MODEL, Server

# Long fixed keys: most of the output is forced by the schema.
LONG_KEYS = {"type": "object", "properties": {
    "customer_full_name_as_written": {"type": "string", "maxLength": 10},
    "customer_shipping_address_city": {"enum": ["Paris", "London", "Berlin"]},
    "number_of_items_in_the_order": {"type": "integer", "minimum": 1, "maximum": 9},
    "order_requires_signature_on_delivery": {"type": "boolean"}},
    "required": ["customer_full_name_as_written", "customer_shipping_address_city",
                 "number_of_items_in_the_order", "order_requires_signature_on_delivery"]}


def metric(server, name):
    text = server.get("/metrics").text
    m = re.search(rf"^{re.escape(name)}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.M)
    assert m, f"{name} missing from /metrics"
    return float(m.group(1))


def generate_orders(server, n=4):
    outs = []
    for i in range(n):
        r = server.post("/generate", json={"text": f"Order {i} as JSON:", "sampling_params": {
            "json_schema": json.dumps(LONG_KEYS), "max_new_tokens": 120, "temperature": 0}})
        assert r.status_code == 200, r.text
        assert r.json()["meta_info"]["finish_reason"]["type"] == "stop", r.json()
        outs.append(r.json())
    return outs


@pytest.fixture(scope="module")
def servers():
    on = Server("--enable-metrics")
    try:
        off = Server("--enable-metrics", "--disable-jump-forward")
    except Exception:
        on.stop()
        raise
    yield on, off
    on.stop()
    off.stop()


def test_jump_forward_takes_fewer_forward_passes_with_valid_outputs(servers):
    on, off = servers
    assert on.get("/get_server_info").json()["disable_jump_forward"] is False
    assert off.get("/get_server_info").json()["disable_jump_forward"] is True
    before = {s: metric(s, "serval:forward_passes_total") for s in servers}
    outs = {s: generate_orders(s) for s in servers}
    passes = {s: metric(s, "serval:forward_passes_total") - before[s] for s in servers}
    for s in servers:
        for o in outs[s]:
            jsonschema.validate(json.loads(o["text"]), LONG_KEYS)
    assert metric(on, "serval:jump_forward_tokens_total") > 0
    assert metric(off, "serval:jump_forward_tokens_total") == 0
    # The keys are ~40 of each output's tokens: jump-forward skips most of their passes.
    assert passes[on] < 0.7 * passes[off], passes


def test_jump_forward_streams_the_forced_text(servers):
    on, _ = servers
    body = {"model": MODEL, "messages": [{"role": "user", "content": "An order as JSON."}], "max_tokens": 120,
            "temperature": 0.7, "seed": 3,
            "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": LONG_KEYS}}}
    plain = on.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    parts = []
    r = on.post("/v1/chat/completions", json={**body, "stream": True}, stream=True)
    assert r.status_code == 200
    for line in r.iter_lines():
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            for c in json.loads(line[6:])["choices"]:
                parts.append(c["delta"].get("content") or "")
    assert "".join(parts) == plain
    jsonschema.validate(json.loads(plain), LONG_KEYS)


def test_logprobs_requests_decode_every_token(servers):
    on, _ = servers
    r = on.post("/v1/completions", json={
        "model": MODEL, "prompt": "An order as JSON:", "max_tokens": 120, "temperature": 0, "logprobs": 1,
        "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": LONG_KEYS}}})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    jsonschema.validate(json.loads(choice["text"]), LONG_KEYS)
    lp = choice["logprobs"]
    assert len(lp["tokens"]) == r.json()["usage"]["completion_tokens"]
    assert all(v is not None for v in lp["token_logprobs"])


CITY = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}}, "required": ["city"]}
# The trigger is one character, so a logit bias on '<' opens regions.
TAG = {"type": "structural_tag", "triggers": ["<"],
       "structures": [{"begin": "<tool>", "schema": CITY, "end": "</tool>"}]}


def lt_token(server):
    ids = server.post("/tokenize", json={"prompt": "<"}).json()["tokens"]
    assert len(ids) == 1, ids
    return ids[0]


def check_tagged(text):
    regions = re.findall(r"<tool>(.*?)</tool>", text)
    for body in regions:
        jsonschema.validate(json.loads(body), CITY)
    # Outside the regions, '<' only ever starts one (the text may stop inside the last).
    rest = re.sub(r"<tool>.*?</tool>", "", text, flags=re.S)
    assert re.fullmatch(r"[^<]*(<(t(o(o(l(>.*)?)?)?)?)?)?", rest, re.S), text
    return regions


def test_structural_tag_on_chat_and_generate(servers):
    on, _ = servers
    bias = {str(lt_token(on)): 8}
    r = on.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "What is the weather in Paris? Use <tool>."}],
        "max_tokens": 60, "temperature": 0, "logit_bias": bias, "response_format": TAG})
    assert r.status_code == 200, r.text
    assert check_tagged(r.json()["choices"][0]["message"]["content"]), r.json()
    g = on.post("/generate", json={"text": "Weather lookup: ", "sampling_params": {
        "structural_tag": json.dumps(TAG), "max_new_tokens": 60, "temperature": 0, "logit_bias": bias}})
    assert g.status_code == 200, g.text
    assert check_tagged(g.json()["text"]), g.json()
    # Without the bias the model may write plain text; whatever it writes stays valid.
    plain = on.post("/generate", json={"text": "Say hello.", "sampling_params": {
        "structural_tag": TAG, "max_new_tokens": 30, "temperature": 0}})
    assert plain.status_code == 200, plain.text
    check_tagged(plain.json()["text"])


@pytest.mark.parametrize("route,body,needle", [
    ("/v1/chat/completions", {"response_format": {"type": "structural_tag", "triggers": ["<f"], "structures": []}},
     "'structures' must be a non-empty array"),
    ("/generate", {"sampling_params": {"structural_tag": json.dumps(
        {"triggers": ["<x"], "structures": [{"begin": "<f>", "schema": CITY, "end": "</f>"}]})}},
     "starts with none of the triggers"),
    ("/generate", {"sampling_params": {"structural_tag": 5}}, "structural_tag"),
])
def test_bad_structural_tags_are_400s(servers, route, body, needle):
    on, _ = servers
    base = {"/generate": {"text": "x"},
            "/v1/chat/completions": {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}}[route]
    r = on.post(route, json={**base, **body})
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"], r.text

"""Bad input gets its status and an OpenAI-style error body; the server keeps serving."""
import pytest
import requests

from conftest import MODEL, Server

CHAT = "/v1/chat/completions"
MSG = [{"role": "user", "content": "hi"}]

BAD = [
    (CHAT, b"{not json", 400),
    (CHAT, b"[1, 2]", 400),
    (CHAT, {"model": MODEL}, 400),
    (CHAT, {"model": MODEL, "messages": "hi"}, 400),
    (CHAT, {"model": MODEL, "messages": [{"role": 3, "content": "x"}]}, 400),
    (CHAT, {"model": MODEL, "messages": MSG, "max_tokens": -5}, 400),
    (CHAT, {"model": MODEL, "messages": MSG, "max_tokens": 10**9}, 400),
    (CHAT, {"model": MODEL, "messages": MSG, "max_tokens": "ten"}, 400),
    (CHAT, {"model": MODEL, "messages": MSG, "temperature": -0.5}, 400),
    (CHAT, {"model": MODEL, "messages": MSG, "top_p": 0}, 400),
    (CHAT, {"model": MODEL, "messages": MSG, "top_p": 1.01}, 400),
    (CHAT, {"model": "no-such-model", "messages": MSG}, 400),
    (CHAT, {"model": MODEL, "messages": MSG, "stop": {"a": 1}}, 400),
    (CHAT, {"model": MODEL, "messages": MSG, "n": 0}, 400),
    ("/v1/completions", {"model": MODEL, "prompt": {"x": 1}}, 400),
    ("/v1/completions", {"model": MODEL, "prompt": "x" * 50000, "max_tokens": 1}, 400),
    ("/generate", {"sampling_params": {}}, 400),
    ("/generate", {"text": "x", "sampling_params": {"temperature": "warm"}}, 400),
]


@pytest.mark.parametrize("path,body,status", BAD)
def test_bad_input(server, path, body, status):
    kw = {"data": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, bytes) else {"json": body}
    r = requests.post(server.base + path, timeout=60, **kw)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    # Still serving.
    assert requests.get(server.base + "/health", timeout=10).status_code == 200


def test_body_too_large(server):
    big = b'{"model": "smollm2", "prompt": "' + b"a" * (33 * 1024 * 1024) + b'"}'
    try:
        r = requests.post(server.base + "/v1/completions", data=big, headers={"Content-Type": "application/json"}, timeout=60)
        assert r.status_code == 413
    except requests.ConnectionError:
        # The server may close the connection after answering 413 mid-upload.
        pass
    assert requests.get(server.base + "/health", timeout=10).status_code == 200


def test_unknown_route(server):
    assert requests.get(server.base + "/v1/nothing", timeout=10).status_code == 404


def test_openai_client_raises_bad_request(server):
    import openai
    with pytest.raises(openai.BadRequestError):
        server.openai().chat.completions.create(model=MODEL, messages=MSG, temperature=-1)


def test_api_key():
    s = Server(api_key="sk-test")
    try:
        assert requests.get(s.base + "/health", timeout=10).status_code == 200
        for path in ("/v1/models", "/get_load", "/get_model_info"):
            assert requests.get(s.base + path, timeout=10).status_code == 401
            assert requests.get(s.base + path, headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 401
        r = requests.post(s.base + CHAT, json={"model": MODEL, "messages": MSG}, timeout=10)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        ok = s.openai().chat.completions.create(model=MODEL, messages=MSG, max_tokens=2)
        assert ok.choices[0].message.content is not None
    finally:
        s.stop()


def test_sglang_command_line_flags():
    # SGLang's short aliases (--tp, --dp, --ep), --trust-remote-code, --dtype and
    # --disable-overlap-schedule, as its launch commands write them.
    s = Server("--tp", "1", "--dp", "1", "--ep", "1", "--trust-remote-code", "--dtype", "float32",
               "--disable-overlap-schedule")
    try:
        info = s.get("/get_server_info").json()
        assert info["tp_size"] == 1 and info["dp_size"] == 1
        assert info["base_gpu_id"] == 0 and info["gpu_id_step"] == 1
        assert info["dtype"] == "float32" and info["disable_overlap_schedule"] is True
        r = s.post("/generate", json={"text": "Hi", "sampling_params": {"max_new_tokens": 2}})
        assert r.status_code == 200, r.text
    finally:
        s.stop()


def test_overlap_schedule_is_reported_and_gives_the_same_tokens(server):
    # On the CPU the default server runs its steps one after another; --enable-overlap-schedule
    # plans each step while the previous one runs (the CUDA default). Greedy output, a stop
    # string and max_new_tokens come out the same either way.
    s = Server("--enable-overlap-schedule")
    try:
        assert s.get("/get_server_info").json()["disable_overlap_schedule"] is False
        assert server.get("/get_server_info").json()["disable_overlap_schedule"] is True
        for params in ({"max_new_tokens": 12, "temperature": 0},
                       {"max_new_tokens": 16, "temperature": 0, "stop": [" the"]},
                       {"max_new_tokens": 8, "temperature": 0.8, "sampling_seed": 7}):
            body = {"text": ["Once upon a time", "The capital of France is"], "sampling_params": params}
            on = s.post("/generate", json=body)
            off = server.post("/generate", json=body)
            assert off.status_code == 200 and on.status_code == 200, (off.text, on.text)
            for a, b in zip(off.json(), on.json()):
                assert a["output_ids"] == b["output_ids"] and a["text"] == b["text"], params
                assert a["meta_info"]["finish_reason"] == b["meta_info"]["finish_reason"]
    finally:
        s.stop()
    with pytest.raises(RuntimeError, match="contradict"):
        Server("--enable-overlap-schedule", "--disable-overlap-schedule")


def test_impossible_settings_fail_at_startup():
    with pytest.raises(RuntimeError, match="cuda"):
        Server("--device", "cuda")
    with pytest.raises(RuntimeError, match="schedule-policy"):
        Server("--schedule-policy", "nope")
    with pytest.raises(RuntimeError, match="dtype float16"):
        Server("--dtype", "float16")

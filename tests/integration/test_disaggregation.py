"""Prefill-decode disaggregation on loopback: a prefill server, a decode server and
`launch-router --pd-disaggregation` give one plain server's greedy tokens (the default model
and the tiny DeepSeek-V3 checkpoint, whose KV is MLA latent rows), and the faults end with a
clear error and every reserved KV slot given back.

Ports: $SERVAL_TEST_PORTS ("31000-31499") picks them from that range, else the OS does."""
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import ROOT, Server, find_binary, free_port

DEEPSEEK = ROOT / "Tests/ServalTestSupport/Fixtures/deepseek/v3"
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea, there lived",
]


def _ports():
    spec = os.environ.get("SERVAL_TEST_PORTS")
    if not spec:
        while True:
            yield free_port()
    lo, hi = (int(x) for x in spec.split("-"))
    for p in range(lo, hi + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        yield p


PORTS = _ports()


def port():
    return next(PORTS)


class PDRouter:
    """`serval launch-router --pd-disaggregation` over given prefill (url, bootstrap port) and decode urls."""

    def __init__(self, prefills, decodes, *extra, startup_timeout=60):
        self.port = port()
        self.base = f"http://127.0.0.1:{self.port}"
        args = [str(find_binary()), "launch-router", "--port", str(self.port), "--pd-disaggregation",
                "--health-check-interval-secs", "1", "--random-seed", "1"]
        for url, bport in prefills:
            args += ["--prefill", url, str(bport)]
        for url in decodes:
            args += ["--decode", url]
        args += extra
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"serval-pd-router-{self.port}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + startup_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"router exited: {self.log_path.read_text()[-3000:]}")
            try:
                ws = requests.get(self.base + "/workers", timeout=2).json()["workers"]
                if len(ws) == len(prefills) + len(decodes) and all(w["is_healthy"] for w in ws):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"router not ready: {self.log_path.read_text()[-3000:]}")

    def post(self, path, **kw):
        return requests.post(self.base + path, timeout=kw.pop("timeout", 300), **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def prefill_server(*extra, model=None):
    bport = port()
    s = Server("--disaggregation-mode", "prefill", "--disaggregation-bootstrap-port", str(bport), *extra,
               model=model, port=port())
    s.bootstrap_port = bport
    return s


def decode_server(*extra, model=None):
    return Server("--disaggregation-mode", "decode", *extra, model=model, port=port())


def greedy(text, n=12):
    return {"text": text, "sampling_params": {"temperature": 0, "max_new_tokens": n, "ignore_eos": True}}


def with_room(body, prefill, room):
    return dict(body, bootstrap_host="127.0.0.1", bootstrap_port=prefill.bootstrap_port, bootstrap_room=room)


def quietly(f, *args, **kw):
    """`f(*args, **kw)` for a background thread whose answer (or broken connection) does not matter."""
    def run():
        try:
            f(*args, **kw)
        except requests.RequestException:
            pass
    return run


def pool_is_empty(server):
    """No request holds KV: after flushing the radix cache every slot is free."""
    deadline = time.time() + 10
    while time.time() < deadline:
        load = server.load()
        if load["num_reqs"] == 0 and server.post("/flush_cache").status_code == 200:
            if server.load()["num_tokens"] == 0:
                return True
        time.sleep(0.2)
    return False


def pd_set(extra, chunk):
    """A plain server, a prefill and a decode server and the PD router over them, all started
    with `extra`; the prefill side in chunks of `chunk` tokens."""
    plain = Server(*extra, port=port())
    prefill = prefill_server(*extra, "--chunked-prefill-size", chunk)
    decode = decode_server(*extra, "--disaggregation-decode-timeout", "60")
    router = PDRouter([(prefill.base, prefill.bootstrap_port)], [decode.base])
    yield plain, prefill, decode, router
    router.stop()
    for s in (decode, prefill, plain):
        s.stop()


def assert_pd_matches_plain(plain, router, text):
    """The router's greedy answer to `text` has the plain server's tokens; returns its JSON."""
    want = plain.post("/generate", json=greedy(text)).json()
    got = router.post("/generate", json=greedy(text))
    assert got.status_code == 200, got.text
    assert got.json()["output_ids"] == want["output_ids"], text
    return got.json()


@pytest.fixture(scope="module")
def llama():
    yield from pd_set((), "16")


def test_pd_gives_the_plain_servers_greedy_tokens(llama):
    plain, _, decode, router = llama
    for text in PROMPTS:
        got = assert_pd_matches_plain(plain, router, text)
        assert got["meta_info"]["finish_reason"]["type"] == "length"
    # The decode side cached the prompts it received: the same prompt again matches them.
    again = router.post("/generate", json=greedy(PROMPTS[2])).json()
    assert again["meta_info"]["cached_tokens"] > 0
    assert again["output_ids"] == plain.post("/generate", json=greedy(PROMPTS[2])).json()["output_ids"]
    assert pool_is_empty(decode)


def test_pd_streams_chat_from_the_decode_side(llama):
    plain, _, _, router = llama
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Name three colours."}],
            "max_tokens": 10, "temperature": 0}
    want = plain.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    r = router.post("/v1/chat/completions", json=dict(body, stream=True), stream=True)
    assert r.status_code == 200
    text = ""
    for line in r.iter_lines():
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            chunk = json.loads(line[6:])
            assert "error" not in chunk, chunk
            text += chunk["choices"][0]["delta"].get("content") or ""
    assert text == want
    comp = router.post("/v1/completions", json={"model": "smollm2", "prompt": PROMPTS[0], "max_tokens": 6,
                                                "temperature": 0}).json()
    assert comp["choices"][0]["text"] == plain.post(
        "/v1/completions", json={"model": "smollm2", "prompt": PROMPTS[0], "max_tokens": 6,
                                 "temperature": 0}).json()["choices"][0]["text"]


def test_first_token_logprobs_cross_from_the_prefill_side(llama):
    plain, _, _, router = llama
    body = dict(greedy(PROMPTS[0], n=5), return_logprob=True, top_logprobs_num=3)
    want = plain.post("/generate", json=body).json()["meta_info"]
    got = router.post("/generate", json=body)
    assert got.status_code == 200, got.text
    got = got.json()["meta_info"]
    assert len(got["output_token_logprobs"]) == 5
    for w, g in zip(want["output_token_logprobs"], got["output_token_logprobs"]):
        assert g[1] == w[1] and abs(g[0] - w[0]) < 2e-3, (w, g)
    for w, g in zip(want["output_top_logprobs"], got["output_top_logprobs"]):
        assert [t[1] for t in g] == [t[1] for t in w]
    chat = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 3,
            "temperature": 0, "logprobs": True, "top_logprobs": 2}
    w = plain.post("/v1/chat/completions", json=chat).json()["choices"][0]["logprobs"]["content"]
    g = router.post("/v1/chat/completions", json=chat).json()["choices"][0]["logprobs"]["content"]
    assert [t["token"] for t in g] == [t["token"] for t in w]
    assert all(abs(a["logprob"] - b["logprob"]) < 2e-3 for a, b in zip(g, w))


def test_router_lists_worker_roles_and_refuses_untyped_workers(llama):
    _, prefill, decode, router = llama
    listing = requests.get(router.base + "/workers", timeout=10).json()
    roles = {w["url"]: (w["worker_type"], w.get("bootstrap_port")) for w in listing["workers"]}
    assert roles == {prefill.base: ("prefill", prefill.bootstrap_port), decode.base: ("decode", None)}
    assert listing["stats"] == {"prefill_count": 1, "decode_count": 1, "regular_count": 0}
    r = router.post("/workers", json={"url": "http://127.0.0.1:1"})
    assert r.status_code == 400 and "PD mode" in r.text


def test_requests_without_or_with_misplaced_bootstrap_fields_are_refused(llama):
    plain, prefill, decode, router = llama
    r = decode.post("/generate", json=greedy("hi"))
    assert r.status_code == 400 and "bootstrap_room" in r.text and "--pd-disaggregation" in r.text
    r = prefill.post("/generate", json=greedy("hi"))
    assert r.status_code == 400 and "disaggregation-mode prefill" in r.text
    r = plain.post("/generate", json=with_room(greedy("hi"), prefill, 5))
    assert r.status_code == 400 and "--disaggregation-mode" in r.text
    r = decode.post("/generate", json=dict(greedy("hi"), bootstrap_room=3))
    assert r.status_code == 400 and "bootstrap_host" in r.text
    body = with_room(greedy("hi there"), prefill, 9)
    body["return_logprob"] = True
    body["logprob_start_len"] = 0
    r = decode.post("/generate", json=body)
    assert r.status_code == 400 and "prompt logprobs" in r.text
    r = router.post("/generate", json=dict(greedy("hi"), bootstrap_room=1))
    assert r.status_code == 400 and "set by the router" in r.text


def test_a_prefill_error_reaches_the_client_and_frees_the_decode_slots(llama):
    _, _, decode, router = llama
    # Valid for the decode side's parser but refused by the prefill (and decode) engine: too long.
    r = router.post("/generate", json=greedy("word " * 9000, n=4))
    assert r.status_code == 400, r.text
    assert pool_is_empty(decode)


def test_a_refusal_by_the_prefill_side_alone_cancels_the_decode_request(llama):
    _, _, decode, _ = llama
    # The prefill server's context is too short for the prompt; the decode server's is not, so
    # it reserves slots and waits for KV that will never come until the router cancels it.
    short = prefill_server("--context-length", "24")
    router = PDRouter([(short.base, short.bootstrap_port)], [decode.base])
    try:
        text = "A rather long prompt that the prefill server cannot take " * 3
        r = router.post("/generate", json=greedy(text), timeout=30)
        assert r.status_code == 400 and "context length" in r.text, r.text
        assert pool_is_empty(decode)
        # Streaming: if the decode side's stream began first, the prefill's error is its last
        # event; else the client gets the prefill's 400 as above.
        r = router.post("/generate", json=dict(greedy(text), stream=True), timeout=30)
        if r.status_code == 200:
            events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
            assert events and "answered 400" in events[-1]["error"]["message"], r.text
            assert "context length" in events[-1]["error"]["message"]
            assert r.text.rstrip().endswith("data: [DONE]")
        else:
            assert r.status_code == 400 and "context length" in r.text, r.text
        assert pool_is_empty(decode)
    finally:
        router.stop()
        short.stop()


def test_an_unreachable_prefill_worker_is_left_out_and_another_pair_serves(llama):
    plain, prefill, decode, _ = llama
    gone = prefill_server()
    router = PDRouter([(gone.base, gone.bootstrap_port), (prefill.base, prefill.bootstrap_port)], [decode.base],
                      "--prefill-policy", "round_robin")
    try:
        gone.stop(sig=signal.SIGKILL)
        # Before the health checks notice, round robin sends every other prompt to the dead one.
        for i in range(4):
            body = greedy(f"Question {i}: what is {i} plus {i}?", n=4)
            r = router.post("/generate", json=body, timeout=60)
            assert r.status_code == 200, r.text
            assert r.json()["output_ids"] == plain.post("/generate", json=body).json()["output_ids"]
        assert "PD attempt 1/" in router.log_path.read_text()
        assert pool_is_empty(decode)
    finally:
        router.stop()


def test_pd_requests_go_through_the_routers_admission_limit(llama):
    _, prefill, decode, _ = llama
    router = PDRouter([(prefill.base, prefill.bootstrap_port)], [decode.base],
                      "--max-concurrent-requests", "1", "--queue-size", "0")
    try:
        r = router.post("/generate", json=dict(greedy("Count to fifty:", n=60), stream=True), stream=True)
        assert r.status_code == 200
        second = router.post("/generate", json=greedy("hi", n=2))
        assert second.status_code == 429, second.text
        r.close()
    finally:
        router.stop()


def test_prefill_killed_mid_transfer_ends_with_a_clear_error_and_frees_slots(llama):
    _, _, decode, _ = llama
    doomed = prefill_server("--chunked-prefill-size", "8")
    body = with_room(greedy("The history of the printing press " * 120, n=8), doomed, 4242)
    result = {}
    t = threading.Thread(target=lambda: result.update(r=decode.post("/generate", json=body)))
    t.start()
    threading.Thread(target=quietly(doomed.post, "/generate", json=body), daemon=True).start()
    # The decode side holds the slots and reads pages (it counts the request as running);
    # the prompt's ~100 chunks of 8 take a while, so kill the prefill server part way (with a
    # third of that prompt, the faster CPU kernels sometimes finished it within the 0.3 s).
    deadline = time.time() + 60
    while time.time() < deadline and decode.load()["num_running_reqs"] == 0:
        time.sleep(0.05)
    time.sleep(0.3)
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait()
    doomed.stop()
    t.join(120)
    r = result["r"]
    assert r.status_code == 200, r.text
    finish = r.json()["meta_info"]["finish_reason"]
    assert finish["type"] == "abort"
    assert "KV transfer" in finish["message"] and "closed the connection" in finish["message"], finish
    assert pool_is_empty(decode)


def test_full_decode_pool_queues_then_serves_and_timeout_frees_slots(llama):
    plain, prefill, _, _ = llama
    # Pool of 160 tokens: each request needs ~70 prompt + 40 output, so two cannot run at once.
    small = decode_server("--max-total-tokens", "160", "--disaggregation-decode-timeout", "4")
    try:
        texts = ["Tell me about the ocean. " * 12, "Tell me about mountains. " * 12]
        want = [plain.post("/generate", json=greedy(t, n=40)).json()["output_ids"] for t in texts]
        results = [None, None]

        def run(i):
            body = with_room(greedy(texts[i], n=40), prefill, 100 + i)
            threading.Thread(target=quietly(prefill.post, "/generate", json=body), daemon=True).start()
            results[i] = small.post("/generate", json=body)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for th in threads:
            th.start()
        saw_queued = False
        while any(th.is_alive() for th in threads):
            saw_queued = saw_queued or small.load()["num_waiting_reqs"] > 0
            time.sleep(0.05)
        for i in range(2):
            assert results[i].status_code == 200, results[i].text
            assert results[i].json()["output_ids"] == want[i]
        assert saw_queued, "the second request should have waited for slots"
        # A room that no prefill request ever fills: the decode side gives up after 4 s.
        start = time.time()
        r = small.post("/generate", json=with_room(greedy("Nobody prefills this."), prefill, 777))
        finish = r.json()["meta_info"]["finish_reason"]
        assert finish["type"] == "abort" and "timed out" in finish["message"], finish
        assert 3.5 < time.time() - start < 30
        assert pool_is_empty(small)
    finally:
        small.stop()


@pytest.fixture(scope="module")
def deepseek():
    if not (DEEPSEEK / "config.json").exists():
        pytest.skip("DeepSeek fixture missing")
    args = ("--max-total-tokens", "4096", "--kv-cache-dtype", "f32")
    prefill = prefill_server(*args, "--chunked-prefill-size", "16", model=DEEPSEEK)
    decode = decode_server(*args, model=DEEPSEEK)
    router = PDRouter([(prefill.base, prefill.bootstrap_port)], [decode.base])
    yield prefill, decode, router
    router.stop()
    decode.stop()
    prefill.stop()


def test_pd_moves_mla_latent_pages_and_gives_transformers_tokens(deepseek):
    _, decode, router = deepseek
    ref = json.loads((DEEPSEEK / "reference.json").read_text())
    for case in ref["cases"]:
        body = {"input_ids": case["prompt_ids"],
                "sampling_params": {"temperature": 0, "max_new_tokens": len(case["greedy_ids"]), "ignore_eos": True}}
        r = router.post("/generate", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["output_ids"] == case["greedy_ids"]
    assert pool_is_empty(decode)


def test_mismatched_kv_pools_are_refused_with_both_layouts_named(llama, deepseek):
    _, prefill, _, _ = llama
    _, ds_decode, _ = deepseek
    body = {"input_ids": [1, 2, 3, 4], "sampling_params": {"temperature": 0, "max_new_tokens": 2},
            "bootstrap_host": "127.0.0.1", "bootstrap_port": prefill.bootstrap_port, "bootstrap_room": 31337}
    r = ds_decode.post("/generate", json=body)
    finish = r.json()["meta_info"]["finish_reason"]
    assert finish["type"] == "abort" and "differs from the prefill server's" in finish["message"], finish
    assert pool_is_empty(ds_decode)


@pytest.fixture(scope="module")
def llama_tp():
    """Tensor parallel on both sides: every rank holds its own KV heads' shard (SmolLM2's 3 KV
    heads over 2 ranks: 1 + 2), rank 0 gathers them on the prefill side and scatters them on
    the decode side."""
    yield from pd_set(("--tp-size", "2", "--threads", "1"), "4")


def test_pd_with_tp_ranks_gives_the_plain_tp_servers_greedy_tokens(llama_tp):
    plain, _, decode, router = llama_tp
    for text in PROMPTS:
        assert_pd_matches_plain(plain, router, text)
    # The decode side's radix cache holds what the ranks received: a repeat matches it.
    again = router.post("/generate", json=greedy(PROMPTS[2])).json()
    assert again["meta_info"]["cached_tokens"] > 0
    assert again["output_ids"] == plain.post("/generate", json=greedy(PROMPTS[2])).json()["output_ids"]
    assert pool_is_empty(decode)


def test_pd_with_tp_ranks_moves_replicated_mla_latent_rows(llama_tp):
    """DeepSeek under TP=2: every rank holds the whole latent row; each rank's copy crosses and
    lands in its own pool. Greedy tokens equal a plain TP=2 server's."""
    if not (DEEPSEEK / "config.json").exists():
        pytest.skip("DeepSeek fixture missing")
    args = ("--tp-size", "2", "--threads", "1", "--max-total-tokens", "4096", "--kv-cache-dtype", "f32")
    plain = Server(*args, model=DEEPSEEK, port=port())
    prefill = prefill_server(*args, "--chunked-prefill-size", "4", model=DEEPSEEK)
    decode = decode_server(*args, model=DEEPSEEK)
    router = PDRouter([(prefill.base, prefill.bootstrap_port)], [decode.base])
    try:
        ref = json.loads((DEEPSEEK / "reference.json").read_text())
        for case in ref["cases"]:
            body = {"input_ids": case["prompt_ids"], "sampling_params": {
                "temperature": 0, "max_new_tokens": len(case["greedy_ids"]), "ignore_eos": True}}
            want = plain.post("/generate", json=body).json()["output_ids"]
            r = router.post("/generate", json=body)
            assert r.status_code == 200, r.text
            assert r.json()["output_ids"] == want
        assert pool_is_empty(decode)
    finally:
        router.stop()
        for s in (decode, prefill, plain):
            s.stop()


def test_pd_pair_of_different_tp_sizes_is_refused_at_bootstrap(llama_tp):
    _, prefill, _, _ = llama_tp
    single = decode_server("--threads", "1")
    try:
        r = single.post("/generate", json=with_room(greedy("hello there"), prefill, 4242))
        finish = r.json()["meta_info"]["finish_reason"]
        assert finish["type"] == "abort", finish
        assert "--tp-size 1 and the prefill server --tp-size 2" in finish["message"], finish
        assert "same --tp-size" in finish["message"], finish
        assert pool_is_empty(single)
    finally:
        single.stop()


@pytest.mark.parametrize("args, message", [
    (["launch-server", "--disaggregation-mode", "prefill", "--disaggregation-transfer-backend", "nccl"],
     "needs --device cuda on both servers"),
    (["launch-server", "--disaggregation-mode", "decode", "--disaggregation-transfer-backend", "gloo"],
     "must be tcp or nccl"),
    (["launch-server", "--disaggregation-mode", "decode", "--disaggregation-transfer-backend", "mooncake"],
     "not available in Serval; use tcp"),
    (["launch-server", "--disaggregation-mode", "both"], "must be null, prefill or decode"),
    (["launch-server", "--disaggregation-mode", "prefill", "--dp-size", "2"], "with --dp-size > 1"),
    (["launch-server", "--disaggregation-mode", "decode", "--tp-size", "2", "--dp-size", "2",
      "--enable-dp-attention"], "with --dp-size > 1"),
    (["launch-server", "--disaggregation-mode", "prefill", "--disaggregation-decode-timeout", "0"],
     "--disaggregation-decode-timeout must be positive"),
    (["launch-router", "--pd-disaggregation", "--prefill", "http://127.0.0.1:1"], "one --decode URL"),
    (["launch-router", "--decode", "http://127.0.0.1:1"], "need --pd-disaggregation"),
    (["launch-router", "--pd-disaggregation", "--prefill", "http://127.0.0.1:1", "99999", "--decode",
      "http://127.0.0.1:2"], "bootstrap port '99999'"),
])
def test_flags_that_cannot_be_honoured_are_refused_at_startup(args, message):
    binary = find_binary()
    if binary is None or not binary.exists():
        pytest.skip("serval binary not found")
    r = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert message in r.stderr + r.stdout, r.stderr

"""DeepSeek (MLA + MoE) over CPU rank processes through the real server: the tiny
checkpoints made with transformers (Tests/ServalTestSupport/Fixtures/deepseek) give one
rank's greedy tokens with TP=2 (MLA heads split, the latent cache whole on every rank, each
expert's width split), with DP attention 2 and EP 2 over 2 ranks, and with DP attention 2
over 4 ranks (attention TP inside each group), and with EP 2 over 4 ranks (each EP rank's
experts split by width over its 2 ranks). Greedy tokens are compared as ids on the fixtures' reference
prompts (1, 7, 64 and 300 tokens), one request at a time and as one concurrent batch
(docs/parallelism.md)."""
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT, Server

FIXTURES = ROOT / "Tests/ServalTestSupport/Fixtures/deepseek"
COMMON = ("--max-total-tokens", "4096", "--kv-cache-dtype", "f32")

needs_two_cores = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="2 ranks need 2 cores")


def cases(name):
    return json.loads((FIXTURES / name / "reference.json").read_text())["cases"]


def greedy(server, name, concurrent=False):
    def one(case):
        body = {"input_ids": case["prompt_ids"], "sampling_params": {
            "temperature": 0, "max_new_tokens": len(case["greedy_ids"]), "ignore_eos": True}}
        r = server.post("/generate", json=body)
        assert r.status_code == 200, r.text
        return r.json()["output_ids"]
    if concurrent:
        with ThreadPoolExecutor(len(cases(name))) as pool:
            return list(pool.map(one, cases(name)))
    return [one(c) for c in cases(name)]


@pytest.fixture(scope="module")
def one_rank():
    """Each fixture's greedy tokens on one rank (which test_deepseek.py checks against transformers)."""
    out = {}
    for name in ["v2-lite", "v2-group", "v3"]:
        s = Server(*COMMON, "--threads", "1", model=FIXTURES / name)
        try:
            out[name] = greedy(s, name)
        finally:
            s.stop()
    return out


@needs_two_cores
@pytest.mark.parametrize("name", ["v2-lite", "v2-group", "v3"])
def test_tp2_gives_one_ranks_greedy_tokens(one_rank, name):
    s = Server(*COMMON, "--tp-size", "2", model=FIXTURES / name)
    try:
        assert s.get("/get_server_info").json()["tp_size"] == 2
        assert greedy(s, name) == one_rank[name]
        assert greedy(s, name, concurrent=True) == one_rank[name]
        assert one_rank[name] == [c["greedy_ids"] for c in cases(name)]
    finally:
        assert s.stop() == 0


@needs_two_cores
@pytest.mark.parametrize("name,flags", [
    ("v3", ["--dp-size", "2", "--enable-dp-attention"]),
    ("v2-lite", ["--dp-size", "2", "--enable-dp-attention"]),
    ("v3", ["--ep-size", "2"]),
    ("v3", ["--dp-size", "2", "--enable-dp-attention", "--ep-size", "2"]),
    ("v2-group", ["--dp-size", "2", "--enable-dp-attention", "--ep-size", "2"]),
])
def test_dp_attention_and_expert_parallel_give_one_ranks_greedy_tokens(one_rank, name, flags):
    s = Server(*COMMON, "--tp-size", "2", *flags, model=FIXTURES / name)
    try:
        # One request at a time goes to each DP group in turn; a concurrent batch spreads over both,
        # and a group left without requests runs idle passes in step with the other.
        assert greedy(s, name) == one_rank[name]
        assert greedy(s, name, concurrent=True) == one_rank[name]
        load = s.get("/get_load").json()[0]
        dp = "--enable-dp-attention" in flags
        assert load["max_total_num_tokens"] == (8192 if dp else 4096), load
    finally:
        assert s.stop() == 0
    log = s.log_path.read_text()
    if dp:
        assert "rank 1: DP attention group 1's KV pool of 4096 tokens" in log
        # The capacity effect: the same per-rank pool holds twice the tokens server-wide.
        assert "480 latent bytes per token per rank" in log or name != "v3"
        assert "the server holds 4096 tokens; DP attention 2" in log and "the server holds 8192 tokens" in log


@needs_two_cores
@pytest.mark.parametrize("name,flags", [
    ("v3", []),
    ("v3", ["--ep-size", "4"]),
    ("v3", ["--ep-size", "2"]),
    ("v2-lite", []),
])
def test_dp_attention_2_of_tp_4_gives_one_ranks_greedy_tokens(one_rank, name, flags, monkeypatch):
    """DP attention with attention TP inside each group: 4 rank processes in 2 groups of 2 (heads
    split inside a group, the latent cache replicated inside it and split across the groups; the
    MoE and dense layers over all 4 ranks). 4 ranks on 2 cores: --threads 1 and the cores rule lifted."""
    monkeypatch.setenv("SERVAL_CPU_OVERSUBSCRIBE", "1")
    s = Server(*COMMON, "--tp-size", "4", "--dp-size", "2", "--enable-dp-attention", "--threads", "1", *flags,
               model=FIXTURES / name)
    try:
        assert greedy(s, name) == one_rank[name]
        assert greedy(s, name, concurrent=True) == one_rank[name]
        # Two groups of 4096 tokens each (--max-total-tokens is per DP group, as in SGLang).
        assert s.get("/get_load").json()[0]["max_total_num_tokens"] == 8192
    finally:
        assert s.stop() == 0
    log = s.log_path.read_text()
    assert "DP attention 2 (2 ranks, heads split, per group)" in log
    for rank, group in [(1, 0), (2, 1), (3, 1)]:
        assert f"rank {rank}: DP attention group {group}'s KV pool of 4096 tokens" in log
    # The capacity line: each rank holds its group's whole latent rows (4096 tokens), the server
    # twice that; TP=4 would hold 4096 in all, DP attention 4 four times as many.
    assert "DP attention 2 running): 480 latent bytes per token per rank" in log or name != "v3"
    assert ("the server holds 4096 tokens; DP attention 2 (latent rows replicated on the 2 ranks of a group, "
            "each group only its own requests' rows): the server holds 8192 tokens; DP attention 4 (each rank "
            "only its own requests' rows): the server holds 16384 tokens") in log


@needs_two_cores
@pytest.mark.parametrize("name", ["v3", "v2-group"])
def test_expert_parallel_over_a_subset_of_the_ranks_gives_one_ranks_greedy_tokens(one_rank, name, monkeypatch):
    """--tp-size 4 --ep-size 2: EP rank e is ranks 2e and 2e+1, which hold the same experts and split
    each one's width; the heads are split over all 4 ranks. 4 ranks on 2 cores, as above."""
    monkeypatch.setenv("SERVAL_CPU_OVERSUBSCRIBE", "1")
    s = Server(*COMMON, "--tp-size", "4", "--ep-size", "2", "--threads", "1", model=FIXTURES / name)
    try:
        assert greedy(s, name) == one_rank[name]
        assert greedy(s, name, concurrent=True) == one_rank[name]
        assert s.get("/get_server_info").json()["ep_size"] == 2
    finally:
        assert s.stop() == 0
    assert "expert parallel 2" in s.log_path.read_text()


def test_dp_attention_refuses_kv_events():
    import subprocess
    from conftest import find_binary, free_port
    binary = find_binary()
    if binary is None or not binary.exists():
        pytest.skip("serval binary missing")
    out = subprocess.run([str(binary), "launch-server", "--model-path", str(FIXTURES / "v3"), "--port",
                          str(free_port()), "--tp-size", "2", "--dp-size", "2", "--enable-dp-attention",
                          "--kv-events-config", '{"publisher": "http"}'], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "--kv-events-config is not available with --enable-dp-attention" in out.stderr + out.stdout, out.stderr

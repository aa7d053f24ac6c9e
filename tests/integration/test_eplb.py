"""Expert load recording, EPLB and two-batch overlap on 2 CPU ranks with EP 2 (docs/eplb.md).

The tiny v3 DeepSeek fixture gives the same greedy tokens with EPLB on (redundant experts, a
rebalance every few passes, so requests run before and after the experts move) and with TBO on
as with both off. A copy of it whose router favours experts 0, 1, 4 and 5 (all on rank 0 in the
trivial placement; scripts/eplb-skewed-fixture.py) shows the recorded balancedness per layer
rising once the experts are placed from a dump of that load, and after EPLB rebalances."""
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT, Server

FIXTURES = ROOT / "Tests/ServalTestSupport/Fixtures/deepseek"
COMMON = ("--max-total-tokens", "4096", "--kv-cache-dtype", "f32", "--tp-size", "2", "--ep-size", "2")

pytestmark = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="2 ranks need 2 cores")


def cases(model):
    return json.loads((model / "reference.json").read_text())["cases"]


def generate(server, prompt, n):
    body = {"input_ids": prompt, "sampling_params": {"temperature": 0, "max_new_tokens": n, "ignore_eos": True}}
    r = server.post("/generate", json=body)
    assert r.status_code == 200, r.text
    return r.json()["output_ids"]


def greedy(server, model, concurrent=False):
    work = [(c["prompt_ids"], len(c["greedy_ids"])) for c in cases(model)]
    if concurrent:
        with ThreadPoolExecutor(len(work)) as pool:
            return list(pool.map(lambda w: generate(server, *w), work))
    return [generate(server, *w) for w in work]


def run(model, *flags, body=None):
    s = Server(*COMMON, *flags, model=model)
    try:
        return body(s)
    finally:
        assert s.stop() == 0


def test_eplb_and_tbo_keep_greedy_tokens():
    v3 = FIXTURES / "v3"
    both_off = run(v3, body=lambda s: greedy(s, v3))
    assert both_off == [c["greedy_ids"] for c in cases(v3)]

    def eplb(s):
        out = greedy(s, v3), greedy(s, v3, concurrent=True)
        return out, s.log_path
    (one, batch), log = run(v3, "--enable-eplb", "--ep-num-redundant-experts", "2",
                            "--eplb-rebalance-num-iterations", "5", body=eplb)
    assert one == both_off and batch == both_off
    text = log.read_text()
    assert text.count("eplb: rebalanced") >= 2, text[-2000:]
    assert "experts moved" in text

    tbo = run(v3, "--enable-two-batch-overlap", body=lambda s: (greedy(s, v3), greedy(s, v3, concurrent=True)))
    assert tbo == (both_off, both_off)


def test_eplb_on_dummy_weights_keeps_greedy_tokens():
    """Dummy weights are drawn per tensor name, so a replica or a moved expert equals the original:
    EPLB with redundant experts on a dummy of the v3 config gives the plain dummy's greedy tokens."""
    v3 = FIXTURES / "v3"
    plain = run(v3, "--load-format", "dummy", body=lambda s: greedy(s, v3))
    moved = run(v3, "--load-format", "dummy", "--enable-eplb", "--ep-num-redundant-experts", "2",
                "--eplb-rebalance-num-iterations", "5", body=lambda s: (greedy(s, v3), s.log_path.read_text()))
    assert moved[0] == plain
    assert "eplb: rebalanced" in moved[1], moved[1][-2000:]


@pytest.fixture(scope="module")
def skewed(tmp_path_factory):
    pytest.importorskip("numpy")
    out = tmp_path_factory.mktemp("skewed")
    subprocess.run([sys.executable, str(ROOT / "scripts/eplb-skewed-fixture.py"), str(out)], check=True,
                   capture_output=True)
    return out


PROMPTS = [[(11 * i + 3 * j) % 240 + 10 for j in range(24)] for i in range(6)]  # no shared prefix, not the warm-up's


def recorded(server):
    """Starts a record window, runs the prompts, stops, dumps."""
    assert server.post("/start_expert_distribution_record").text == "Start recording the expert distribution.\n"
    tokens = [generate(server, p, 8) for p in PROMPTS]
    assert server.post("/stop_expert_distribution_record").text == "Stop recording the expert distribution.\n"
    r = server.post("/dump_expert_distribution_record")
    assert r.status_code == 200, r.text
    return tokens, r.json()


def test_skewed_routing_balancedness_rises_after_rebalancing(skewed, tmp_path):
    def before(s):
        tokens, dump = recorded(s)
        metrics = s.get("/metrics").text
        return tokens, dump, metrics
    tokens, dump, metrics = run(skewed, "--enable-metrics", body=before)
    assert dump["layer_ids"] == [1, 2] and dump["ep_size"] == 2 and dump["num_physical_experts"] == 16
    routed = sum(len(p) + 7 for p in PROMPTS) * 3  # prompt + 7 decode steps, top-3
    for layer in range(2):
        assert sum(dump["logical_count"][layer]) == routed
        assert sum(dump["rank_load"][layer]) == routed
        # The favoured experts 0, 1, 4, 5 all live on rank 0.
        assert dump["balancedness"][layer] < 0.6, dump
    assert 'sglang:eplb_balancedness{model_name="smollm2",layer="1"}' in metrics
    path = tmp_path / "dump.json"
    path.write_text(json.dumps(dump))

    # Placed from the dump, with 2 redundant slots: the hot experts spread over both ranks.
    after_tokens, after = run(skewed, "--init-expert-location", str(path), "--ep-num-redundant-experts", "2",
                              body=recorded)
    assert after_tokens == tokens
    assert after["num_physical_experts"] == 18
    for layer in range(2):
        assert after["logical_count"][layer] == dump["logical_count"][layer]
        assert after["balancedness"][layer] > 0.85, after
        assert after["balancedness"][layer] > dump["balancedness"][layer]

    # EPLB online: a rebalance every 10 passes moves the experts while serving.
    def online(s):
        first = [generate(s, p, 8) for p in PROMPTS]
        return first, recorded(s), s.log_path
    first, (again, window), log = run(skewed, "--enable-eplb", "--eplb-rebalance-num-iterations", "10",
                                      "--ep-num-redundant-experts", "2", body=online)
    assert first == tokens and again == tokens
    assert "experts moved" in log.read_text()
    for layer in range(2):
        assert window["balancedness"][layer] > 0.85, window


def test_dp_attention_with_redundant_experts_from_a_placement_file(tmp_path):
    """DP attention + EP 2: a placement table taken as is (18 slots, experts 15 and 14 twice; a
    row per model layer, as SGLang writes it), recorded through the DP coordinator; greedy tokens
    unchanged."""
    v3 = FIXTURES / "v3"
    row = list(reversed(range(16))) + [15, 14]
    path = tmp_path / "placement.json"
    # One row per model layer, as SGLang writes it (layer 0 is dense: its row is ignored).
    path.write_text(json.dumps({"physical_to_logical_map": [list(range(16)) + [0, 1], row, row]}))

    def body(s):
        assert s.post("/start_expert_distribution_record").status_code == 200
        out = greedy(s, v3, concurrent=True)
        assert s.post("/stop_expert_distribution_record").status_code == 200
        return out, s.post("/dump_expert_distribution_record").json()
    tokens, dump = run(v3, "--dp-size", "2", "--enable-dp-attention", "--ep-num-redundant-experts", "2",
                       "--init-expert-location", str(path), body=body)
    assert tokens == [c["greedy_ids"] for c in cases(v3)]
    assert dump["current_physical_to_logical_map"] == [row, row]
    for layer in range(2):
        routed = sum(dump["logical_count"][layer])
        assert routed > 0 and routed % 3 == 0 and sum(dump["rank_load"][layer]) == routed


def test_eplb_across_two_nodes_on_loopback(tmp_path):
    """--nnodes 2 (TCP between the ranks): the placement is hierarchical (each expert's replicas
    on one node); greedy tokens unchanged while the experts move."""
    from conftest import find_binary, free_port
    v3 = FIXTURES / "v3"
    common = [*COMMON, "--nnodes", "2", "--dist-init-addr", f"127.0.0.1:{free_port()}", "--threads", "1",
              "--enable-eplb", "--ep-num-redundant-experts", "2", "--eplb-rebalance-num-iterations", "5"]
    log = open(tmp_path / "node1.log", "w")
    node1 = subprocess.Popen([str(find_binary()), "launch-server", "--model-path", str(v3), *common,
                              "--node-rank", "1"], stdout=log, stderr=subprocess.STDOUT)
    try:
        s = Server(*common, "--node-rank", "0", model=v3)
        try:
            assert greedy(s, v3) == [c["greedy_ids"] for c in cases(v3)]
            assert "experts moved" in s.log_path.read_text()
        finally:
            assert s.stop() == 0
        assert node1.wait(30) == 0
    finally:
        if node1.poll() is None:
            node1.kill()
        log.close()


def test_flags_are_refused_without_expert_parallelism(tmp_path):
    from conftest import find_binary, free_port
    binary = find_binary()
    if binary is None or not binary.exists():
        pytest.skip("serval binary missing")
    five_rows = tmp_path / "five.json"
    five_rows.write_text(json.dumps({"logical_count": [[1] * 16] * 5}))
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"physical_to_logical_map": [list(range(15)) + [0]] * 2}))
    for flags, message in [
        (["--enable-eplb"], "--enable-eplb needs expert parallelism"),
        (["--tp-size", "2", "--enable-two-batch-overlap"], "--enable-two-batch-overlap needs expert parallelism"),
        (["--tp-size", "2", "--ep-size", "2", "--ep-num-redundant-experts", "1"], "must split evenly over 2 ranks"),
        (["--tp-size", "2", "--ep-size", "2", "--dp-size", "2", "--enable-dp-attention", "--enable-eplb"],
         "--enable-eplb is not available with --enable-dp-attention"),
        (["--tp-size", "2", "--ep-size", "2", "--dp-size", "2", "--enable-dp-attention", "--enable-two-batch-overlap"],
         "--enable-two-batch-overlap is not available with --enable-dp-attention"),
        (["--tp-size", "2", "--ep-size", "2", "--init-expert-location", "/nonexistent.json"], "cannot read"),
        (["--tp-size", "2", "--ep-size", "2", "--init-expert-location", str(five_rows)],
         "--init-expert-location has 5 layers; the model has 2 MoE layers of 3"),
        (["--tp-size", "2", "--ep-size", "2", "--init-expert-location", str(missing)],
         "logical expert 15 has no physical slot"),
    ]:
        out = subprocess.run([str(binary), "launch-server", "--model-path", str(FIXTURES / "v3"), "--port",
                              str(free_port()), *flags], capture_output=True, text=True, timeout=120)
        assert out.returncode != 0, flags
        assert message in out.stderr + out.stdout, (flags, out.stderr[-2000:])

"""A tiny DeepSeek-V3 checkpoint (made with transformers' own DeepseekV3ForCausalLM by
scripts/deepseek-fixtures.py: MLA, sigmoid/noaux_tc MoE, yarn) served end to end with the
radix cache on, and its greedy tokens checked against transformers'."""
import json
from pathlib import Path

import pytest

from conftest import ROOT, Server

FIXTURES = ROOT / "Tests/ServalTestSupport/Fixtures/deepseek"


@pytest.fixture(scope="module")
def v3():
    s = Server("--max-total-tokens", "4096", "--kv-cache-dtype", "f32", model=FIXTURES / "v3")
    yield s
    s.stop()


def test_model_info_and_log_show_the_latent_kv_layout(v3):
    info = v3.get("/get_model_info").json()
    config = json.loads((FIXTURES / "v3/config.json").read_text())
    assert info["model_type"] == "deepseek_v3"
    assert info["kv_layout"] == f"mla(latent: {config['kv_lora_rank']}, rope: {config['qk_rope_head_dim']})"
    # layers x (kv_lora_rank + qk_rope_head_dim) x 4 bytes (f32 cache): one latent row per token and layer.
    assert info["kv_bytes_per_token"] == config["num_hidden_layers"] * (
        config["kv_lora_rank"] + config["qk_rope_head_dim"]) * 4
    log = v3.log_path.read_text()
    assert "deepseek_v3 layout mla(latent: 32, rope: 8)" in log and f"{info['kv_bytes_per_token']} bytes per token" in log


def test_generate_gives_transformers_greedy_tokens_and_reuses_the_prefix(v3):
    ref = json.loads((FIXTURES / "v3/reference.json").read_text())
    case = next(c for c in ref["cases"] if len(c["prompt_ids"]) == 64)
    body = {"input_ids": case["prompt_ids"],
            "sampling_params": {"temperature": 0, "max_new_tokens": len(case["greedy_ids"]), "ignore_eos": True}}
    first = v3.post("/generate", json=body)
    assert first.status_code == 200, first.text
    assert first.json()["output_ids"] == case["greedy_ids"]
    # The same prompt again: its prefix comes from the radix cache over the latent pool, same tokens.
    again = v3.post("/generate", json=body).json()
    assert again["meta_info"]["cached_tokens"] >= 60
    assert again["output_ids"] == case["greedy_ids"]
    # A prompt sharing the first 48 tokens reuses them.
    other = dict(body, input_ids=case["prompt_ids"][:48] + [7, 8, 9])
    shared = v3.post("/generate", json=other).json()
    assert shared["meta_info"]["cached_tokens"] >= 40


def test_chat_completions(v3):
    client = v3.openai()
    chat = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Hello there!"}],
                                          max_tokens=8, temperature=0, extra_body={"ignore_eos": True})
    assert chat.usage.completion_tokens == 8
    again = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Hello there!"}],
                                           max_tokens=8, temperature=0, extra_body={"ignore_eos": True})
    assert again.choices[0].message.content == chat.choices[0].message.content
    assert again.usage.prompt_tokens_details.cached_tokens > 0


def test_gguf_file_with_an_fp8_latent_cache():
    """v3 converted by llama.cpp's converter (GGUF deepseek2), served with --kv-cache-dtype fp8_e4m3: one byte
    per latent element, the radix cache still reuses the prefix. (The fixture's tiny tokenizer has no BPE merges,
    which a GGUF tokenizer needs, so the tokenizer comes from the checkpoint directory.)"""
    s = Server("--max-total-tokens", "4096", "--kv-cache-dtype", "fp8_e4m3", "--tokenizer-path",
               str(FIXTURES / "v3"), model=FIXTURES / "v3/model-f32.gguf")
    try:
        info = s.get("/get_model_info").json()
        config = json.loads((FIXTURES / "v3/config.json").read_text())
        assert info["model_type"] == "deepseek_v3"
        assert info["kv_bytes_per_token"] == config["num_hidden_layers"] * (
            config["kv_lora_rank"] + config["qk_rope_head_dim"])
        assert "F8_E4M3" in s.log_path.read_text()
        ref = json.loads((FIXTURES / "v3/reference.json").read_text())
        case = next(c for c in ref["cases"] if len(c["prompt_ids"]) == 64)
        body = {"input_ids": case["prompt_ids"],
                "sampling_params": {"temperature": 0, "max_new_tokens": 6, "ignore_eos": True}}
        first = s.post("/generate", json=body)
        assert first.status_code == 200, first.text
        again = s.post("/generate", json=body).json()
        assert again["meta_info"]["cached_tokens"] >= 60
        assert again["output_ids"] == first.json()["output_ids"]
    finally:
        s.stop()

"""`serval generate` goes through the engine: the same prompt, seed and settings give
the same text offline as through the server."""
import subprocess

from conftest import Server, find_binary, model_path

import pytest


def run_generate(prompt, seed, temperature, max_new_tokens):
    binary = find_binary()
    if binary is None or not binary.exists() or not model_path().exists():
        pytest.skip("serval binary or model missing")
    out = subprocess.run(
        [str(binary), "generate", "--model-path", str(model_path()), "--prompt", prompt, "--seed", str(seed),
         "--temperature", str(temperature), "--max-new-tokens", str(max_new_tokens), "--threads", "2"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith("\n")
    return out.stdout[:-1]


def test_generate_matches_server_for_the_same_seed():
    prompt = "The old lighthouse keeper looked at the sea and"
    server = Server()
    try:
        for seed, temperature in [(7, 0.8), (123, 1.2), (0, 0.0)]:
            offline = run_generate(prompt, seed, temperature, 24)
            r = server.post("/generate", json={
                "text": prompt,
                "sampling_params": {"temperature": temperature, "sampling_seed": seed, "max_new_tokens": 24},
            })
            assert r.status_code == 200, r.text
            assert r.json()["text"] == offline, (seed, temperature)
            if temperature > 0:
                other = server.post("/generate", json={
                    "text": prompt,
                    "sampling_params": {"temperature": temperature, "sampling_seed": seed + 1, "max_new_tokens": 24},
                }).json()["text"]
                assert other != offline
    finally:
        server.stop()

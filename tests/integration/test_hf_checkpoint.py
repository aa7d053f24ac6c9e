"""`--load-format safetensors` (and `auto` on a directory): a tiny random-weight Llama
checkpoint in Hugging Face layout, written here, served and queried."""
import json
import random
import struct

import pytest

from conftest import Server

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 64, 2, 4, 2, 128
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _byte_level_alphabet():
    """GPT-2's byte → printable character table (what ByteLevel BPE vocabularies use)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def _write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, shape, values in tensors:
        blob = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def write_checkpoint(d, pad=0):
    """The checkpoint in `d`; `pad` extra embedding rows past the tokenizer's tokens (a vocabulary
    padded to a round size, as many released models have)."""
    alphabet = _byte_level_alphabet()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {c: i for i, c in enumerate(alphabet)}
    added = [{"id": 256 + i, "content": t, "special": True, "lstrip": False, "rstrip": False, "normalized": False,
              "single_word": False} for i, t in enumerate(specials)]
    n_tokens = 256 + len(specials)
    n_vocab = n_tokens + pad
    tokenizer = {
        "version": "1.0", "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []},
    }
    (d / "tokenizer.json").write_text(json.dumps(tokenizer))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": CHAT_TEMPLATE,
        "add_bos_token": False, "model_max_length": 512}))
    (d / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": FFN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "vocab_size": n_vocab, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 512, "tie_word_embeddings": False, "torch_dtype": "float32"}))
    rng = random.Random(7)

    def mat(r, c):
        return [rng.uniform(-0.2, 0.2) for _ in range(r * c)]

    def ones(n):
        return [1.0 + rng.uniform(-0.05, 0.05) for _ in range(n)]

    head_dim = HIDDEN // HEADS
    q, kv = HEADS * head_dim, KV_HEADS * head_dim
    tensors = [("model.embed_tokens.weight", [n_vocab, HIDDEN], mat(n_vocab, HIDDEN)),
               ("model.norm.weight", [HIDDEN], ones(HIDDEN)),
               ("lm_head.weight", [n_vocab, HIDDEN], mat(n_vocab, HIDDEN))]
    for l in range(LAYERS):
        p = f"model.layers.{l}"
        tensors += [(f"{p}.input_layernorm.weight", [HIDDEN], ones(HIDDEN)),
                    (f"{p}.post_attention_layernorm.weight", [HIDDEN], ones(HIDDEN)),
                    (f"{p}.self_attn.q_proj.weight", [q, HIDDEN], mat(q, HIDDEN)),
                    (f"{p}.self_attn.k_proj.weight", [kv, HIDDEN], mat(kv, HIDDEN)),
                    (f"{p}.self_attn.v_proj.weight", [kv, HIDDEN], mat(kv, HIDDEN)),
                    (f"{p}.self_attn.o_proj.weight", [HIDDEN, q], mat(HIDDEN, q)),
                    (f"{p}.mlp.gate_proj.weight", [FFN, HIDDEN], mat(FFN, HIDDEN)),
                    (f"{p}.mlp.up_proj.weight", [FFN, HIDDEN], mat(FFN, HIDDEN)),
                    (f"{p}.mlp.down_proj.weight", [HIDDEN, FFN], mat(HIDDEN, FFN))]
    _write_safetensors(d / "model.safetensors", tensors)
    return d


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("hf-llama"))


@pytest.mark.parametrize("load_format", ["safetensors", "auto"])
def test_hf_checkpoint_serves_chat_and_completions(checkpoint, load_format):
    s = Server("--load-format", load_format, "--max-total-tokens", "2048", model=checkpoint)
    try:
        info = s.get("/get_model_info").json()
        assert info["model_path"] == str(checkpoint)
        client = s.openai()
        chat = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Hello!"}],
                                              max_tokens=8, temperature=0, extra_body={"ignore_eos": True})
        assert chat.usage.completion_tokens == 8
        # The chat template came from tokenizer_config.json; with no merges every byte is a
        # token and each special marker is one.
        rendered = "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
        specials = 3
        text_bytes = len(rendered.encode()) - specials * len("<|im_start|>") + (len("<|im_start|>") - len("<|im_end|>"))
        assert chat.usage.prompt_tokens == specials + text_bytes
        comp = client.completions.create(model="smollm2", prompt="abc", max_tokens=5, temperature=0,
                                         extra_body={"ignore_eos": True})
        assert comp.usage.prompt_tokens == 3
        assert comp.usage.completion_tokens == 5
        # Greedy is deterministic: the same request gives the same text.
        again = client.completions.create(model="smollm2", prompt="abc", max_tokens=5, temperature=0,
                                          extra_body={"ignore_eos": True})
        assert again.choices[0].text == comp.choices[0].text
    finally:
        s.stop()


def test_safetensors_format_rejects_a_gguf_file(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(RuntimeError, match="safetensors needs an HF checkpoint directory"):
        Server("--load-format", "safetensors", model=gguf)


def test_dummy_format_from_an_hf_config(checkpoint):
    s = Server("--load-format", "dummy", "--max-total-tokens", "1024", model=checkpoint)
    try:
        r = s.post("/generate", json={"text": "hi", "sampling_params": {"max_new_tokens": 4, "ignore_eos": True}})
        assert r.status_code == 200
        assert r.json()["meta_info"]["completion_tokens"] == 4
    finally:
        s.stop()


def test_input_ids_may_name_the_padded_rows_of_the_vocabulary(tmp_path):
    """SGLang checks `input_ids` against the model's vocab_size: ids past the tokenizer's tokens but
    inside the embedding (a padded vocabulary) are served; ids past the embedding are a 400."""
    d = write_checkpoint(tmp_path, pad=61)
    s = Server("--load-format", "safetensors", "--max-total-tokens", "1024", model=d)
    try:
        assert s.get("/get_model_info").json()["vocab_size"] == 259 + 61
        r = s.post("/generate", json={"input_ids": [10, 300, 319], "sampling_params": {"max_new_tokens": 2,
                                                                                      "ignore_eos": True}})
        assert r.status_code == 200, r.text
        assert r.json()["meta_info"]["prompt_tokens"] == 3
        r = s.post("/generate", json={"input_ids": [10, 320], "sampling_params": {"max_new_tokens": 2}})
        assert r.status_code == 400
        assert "outside the vocabulary (0..<320)" in r.text
    finally:
        s.stop()

#!/usr/bin/env python3
"""Tiny random-weight DeepSeek-V2/V3 checkpoints and their reference outputs, made with
transformers' own DeepseekV2ForCausalLM / DeepseekV3ForCausalLM classes (fp32, eager attention).

Writes, for each config, a directory under Tests/ServalTestSupport/Fixtures/deepseek/<name>/:
  config.json, model.safetensors, tokenizer.json, tokenizer_config.json (a byte-level vocabulary
  of 256 bytes + 3 specials, so `serval launch-server --model-path <dir>` serves it), and
  reference.json: for fixed prompts of several lengths, the prompt ids, fp32 logits at a few
  prompt positions, the greedy continuation and the logits of each greedy step.

Configs (every DeepSeek path Serval has):
  v2-lite   DeepseekV2: no q_lora, softmax + greedy gating, 2 shared experts, a dense first layer.
  v2-group  DeepseekV2: q_lora, softmax + group_limited_greedy (4 groups, top 2), yarn rope with
            mscale = mscale_all_dim (the softmax-scale correction), routed_scaling_factor 16.
  v3        DeepseekV3: q_lora, sigmoid + noaux_tc with 4 groups and a non-zero correction bias,
            norm_topk_prob, routed_scaling_factor 2.5, yarn with mscale != mscale_all_dim (the
            cos/sin attention factor), interleaved rope, a dense first layer.
  v3-fp8    v3's weights stored as float8_e4m3 with weight_scale_inv per 128x128 block
            (quantization_config.weight_block_size); its reference is the float model of the
            weights dequantized by DeepSeek's rule (each block, partial edge blocks included, has
            its own scale). transformers' own fp8 loader is not used: it sizes edge blocks wrongly.

Usage (CPU torch is enough):
  python3 -m pip install --target .build/pydeeps torch transformers safetensors
  PYTHONPATH=.build/pydeeps python3 scripts/deepseek-fixtures.py
Seeded: re-running gives the same files.
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import DeepseekV2Config, DeepseekV2ForCausalLM, DeepseekV3Config, DeepseekV3ForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "ServalTestSupport", "Fixtures",
                    "deepseek")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB = 256 + len(SPECIALS)
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
PROMPT_LENGTHS = [1, 7, 64, 300]
GREEDY_STEPS = 6
BLOCK = 128

COMMON = dict(vocab_size=VOCAB, hidden_size=64, num_attention_heads=4, num_key_value_heads=4,
              kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
              max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
              bos_token_id=257, eos_token_id=258, pad_token_id=None, initializer_range=0.08,
              attention_bias=False, hidden_act="silu")

CONFIGS = {
    "v2-lite": (DeepseekV2Config, DeepseekV2ForCausalLM, dict(
        COMMON, num_hidden_layers=2, intermediate_size=96, q_lora_rank=None, first_k_dense_replace=1,
        n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=2, moe_intermediate_size=32,
        topk_method="greedy", n_group=1, topk_group=1, norm_topk_prob=False, routed_scaling_factor=1.0,
        scoring_func="softmax", moe_layer_freq=1)),
    "v2-group": (DeepseekV2Config, DeepseekV2ForCausalLM, dict(
        COMMON, num_hidden_layers=3, intermediate_size=96, q_lora_rank=24, first_k_dense_replace=1,
        n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=3, moe_intermediate_size=32,
        topk_method="group_limited_greedy", n_group=4, topk_group=2, norm_topk_prob=False,
        routed_scaling_factor=16.0, scoring_func="softmax", moe_layer_freq=1,
        rope_scaling={"type": "yarn", "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128,
                      "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707})),
    "v3": (DeepseekV3Config, DeepseekV3ForCausalLM, dict(
        COMMON, num_hidden_layers=3, intermediate_size=192, q_lora_rank=32, first_k_dense_replace=1,
        n_routed_experts=16, n_shared_experts=1, num_experts_per_tok=3, moe_intermediate_size=32,
        topk_method="noaux_tc", n_group=4, topk_group=2, norm_topk_prob=True, routed_scaling_factor=2.5,
        scoring_func="sigmoid", moe_layer_freq=1, rope_interleave=True,
        rope_scaling={"type": "yarn", "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128,
                      "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 0.8})),
}


def byte_level_alphabet():
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def write_tokenizer(d):
    vocab = {c: i for i, c in enumerate(byte_level_alphabet())}
    added = [{"id": 256 + i, "content": t, "special": True, "lstrip": False, "rstrip": False, "normalized": False,
              "single_word": False} for i, t in enumerate(SPECIALS)]
    tok = {"version": "1.0", "added_tokens": added, "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
           "post_processor": None,
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                     "merges": []}}
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": CHAT_TEMPLATE,
                   "add_bos_token": False, "model_max_length": 512}, f)


def randomize(model, seed):
    """Weights beyond transformers' init: norms away from one, a non-zero correction bias."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "layernorm" in name:
                p.copy_(1 + 0.2 * (torch.rand(p.shape, generator=g) - 0.5))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.08)
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.1 * (torch.rand(b.shape, generator=g) - 0.5))


def hf_state_dict(model, d):
    """The checkpoint as save_pretrained writes it (per-expert names), read back."""
    model.save_pretrained(d, safe_serialization=True)
    from safetensors.torch import load_file
    sd = load_file(os.path.join(d, "model.safetensors"))
    return {k: v.float().contiguous() for k, v in sd.items()}


def fp8_quantize(w):
    """DeepSeek's block rule: every 128x128 block (edge blocks partial) scaled so its max is 448."""
    rows, cols = w.shape
    br, bc = math.ceil(rows / BLOCK), math.ceil(cols / BLOCK)
    scale = torch.zeros(br, bc, dtype=torch.float32)
    q = torch.zeros(rows, cols, dtype=torch.float8_e4m3fn)
    deq = torch.zeros(rows, cols, dtype=torch.float32)
    for i in range(br):
        for j in range(bc):
            blk = w[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK]
            s = max(blk.abs().max().item(), 1e-12) / 448.0
            qb = (blk / s).to(torch.float8_e4m3fn)
            q[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] = qb
            deq[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] = qb.float() * s
            scale[i, j] = s
    return q, scale, deq


def is_fp8_weight(name, t):
    if t.dim() != 2 or not name.endswith(".weight"):
        return False
    if "embed_tokens" in name or name == "lm_head.weight" or name.endswith("mlp.gate.weight"):
        return False
    return "norm" not in name


def prompts():
    g = torch.Generator().manual_seed(1234)
    return [torch.randint(0, 256, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]


def reference(model):
    cases = []
    with torch.no_grad():
        for ids in prompts():
            out = model(torch.tensor([ids])).logits[0].float()
            n = len(ids)
            positions = sorted({0, n // 2, n - 1})
            seq = list(ids)
            greedy, greedy_logits = [], []
            for _ in range(GREEDY_STEPS):
                logits = model(torch.tensor([seq])).logits[0, -1].float()
                t = int(torch.argmax(logits))
                greedy_logits.append(logits.tolist())
                greedy.append(t)
                seq.append(t)
            cases.append({"prompt_ids": ids, "positions": positions,
                          "prompt_logits": [out[p].tolist() for p in positions],
                          "greedy_ids": greedy, "greedy_logits": greedy_logits})
    return cases


def dump_reference(d, name, cases):
    def fmt(rows):
        return [[float(f"{v:.7g}") for v in r] for r in rows]
    for c in cases:
        c["prompt_logits"] = fmt(c["prompt_logits"])
        c["greedy_logits"] = fmt(c["greedy_logits"])
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump({"config": name, "transformers": __import__("transformers").__version__,
                   "torch": torch.__version__, "cases": cases}, f, separators=(",", ":"))


def tidy_config(d, extra=None):
    path = os.path.join(d, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg.update(extra or {})
    # Written the way released DeepSeek checkpoints write it (rope_theta + rope_scaling), not
    # transformers 5's rope_parameters.
    rope = cfg.pop("rope_parameters", None) or {}
    cfg["rope_theta"] = rope.pop("rope_theta", 10000.0)
    if rope.get("rope_type", "default") != "default":
        rope.pop("rope_type", None)
        cfg["rope_scaling"] = rope
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    for junk in ("generation_config.json",):
        p = os.path.join(d, junk)
        if os.path.exists(p):
            os.remove(p)


def make(name, config_cls, model_cls, kwargs, seed):
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(seed)
    config = config_cls(**kwargs)
    config._attn_implementation = "eager"
    model = model_cls(config).float().eval()
    randomize(model, seed)
    sd = hf_state_dict(model, d)
    # The stored dtype: fp32 (what the CPU computes these fixtures in, for a tight comparison).
    extra = {"torch_dtype": "float32", "architectures": [model_cls.__name__]}
    for k in ("scoring_func", "moe_layer_freq", "topk_method", "n_group", "topk_group"):
        extra[k] = kwargs[k]
    tidy_config(d, extra)
    write_tokenizer(d)
    dump_reference(d, name, reference(model))
    return model, sd, config, extra


def make_fp8(base_name, sd, config_cls, model_cls, kwargs, seed, extra):
    d = os.path.join(ROOT, base_name + "-fp8")
    os.makedirs(d, exist_ok=True)
    stored, deq_sd = {}, {}
    for k, v in sd.items():
        if is_fp8_weight(k, v):
            q, s, deq = fp8_quantize(v)
            stored[k] = q
            stored[k + "_scale_inv"] = s
            deq_sd[k] = deq
        else:
            stored[k] = v
            deq_sd[k] = v
    save_file(stored, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    config = config_cls(**kwargs)
    config._attn_implementation = "eager"
    model = model_cls(config).float().eval()
    missing, unexpected = model.load_state_dict(_to_module_names(model, deq_sd), strict=False)
    missing = [m for m in missing if not m.endswith("e_score_correction_bias")]
    if missing or unexpected:
        sys.exit(f"fp8 reference: missing {missing} unexpected {unexpected}")
    with torch.no_grad():
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(deq_sd[name])
    with open(os.path.join(ROOT, base_name, "config.json")) as f:
        cfg = json.load(f)
    cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                  "weight_block_size": [BLOCK, BLOCK]}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    write_tokenizer(d)
    dump_reference(d, base_name + "-fp8", reference(model))


def _to_module_names(model, sd):
    """Per-expert checkpoint names → the fused in-memory parameters (gate rows, then up rows)."""
    out, experts = {}, {}
    for k, v in sd.items():
        parts = k.split(".")
        if ".mlp.experts." in k:
            layer, e, proj = int(parts[2]), int(parts[5]), parts[6]
            experts.setdefault(layer, {}).setdefault(e, {})[proj] = v
        else:
            out[k] = v
    for layer, es in experts.items():
        n = len(es)
        out[f"model.layers.{layer}.mlp.experts.gate_up_proj"] = torch.stack(
            [torch.cat([es[e]["gate_proj"], es[e]["up_proj"]], 0) for e in range(n)])
        out[f"model.layers.{layer}.mlp.experts.down_proj"] = torch.stack([es[e]["down_proj"] for e in range(n)])
    return out


def main():
    torch.set_num_threads(1)
    for i, (name, (ccls, mcls, kwargs)) in enumerate(CONFIGS.items()):
        model, sd, config, extra = make(name, ccls, mcls, kwargs, seed=100 + i)
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, {len(sd)} tensors")
        if name == "v3":
            make_fp8(name, sd, ccls, mcls, kwargs, 100 + i, extra)
            print(f"{name}-fp8: written")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""GGUF `deepseek2` fixtures: the tiny DeepSeek checkpoints of scripts/deepseek-fixtures.py converted
by llama.cpp's own converter (convert_hf_to_gguf.py), unmodified, so the files have exactly the metadata
keys and tensor names (attn_kv_a_mqa, attn_k_b / attn_v_b, ffn_*_exps, ffn_*_shexp, exp_probs_b, ...)
and the tensor types that llama.cpp writes.

Writes next to each checkpoint under Tests/ServalTestSupport/Fixtures/deepseek/<name>/:
  v2-lite/model-f32.gguf   (--outtype f32)
  v2-group/model-f16.gguf  (--outtype f16)
  v3/model-f32.gguf        (--outtype f32)
  v3/model-q8_0.gguf       (--outtype q8_0; rows that are not whole 32-blocks stay f16/f32, as the converter decides)

The one change to the converter's behaviour: its pre-tokenizer check knows only the hashes of
published tokenizers, and the fixtures' tiny byte-level BPE (GPT-2 regex) is not one of them, so
`get_vocab_base_pre` is made to answer "gpt-2" (the tokenizer is not what these files test).

Needs torch (CPU), transformers and safetensors, plus llama.cpp's source tree (convert_hf_to_gguf.py,
conversion/, gguf-py/), as scripts/build-llama-cpp unpacks it from the llama-cpp-python sdist:
  python3 -m pip install --target .build/pydeeps torch transformers safetensors
  PYTHONPATH=.build/pydeeps python3 scripts/deepseek-gguf-fixtures.py [LLAMA_CPP_SOURCE_DIR]
(default source dir: $SERVAL_LLAMA_DIR/src/vendor/llama.cpp, SERVAL_LLAMA_DIR defaulting to
~/.cache/serval/llama.cpp). Deterministic: re-running gives the same files.
"""
import os
import runpy
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "ServalTestSupport", "Fixtures",
                    "deepseek")
JOBS = [("v2-lite", "f32"), ("v2-group", "f16"), ("v3", "f32"), ("v3", "q8_0")]


def main():
    default = os.path.join(os.environ.get("SERVAL_LLAMA_DIR", os.path.expanduser("~/.cache/serval/llama.cpp")),
                           "src", "vendor", "llama.cpp")
    src = sys.argv[1] if len(sys.argv) > 1 else default
    converter = os.path.join(src, "convert_hf_to_gguf.py")
    if not os.path.exists(converter):
        sys.exit(f"{converter} is absent: run scripts/build-llama-cpp (it unpacks llama.cpp's source) or pass the "
                 "llama.cpp source directory")
    sys.path[:0] = [src, os.path.join(src, "gguf-py")]
    import conversion.base as base  # llama.cpp's converter package

    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
    for name, outtype in JOBS:
        model = os.path.join(ROOT, name)
        out = os.path.join(model, f"model-{outtype}.gguf")
        sys.argv = [converter, model, "--outtype", outtype, "--outfile", out]
        runpy.run_path(converter, run_name="__main__")
        print(f"wrote {os.path.relpath(out)} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()

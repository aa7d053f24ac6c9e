#!/usr/bin/env python3
"""Writes a Llama-3 tokenizer.json (128,256 tokens) from the tiktoken rank file that Meta's
`llama-models` package ships (llama_models/llama3/tokenizer.model), for benchmarks that need a
real 128k vocabulary (`serval bench-grammar --model-path DIR/tokenizer.json`).

    python3 scripts/llama3_tokenizer_json.py OUT_DIR            # fetches llama-models with pip
    python3 scripts/llama3_tokenizer_json.py OUT_DIR --model F  # or converts a rank file you have

The conversion is the standard tiktoken -> Hugging Face one: token bytes become byte-level BPE
strings (GPT-2's byte-to-unicode map), and the merges are recovered from the ranks (every split of a
token into two tokens, ordered by rank). Special tokens 128000..128255 are added as
Meta names them. Pure standard library; no network access besides `pip download`.
"""
import argparse
import base64
import glob
import json
import os
import subprocess
import sys
import tempfile
import zipfile

PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|image|>",
]


def byte_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def fetch_rank_file(workdir):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "llama-models==0.3.0", "-d", workdir],
        check=True,
    )
    wheels = glob.glob(os.path.join(workdir, "llama_models-*.whl"))
    if not wheels:
        sys.exit("pip download produced no llama_models wheel")
    with zipfile.ZipFile(wheels[0]) as z:
        return z.read("llama_models/llama3/tokenizer.model")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--model", help="a tiktoken rank file (default: fetch llama-models with pip)")
    args = ap.parse_args()
    if args.model:
        raw = open(args.model, "rb").read()
    else:
        with tempfile.TemporaryDirectory() as d:
            raw = fetch_rank_file(d)
    ranks = {}
    for line in raw.splitlines():
        if line.strip():
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    if len(ranks) != 128000:
        sys.exit(f"expected 128000 ranked tokens, found {len(ranks)}")
    b2u = byte_to_unicode()

    def enc(b):
        return "".join(b2u[x] for x in b)

    merges = []
    for tok, rank in ranks.items():
        if len(tok) == 1:
            continue
        local = []
        for i in range(1, len(tok)):
            a, b = tok[:i], tok[i:]
            if a in ranks and b in ranks:
                local.append((ranks[a], ranks[b], a, b))
        local.sort()
        merges.extend((rank, a, b) for _, _, a, b in local)
    merges.sort(key=lambda m: m[0])
    vocab = {enc(t): r for t, r in ranks.items()}
    names = SPECIAL + [f"<|reserved_special_token_{2 + i}|>" for i in range(256 - len(SPECIAL))]
    added = [
        {"id": 128000 + i, "content": n, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, n in enumerate(names)
    ]
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": PATTERN}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": True,
            "vocab": vocab,
            "merges": [[enc(a), enc(b)] for _, a, b in merges],
        },
    }
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    with open(os.path.join(args.out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "add_bos_token": True}, f)
    print(f"wrote {args.out_dir}/tokenizer.json: {len(vocab) + len(added)} tokens, {len(merges)} merges")


if __name__ == "__main__":
    main()

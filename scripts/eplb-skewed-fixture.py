#!/usr/bin/env python3
"""A DeepSeek checkpoint whose router favours a few experts, for EPLB (docs/eplb.md).

Copies a tiny DeepSeek-V3 fixture (Tests/ServalTestSupport/Fixtures/deepseek/v3 by default) and
  - adds BIAS to `e_score_correction_bias` of the HOT experts in every MoE layer (noaux_tc selects
    by sigmoid score + bias, so those experts win nearly every token's top-k while the routing
    weights, computed from the unbiased scores, stay well-formed);
  - optionally widens every routed and shared expert to --moe-intermediate (seeded random weights,
    scale 1/sqrt(fan_in)), so the experts dominate a step's time and rank imbalance shows in it,
    and drops the shared experts (--no-shared-experts: they run on every rank and dilute it).
Needs numpy only (safetensors is read and written by hand). Deterministic for a given seed.

  python3 scripts/eplb-skewed-fixture.py OUT_DIR [--src DIR] [--hot 0,1,4,5] [--bias 2.0]
      [--moe-intermediate N] [--no-shared-experts] [--seed 7]
"""
import argparse
import json
import os
import shutil
import struct

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DEFAULT_SRC = os.path.join(ROOT, "Tests", "ServalTestSupport", "Fixtures", "deepseek", "v3")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            raise SystemExit(f"{name}: only F32 checkpoints are handled, got {meta['dtype']}")
        lo, hi = meta["data_offsets"]
        out[name] = np.frombuffer(data[lo:hi], dtype="<f4").reshape(meta["shape"]).copy()
    return out


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--src", default=DEFAULT_SRC)
    ap.add_argument("--hot", default="0,1,4,5", help="logical experts the router favours")
    ap.add_argument("--bias", type=float, default=2.0, help="added to the hot experts' correction bias")
    ap.add_argument("--moe-intermediate", type=int, default=0, help="new expert width (0: keep)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-shared-experts", action="store_true", help="drop the shared experts (routed work only)")
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.src, "config.json")))
    if cfg.get("topk_method") != "noaux_tc":
        raise SystemExit("the source must route with noaux_tc (a correction bias), like the v3 fixture")
    hot = [int(x) for x in a.hot.split(",") if x]
    experts = cfg["n_routed_experts"]
    if any(e < 0 or e >= experts for e in hot):
        raise SystemExit(f"--hot ids must be in 0..<{experts}")
    t = read_safetensors(os.path.join(a.src, "model.safetensors"))
    rng = np.random.default_rng(a.seed)
    hidden = cfg["hidden_size"]
    width = a.moe_intermediate or cfg["moe_intermediate_size"]
    for name in sorted(t):
        if name.endswith("mlp.gate.e_score_correction_bias"):
            t[name][hot] += a.bias
        if a.moe_intermediate and ".mlp.experts." in name or a.moe_intermediate and ".mlp.shared_experts." in name:
            w = width * (cfg["n_shared_experts"] if "shared_experts" in name else 1)
            shape = (hidden, w) if name.endswith("down_proj.weight") else (w, hidden)
            t[name] = (rng.standard_normal(shape) / np.sqrt(shape[1])).astype("<f4")
    cfg["moe_intermediate_size"] = width
    if a.no_shared_experts:
        t = {k: v for k, v in t.items() if ".mlp.shared_experts." not in k}
        cfg["n_shared_experts"] = 0
    os.makedirs(a.out, exist_ok=True)
    write_safetensors(os.path.join(a.out, "model.safetensors"), t)
    json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=2)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(a.src, f), os.path.join(a.out, f))
    print(f"wrote {a.out}: hot experts {hot} (+{a.bias} bias), expert width {width}")


if __name__ == "__main__":
    main()

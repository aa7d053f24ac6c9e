#!/usr/bin/env python3
"""Decode throughput with a JSON schema vs unconstrained, through a running server.

    python3 benchmarks/grammar_throughput.py --base http://127.0.0.1:30000 [--tokens 64] [--rounds 3]

Each request generates exactly --tokens tokens: the unconstrained one with ignore_eos,
the constrained one with a schema that cannot finish sooner (an array of at least 40
bounded strings), so both sides decode the same number of tokens. Batch 1 runs requests
one after another, alternating unconstrained and constrained rounds; batch 16 sends 16 at once. Reports output tokens per second (all
requests' completion tokens / wall time) and the ratio constrained / unconstrained.
"""
import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import requests

SCHEMA = {"type": "array", "minItems": 40, "maxItems": 200,
          "items": {"type": "string", "minLength": 1, "maxLength": 12}}


def one(base, tokens, constrained, seed):
    sp = {"max_new_tokens": tokens, "temperature": 0.7, "sampling_seed": seed}
    if constrained:
        sp["json_schema"] = json.dumps(SCHEMA)
    else:
        sp["ignore_eos"] = True
    r = requests.post(base + "/generate", json={"text": "List some words as a JSON array:", "sampling_params": sp},
                      timeout=600)
    r.raise_for_status()
    return r.json()["meta_info"]["completion_tokens"]


def run(base, tokens, batch, rounds):
    """Alternates unconstrained and constrained rounds (drift on a shared machine hits both)."""
    spent = {False: 0.0, True: 0.0}
    total = {False: 0, True: 0}
    with ThreadPoolExecutor(batch) as pool:
        for r in range(rounds):
            for constrained in (False, True):
                start = time.time()
                total[constrained] += sum(pool.map(lambda i: one(base, tokens, constrained, 1000 * r + i), range(batch)))
                spent[constrained] += time.time() - start
    return {k: (total[k] / spent[k], total[k]) for k in (False, True)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="http://127.0.0.1:30000")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    one(args.base, 8, True, 0)  # compile the grammar once (cached afterwards)
    for batch in (1, 16):
        res = run(args.base, args.tokens, batch, args.rounds)
        (free, n1), (con, n2) = res[False], res[True]
        print(f"batch {batch:2d}: unconstrained {free:7.1f} tok/s ({n1} tokens), "
              f"json schema {con:7.1f} tok/s ({n2} tokens), ratio {con / free:.3f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Jump-forward's gain: the same constrained requests against a server with jump-forward
(the default) and one started with --disable-jump-forward.

    serval launch-server --port 30000 --enable-metrics &
    serval launch-server --port 30001 --enable-metrics --disable-jump-forward &
    python3 benchmarks/jump_forward.py --base http://127.0.0.1:30000 --base http://127.0.0.1:30001

The schema has long fixed keys (most of each output is forced), decoding is greedy and each
request runs alone (batch 1), alternating servers round by round so drift on a shared
machine hits both. Reports per server: wall time per request, completion tokens, forward
passes per request (from /metrics) and output tokens per second.
"""
import argparse
import json
import re
import time

import requests

SCHEMA = {"type": "object", "properties": {
    "customer_full_name_as_written": {"type": "string", "maxLength": 16},
    "customer_shipping_address_city": {"enum": ["Paris", "London", "Berlin", "Madrid"]},
    "customer_shipping_address_postcode": {"type": "string", "pattern": "[0-9]{5}"},
    "number_of_items_in_the_order": {"type": "integer", "minimum": 1, "maximum": 99},
    "order_requires_signature_on_delivery": {"type": "boolean"},
    "preferred_delivery_time_window": {"enum": ["morning", "afternoon", "evening"]}},
    "required": ["customer_full_name_as_written", "customer_shipping_address_city",
                 "customer_shipping_address_postcode", "number_of_items_in_the_order",
                 "order_requires_signature_on_delivery", "preferred_delivery_time_window"]}


def metric(base, name):
    text = requests.get(base + "/metrics", timeout=30).text
    m = re.search(rf"^{re.escape(name)}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


def one(base, i):
    r = requests.post(base + "/generate", json={"text": f"Customer order number {i} as JSON:", "sampling_params": {
        "json_schema": json.dumps(SCHEMA), "max_new_tokens": 200, "temperature": 0}}, timeout=600)
    r.raise_for_status()
    out = r.json()
    json.loads(out["text"])
    return out["meta_info"]["completion_tokens"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", action="append", required=True, help="a server (give it once per server)")
    ap.add_argument("--requests", type=int, default=8)
    args = ap.parse_args()
    stats = {b: {"time": 0.0, "tokens": 0, "passes": 0.0} for b in args.base}
    for b in args.base:
        one(b, -1)  # compile the grammar once (cached afterwards)
    for i in range(args.requests):
        for b in args.base:
            p0 = metric(b, "serval:forward_passes_total")
            t0 = time.time()
            stats[b]["tokens"] += one(b, i)
            stats[b]["time"] += time.time() - t0
            stats[b]["passes"] += metric(b, "serval:forward_passes_total") - p0
    for b in args.base:
        info = requests.get(b + "/get_server_info", timeout=30).json()
        s, n = stats[b], args.requests
        label = "jump-forward off" if info.get("disable_jump_forward") else "jump-forward on"
        print(f"{label:17s} ({b}): {s['time'] / n * 1000:7.1f} ms/request, {s['tokens'] / n:5.1f} tokens/request, "
              f"{s['passes'] / n:5.1f} forward passes/request, {s['tokens'] / s['time']:6.1f} output tok/s")


if __name__ == "__main__":
    main()

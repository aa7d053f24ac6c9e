"""/v1/score: label-token probabilities after (query + item), as SGLang computes them."""
import math

import pytest

from conftest import MODEL


def label_ids(server, words):
    return [server.post("/tokenize", json={"prompt": w, "add_special_tokens": False}).json()["tokens"][0] for w in words]


def test_scores_match_generate_logprobs_and_softmax_sums_to_one(server):
    labels = label_ids(server, [" Paris", " Berlin", " London"])
    body = {"model": MODEL, "query": "The capital of France is", "items": ["", " the city of"],
            "label_token_ids": labels}
    r = server.post("/v1/score", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "scoring" and len(out["scores"]) == 2
    assert all(len(s) == 3 and all(0 < p < 1 for p in s) for s in out["scores"])
    # The same numbers /generate reports for the first output position.
    g = server.post("/generate", json={"text": "The capital of France is", "return_logprob": True,
                                       "token_ids_logprob": labels,
                                       "sampling_params": {"max_new_tokens": 1, "temperature": 0}}).json()
    expected = [math.exp(e[0]) for e in g["meta_info"]["output_token_ids_logprobs"][0]]
    assert out["scores"][0] == pytest.approx(expected, rel=1e-5)
    # " Paris" is the likeliest capital of France for this model.
    assert out["scores"][0][0] == max(out["scores"][0])
    soft = server.post("/v1/score", json={**body, "apply_softmax": True}).json()["scores"]
    for row, raw in zip(soft, out["scores"]):
        assert sum(row) == pytest.approx(1.0, abs=1e-6)
        assert row == pytest.approx([p / sum(raw) for p in raw], rel=1e-4)


def test_token_id_items_and_item_first(server):
    labels = label_ids(server, [" yes", " no"])
    q = server.post("/tokenize", json={"prompt": "Is water wet? Answer:", "add_special_tokens": False}).json()["tokens"]
    item = server.post("/tokenize", json={"prompt": " Honestly,", "add_special_tokens": False}).json()["tokens"]
    a = server.post("/v1/score", json={"query": q, "items": [item], "label_token_ids": labels}).json()["scores"]
    b = server.post("/v1/score", json={"query": item, "items": [q], "label_token_ids": labels,
                                       "item_first": True}).json()["scores"]
    assert a[0] == pytest.approx(b[0], rel=1e-6)


@pytest.mark.parametrize("body", [
    {"query": "q", "items": ["a"]},
    {"query": "q", "items": ["a"], "label_token_ids": []},
    {"query": "q", "items": ["a"], "label_token_ids": [10**9]},
    {"query": "q", "items": [[1, 2]], "label_token_ids": [1]},
    {"query": [1, 2], "items": ["a"], "label_token_ids": [1]},
    {"items": ["a"], "label_token_ids": [1]},
    {"query": "q", "label_token_ids": [1]},
    {"query": "q", "items": [], "label_token_ids": [1]},
])
def test_bad_score_requests_are_400s(server, body):
    r = server.post("/v1/score", json=body)
    assert r.status_code == 400, r.text

"""/tokenize and /detokenize (and their /v1/ forms) as SGLang answers them; GET
/v1/models/{id} by served name or model path (slashes and all)."""
import urllib.parse

import pytest

from conftest import MODEL, model_path


@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_tokenize_round_trips(server, prefix):
    r = server.post(prefix + "/tokenize", json={"model": MODEL, "prompt": "Hello world, how are you?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(body["tokens"]) > 3
    assert body["max_model_len"] > 1000
    assert all(isinstance(t, int) for t in body["tokens"])
    d = server.post(prefix + "/detokenize", json={"model": MODEL, "tokens": body["tokens"]})
    assert d.status_code == 200, d.text
    assert d.json()["text"] == "Hello world, how are you?"


def test_tokenize_batches_and_matches_generate(server):
    r = server.post("/tokenize", json={"prompt": ["one two", "three"]}).json()
    assert len(r["tokens"]) == 2 and r["count"] == [len(t) for t in r["tokens"]]
    d = server.post("/detokenize", json={"tokens": r["tokens"]}).json()
    assert d["text"] == ["one two", "three"]
    # The ids /generate counts for a prompt are the ids /tokenize gives.
    g = server.post("/generate", json={"text": "one two", "sampling_params": {"max_new_tokens": 1}}).json()
    assert g["meta_info"]["prompt_tokens"] == r["count"][0]
    assert server.post("/detokenize", json={"tokens": []}).json()["text"] == ""


def test_tokenize_chat_messages_applies_the_template(server):
    msgs = [{"role": "user", "content": "What is 2+2?"}]
    r = server.post("/v1/tokenize", json={"messages": msgs})
    assert r.status_code == 200, r.text
    ids = r.json()["tokens"]
    text = server.post("/detokenize", json={"tokens": ids, "skip_special_tokens": False}).json()["text"]
    assert "What is 2+2?" in text and "<|im_start|>" in text and text.rstrip().endswith("assistant")
    # Same count the chat route reports for the prompt.
    c = server.post("/v1/chat/completions", json={"model": MODEL, "messages": msgs, "max_tokens": 1}).json()
    assert c["usage"]["prompt_tokens"] == len(ids)


@pytest.mark.parametrize("path,body", [
    ("/tokenize", {}),
    ("/tokenize", {"prompt": 5}),
    ("/tokenize", {"prompt": ["a", 3]}),
    ("/tokenize", {"prompt": "a", "messages": [{"role": "user", "content": "x"}]}),
    ("/tokenize", {"prompt": "a", "add_special_tokens": "yes"}),
    ("/tokenize", {"prompt": "a", "model": "no-such-model"}),
    ("/detokenize", {}),
    ("/detokenize", {"tokens": "abc"}),
    ("/detokenize", {"tokens": [1, "x"]}),
    ("/detokenize", {"tokens": [1, 2.5]}),
    ("/detokenize", {"tokens": [-1]}),
    ("/detokenize", {"tokens": [10**9]}),
    ("/v1/detokenize", {"tokens": [[1, 2], [10**9]]}),
    ("/v1/detokenize", {"tokens": [[1, 2], 3]}),
])
def test_bad_input_is_a_400_naming_the_field(server, path, body):
    r = server.post(path, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["message"]


def test_model_by_id_accepts_the_model_path(server):
    assert server.get("/v1/models/" + MODEL).json()["id"] == MODEL
    path = str(model_path())
    r = server.get("/v1/models/" + path.lstrip("/"))
    # The served path starts with '/', which the route's own slash absorbs; send it encoded too.
    r2 = server.get("/v1/models/" + urllib.parse.quote(path, safe=""))
    assert r.status_code == 200, r.text
    assert r2.status_code == 200, r2.text
    assert server.get("/v1/models/org/no-such-model").status_code == 404


def test_cache_salt_isolates_prefix_cache(server):
    """Requests with different `cache_salt`s never share cached prefixes; the same salt does."""
    msgs = [{"role": "system", "content": "You are a careful assistant for tenant isolation tests. " * 6},
            {"role": "user", "content": "Say hi."}]

    def cached(salt):
        body = {"model": MODEL, "messages": msgs, "max_tokens": 2}
        if salt is not None:
            body["cache_salt"] = salt
        r = server.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        return r.json()["usage"]["prompt_tokens_details"]["cached_tokens"]

    cached("salt-a-7f3")
    assert cached("salt-a-7f3") > 40
    assert cached("salt-b-7f3") == 0
    assert server.post("/generate", json={"text": "x", "cache_salt": 5}).status_code == 400

"""SGLang sessions: /open_session, /close_session and session_params on /generate
(continuation by rid, branching with offset/replace, drop_previous_output), reusing the
radix cache for the shared context."""
import uuid

from conftest import MODEL


def gen(server, text, session, rid=None, base=None, **params):
    sp = {"id": session}
    if base is not None:
        sp["rid"] = base
    sp.update(params)
    body = {"text": text, "session_params": sp, "sampling_params": {"temperature": 0, "max_new_tokens": 8}}
    if rid:
        body["rid"] = rid
    return server.post("/generate", json=body)


def tokens(server, text):
    return server.post("/tokenize", json={"prompt": text}).json()["tokens"]


def test_continuation_equals_resending_the_whole_context(server):
    sid = server.post("/open_session", json={"capacity_of_str_len": 1000}).json()
    assert isinstance(sid, str) and sid
    first = gen(server, "The recipe for bread:", sid, rid="s1-a")
    assert first.status_code == 200, first.text
    a = first.json()
    second = gen(server, " Next step:", sid, rid="s1-b", base="s1-a")
    assert second.status_code == 200, second.text
    b = second.json()
    # The continuation's prompt is the base's prompt + output + the new input (no second BOS).
    whole = tokens(server, "The recipe for bread:") + a["output_ids"] + tokens(server, " Next step:")[
        len(tokens(server, "")):]
    assert b["meta_info"]["prompt_tokens"] == len(whole)
    assert b["meta_info"]["cached_tokens"] >= len(whole) - 8 - 4
    plain = server.post("/generate", json={"input_ids": whole, "sampling_params": {"temperature": 0,
                                                                                  "max_new_tokens": 8}}).json()
    assert plain["output_ids"] == b["output_ids"]
    # Branch from the first request at an offset, replacing its other continuations.
    c = gen(server, " Instead:", sid, rid="s1-c", base="s1-a", offset=3, replace=True)
    assert c.status_code == 200, c.text
    assert c.json()["meta_info"]["prompt_tokens"] == 3 + len(tokens(server, " Instead:")) - len(tokens(server, ""))
    # s1-b was dropped with the replace: continuing it is an error.
    assert gen(server, " more", sid, rid="s1-d", base="s1-b").status_code == 400
    d = gen(server, " Only the prompt:", sid, rid="s1-e", base="s1-a", drop_previous_output=True)
    assert d.json()["meta_info"]["prompt_tokens"] == len(tokens(server, "The recipe for bread:")) + len(
        tokens(server, " Only the prompt:")) - len(tokens(server, ""))
    assert server.post("/close_session", json={"session_id": sid}).status_code == 200
    assert gen(server, "x", sid).status_code == 400


def test_session_errors(server):
    sid = "fixed-" + uuid.uuid4().hex[:8]
    assert server.post("/open_session", json={"capacity_of_str_len": 50, "session_id": sid}).json() == sid
    assert server.post("/open_session", json={"capacity_of_str_len": 50, "session_id": sid}).status_code == 400
    assert server.post("/open_session", json={}).status_code == 400
    assert gen(server, "x", sid, base="no-such-rid").status_code == 400
    assert gen(server, "word " * 80, sid).status_code == 400  # over the session's capacity
    assert server.post("/generate", json={"text": ["a", "b"], "session_params": {"id": sid}}).status_code == 400
    assert server.post("/close_session", json={"session_id": "nope"}).status_code == 400
    assert server.post("/close_session", json={"session_id": sid}).status_code == 200

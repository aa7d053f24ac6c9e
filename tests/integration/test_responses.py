"""The OpenAI Responses API through the official client: create, stream, retrieve,
cancel, previous_response_id, and error bodies."""
import pytest

from conftest import MODEL


def test_create_and_retrieve(server):
    client = server.openai()
    r = client.responses.create(model=MODEL, input="Say hello in one word.", max_output_tokens=8, temperature=0)
    assert r.status in ("completed", "incomplete")
    assert r.output_text and r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.usage.input_tokens > 0 and 0 < r.usage.output_tokens <= 8
    again = client.responses.retrieve(r.id)
    assert again.id == r.id and again.output_text == r.output_text
    # Same text as the chat route for the same conversation.
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hello in one word."}],
                                          max_tokens=8, temperature=0)
    assert chat.choices[0].message.content == r.output_text


def test_streaming_events_and_text(server):
    client = server.openai()
    kinds, deltas, final = [], [], None
    stream = client.responses.create(model=MODEL, input=[{"role": "user", "content": "Count to five."}],
                                     instructions="You are terse.", max_output_tokens=12, temperature=0, stream=True)
    for ev in stream:
        kinds.append(ev.type)
        if ev.type == "response.output_text.delta":
            deltas.append(ev.delta)
        if ev.type in ("response.completed", "response.incomplete"):
            final = ev.response
    assert kinds[0] == "response.created" and kinds[-1] in ("response.completed", "response.incomplete")
    for k in ("response.output_item.added", "response.content_part.added", "response.output_text.done",
              "response.output_item.done"):
        assert k in kinds
    assert "".join(deltas) == final.output_text
    plain = client.responses.create(model=MODEL, input=[{"role": "user", "content": "Count to five."}],
                                    instructions="You are terse.", max_output_tokens=12, temperature=0)
    assert plain.output_text == final.output_text


def test_previous_response_id_continues_the_conversation(server):
    client = server.openai()
    first = client.responses.create(model=MODEL, input="My name is Ada.", max_output_tokens=6, temperature=0)
    second = client.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id,
                                     max_output_tokens=6, temperature=0)
    chat = client.chat.completions.create(model=MODEL, max_tokens=6, temperature=0, messages=[
        {"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "What is my name?"}])
    assert second.output_text == chat.choices[0].message.content
    assert second.usage.input_tokens_details.cached_tokens > 0


def test_cancel_an_in_progress_response(server):
    import json
    rid, last = None, None
    body = {"model": MODEL, "input": "Write a long essay.", "max_output_tokens": 200, "temperature": 0, "stream": True}
    with server.post("/v1/responses", json=body, stream=True) as s:
        for line in s.iter_lines():
            if line.startswith(b"data: "):
                ev = json.loads(line[6:])
                if ev["type"] == "response.created":
                    rid = ev["response"]["id"]
                    assert server.get(f"/v1/responses/{rid}").json()["status"] == "in_progress"
                    c = server.post(f"/v1/responses/{rid}/cancel", json={})
                    assert c.status_code == 200, c.text
                    assert c.json()["status"] == "cancelled"
                last = ev
    assert rid is not None
    assert last["response"]["status"] == "cancelled"
    assert last["response"]["usage"]["output_tokens"] < 200
    assert server.get(f"/v1/responses/{rid}").json()["status"] == "cancelled"


@pytest.mark.parametrize("body,status", [
    ({"model": MODEL}, 400),
    ({"model": MODEL, "input": 5}, 400),
    ({"model": MODEL, "input": [{"role": "robot", "content": "x"}]}, 400),
    ({"model": MODEL, "input": [{"type": "function_call_output", "output": "x"}]}, 400),
    ({"model": MODEL, "input": "x", "tools": [{"type": "function", "name": "f"}]}, 400),
    ({"model": MODEL, "input": "x", "background": True}, 400),
    ({"model": MODEL, "input": "x", "previous_response_id": "resp_nope"}, 404),
    ({"model": "nope", "input": "x"}, 400),
])
def test_bad_requests(server, body, status):
    r = server.post("/v1/responses", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]
    assert server.get("/v1/responses/resp_unknown").status_code == 404

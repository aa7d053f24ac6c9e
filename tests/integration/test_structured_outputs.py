"""Structured outputs through the real server: JSON schema (response_format and
sampling_params.json_schema), regex and EBNF constrained decoding.

Every schema keeps outputs short (bounded strings, arrays and numbers) so the default
135M model finishes within a small max_tokens: the grammar forces the structure, the
model only picks the contents.
"""
import ast
import json
import re
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest
import requests

from conftest import MODEL, Server

S = {"type": "string", "maxLength": 12}

SCHEMAS = {
    "person": {"type": "object", "properties": {"name": S, "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                                "email": {"type": "string", "format": "email"}},
               "required": ["name", "age", "email"], "additionalProperties": False},
    "address": {"type": "object", "properties": {
        "street": S, "city": S, "zip": {"type": "string", "pattern": r"^\d{5}$"},
        "country": {"enum": ["US", "UK", "FR", "DE"]}}, "required": ["street", "city", "zip", "country"]},
    "product": {"type": "object", "properties": {
        "id": {"type": "integer", "minimum": 1, "maximum": 99999}, "name": S,
        "price": {"type": "number", "minimum": 0, "maximum": 10000},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3},
        "in_stock": {"type": "boolean"}}, "required": ["id", "name", "price", "tags", "in_stock"]},
    "order": {"type": "object", "properties": {
        "order_id": {"type": "string", "pattern": r"ORD-\d{4}"},
        "items": {"type": "array", "minItems": 1, "maxItems": 2, "items": {
            "type": "object", "properties": {"sku": {"type": "string", "maxLength": 6},
                                             "qty": {"type": "integer", "minimum": 1, "maximum": 9}},
            "required": ["sku", "qty"]}}}, "required": ["order_id", "items"]},
    "weather": {"type": "object", "properties": {
        "city": S, "temperature_c": {"type": "number", "minimum": -90, "maximum": 60},
        "conditions": {"enum": ["sunny", "cloudy", "rain", "snow"]}}, "required": ["city", "temperature_c", "conditions"]},
    "event": {"type": "object", "properties": {
        "title": S, "date": {"type": "string", "format": "date"},
        "attendees": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3}},
        "required": ["title", "date", "attendees"]},
    "sentiment": {"type": "object", "properties": {
        "label": {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "score": {"type": "number", "minimum": 0, "maximum": 1}}, "required": ["label", "score"]},
    "classification": {"type": "object", "properties": {
        "category": {"enum": ["bug", "feature", "question"]},
        "confidence": {"type": "integer", "minimum": 0, "maximum": 100}}, "required": ["category", "confidence"]},
    "todo_list": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "object", "properties": {
        "task": S, "done": {"type": "boolean"}}, "required": ["task", "done"]}},
    "profile_optional": {"type": "object", "properties": {
        "username": S, "nickname": S, "bio": {"type": "string", "maxLength": 20}, "verified": {"type": "boolean"}},
        "required": ["username"]},
    "book": {"type": "object", "properties": {
        "title": S, "author": S, "year": {"type": "integer", "minimum": 1000, "maximum": 2100},
        "genres": {"type": "array", "items": {"enum": ["fiction", "history", "science", "poetry"]}, "maxItems": 2}},
        "required": ["title", "author", "year", "genres"]},
    "recipe": {"type": "object", "properties": {
        "name": S, "ingredients": {"type": "array", "maxItems": 2, "items": {"type": "object", "properties": {
            "item": {"type": "string", "maxLength": 8}, "amount": {"type": "string", "maxLength": 6}},
            "required": ["item", "amount"]}},
        "minutes": {"type": "integer", "minimum": 1, "maximum": 300}}, "required": ["name", "ingredients", "minutes"]},
    "nullable_pydantic": {"title": "Contact", "type": "object", "properties": {
        "first_name": {"title": "First Name", "type": "string", "maxLength": 10},
        "middle_name": {"anyOf": [{"type": "string", "maxLength": 10}, {"type": "null"}], "default": None,
                        "title": "Middle Name"},
        "phone": {"anyOf": [{"type": "string", "pattern": r"\d{3}-\d{4}"}, {"type": "null"}]}},
        "required": ["first_name", "middle_name", "phone"]},
    "refs_defs": {"$defs": {"point": {"type": "object", "properties": {
        "x": {"type": "integer", "minimum": -100, "maximum": 100}, "y": {"type": "integer", "minimum": -100, "maximum": 100}},
        "required": ["x", "y"]}},
        "type": "object", "properties": {"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}},
        "required": ["start", "end"]},
    "recursive_tree": {"$defs": {"node": {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 6},
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}},
        "required": ["name"]}}, "$ref": "#/$defs/node"},
    "one_of_shapes": {"oneOf": [
        {"type": "object", "properties": {"kind": {"const": "circle"}, "radius": {"type": "integer", "minimum": 1, "maximum": 50}},
         "required": ["kind", "radius"]},
        {"type": "object", "properties": {"kind": {"const": "square"}, "side": {"type": "integer", "minimum": 1, "maximum": 50}},
         "required": ["kind", "side"]}]},
    "const_version": {"type": "object", "properties": {"version": {"const": "1.0"}, "name": S},
                      "required": ["version", "name"]},
    "enum_ints": {"type": "object", "properties": {"priority": {"enum": [1, 2, 3]}, "title": S},
                  "required": ["priority", "title"]},
    "flags": {"type": "object", "properties": {"admin": {"type": "boolean"}, "active": {"type": "boolean"},
                                               "beta": {"type": "boolean"}}, "required": ["admin", "active", "beta"]},
    "tuple_coords": {"type": "object", "properties": {"coords": {"type": "array", "prefixItems": [
        {"type": "number", "minimum": -90, "maximum": 90}, {"type": "number", "minimum": -180, "maximum": 180}],
        "items": False}, "label": S}, "required": ["coords", "label"]},
    "uuid_record": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}, "ok": {"type": "boolean"}},
                    "required": ["id", "ok"]},
    "timestamped": {"type": "object", "properties": {"at": {"type": "string", "format": "date-time"},
                                                     "level": {"enum": ["info", "warn", "error"]}},
                    "required": ["at", "level"]},
    "server_config": {"type": "object", "properties": {
        "host": {"type": "string", "format": "ipv4"}, "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "tls": {"type": "boolean"}}, "required": ["host", "port", "tls"]},
    "employee_nested": {"type": "object", "properties": {
        "name": S, "department": {"enum": ["eng", "sales", "ops"]},
        "manager": {"type": "object", "properties": {"name": S, "level": {"type": "integer", "minimum": 1, "maximum": 9}},
                    "required": ["name", "level"]}}, "required": ["name", "department", "manager"]},
    "movie": {"type": "object", "properties": {
        "title": S, "rating": {"type": "number", "minimum": 0, "maximum": 10},
        "cast": {"type": "array", "items": S, "minItems": 1, "maxItems": 2}}, "required": ["title", "rating", "cast"]},
    "api_response": {"type": "object", "properties": {
        "status": {"enum": ["ok", "error"]}, "data": {"type": "object", "properties": {
            "count": {"type": "integer", "minimum": 0, "maximum": 1000},
            "items": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 2}},
            "required": ["count", "items"]}}, "required": ["status", "data"]},
    "invoice": {"type": "object", "properties": {
        "number": {"type": "string", "pattern": r"^INV-\d{4}$"}, "total": {"type": "number", "minimum": 0, "maximum": 100000},
        "paid": {"type": "boolean"}}, "required": ["number", "total", "paid"]},
    "color": {"type": "object", "properties": {"name": S, "hex": {"type": "string", "pattern": "^#[0-9a-f]{6}$"}},
              "required": ["name", "hex"]},
    "type_list": {"type": "object", "properties": {"value": {"type": ["integer", "null"], "minimum": 0, "maximum": 99},
                                                   "unit": {"type": ["string"], "maxLength": 5}},
                  "required": ["value", "unit"]},
    "fixed_length": {"type": "object", "properties": {"code": {"type": "string", "minLength": 3, "maxLength": 3},
                                                      "name": S}, "required": ["code", "name"]},
    "matrix": {"type": "object", "properties": {"rows": {"type": "array", "maxItems": 2, "items": {
        "type": "array", "maxItems": 2, "items": {"type": "integer", "minimum": 0, "maximum": 9}}}}, "required": ["rows"]},
    "exclusive_min": {"type": "object", "properties": {"quantity": {"type": "integer", "exclusiveMinimum": 0, "maximum": 500},
                                                       "item": S}, "required": ["quantity", "item"]},
    "additional_typed": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 0, "maximum": 9}},
                         "required": ["id"], "additionalProperties": False},
}

PROMPTS = "Reply with JSON describing an example {}."
# Recursive schemas let a small model nest forever at temperature 0; show it a shallow shape.
PROMPT_OVERRIDES = {"recursive_tree": 'Copy this JSON exactly: {"name": "root", "children": [{"name": "leaf"}]}'}


def chat(server, schema_name, **extra):
    prompt = PROMPT_OVERRIDES.get(schema_name) or PROMPTS.format(schema_name.replace("_", " "))
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 160, "temperature": 0,
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": schema_name, "schema": SCHEMAS[schema_name], "strict": True}}}
    body.update(extra)
    return server.post("/v1/chat/completions", json=body)


def test_schema_corpus_validates(server):
    assert len(SCHEMAS) >= 30
    names = sorted(SCHEMAS)
    with ThreadPoolExecutor(8) as pool:
        replies = dict(zip(names, pool.map(lambda n: chat(server, n), names)))
    failures = []
    for name in names:
        r = replies[name]
        assert r.status_code == 200, f"{name}: {r.text}"
        choice = r.json()["choices"][0]
        text = choice["message"]["content"]
        if choice["finish_reason"] != "stop":
            failures.append(f"{name}: finish_reason {choice['finish_reason']}: {text!r}")
            continue
        try:
            jsonschema.validate(json.loads(text), SCHEMAS[name])
        except (ValueError, jsonschema.ValidationError) as e:
            failures.append(f"{name}: {e}: {text!r}")
    assert not failures, "\n".join(failures)


def test_generate_json_schema_string_and_completions(server):
    schema = SCHEMAS["sentiment"]
    r = server.post("/generate", json={"text": "Sentiment of 'I love it':", "sampling_params": {
        "json_schema": json.dumps(schema), "max_new_tokens": 40, "temperature": 0}})
    assert r.status_code == 200, r.text
    jsonschema.validate(json.loads(r.json()["text"]), schema)
    assert r.json()["meta_info"]["finish_reason"]["type"] == "stop"
    c = server.post("/v1/completions", json={"model": MODEL, "prompt": "A weather report as JSON:", "max_tokens": 60,
                                             "temperature": 0, "response_format": {
                                                 "type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMAS["weather"]}}})
    assert c.status_code == 200, c.text
    jsonschema.validate(json.loads(c.json()["choices"][0]["text"]), SCHEMAS["weather"])


def test_json_object_mode(server):
    r = server.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "Give a JSON object with a key 'a' set to 1."}],
        "max_tokens": 200, "temperature": 0, "response_format": {"type": "json_object"}})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "stop", choice
    assert isinstance(json.loads(choice["message"]["content"]), dict)


REGEXES = [
    (r"\d{3}-\d{3}-\d{4}", "My phone number is"),
    (r"(yes|no)", "Is the sky blue? Answer:"),
    (r"[A-Z][a-z]{2,8} [A-Z][a-z]{2,8}", "A person's full name:"),
    (r"((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)", "The server's IP address is"),
    (r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])", "Today's date is"),
    (r"[a-z]{1,10}@[a-z]{1,10}\.(com|org)", "Contact email:"),
]


@pytest.mark.parametrize("pattern,prompt", REGEXES)
def test_regex_outputs_match(server, pattern, prompt):
    r = server.post("/generate", json={"text": prompt, "sampling_params": {"regex": pattern, "max_new_tokens": 40,
                                                                          "temperature": 0}})
    assert r.status_code == 200, r.text
    assert r.json()["meta_info"]["finish_reason"]["type"] == "stop", r.json()
    assert re.fullmatch(pattern, r.json()["text"]), r.json()["text"]


def test_regex_on_chat_completions_with_n(server):
    r = server.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "Pick a color."}], "n": 3, "seed": 5,
        "temperature": 1.0, "max_tokens": 10, "regex": "(red|green|blue|yellow)"})
    assert r.status_code == 200, r.text
    for c in r.json()["choices"]:
        assert re.fullmatch("(red|green|blue|yellow)", c["message"]["content"]), c


ARITH = """
root ::= expr
expr ::= term (("+" | "-") term){0,3}
term ::= num | "(" expr ")"
num ::= [1-9] [0-9]{0,2}
"""

LIST = """root ::= "[" item ("," " " item){0,2} "]"
item ::= "\\"" [a-z]{1,8} "\\""
"""


def test_ebnf_outputs_parse(server):
    r = server.post("/generate", json={"text": "An arithmetic expression:", "sampling_params": {
        "ebnf": ARITH, "max_new_tokens": 40, "temperature": 0}})
    assert r.status_code == 200, r.text
    assert r.json()["meta_info"]["finish_reason"]["type"] == "stop", r.json()
    text = r.json()["text"]
    tree = ast.parse(text, mode="eval")
    assert all(isinstance(n, (ast.Expression, ast.BinOp, ast.Constant, ast.Add, ast.Sub)) for n in ast.walk(tree)), text
    r = server.post("/v1/completions", json={"model": MODEL, "prompt": "Three fruits:", "max_tokens": 40,
                                             "temperature": 0, "ebnf": LIST})
    assert r.status_code == 200, r.text
    items = json.loads(r.json()["choices"][0]["text"])
    assert 1 <= len(items) <= 3 and all(re.fullmatch("[a-z]{1,8}", i) for i in items), items


def test_streaming_equals_non_streaming_for_a_seed(server):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Describe a book as JSON."}], "max_tokens": 80,
            "temperature": 0.8, "seed": 11,
            "response_format": {"type": "json_schema", "json_schema": {"name": "b", "schema": SCHEMAS["book"]}}}
    plain = server.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    parts = []
    with requests.post(server.base + "/v1/chat/completions", json={**body, "stream": True}, stream=True, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            for c in json.loads(line[6:])["choices"]:
                parts.append(c["delta"].get("content") or "")
    assert "".join(parts) == plain
    jsonschema.validate(json.loads(plain), SCHEMAS["book"])


@pytest.mark.parametrize("route,body,needle", [
    ("/v1/chat/completions", {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "wat"}}}},
     "unknown type 'wat'"),
    ("/v1/chat/completions", {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "schema"),
    ("/v1/chat/completions", {"response_format": {"type": "xml"}}, "response_format type"),
    ("/v1/completions", {"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "array", "uniqueItems": True}}}}, "uniqueItems"),
    ("/generate", {"sampling_params": {"regex": "(unclosed"}}, "regex"),
    ("/generate", {"sampling_params": {"ebnf": "root ::= missing"}}, "missing"),
    ("/generate", {"sampling_params": {"json_schema": "{not json"}}, "not valid JSON"),
    ("/generate", {"sampling_params": {"regex": "a", "ebnf": "root ::= \"a\""}}, "Only one"),
])
def test_bad_constraints_are_400s(server, route, body, needle):
    base = {"/generate": {"text": "x"}, "/v1/completions": {"model": MODEL, "prompt": "x"},
            "/v1/chat/completions": {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}}[route]
    r = server.post(route, json={**base, **body})
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"], r.text


def test_grammar_backend_none_refuses_and_bad_flag_fails():
    s = Server("--grammar-backend", "none")
    try:
        r = s.post("/generate", json={"text": "x", "sampling_params": {"regex": "a"}})
        assert r.status_code == 400 and "--grammar-backend none" in r.json()["error"]["message"], r.text
        assert s.get("/get_server_info").json()["grammar_backend"] == "none"
    finally:
        s.stop()
    with pytest.raises(RuntimeError, match="grammar-backend"):
        Server("--grammar-backend", "bogus")

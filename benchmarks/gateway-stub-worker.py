#!/usr/bin/env python3
"""A cheap fake worker for router benchmarks that need more than nginx's fixed answer: it serves
`POST /tokenize` (fixed ids), `GET /kv_events` (an empty snapshot, then keep-alives, so a router
with `--kv-events` treats it as live and tokenizes every request), `/v1/models` and friends, and
answers every other POST with a fixed completion (an event stream when the body asks for one).
Usage: benchmarks/gateway-stub-worker.py PORT [PORT ...]   (one thread per connection)"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMPLETION = json.dumps({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
                         "choices": [{"index": 0, "text": " ok", "finish_reason": "stop"}]}).encode()
TOKENS = json.dumps({"tokens": list(range(1, 41)), "count": 40}).encode()
INFO = {"/v1/models": {"object": "list", "data": [{"id": "m", "object": "model"}]},
        "/get_model_info": {"model_path": "m", "is_generation": True},
        "/get_server_info": {"model_path": "m"}, "/server_info": {"model_path": "m"}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536  # one write per answer

    def log_message(self, *args):
        pass

    def answer(self, body, content_type="application/json"):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/kv_events":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b'data: {"seq": 0, "block_size": 16, "events": [{"type": "AllBlocksCleared"}]}\n\n')
            self.wfile.flush()
            try:
                while True:
                    time.sleep(2)
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
            except OSError:
                return
        self.answer(json.dumps(INFO.get(self.path, {"status": "ok"})).encode())

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/tokenize":
            return self.answer(TOKENS)
        if b'"stream": true' in body or b'"stream":true' in body:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for d in (b'data: {"choices": [{"text": " ok"}]}\n\n', b"data: [DONE]\n\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(d), d))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.answer(COMPLETION)


if __name__ == "__main__":
    servers = [ThreadingHTTPServer(("127.0.0.1", int(p)), Handler) for p in sys.argv[1:]]
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    servers[0].serve_forever()

#!/usr/bin/env python3
"""A deliberately faulty OpenAI-style /v1/completions server for bench-serving's
error-path tests (a unit-test double, not a stand-in for a real server).

By the order requests arrive: every 3rd answers HTTP 500, every 3rd+1 streams
one token and then drops the connection, the rest stream `max_tokens` tokens
correctly with a final usage chunk and [DONE]. Prints the port it listens on.
"""
import json
import signal
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

lock = threading.Lock()
count = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        with lock:
            n = count[0]
            count[0] += 1
        if n % 3 == 0:
            msg = b'{"error":"boom"}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()

        def chunk(obj):
            self.wfile.write(("data: " + json.dumps(obj) + "\n\n").encode())
            self.wfile.flush()

        tokens = int(body.get("max_tokens", 4))
        if n % 3 == 1:
            chunk({"choices": [{"text": "a", "finish_reason": None}]})
            self.close_connection = True
            return
        for _ in range(tokens):
            chunk({"choices": [{"text": "a", "finish_reason": None}]})
        chunk({"choices": [{"text": "", "finish_reason": "length"}], "usage": {"completion_tokens": tokens}})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True


# The test runner may hand us a mask that blocks SIGTERM; take it back so stop() works.
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])
server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()

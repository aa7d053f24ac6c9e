"""The router's proxy path against small Python stub workers (no model): retries before the
first byte, truncated answers, streaming chunk by chunk, keep-alive, pipelining, headers."""
import json
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from gateway_helpers import Router

OK = {"id": "cmpl-1", "object": "text_completion", "choices": [{"index": 0, "text": " ok"}]}


class Stub:
    """A worker answering every route the way `mode` says; `hits` counts proxied requests."""

    def __init__(self, mode="ok"):
        self.mode = mode
        self.hits = 0
        self.seen_headers = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, body, ctype="application/json"):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Worker", str(stub.port))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/health":
                    return self.reply(200, "{}")
                stub.hits += 1
                self.reply(200, json.dumps({"object": "list", "data": [{"id": "stub"}], "path": self.path}))

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n) or b"{}")
                stub.hits += 1
                stub.seen_headers.append(dict(self.headers))
                if body.get("sleep"):
                    time.sleep(body["sleep"])
                if stub.mode == "503":
                    return self.reply(503, '{"error": "busy"}')
                if stub.mode == "truncate":
                    # Promise 100 bytes, send 5, hang up: the router must not pass this on.
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    self.wfile.write(b'{"id"')
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if body.get("big_stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    event = b"data: " + b"x" * 65528 + b"\n\n"
                    for _ in range(body["big_stream"]):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(3):
                        chunk = f'data: {{"i": {i}}}\n\n'.encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                        time.sleep(0.3)
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.reply(200, json.dumps(OK | {"echo": body}))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_retries_a_busy_or_truncating_worker_and_relays_the_good_answer():
    good, busy, cut = Stub(), Stub("503"), Stub("truncate")
    router = Router([good, busy, cut], "--retry-initial-backoff-ms", "1", "--cb-failure-threshold", "1000")
    try:
        for i in range(12):
            r = router.post("/v1/completions", json={"prompt": f"p{i}"}, headers={"X-Request-Id": f"r{i}"})
            assert r.status_code == 200, r.text
            assert r.json()["echo"] == {"prompt": f"p{i}"}
            assert r.headers["X-Worker"] == str(good.port)
            assert int(r.headers["Content-Length"]) == len(r.content)
        assert busy.hits > 0 and cut.hits > 0  # round robin tried them, and retried elsewhere
        assert all(h.get("X-Request-Id", "").startswith("r") for h in good.seen_headers)
        metrics = router.get("/metrics").text
        assert f'smg_router_upstream_responses_total{{status="503",worker="{busy.base}"}}' in metrics \
            or f'smg_router_upstream_responses_total{{worker="{busy.base}",status="503"}}' in metrics
        assert 'smg_router_requests_total{route="/v1/completions"} 12.0' in metrics
        assert 'smg_http_requests_total{method="POST",path="/v1/completions"} 12.0' in metrics
    finally:
        router.stop()
        for s in (good, busy, cut):
            s.close()


def test_after_the_last_retry_the_workers_own_answer_is_relayed():
    busy = Stub("503")
    router = Router([busy], "--retry-max-retries", "2", "--retry-initial-backoff-ms", "1",
                    "--cb-failure-threshold", "1000")
    try:
        r = router.post("/generate", json={"text": "x"})
        assert r.status_code == 503, r.text
        assert r.json() == {"error": "busy"}
        assert busy.hits == 3  # the first try and two retries
    finally:
        router.stop()
        busy.close()


def test_a_worker_refusing_connections_gets_the_routers_502():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: refuses
        router = Router([dead], "--disable-health-check", "--retry-max-retries", "1",
                        "--retry-initial-backoff-ms", "1")
        try:
            r = router.post("/v1/completions", json={"prompt": "x"})
            assert r.status_code == 502, r.text
            assert r.json()["error"]["code"] == "upstream_error"
            assert dead in r.json()["error"]["message"]
        finally:
            router.stop()


def test_stream_chunks_arrive_as_the_worker_sends_them():
    w = Stub()
    router = Router([w])
    try:
        t0 = time.time()
        arrivals = []
        with requests.post(router.base + "/v1/completions", json={"prompt": "x", "stream": True},
                           stream=True, timeout=30) as r:
            assert r.status_code == 200
            assert r.headers["Content-Type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line:
                    arrivals.append((time.time() - t0, line))
        assert [l for _, l in arrivals] == [b'data: {"i": 0}', b'data: {"i": 1}', b'data: {"i": 2}']
        assert arrivals[0][0] < 0.25, arrivals  # not held back until the end (0.9 s)
    finally:
        router.stop()
        w.close()


def test_keep_alive_pipelined_and_connection_close_requests():
    w = Stub()
    router = Router([w])
    try:
        body = b'{"prompt": "pipelined"}'
        req = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        models = b"GET /v1/models?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        last = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        with socket.create_connection(("127.0.0.1", router.port), timeout=10) as s:
            # Four requests in one write: proxied, proxied with a query, the router's own, then close.
            s.sendall(req + models + health + last)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break  # the router closed after the `Connection: close` request
                data += chunk
        assert re.findall(rb"HTTP/1\.1 (\d+)", data) == [b"200"] * 4, data
        order = [data.find(b'"pipelined"'), data.find(b'"path": "/v1/models?x=1"'), data.find(b'"status"'),
                 data.rfind(b'"pipelined"')]
        assert all(i >= 0 for i in order) and order == sorted(order), data
    finally:
        router.stop()
        w.close()


def test_sigterm_lets_a_stream_in_flight_finish():
    w = Stub()
    router = Router([w])
    try:
        lines = []
        with requests.post(router.base + "/v1/completions", json={"prompt": "x", "stream": True},
                           stream=True, timeout=30) as r:
            it = r.iter_lines()
            for line in it:
                if line:
                    lines.append(line)
                    break
            router.proc.send_signal(signal.SIGTERM)  # after the first chunk, before the last
            lines += [l for l in it if l]
        assert lines == [b'data: {"i": 0}', b'data: {"i": 1}', b'data: {"i": 2}']
        assert router.proc.wait(timeout=30) == 0
        try:
            requests.get(router.base + "/health", timeout=2)
            raise AssertionError("the router still accepts connections after SIGTERM")
        except requests.ConnectionError:
            pass
    finally:
        router.stop()
        w.close()


def test_a_client_that_does_not_read_holds_the_stream_back_and_then_gets_all_of_it():
    w = Stub()
    router = Router([w])

    def rss_mb():
        with open(f"/proc/{router.proc.pid}/status") as f:
            return int(next(l for l in f if l.startswith("VmRSS")).split()[1]) // 1024

    try:
        before = rss_mb()
        n = 1000  # 64 MiB of events
        body = json.dumps({"prompt": "x", "big_stream": n}).encode()
        with socket.create_connection(("127.0.0.1", router.port), timeout=30) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            time.sleep(2)  # the worker could send it all by now; the router must not buffer it
            grown = rss_mb() - before
            total = 0
            while chunk := s.recv(1 << 20):
                total += len(chunk)
        assert grown < 32, f"router RSS grew {grown} MB while the client did not read"
        assert total > n * 65536, total  # every event (plus chunk framing), nothing lost at the close
    finally:
        router.stop()
        w.close()


def test_the_admission_queue_admits_in_turn_answers_408_and_forgets_clients_that_leave():
    w = Stub()
    router = Router([w], "--max-concurrent-requests", "1", "--queue-size", "4", "--queue-timeout-secs", "0.6",
                    policy="round_robin")

    def post(sleep):
        return requests.post(router.base + "/v1/completions", json={"prompt": "q", "sleep": sleep}, timeout=30)

    try:
        with ThreadPoolExecutor(3) as ex:
            # One request in flight for 0.3 s: the next waits its turn in the queue and passes.
            first = ex.submit(post, 0.3)
            time.sleep(0.1)
            second = ex.submit(post, 0)
            assert first.result().status_code == 200 and second.result().status_code == 200
            # One in flight for 1.5 s: the next waits out --queue-timeout-secs and gets 408.
            slow = ex.submit(post, 1.5)
            time.sleep(0.1)
            late = ex.submit(post, 0).result()
            assert late.status_code == 408 and late.json()["error"]["code"] == "queue_timeout", late.text
            assert slow.result().status_code == 200
        # A queued client that hangs up gives its place back (no slot leaks): a slow request holds
        # the slot, a second client queues and leaves, then a third request still gets through.
        body = b'{"prompt": "q", "sleep": 0.5}'
        raw = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        with socket.create_connection(("127.0.0.1", router.port)) as holder:
            holder.sendall(raw)
            time.sleep(0.1)
            with socket.create_connection(("127.0.0.1", router.port)) as leaver:
                leaver.sendall(raw)
                time.sleep(0.1)
            assert holder.recv(65536).startswith(b"HTTP/1.1 200")
        assert post(0).status_code == 200
        metrics = requests.get(router.base + "/metrics", timeout=10).text
        assert re.search(r'smg_router_requests_active\{[^}]*\} 0', metrics), metrics
        assert re.search(r'smg_http_rate_limit_total\{decision="timeout"\} 1', metrics), metrics
    finally:
        router.stop()
        w.close()

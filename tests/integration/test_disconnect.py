"""A client that closes its connection aborts its request promptly, even when the
request writes nothing meanwhile (non-streaming, or a stream still queued)."""
import json
import socket
import time

from conftest import Server


def _open_request(server, path, body):
    """Sends a POST on a raw socket and returns the socket without reading the reply."""
    payload = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    return s


def _wait(server, pred, timeout):
    deadline = time.time() + timeout
    load = server.load()
    while not pred(load) and time.time() < deadline:
        time.sleep(0.1)
        load = server.load()
    return load


LONG = {"text": "Count slowly from one to one million:", "sampling_params": {"max_new_tokens": 3000, "ignore_eos": True}}


def test_non_streaming_request_is_aborted_on_disconnect(server):
    _wait(server, lambda l: l["num_reqs"] == 0, 60)
    baseline = server.load()["num_tokens"]
    s = _open_request(server, "/generate", LONG)
    load = _wait(server, lambda l: l["num_running_reqs"] == 1 and l["num_tokens"] > baseline + 20, 30)
    assert load["num_running_reqs"] == 1
    t0 = time.time()
    s.close()
    load = _wait(server, lambda l: l["num_reqs"] == 0 and l["num_tokens"] <= baseline + 128, 5)
    assert load["num_reqs"] == 0, load
    # What stays is the prompt and the tokens generated so far, now in the radix cache (evictable).
    assert time.time() - t0 < 5
    # The server keeps serving on new connections.
    r = server.post("/generate", json={"text": "Hello", "sampling_params": {"max_new_tokens": 2}})
    assert r.status_code == 200


def test_queued_stream_is_dropped_on_disconnect():
    s = Server("--max-running-requests", "1")
    try:
        busy = _open_request(s, "/generate", LONG)
        _wait(s, lambda l: l["num_running_reqs"] == 1, 30)
        queued = _open_request(s, "/v1/completions", {"prompt": "Hello there", "max_tokens": 50, "stream": True})
        load = _wait(s, lambda l: l["num_waiting_reqs"] == 1, 10)
        assert load["num_waiting_reqs"] == 1, load
        queued.close()
        load = _wait(s, lambda l: l["num_waiting_reqs"] == 0, 5)
        assert load["num_waiting_reqs"] == 0 and load["num_running_reqs"] == 1, load
        busy.close()
        load = _wait(s, lambda l: l["num_reqs"] == 0, 5)
        assert load["num_reqs"] == 0, load
    finally:
        s.stop()


def test_keep_alive_still_works(server):
    """Watching for disconnects must not cost connection reuse: three requests, one socket."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.connect()
        sock = conn.sock
        for _ in range(3):
            conn.request("POST", "/generate", body=json.dumps({"text": "Hi", "sampling_params": {"max_new_tokens": 2}}),
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            assert r.status == 200
            r.read()
            assert conn.sock is sock
    finally:
        conn.close()

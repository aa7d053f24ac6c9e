"""--max-queued-requests: a full queue answers 503 at once, never a hang; the rest finish."""
import concurrent.futures
import time

from conftest import MODEL, Server


def test_full_queue_answers_503_and_admitted_requests_finish():
    server = Server("--max-running-requests", "1", "--max-queued-requests", "2")
    try:
        body = {"model": MODEL, "prompt": "Write a long story about a fox.", "max_tokens": 48,
                "temperature": 0, "ignore_eos": True}

        def one(_):
            t0 = time.time()
            r = server.post("/v1/completions", json=body)
            return r.status_code, time.time() - t0, r.json()

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            results = list(pool.map(one, range(12)))
        codes = [c for c, _, _ in results]
        assert codes.count(503) >= 1, codes
        assert set(codes) <= {200, 503}, codes
        assert codes.count(200) >= 2, codes
        for code, seconds, body_ in results:
            if code == 503:
                assert seconds < 5
                assert "queue is full" in body_["error"]["message"]
            else:
                assert body_["usage"]["completion_tokens"] == 48
        info = server.get("/get_server_info").json()
        assert info["max_queued_requests"] == 2
    finally:
        server.stop()

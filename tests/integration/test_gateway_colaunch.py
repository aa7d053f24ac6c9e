"""`serval launch-server --dp-size N`: N workers plus the router, stopped together."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import find_binary, free_port, model_path


def test_dp_size_co_launch_serves_and_stops_everything():
    binary = find_binary()
    if binary is None or not model_path().exists():
        pytest.skip("serval binary or model missing")
    port = free_port()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"serval-dp-{port}.log", "w")
    proc = subprocess.Popen([str(binary), "launch-server", "--model-path", str(model_path()), "--port", str(port),
                             "--dp-size", "2", "--threads", "1", "--max-total-tokens", "4096",
                             "--served-model-name", "smollm2", "--router-policy", "round_robin",
                             "--router-health-check-interval-secs", "1"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, "co-launch exited early"
            try:
                if requests.get(base + "/readiness", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.time() < deadline
            time.sleep(0.3)
        workers = requests.get(base + "/workers", timeout=10).json()["workers"]
        assert len(workers) == 2
        for i in range(4):
            r = requests.post(base + "/generate", json={"text": f"hi {i}", "sampling_params": {"max_new_tokens": 1}},
                              timeout=60)
            assert r.status_code == 200, r.text
        routed = sorted(w["routed"] for w in requests.get(base + "/workers", timeout=10).json()["workers"])
        assert routed == [2, 2]
        worker_ports = [int(w["url"].rsplit(":", 1)[1]) for w in workers]
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        log.close()
    assert rc == 0
    for p in worker_ports:
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{p}/health", timeout=2)


@pytest.mark.parametrize("args,message", [
    (["--dp-size", "2", "--enable-dp-attention"], "--enable-dp-attention"),
    (["--router-policy", "random"], "need --dp-size"),
    (["--dp-size", "2", "--router-policy", "nope"], "--policy must be one of"),
    (["--dp-size", "2", "--router-worker-urls", "http://x:1"], "--router-worker-urls"),
])
def test_dp_flag_errors_are_clear(args, message):
    binary = find_binary()
    if binary is None:
        pytest.skip("serval binary missing")
    out = subprocess.run([str(binary), "launch-server", "--port", "0", *args], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode != 0
    assert message in out.stderr + out.stdout, out.stderr

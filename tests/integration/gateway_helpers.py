"""Starts `serval launch-router` (and small Serval workers) for the gateway tests."""
import os
import signal
import subprocess
import time
from pathlib import Path

import requests

from conftest import Server, find_binary, free_port

# Small, single-threaded workers: three of them share CI's two cores.
WORKER_ARGS = ("--threads", "1", "--max-total-tokens", "4096", "--max-running-requests", "16")


def start_worker(port=None):
    """A Serval worker; `port` pins it (to restart a killed worker at the same address)."""
    if port is None:
        return Server(*WORKER_ARGS)
    # conftest's Server picks its own port; pin it by patching free_port for this call.
    import conftest
    original = conftest.free_port
    conftest.free_port = lambda: port
    try:
        return Server(*WORKER_ARGS)
    finally:
        conftest.free_port = original


class Router:
    """One `serval launch-router` process on a free loopback port."""

    def __init__(self, workers, *extra, policy="round_robin", wait_ready=True, startup_timeout=60):
        binary = find_binary()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        urls = [w if isinstance(w, str) else w.base for w in workers]
        args = [str(binary), "launch-router", "--port", str(self.port), "--policy", policy,
                "--health-check-interval-secs", "1", "--random-seed", "1", *extra]
        if urls:
            args += ["--worker-urls", *urls]
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"serval-router-{self.port}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + startup_timeout
        path = "/readiness" if (wait_ready and urls) else "/health"
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"router exited with {self.proc.returncode}: {self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.base + path, timeout=2).status_code == 200:
                    if not wait_ready or not urls or self.healthy_count() == len(urls):
                        return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"router not ready after {startup_timeout}s: {self.log_path.read_text()[-3000:]}")

    def get(self, path, **kw):
        return requests.get(self.base + path, timeout=kw.pop("timeout", 60), **kw)

    def post(self, path, **kw):
        return requests.post(self.base + path, timeout=kw.pop("timeout", 120), **kw)

    def delete(self, path, **kw):
        return requests.delete(self.base + path, timeout=kw.pop("timeout", 60), **kw)

    def workers(self):
        return self.get("/workers").json()["workers"]

    def healthy_count(self):
        return sum(1 for w in self.workers() if w["is_healthy"])

    def routed(self):
        return {w["url"]: w["routed"] for w in self.workers()}

    def generate(self, text, max_new_tokens=1, **kw):
        body = {"text": text, "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": 0}}
        return self.post("/generate", json=body, **kw)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def url_of(server):
    return f"http://127.0.0.1:{server.port}"

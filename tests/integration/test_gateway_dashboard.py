"""The dashboard renders in headless Chromium and shows the live worker table."""
import re
import shutil
import subprocess

import pytest

from gateway_helpers import Router, start_worker, url_of

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian package 'chromium')")
def test_dashboard_renders_the_worker_table():
    ws = [start_worker() for _ in range(2)]
    router = Router(ws, policy="cache_aware")
    try:
        for i in range(6):
            assert router.generate(f"dashboard request {i}").status_code == 200
        out = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--virtual-time-budget=4000", "--dump-dom", router.base + "/dashboard"],
            capture_output=True, text=True, timeout=90)
        dom = out.stdout
        assert "<table" in dom, out.stderr[-2000:]
        rows = re.findall(r'<tr data-id="(worker-\d+)">(.*?)</tr>', dom, re.S)
        assert [r[0] for r in rows] == ["worker-1", "worker-2"], dom[-3000:]
        cells = [re.findall(r"<td[^>]*>(.*?)</td>", r[1], re.S) for r in rows]
        assert {c[1] for c in cells} == {url_of(w) for w in ws}
        assert all(c[2] == "healthy" and c[3] == "closed" for c in cells)
        assert sum(int(c[6]) for c in cells) == 6
        assert 'id="policy">cache_aware<' in dom
    finally:
        router.stop()
        for w in ws:
            w.stop()

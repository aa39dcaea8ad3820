"""Screenshots of the app for the README: starts it with the shipped weights, opens each page in headless
Chromium and saves docs/images/<page>.png.

    python scripts/screenshots.py [--pages home count batch evaluate compare models train runs]

On the Count page it counts the first generated sample image with the default model, so the picture shows a
result. Needs Debian's chromium (/usr/bin/chromium) and Playwright.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PAGES = ["home", "count", "batch", "evaluate", "compare", "models", "train", "runs"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit(f"the app did not start: {log.read_text()[-2000:]}")


def settle(page, name: str, timeout_s: float = 180) -> None:
    """Wait until the page has drawn: no placeholder skeletons for two checks in a row, and on Count the
    count itself."""
    page.wait_for_selector("[data-testid='stApp']", timeout=60_000)
    if name == "count":
        page.locator('[data-testid="stMetric"]').filter(has_text="Count").first.wait_for(timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        busy = page.locator("[data-testid='stSkeleton']").count() + page.locator(
            "[data-testid='stStatusWidget']").filter(has_text="Running").count()
        quiet = quiet + 1 if busy == 0 else 0
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    from playwright import sync_api

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", nargs="+", default=PAGES, choices=PAGES)
    p.add_argument("--out", default=str(ROOT / "docs" / "images"))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = start_app(port, out / ".server.log")
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for name in args.pages:
                url = f"http://127.0.0.1:{port}/" + ("" if name == "home" else name)
                page.goto(url)
                settle(page, name)
                page.screenshot(path=str(out / f"{name}.png"), full_page=False)
                print(f"{name}: {out / f'{name}.png'}", flush=True)
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        (out / ".server.log").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

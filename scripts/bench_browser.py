"""Slider release -> redrawn overlay and count, measured in Chromium on the Count page (not a test).

    python scripts/bench_browser.py [--steps 20] [--size 1024 | --image FILE] [--model attention-unet-mask]
        [--split "Model borders"|"Distance transform"|"Both"|...] [--slider "Probability threshold"]
        [--shot out.png] [--floor [--floor-widgets N]] [--trace trace.json]

Starts ``streamlit run streamlit_app.py`` with the shipped weights, uploads an image (by default a generated
size x size image of touching disks), optionally sets "Split touching nuclei", and moves one slider (by
default "Min. distance between centres" in distance-transform mode, or the threshold) one step at a time
with the keyboard: a key press is a slider release. Each step is timed in the page, from the key-down event
until the new overlay picture is decoded (the overlay, the count and the rest of the result arrive in the
same fragment update), and the page's "Postprocess time" metric gives the server's share of it (postprocessing,
object table and quality flag), and the CPU time the browser and the server spent per step (on a 2-core machine they take
turns). ``--floor``: the same measurement on a bare Streamlit page (one fragment: the slider, a metric and a
pre-encoded 1 MP JPEG that changes with it): what any Streamlit page costs before our page and science.
Prints a table with the machine's CPU.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"

OVERLAY = '.st-key-count_overlay [data-testid="stImage"] img'
# the key-down time is taken in the page, so the driver's own round trips are not counted
RECORD_KEYDOWN = "() => document.addEventListener('keydown', () => { window.__keydown = performance.now(); }, true)"
WAIT_NEW_PICTURE = """([old]) => {
  const img = document.querySelector('.st-key-count_overlay [data-testid="stImage"] img');
  if (!img || img.src === old || !img.complete || img.naturalWidth === 0) return false;
  return performance.now() - window.__keydown;
}"""
POSTPROCESS_METRIC = """() => {
  for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
    if (m.innerText.includes('Postprocess time')) return m.querySelector('[data-testid="stMetricValue"]').innerText;
  }
  return null;
}"""


FLOOR_KINDS = ("mix", "slider", "number", "selectbox", "segmented", "expander", "metric", "markdown", "caption",
               "columns", "download")
FLOOR_APP = """
import cv2, numpy as np, streamlit as st
st.set_page_config(layout="wide")

@st.cache_resource
def pictures(size):
    rng = np.random.default_rng(0)
    base = (rng.random((size, size, 3)) * 60).astype(np.uint8)
    for _ in range(size * size // 900):
        c = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        cv2.circle(base, c, int(rng.integers(7, 13)), (200, 200, 200), -1)
    return [cv2.imencode(".jpg", cv2.circle(base.copy(), (40 + 8 * k, 40), 20, (0, 255, 0), 2))[1].tobytes()
            for k in range(101)]

st.title("Count")

@st.fragment
def panel():
    left, right = st.columns([1, 3])
    v = left.slider("Probability threshold", 0.0, 1.0, 0.5, 0.01)
    for k in range(WIDGETS):  # --floor-widgets: unchanged elements re-sent on every step, as a settings panel's
        if KIND == "mix":
            if k % 4 == 3:
                left.caption("a caption that stays the same at every step")
            else:
                [left.slider, left.number_input, left.toggle][k % 4](f"control {k}", key=f"w{k}")
        elif KIND == "slider":
            left.slider(f"slider {k}", 0, 10, 1, key=f"w{k}", help="help")
        elif KIND == "number":
            left.number_input(f"number {k}", key=f"w{k}", help="help")
        elif KIND == "selectbox":
            left.selectbox(f"select {k}", ["a", "b", "c"], key=f"w{k}", help="help")
        elif KIND == "segmented":
            left.segmented_control(f"view {k}", ["Image", "Objects", "Areas"], default="Image", key=f"w{k}")
        elif KIND == "expander":
            with left.expander(f"panel {k}"):
                st.caption("a caption inside")
        elif KIND == "metric":
            right.metric(f"metric {k}", "12 ms", help="help")
        elif KIND == "markdown":
            right.markdown(f"<span style='background:rgb(0,200,255)'>&nbsp;&nbsp;</span> chip {k}", unsafe_allow_html=True)
        elif KIND == "caption":
            left.caption(f"a caption {k}")
        elif KIND == "columns":
            a, b = left.columns(2)
            a.caption(f"left {k}")
            b.caption(f"right {k}")
        elif KIND == "download":
            right.download_button(f"file {k}", lambda: b"x", f"f{k}.csv", on_click="ignore", key=f"w{k}")
    right.metric("Postprocess time", "0 ms")
    right.container(key="count_overlay").image(pictures(SIZE)[round(v * 100)], width="stretch")

panel()
"""


def cpu_seconds(pids: set[int] | None = None, names: tuple[str, ...] = ()) -> float:
    """User + system CPU seconds of the processes in ``pids`` (and their children) or named ``names``."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.index("(") + 1: text.rindex(")")], text[text.rindex(")") + 2:].split()
        pid, ppid = int(stat.parent.name), int(rest[1])
        if (pids and (pid in pids or ppid in pids)) or any(n in comm for n in names):
            total += int(rest[11]) + int(rest[12])
    return total / os.sysconf("SC_CLK_TCK")


def cpu_name() -> str:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from cellcount.models.autotune import cpu_model

    return cpu_model()


def make_image(path: Path, size: int, seed: int = 0) -> None:
    """Touching bright disks of radius 7-12 px on a dark noisy background."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.float32)
    for _ in range(size * size // 900):
        cv2.circle(img, (int(rng.integers(0, size)), int(rng.integers(0, size))), int(rng.integers(7, 13)),
                   float(rng.uniform(120, 230)), -1)
    img = cv2.GaussianBlur(img, (0, 0), 1.5) + rng.normal(10, 4, img.shape)
    cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--image", type=Path, help="an image of yours instead of the generated one")
    ap.add_argument("--model", default="attention-unet-mask")
    ap.add_argument("--split", default="Distance transform",
                    help="the 'Split touching nuclei' option to choose first ('' keeps the model card's)")
    ap.add_argument("--slider", default="Min. distance between centres", help="label of the slider to move")
    ap.add_argument("--key", default="ArrowRight", help="key pressed on the slider at each step")
    ap.add_argument("--shot", help="save a screenshot of the page here at the end")
    ap.add_argument("--floor", action="store_true", help="a bare Streamlit page instead of the Count page")
    ap.add_argument("--floor-widgets", type=int, default=0,
                    help="with --floor: this many unchanged controls (sliders, number inputs, toggles, captions) "
                         "beside the slider in its fragment: what each element re-sent on a step costs the page")
    ap.add_argument("--floor-kind", default="mix", choices=FLOOR_KINDS,
                    help="with --floor-widgets: which kind of element (mix: sliders, number inputs, toggles, captions)")
    ap.add_argument("--post-script-gc", action="store_true",
                    help="with --floor: Streamlit's default full garbage collection after every run (the app turns it off)")
    ap.add_argument("--trace", metavar="FILE",
                    help="record a Chrome trace of the timed steps into FILE and print where the browser's time went "
                         "(tracing slows the page: read the timings of a run without it)")
    args = ap.parse_args()
    from playwright.sync_api import expect, sync_playwright

    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench_browser_"))
    app, cwd = "streamlit_app.py", ROOT
    if args.floor:
        (tmp / ".streamlit").mkdir()
        config = (ROOT / ".streamlit" / "config.toml").read_text()
        if args.post_script_gc:
            config = config.replace("postScriptGC = false", "postScriptGC = true")
        (tmp / ".streamlit" / "config.toml").write_text(config)
        (tmp / "floor_app.py").write_text(f"SIZE = {args.size}\nWIDGETS = {args.floor_widgets}\n"
                                           f"KIND = {args.floor_kind!r}\n" + FLOOR_APP)
        app, cwd, args.slider = "floor_app.py", tmp, "Probability threshold"
    if args.image:
        image = args.image.resolve()
    else:
        image = tmp / f"bench_{args.size}.png"
        make_image(image, args.size)
    port = free_port()
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", app, "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    times: list[float] = []
    server: list[float] = []  # the page's "Postprocess time" metric after each step, ms
    browser_cpu = server_cpu = 0.0
    unchanged = n_elements = 0
    try:
        for _ in range(180):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(180_000)
            expect.set_options(timeout=180_000)
            page.goto(url if args.floor else f"{url}/count")
            expect(page.get_by_role("heading", name="Count", exact=True)).to_be_visible()
            if not args.floor:
                open_count_page(page, expect, args, image)
            slider = page.locator('[data-testid="stSlider"]').filter(has_text=args.slider).get_by_role("slider")
            expect(slider).to_be_visible()
            page.wait_for_timeout(3000)  # let the mode change settle
            page.evaluate(RECORD_KEYDOWN)
            if args.trace:
                browser.start_tracing(page=page, path=args.trace, categories=[
                    "devtools.timeline", "disabled-by-default-devtools.timeline", "v8.execute", "blink", "cc"])
            cpu0 = cpu_seconds(names=("chrom",)), cpu_seconds({proc.pid})
            for _ in range(args.steps):
                old = page.evaluate(f"() => document.querySelector('{OVERLAY}').src")
                slider.press(args.key)
                try:
                    handle = page.wait_for_function(WAIT_NEW_PICTURE, arg=[old], polling="raf", timeout=10_000)
                    times.append(handle.json_value())
                    server.append(float(page.evaluate(POSTPROCESS_METRIC).split()[0].replace(",", "")))
                except Exception:  # noqa: BLE001 - the step left the objects unchanged: no new picture
                    unchanged += 1
                page.wait_for_timeout(300)  # idle between moves, as a user would be
            n_elements = page.evaluate("() => document.querySelectorAll('[data-testid=stElementContainer]').length")
            browser_cpu = (cpu_seconds(names=("chrom",)) - cpu0[0]) / args.steps
            if args.trace:
                browser.stop_tracing()
            server_cpu = (cpu_seconds({proc.pid}) - cpu0[1]) / args.steps
            if args.shot:
                page.screenshot(path=args.shot)
            browser.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        log.close()
    if not times:
        print("no step produced a new picture; see", tmp / "server.log")
        return 1
    print("server log:", tmp / "server.log")
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs; load average before / after: "
          f"{load_before[0]:.1f} / {os.getloadavg()[0]:.1f} (1 min)")
    shape = cv2.imread(str(image), cv2.IMREAD_UNCHANGED).shape[:2]
    what = (f"bare Streamlit page, {args.size} x {args.size} JPEG"
            + (f", {args.floor_widgets} more elements ({args.floor_kind}) in the fragment" if args.floor_widgets else "")
            if args.floor else
            f"image {image.name} ({shape[1]} x {shape[0]}), model {args.model}, split "
            f"{args.split or 'as the card says'!r}")
    print(f"{what}, slider {args.slider!r} ({args.key}), {len(times)} timed steps "
          f"({unchanged} without a new picture left out); {n_elements} elements on the page")
    print("| ms | median | min | max |")
    print("|---|---|---|---|")
    print(f"| key release -> redrawn overlay + count | {statistics.median(times):.0f} | {min(times):.0f} | "
          f"{max(times):.0f} |")
    print(f"| of which postprocessing, object table, quality flag (server) | {statistics.median(server):.0f} | {min(server):.0f} | "
          f"{max(server):.0f} |")
    print(f"CPU per step (mean, incl. the 300 ms pause): browser {1000 * browser_cpu:.0f} ms, "
          f"server {1000 * server_cpu:.0f} ms")
    if args.trace:
        print_trace_summary(Path(args.trace), args.steps)
    return 0


def print_trace_summary(path: Path, steps: int, top: int = 8) -> None:
    """Per step: each browser thread's busy time, the page's main-thread tasks, and its JavaScript by script."""
    import collections
    import json

    events = json.loads(path.read_text())
    events = events["traceEvents"] if isinstance(events, dict) else events
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
    threads, main, scripts = collections.Counter(), collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") != "X" or "dur" not in e:
            continue
        thread = names.get((e["pid"], e["tid"]), "?")
        if e["name"] in ("RunTask", "ThreadControllerImpl::RunTask"):  # top-level tasks: busy time, not nested
            threads[thread] += e["dur"]
        if thread == "CrRendererMain":
            main[e["name"]] += e["dur"]
            if e["name"] == "FunctionCall":
                url = (e.get("args", {}).get("data", {}).get("url") or "?").rsplit("/", 1)[-1]
                scripts[url] += e["dur"]
    print(f"\nChrome trace ({path}), ms per step (tracing adds overhead; events nest, so rows overlap):")
    print("busy threads (top-level tasks):", ", ".join(f"{k} {v / 1000 / steps:.0f}" for k, v in threads.most_common(5)))
    print("page main thread:", ", ".join(f"{k} {v / 1000 / steps:.0f}" for k, v in main.most_common(top)))
    print("JavaScript by script:", ", ".join(f"{k} {v / 1000 / steps:.0f}" for k, v in scripts.most_common(5)))


def open_count_page(page, expect, args, image: Path) -> None:
    """Choose the model, upload the image, wait for its count and choose the split mode."""
    combo = page.get_by_role("combobox", name="Model")
    combo.click()
    combo.fill(args.model)
    page.keyboard.press("Enter")
    page.locator('[data-testid="stRadio"]').filter(has_text="Image").get_by_text("Upload", exact=True).click()
    page.locator('[data-testid="stFileUploader"]').filter(has_text="Upload an image").locator(
        "input[type=file]").set_input_files(str(image))
    expect(page.get_by_text(f"{image.name}: kept objects are outlined", exact=False)).to_be_visible()
    if args.split:
        page.get_by_role("combobox", name="Split touching nuclei").click()
        page.get_by_role("option", name=args.split).click()


if __name__ == "__main__":
    sys.exit(main())

"""Renders an HTML report of `dnadet-tf evaluate --report` in headless Chromium
and checks that it displays: every <img> loaded (naturalWidth > 0, read back
from the rendered DOM), and the screenshot is not blank.

    python benchmarks/report_screenshot.py [REPORT.html] [--screenshot FILE]

Without REPORT.html it first builds one: small synthetic data (tests/synthetic.py),
a `tiny` run trained for 40 steps, `dnadet-tf evaluate --report`. Needs the
Debian package `chromium` (apt-get install -y chromium). Exits 0 when the
checks pass, 1 when they fail, 2 when Chromium is missing.

The image check renders a copy of the report in a fresh temporary folder with a
small script appended that, on the load event, writes each image's state into
the DOM, which `--dump-dom` prints. The copy sits alone in that folder, so an
image that is not embedded (a relative or remote `src`) fails to load there
(the browser runs with background networking off and nothing to reach).
"""
import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
WINDOW_SIZE = (1200, 3000)
PROBE_ID = "dnadet-image-check"
PROBE_SCRIPT = """<script>
window.addEventListener("load", function () {
  var rows = Array.prototype.map.call(document.images, function (img) {
    return {complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
            src: (img.getAttribute("src") || "").slice(0, 40)};
  });
  var pre = document.createElement("pre");
  pre.id = "%s";
  pre.textContent = JSON.stringify(rows);
  document.body.appendChild(pre);
});
</script>""" % PROBE_ID


def find_chromium():
    """Path of a Chromium binary, or None."""
    for candidate in CHROMIUM_CANDIDATES:
        path = candidate if os.path.isabs(candidate) else shutil.which(candidate)
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _run_chromium(chromium, extra, url, timeout=120):
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        command = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            *extra, url,
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def take_screenshot(html_path, png_path, chromium=None, window_size=WINDOW_SIZE):
    """Renders `html_path` into `png_path` (window_size pixels); returns png_path."""
    chromium = chromium or find_chromium()
    result = _run_chromium(chromium, [f"--screenshot={os.path.abspath(png_path)}",
                                      f"--window-size={window_size[0]},{window_size[1]}"],
                           "file://" + os.path.abspath(html_path))
    if not os.path.isfile(png_path):
        raise RuntimeError(f"chromium wrote no screenshot (exit {result.returncode}): {result.stderr[-2000:]}")
    return png_path


def image_states(html_path, chromium=None):
    """[{complete, width, height, src}] per <img>, as the browser sees them after load."""
    chromium = chromium or find_chromium()
    with open(html_path, encoding="utf-8") as f:
        text = f.read()
    text = text.replace("</body>", PROBE_SCRIPT + "</body>") if "</body>" in text else text + PROBE_SCRIPT
    folder = tempfile.mkdtemp(prefix="report-probe-")
    try:
        probe = os.path.join(folder, "probe.html")
        with open(probe, "w", encoding="utf-8") as f:
            f.write(text)
        result = _run_chromium(chromium, ["--dump-dom", "--virtual-time-budget=10000"], "file://" + probe)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    match = re.search(rf'<pre id="{PROBE_ID}">(.*?)</pre>', result.stdout, re.S)
    if not match:
        raise RuntimeError(f"the probe did not run (exit {result.returncode}): {result.stderr[-2000:]}")
    return json.loads(html.unescape(match.group(1)))


def screenshot_stats(png_path):
    """Fractions of non-white and of colourful pixels, and the number of distinct colours."""
    from PIL import Image

    with Image.open(png_path) as image:
        pixels = np.asarray(image.convert("RGB"), np.int32)
    flat = pixels.reshape(-1, 3)
    non_white = float(np.mean(flat.min(axis=1) < 235))
    colourful = float(np.mean(flat.max(axis=1) - flat.min(axis=1) > 60))
    distinct = int(len(np.unique(flat[:, 0] * 65536 + flat[:, 1] * 256 + flat[:, 2])))
    return {"size": [int(pixels.shape[1]), int(pixels.shape[0])], "non_white": round(non_white, 4),
            "colourful": round(colourful, 4), "distinct_colours": distinct}


def check_report(html_path, screenshot_path, chromium=None, min_images=1):
    """Renders and checks a report. Returns {ok, problems, images, screenshot}."""
    chromium = chromium or find_chromium()
    states = image_states(html_path, chromium)
    take_screenshot(html_path, screenshot_path, chromium)
    stats = screenshot_stats(screenshot_path)
    problems = []
    if len(states) < min_images:
        problems.append(f"expected at least {min_images} images, found {len(states)}")
    for i, state in enumerate(states):
        if not state["complete"] or state["width"] <= 0 or state["height"] <= 0:
            problems.append(f"image {i} did not load (src {state['src']!r})")
        elif not state["src"].startswith("data:image/"):
            problems.append(f"image {i} is not embedded (src {state['src']!r})")
    if stats["non_white"] < 0.05:
        problems.append(f"the screenshot is almost blank ({100 * stats['non_white']:.1f} % non-white pixels)")
    if stats["colourful"] < 0.01 or stats["distinct_colours"] < 256:
        problems.append(f"the screenshot shows no pictures ({stats})")
    return {"ok": not problems, "problems": problems, "images": states, "screenshot": stats}


def build_demo_report(folder):
    """Synthetic data, a tiny run, `dnadet-tf evaluate --report`: returns the report's path."""
    import io

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(root, "tests"))
    from synthetic import make_upsampling_tree

    from dnadet_tf.cli.main import main
    from dnadet_tf.training import fit

    for seed, (split, count) in enumerate({"train": 24, "val": 12, "test": 12}.items(), start=1):
        make_upsampling_tree(os.path.join(folder, split), count, seed=seed)
    run = os.path.join(folder, "run")
    print("training a tiny run ...", flush=True)
    fit(os.path.join(folder, "train"), run, val=os.path.join(folder, "val"), preset="tiny", steps=40,
        output=io.StringIO())
    report = os.path.join(folder, "report")
    code = main(["evaluate", "--model", run, "--data", os.path.join(folder, "test"), os.path.join(folder, "val"),
                 "--json", os.path.join(folder, "evaluation", "evaluation.json"), "--report", report])
    if code:
        raise RuntimeError(f"dnadet-tf evaluate exited {code}")
    return os.path.join(report, "report.html")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", nargs="?", help="report.html (default: build a demo report first)")
    parser.add_argument("--screenshot", default="report_screenshot.png", help="where to write the PNG")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("chromium not found; install it with: apt-get update && apt-get install -y chromium", file=sys.stderr)
        return 2
    report = args.report
    if report is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        report = build_demo_report(tempfile.mkdtemp(prefix="dnadet-report-demo-"))
    result = check_report(report, args.screenshot, chromium)
    print(f"report: {report}")
    print(f"screenshot: {args.screenshot} {result['screenshot']}")
    loaded = sum(1 for s in result["images"] if s["complete"] and s["width"] > 0)
    print(f"images: {loaded} of {len(result['images'])} loaded: "
          + ", ".join(f"{s['width']}x{s['height']}" for s in result["images"]))
    for problem in result["problems"]:
        print(f"FAIL: {problem}")
    print("OK" if result["ok"] else "FAILED")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

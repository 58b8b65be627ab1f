"""Latency of the web app (`dnadet-tf export --formats web`) in headless Chromium, next to LiteRT in Python.

    python benchmarks/web_latency.py [--model RUN] [--preset cpu|paper|tiny] [--runs 10]
        [--json benchmarks/results/web_latency-<preset>.json] [--screenshot docs/web_app.png [--screenshot-image FILE]]
    python benchmarks/web_latency.py --render benchmarks/results/web_latency-*.json

For one run dir (default: an untrained classifier of `--preset`; latency does not depend
on the weights), exports the int8 site and a float32 site, serves each on 127.0.0.1 and
measures, in Debian's chromium driven by Playwright:
  - first result: from navigation to the first image attributed (the model loaded, then
    decoding + preprocessing + inference of one photo), in a fresh profile (cold: every file
    from the server) and after a reload (warm: the service worker's cache); median of 3;
  - per image: median `seconds` of window.dnadet.attribute over 8 of the package's demo photos
    (320 px JPEGs), and its parts (decode, preprocessing, model);
and, on the same .tflite files and photos, LiteRT in Python: the model alone with 1 thread
(what the browser's non-threaded build uses) and with all CPUs, and load_rgb +
preprocess_image + model. The two formats and the two runtimes are measured in turn, photo
by photo, so that load from other jobs on a shared machine falls on all of them alike. Writes JSON and prints docs/results.md's Markdown table; `--render`
prints the table from JSON files. `--screenshot` saves the page at a phone viewport
(390x844 CSS px, device scale 2) after attributing `--screenshot-image`.
Needs: pip install playwright, apt-get install chromium, npm ci --prefix web.
"""
import argparse
import contextlib
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import web_harness as harness  # noqa: E402

from dnadet_tf.machine import describe_machine  # noqa: E402

FIRST_RESULT_JS = """async ([b64, type]) => {
  const info = await window.dnadet.ready;
  const ready = performance.now();
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const answer = await window.dnadet.attribute(new Blob([bytes], {type}));
  return {ready_ms: ready, first_result_ms: ready + 1000 * answer.seconds, build: info.build,
          load_ms: 1000 * info.load_seconds, controlled: navigator.serviceWorker.controller !== null};
}"""


def untrained_run(folder, preset, class_names):
    """A run dir holding an untrained classifier of `preset` (as tests/test_bad_input.py makes one)."""
    from dnadet_tf import runs
    from dnadet_tf.config import make_config
    from dnadet_tf.model import Backbone, Classifier

    os.makedirs(folder)
    config = make_config(preset)
    runs.RunDir(folder).start(config, class_names)
    Classifier(Backbone(config.model.width), len(class_names), config.model.dropout, class_names,
               config.preprocess).save(os.path.join(folder, runs.BEST_MODEL))
    return folder


def export_sites(run, folder, data=None):
    """(int8 site, float32 site, export report) of `run`, exported under `folder`; `data` calibrates the
    int8 model and serves the parity report (default: the run's own data)."""
    from PIL import Image

    from dnadet_tf.cli.main import main
    from dnadet_tf.exports import web

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(["export", "--model", run, "--out", folder, "--formats", "float32,web", "--max-eval", "30",
                     "--calibration-images", "100"] + (["--calibration", data, "--eval", data] if data else []))
    if code:
        raise RuntimeError(f"dnadet-tf export exited {code}: {out.getvalue()[-2000:]}")
    base = os.path.join(folder, "dnadet")
    float32_site = os.path.join(folder, "web-float32")
    web.write_site(float32_site, os.path.join(base, "tflite", "dnadet-float32.tflite"), web.find_runtime(),
                   Image.MAX_IMAGE_PIXELS, {"name": "dnadet", "version": 1, "format": "float32"})
    return os.path.join(base, "web"), float32_site, harness.read_json(os.path.join(base, "report.json"))


def _payload(path):
    import base64

    with open(path, "rb") as f:
        return [base64.b64encode(f.read()).decode("ascii"), harness.mime_type(path)]


def first_result(browser, url, photo):
    """One fresh profile: page open to first result, cold (every file from the server) and warm (reload,
    the service worker's cache), ms."""
    page = harness.AppPage(browser, url)
    page.page.goto(url)
    cold = page.page.evaluate(FIRST_RESULT_JS, _payload(photo))
    page.page.evaluate("() => navigator.serviceWorker.ready.then(() => undefined)")
    page.page.reload()
    warm = page.page.evaluate(FIRST_RESULT_JS, _payload(photo))
    if not warm["controlled"]:
        raise RuntimeError("the reloaded page is not controlled by the service worker")
    if page.foreign_requests():
        raise RuntimeError(f"requests left the site: {page.foreign_requests()}")
    page.close()
    return cold["first_result_ms"], warm["first_result_ms"], cold["build"]


class PythonLiteRT:
    """LiteRT in Python on one .tflite file: the model alone (1 thread and all CPUs), and file -> result."""

    def __init__(self, tflite, photos):
        from dnadet_tf.exports.predictors import TFLitePredictor
        from dnadet_tf.images import load_rgb
        from dnadet_tf.preprocess import preprocess_image

        self.threads = sorted({1, os.cpu_count() or 1})
        self.predictors = {t: TFLitePredictor(tflite, num_threads=t) for t in self.threads}
        self._prepare = lambda path: preprocess_image(load_rgb(path), self.predictors[1].preprocess).numpy()
        self.pixels = {path: self._prepare(path) for path in photos}
        for predictor in self.predictors.values():
            predictor.predict_one(self.pixels[photos[0]])

    def timings(self, path):
        """{'model_ms': {threads: ms}, 'file_to_result_ms': ms} for one photo."""
        model_ms = {}
        for threads, predictor in self.predictors.items():
            start = time.perf_counter()
            predictor.predict_one(self.pixels[path])
            model_ms[str(threads)] = 1000 * (time.perf_counter() - start)
        start = time.perf_counter()
        self.predictors[1].predict_one(self._prepare(path))
        return {"model_ms": model_ms, "file_to_result_ms": 1000 * (time.perf_counter() - start)}


def measure(browser, sites, photos, runs, first_repeats=3):
    """Every measurement of both formats, interleaved (format by format within each photo and repeat) so that
    a machine shared with other jobs loads both alike; returns {format: row without size}."""
    formats = list(sites)
    samples = {fmt: {"cold": [], "warm": [], "build": set(), "total_ms": [], "decode_ms": [], "preprocess_ms": [],
                     "inference_ms": [], "python": []} for fmt in formats}
    with contextlib.ExitStack() as stack:
        servers = {fmt: stack.enter_context(harness.SiteServer(site)) for fmt, site in sites.items()}
        print("first results ...", flush=True)
        for _ in range(first_repeats):
            for fmt in formats:
                cold, warm, build = first_result(browser, servers[fmt].url, photos[0])
                samples[fmt]["cold"].append(cold)
                samples[fmt]["warm"].append(warm)
                samples[fmt]["build"].add(build)
        pages, python = {}, {}
        for fmt in formats:
            pages[fmt] = harness.AppPage(browser, servers[fmt].url)
            pages[fmt].open("?sw=0")
            pages[fmt].attribute(photos[0])  # warm-up
            python[fmt] = PythonLiteRT(os.path.join(sites[fmt], "model", f"dnadet-{fmt}.tflite"), photos)
        print(f"per image: {runs} x {len(photos)} photos x {len(formats)} formats ...", flush=True)
        for _ in range(runs):
            for photo in photos:
                for fmt in formats:
                    answer = pages[fmt].attribute(photo)
                    samples[fmt]["total_ms"].append(1000 * answer["seconds"])
                    for key in ("decode_ms", "preprocess_ms", "inference_ms"):
                        samples[fmt][key].append(answer["timings"][key])
                    samples[fmt]["python"].append(python[fmt].timings(photo))
        for page in pages.values():
            page.close()
    median = statistics.median
    rows = {}
    for fmt, s in samples.items():
        threads = s["python"][0]["model_ms"].keys()
        rows[fmt] = {
            "format": fmt,
            "first_result": {"cold_ms": median(s["cold"]), "warm_ms": median(s["warm"]), "cold_all_ms": s["cold"],
                             "warm_all_ms": s["warm"], "build": sorted(s["build"])},
            "browser": {**{k: median(s[k]) for k in ("total_ms", "decode_ms", "preprocess_ms", "inference_ms")},
                        "samples": len(s["total_ms"])},
            "python": {"model_ms": {t: median([x["model_ms"][t] for x in s["python"]]) for t in threads},
                       "file_to_result_ms_1_thread": median([x["file_to_result_ms"] for x in s["python"]])},
        }
    return rows


def take_screenshot(browser, url, image, path):
    """The page at a phone viewport after attributing `image` through its file input."""
    page = harness.AppPage(browser, url, viewport=harness.PHONE_VIEWPORT, device_scale_factor=2)
    page.open("?sw=0")
    page.page.set_input_files("#file-input", image)
    page.page.wait_for_selector("#result:not([hidden])")
    page.page.evaluate("() => document.activeElement && document.activeElement.blur()")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    page.page.screenshot(path=path, full_page=True)
    page.close()
    return path


def render(document):
    """The Markdown table of docs/results.md for one benchmark JSON."""
    threads = sorted(document["rows"][0]["python"]["model_ms"], key=int)
    load = document["machine"].get("load_average_1min")
    lines = [f"{document['preset_label']}, input {document['input_size']} px; {document['photos']} photos "
             f"({document['photo_size']}); Chromium {document['machine']['chromium']} headless, "
             f"{document['runtime']}; {document['machine']['cpus']} CPUs"
             + (f", load average {load['start']:.1f} -> {load['end']:.1f}" if load else ""), "",
             "| model | file | page open to first result: first visit | again (offline cache) | browser, per image "
             "(decode + preprocess + model) | " + " | ".join(f"LiteRT Python, model, {t} thread{'s' * (t != '1')}"
                                                          for t in threads)
             + " | LiteRT Python, file to result (1 thread) |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(threads) + "---:|"]
    for row in document["rows"]:
        b, f, p = row["browser"], row["first_result"], row["python"]
        lines.append(
            f"| {row['format']} | {row['size_bytes'] / 1e6:.2f} MB | {f['cold_ms'] / 1000:.2f} s | "
            f"{f['warm_ms'] / 1000:.2f} s | {b['total_ms']:.0f} ms ({b['decode_ms']:.0f} + {b['preprocess_ms']:.0f} "
            f"+ {b['inference_ms']:.0f}) | " + " | ".join(f"{p['model_ms'][t]:.0f} ms" for t in threads)
            + f" | {p['file_to_result_ms_1_thread']:.0f} ms |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="run dir to export (default: an untrained classifier of --preset)")
    parser.add_argument("--preset", default="cpu", choices=("paper", "cpu", "tiny"),
                        help="preset of the untrained classifier when --model is not given")
    parser.add_argument("--label", help="how the tables name the model (default: the run dir's name or the preset)")
    parser.add_argument("--runs", type=int, default=5, help="passes over the photos per measurement")
    parser.add_argument("--json", help="output JSON (default benchmarks/results/web_latency-<preset>.json)")
    parser.add_argument("--screenshot", help="save the page at a phone viewport to this PNG")
    parser.add_argument("--screenshot-image", help="image attributed in the screenshot (default: a demo photo)")
    parser.add_argument("--render", nargs="+", metavar="JSON", help="only print the tables of these JSON files")
    args = parser.parse_args(argv)
    if args.render:
        for path in args.render:
            print(render(harness.read_json(path)))
        return 0
    from playwright.sync_api import sync_playwright
    from PIL import Image

    chromium = harness.find_chromium()
    if chromium is None:
        print("chromium not found; install it with: apt-get update && apt-get install -y chromium", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    load_before = os.getloadavg()
    photos_dir = os.path.join(ROOT, "dnadet_tf", "zoo", "demo_photos")
    photos = harness.demo_photos()[:8]
    work = tempfile.mkdtemp(prefix="dnadet-web-latency-")
    try:
        if args.model:
            run, label = args.model, args.label or f"run {os.path.basename(os.path.normpath(args.model))}"
        else:
            run = untrained_run(os.path.join(work, "run"), args.preset, ["a", "b", "c"])
            label = args.label or f"`{args.preset}` preset (untrained weights)"
        print(f"exporting {run} ...", flush=True)
        int8_site, float32_site, report = export_sites(run, os.path.join(work, "export"),
                                                       None if args.model else photos_dir)
        sizes = {row["format"]: row["size_bytes"] for row in report["rows"]}
        preprocess = report["preprocess"]
        with sync_playwright() as playwright:
            browser = harness.launch_chromium(playwright, chromium)
            measured = measure(browser, {"int8": int8_site, "float32": float32_site}, photos, args.runs)
            if args.screenshot:
                with harness.SiteServer(int8_site) as server:
                    take_screenshot(browser, server.url, args.screenshot_image or photos[0], args.screenshot)
            version = browser.version
            browser.close()
        rows = [{**measured[fmt], "size_bytes": sizes[fmt]} for fmt in ("int8", "float32")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    widths = set()
    for photo in photos:
        with Image.open(photo) as image:
            widths.add(f"{image.width}x{image.height}")
    photo_size = "JPEG, " + ", ".join(sorted(widths))
    document = {
        "benchmark": "web_latency", "created": time.strftime("%Y-%m-%d %H:%M:%S"), "model": run,
        "preset_label": label, "input_size": preprocess["resize2"], "preprocess": preprocess,
        "photos": len(photos), "photo_size": photo_size, "runs": args.runs, "runtime": report["web"]["runtime"],
        # dnadet_tf.machine's description (CPU model, speed features), with the load at the start and at the end
        "machine": {**describe_machine(), "platform": platform.platform(), "chromium": version,
                    "python": platform.python_version(),
                    "load_average_1min": {"start": load_before[0], "end": os.getloadavg()[0]}},
        "rows": rows,
    }
    path = args.json or os.path.join(HERE, "results", f"web_latency-{args.preset if not args.model else 'run'}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    from dnadet_tf.runs import write_json_atomic
    write_json_atomic(path, document)
    print(render(document))
    print(f"wrote {path}" + (f" and {args.screenshot}" if args.screenshot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

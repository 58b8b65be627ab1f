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
  - per image: median `seconds` of window.dnadet.attribute over the package's demo photos
    (320 px JPEGs), and its parts (decode, preprocessing, model);
and, on the same .tflite files and photos, LiteRT in Python: the model alone with 1 thread
(what the browser's non-threaded build uses) and with all CPUs, and load_rgb +
preprocess_image + model. Writes JSON and prints the README's Markdown table; `--render`
prints the table from JSON files. `--screenshot` saves the page at a phone viewport
(390x844 CSS px, device scale 2) after attributing `--screenshot-image`.
Needs: pip install playwright, apt-get install chromium, npm ci --prefix web.
"""
import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import web_harness as harness  # noqa: E402

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


def first_result(browser, url, photo, repeats=3):
    """Cold (fresh profile) and warm (reload, service worker cache) page-open-to-first-result times, ms."""
    cold, warm, builds = [], [], set()
    for _ in range(repeats):
        page = harness.AppPage(browser, url)
        page.page.goto(url)
        result = page.page.evaluate(FIRST_RESULT_JS, _payload(photo))
        cold.append(result["first_result_ms"])
        builds.add(result["build"])
        page.page.evaluate("() => navigator.serviceWorker.ready.then(() => undefined)")
        page.page.reload()
        result = page.page.evaluate(FIRST_RESULT_JS, _payload(photo))
        if not result["controlled"]:
            raise RuntimeError("the reloaded page is not controlled by the service worker")
        warm.append(result["first_result_ms"])
        assert page.foreign_requests() == [], page.foreign_requests()
        page.close()
    return {"cold_ms": statistics.median(cold), "warm_ms": statistics.median(warm), "cold_all_ms": cold,
            "warm_all_ms": warm, "build": sorted(builds)}


def per_image(browser, url, photos, runs):
    """Median seconds of window.dnadet.attribute and of its parts over `runs` passes over `photos`."""
    page = harness.AppPage(browser, url)
    page.open("?sw=0")
    page.attribute(photos[0])  # warm-up
    totals, parts = [], {"decode_ms": [], "preprocess_ms": [], "inference_ms": []}
    for _ in range(runs):
        for photo in photos:
            answer = page.attribute(photo)
            totals.append(1000 * answer["seconds"])
            for key in parts:
                parts[key].append(answer["timings"][key])
    page.close()
    return {"total_ms": statistics.median(totals), **{k: statistics.median(v) for k, v in parts.items()},
            "samples": len(totals)}


def python_litert(tflite, photos, runs):
    """LiteRT in Python on the same file: model alone (1 thread, all CPUs), and files -> probabilities."""
    from dnadet_tf.exports.predictors import TFLitePredictor
    from dnadet_tf.images import load_rgb
    from dnadet_tf.preprocess import preprocess_image

    model_ms = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        predictor = TFLitePredictor(tflite, num_threads=threads)
        pixels = [preprocess_image(load_rgb(p), predictor.preprocess).numpy() for p in photos]
        predictor.predict_one(pixels[0])
        times = []
        for _ in range(runs):
            for x in pixels:
                start = time.perf_counter()
                predictor.predict_one(x)
                times.append(1000 * (time.perf_counter() - start))
        model_ms[str(threads)] = statistics.median(times)
    predictor = TFLitePredictor(tflite, num_threads=1)
    times = []
    for _ in range(max(1, runs // 2)):
        for path in photos:
            start = time.perf_counter()
            predictor.predict_one(preprocess_image(load_rgb(path), predictor.preprocess).numpy())
            times.append(1000 * (time.perf_counter() - start))
    return {"model_ms": model_ms, "file_to_result_ms_1_thread": statistics.median(times)}


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
    """The README's Markdown table for one benchmark JSON."""
    threads = sorted(document["rows"][0]["python"]["model_ms"], key=int)
    lines = [f"{document['preset_label']}, input {document['input_size']} px; {document['photos']} photos "
             f"({document['photo_size']}); Chromium {document['machine']['chromium']} headless, "
             f"{document['runtime']}; {document['machine']['cpus']} CPUs", "",
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
    photos_dir = os.path.join(ROOT, "dnadet_tf", "zoo", "demo_photos")
    photos = harness.demo_photos()[:8]
    work = tempfile.mkdtemp(prefix="dnadet-web-latency-")
    if args.model:
        run, label = args.model, f"run {os.path.basename(os.path.normpath(args.model))}"
    else:
        run = untrained_run(os.path.join(work, "run"), args.preset, ["a", "b", "c"])
        label = f"`{args.preset}` preset (untrained weights)"
    print(f"exporting {run} ...", flush=True)
    int8_site, float32_site, report = export_sites(run, os.path.join(work, "export"),
                                                   None if args.model else photos_dir)
    sizes = {row["format"]: row["size_bytes"] for row in report["rows"]}
    preprocess = report["preprocess"]
    rows = []
    with sync_playwright() as playwright:
        browser = harness.launch_chromium(playwright, chromium)
        for fmt, site in (("int8", int8_site), ("float32", float32_site)):
            with harness.SiteServer(site) as server:
                print(f"{fmt}: first result ...", flush=True)
                first = first_result(browser, server.url, photos[0])
                print(f"{fmt}: per image ...", flush=True)
                browser_times = per_image(browser, server.url, photos, args.runs)
                if args.screenshot and fmt == "int8":
                    take_screenshot(browser, server.url, args.screenshot_image or photos[0], args.screenshot)
            print(f"{fmt}: LiteRT in Python ...", flush=True)
            python = python_litert(os.path.join(site, "model", f"dnadet-{fmt}.tflite"), photos, args.runs)
            rows.append({"format": fmt, "size_bytes": sizes[fmt], "first_result": first, "browser": browser_times,
                         "python": python})
        version = browser.version
        browser.close()
    with Image.open(photos[0]) as image:
        photo_size = f"{image.width}x{image.height} JPEG"
    document = {
        "benchmark": "web_latency", "created": time.strftime("%Y-%m-%d %H:%M:%S"), "model": run,
        "preset_label": label, "input_size": preprocess["resize2"], "preprocess": preprocess,
        "photos": len(photos), "photo_size": photo_size, "runs": args.runs, "runtime": report["web"]["runtime"],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "chromium": version,
                    "python": platform.python_version()},
        "rows": rows,
    }
    path = args.json or os.path.join(HERE, "results", f"web_latency-{args.preset if not args.model else 'run'}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2, sort_keys=True)
        f.write("\n")
    print(render(document))
    print(f"wrote {path}" + (f" and {args.screenshot}" if args.screenshot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

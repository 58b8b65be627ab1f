"""The web app of `dnadet-tf export --formats web` (issue 13), in a real browser.

A tiny trained run is exported (int8 site, plus a float32 site); the site is served on
127.0.0.1 and driven in Debian's chromium, headless, through Playwright. The page's
answers are compared with LiteRT in Python on the same 30+ files (non-square photos,
every EXIF orientation, PNGs with transparency, grey/progressive/4:4:4 JPEG, WebP, GIF,
BMP, images of the model's own classes): top-1 agreement 100 % and max |dp| <= 1e-3,
and the page's model input equals preprocess_image's. No request may leave 127.0.0.1.
The JavaScript resize is also checked against tf.image.resize in node, at the default
sizes (128 -> 128 -> 512) that the browser test (tiny preset: 32 -> 32 -> 64) does not use.

Needs the pip package playwright, Debian's chromium, node and `npm ci --prefix web`;
without them the tests skip, except under CI (CI=true), where they fail.
"""
import io
import json
import os
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import web_harness as harness
from dnadet_tf.errors import DnadetError
from dnadet_tf.exports import web
from dnadet_tf.preprocess import PreprocessConfig, preprocess_image, size_problem
from clirun import run_cli as _cli

APP = os.path.join(harness.ROOT, "web", "app")
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def chromium():
    return harness.require_chromium()


@pytest.fixture(scope="module")
def sites(tiny_run, upsampling_data, tmp_path_factory):
    """{'int8': site folder, 'float32': site folder, 'out': export DIR, 'stdout': export's output}."""
    harness.require_runtime()
    out = str(tmp_path_factory.mktemp("web-export"))
    code, stdout, stderr = _cli(["export", "--model", tiny_run, "--out", out, "--formats", "float32,web",
                                 "--eval", upsampling_data["test"], "--max-eval", "12", "--threads", "1"])
    assert code == 0, stderr
    base = os.path.join(out, "dnadet")
    float32_site = str(tmp_path_factory.mktemp("web-float32") / "web")
    web.write_site(float32_site, os.path.join(base, "tflite", "dnadet-float32.tflite"), web.find_runtime(),
                   Image.MAX_IMAGE_PIXELS, {"name": "dnadet", "version": 1, "format": "float32"})
    return {"int8": os.path.join(base, "web"), "float32": float32_site, "out": base, "stdout": stdout}


@pytest.fixture(scope="module")
def images(upsampling_data, tmp_path_factory):
    model_images = []
    for name in ("real", "nearest", "transposed"):
        folder = os.path.join(upsampling_data["test"], name)
        model_images += [os.path.join(folder, f) for f in sorted(os.listdir(folder))[:2]]
    return harness.make_test_images(str(tmp_path_factory.mktemp("web-images")), model_images)


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = harness.launch_chromium(playwright, chromium)
        yield browser
        browser.close()


# --- The JavaScript preprocessing against TensorFlow, in node -------------------------------------------

NODE_RESIZE = """
import fs from "fs";
import {resizeBicubicAntialias} from "./app/resize.js";
import {cropBox, preprocessRegion} from "./app/preprocess.js";
const cases = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const outputs = [];
for (const c of cases) {
  const raw = fs.readFileSync(c.input);
  if (c.kind === "resize") {
    const image = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
    outputs.push(resizeBicubicAntialias(image, c.height, c.width, 3, c.out_height, c.out_width));
  } else {
    const image = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
    const box = cropBox(c.height, c.width, c.config);
    const region = new Uint8Array(box.height * box.width * 3);
    for (let y = 0; y < box.height; y++) {
      const from = ((box.top + y) * c.width + box.left) * 3;
      region.set(image.subarray(from, from + box.width * 3), y * box.width * 3);
    }
    outputs.push(preprocessRegion(region, box.height, box.width, c.config, 3));
  }
}
fs.writeFileSync(process.argv[3], Buffer.concat(outputs.map((o) => Buffer.from(o.buffer))));
"""


def test_javascript_resize_and_preprocessing_equal_tensorflow(tmp_path):
    """resize.js equals tf.image.resize(bicubic, antialias=True) bit for bit (down, up, same size,
    non-square, float input), and preprocess.js equals preprocess_image at the default sizes, large square
    images squashed or (crop_square) center-cropped."""
    node = harness.require_node()
    rng = np.random.default_rng(0)
    cases, expected = [], []
    for i, (height, width, out_height, out_width) in enumerate(
            [(300, 300, 32, 32), (97, 97, 128, 128), (128, 128, 512, 512), (128, 128, 128, 128), (33, 77, 64, 50),
             (1000, 700, 128, 128)]):
        image = (rng.uniform(-20, 275, (height, width, 3)) if i % 2 else rng.integers(0, 256, (height, width, 3)))
        image = image.astype(np.float32)
        path = tmp_path / f"resize{i}.bin"
        image.tofile(path)
        cases.append({"kind": "resize", "input": str(path), "height": height, "width": width,
                      "out_height": out_height, "out_width": out_width})
        expected.append(tf.image.resize(image, (out_height, out_width), "bicubic", antialias=True).numpy())
    for i, (height, width, crop_square) in enumerate([(213, 320, False), (512, 512, False), (131, 150, False),
                                                      (128, 128, False), (512, 512, True), (131, 131, True),
                                                      (128, 128, True), (97, 97, True), (213, 320, True)]):
        config = PreprocessConfig(crop_square=crop_square)
        image = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
        path = tmp_path / f"image{i}.bin"
        image.tofile(path)
        cases.append({"kind": "preprocess", "input": str(path), "height": height, "width": width,
                      "config": config.to_dict()})
        expected.append(preprocess_image(image, config).numpy())
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    # The modules as the site serves them, in a folder that tells node they are ES modules (any node >= 14).
    os.makedirs(tmp_path / "app")
    for name in ("resize.js", "preprocess.js"):
        shutil.copyfile(os.path.join(APP, name), tmp_path / "app" / name)
    (tmp_path / "package.json").write_text('{"type": "module"}')
    (tmp_path / "check.js").write_text(NODE_RESIZE)
    subprocess.run([node, str(tmp_path / "check.js"), str(tmp_path / "cases.json"), str(tmp_path / "out.bin")],
                   check=True, timeout=120)
    flat = np.fromfile(tmp_path / "out.bin", np.float32)
    offset = 0
    for case, reference in zip(cases, expected):
        got = flat[offset: offset + reference.size].reshape(reference.shape)
        offset += reference.size
        assert np.array_equal(got, reference), (case, float(np.abs(got - reference).max()))
    assert offset == flat.size


# --- The exported site -----------------------------------------------------------------------------------

def test_site_layout_is_self_contained(sites):
    site = sites["int8"]
    files = sorted(os.path.relpath(os.path.join(r, n), site).replace(os.sep, "/")
                   for r, _, names in os.walk(site) for n in names)
    for name in web.APP_FILES + ("sw.js", "site.json", "model/dnadet-int8.tflite", "model/dnadet-int8.json"):
        assert name in files, name
    for name in web.RUNTIME_FILES:
        assert name in files, name
    assert not any("threaded" in f or "jspi" in f for f in files)
    config = harness.read_json(os.path.join(site, "site.json"))
    assert config["format"] == "int8" and config["runtime"]["version"].startswith("2.5.")
    assert config["max_pixels"] == Image.MAX_IMAGE_PIXELS
    # The service worker caches every file of the site but itself.
    worker = open(os.path.join(site, "sw.js"), encoding="utf-8").read()
    cached = json.loads(re.search(r"const FILES = (\[.*?\]);", worker).group(1))
    assert sorted(cached) == [f for f in files if f != "sw.js"]
    assert "__BUILD__" not in worker and "__FILES__" not in worker
    # Nothing in the app's own files points off the site; the page forbids it with a CSP.
    html = open(os.path.join(site, "index.html"), encoding="utf-8").read()
    assert "__IMPORTMAP" not in html and "default-src 'self'" in html and "connect-src 'self' blob: data:" in html
    for name in web.APP_FILES:
        if name.endswith((".html", ".js", ".css", ".webmanifest")):
            text = open(os.path.join(site, name), encoding="utf-8").read()
            assert not re.search(r"""(?:src|href|url|import|fetch)\s*\(?\s*["']?(?:https?:)?//""", text), name
    manifest = harness.read_json(os.path.join(site, "manifest.webmanifest"))
    assert {icon["sizes"] for icon in manifest["icons"]} >= {"192x192", "512x512"}
    report = harness.read_json(os.path.join(sites["out"], "report.json"))
    assert report["web"]["format"] == "int8" and "web" in report["formats"] and "int8" in report["formats"]
    assert "web app:" in sites["stdout"]


def test_export_refuses_without_the_runtime_or_with_another_preprocessing(tiny_run, tmp_path):
    code, _, stderr = _cli(["export", "--model", tiny_run, "--out", str(tmp_path), "--formats", "web",
                            "--web-runtime", str(tmp_path / "nowhere")])
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "--web-runtime" in stderr and "npm ci --prefix web" in stderr and "@litertjs/core" in stderr
    assert not os.listdir(tmp_path)
    code, _, stderr = _cli(["export", "--model", tiny_run, "--out", str(tmp_path), "--formats", "web", "--int8-io"])
    assert code == 2 and "--int8-io" in stderr and "--web-model float32" in stderr and not os.listdir(tmp_path)

    web.check_preprocess(PreprocessConfig())
    web.check_preprocess(PreprocessConfig(crop_square=True))  # preprocess.js crops large squares too
    # The release's preprocessing (import-torch) is not what the page's JavaScript implements.
    with pytest.raises(DnadetError, match="mode='release'.*default chain"):
        web.check_preprocess(PreprocessConfig(mode="release"))


# --- In the browser -----------------------------------------------------------------------------------------

def _compare(page, tflite, images):
    """The page against LiteRT in Python on `images`: top-1 agreement, max |dp|, and for a calibrated
    export the agreement on `unknown` and max |d ood_score| / threshold (as the parity report has them)."""
    reference_pixels, reference, predictor = harness.python_reference(tflite, images)
    answers = [page.attribute(path) for path in images]
    errors = [(os.path.basename(p), a["error"]) for p, a in zip(images, answers) if "error" in a]
    assert not errors
    probabilities = harness.page_probabilities(answers, predictor.class_names)
    expected = reference["probabilities"]
    result = {"answers": answers, "agreement": float(np.mean(probabilities.argmax(1) == expected.argmax(1))),
              "max_dp": float(np.abs(probabilities - expected).max()), "reference_pixels": reference_pixels,
              "class_names": predictor.class_names, "open_set": predictor.open_set}
    if predictor.open_set:
        scores = np.array([a["ood_score"] for a in answers])
        threshold = predictor.open_set["threshold"]
        assert all(a["ood_threshold"] == pytest.approx(threshold) for a in answers)
        result["unknown_agreement"] = float(np.mean([a["unknown"] for a in answers] == reference["unknown"]))
        result["max_dscore"] = float(np.abs(scores - reference["ood_score"]).max() / abs(threshold))
    else:
        assert not any("ood_score" in a or "unknown" in a for a in answers)
    return result


def _check_parity(result, label, count):
    line = (f"{label}: {count} images, top-1 agreement {result['agreement']:.2%}, max |dp| {result['max_dp']:.2e}")
    if result["open_set"]:
        unknown = sum(bool(a["unknown"]) for a in result["answers"])
        line += (f", unknown agreement {result['unknown_agreement']:.2%} ({unknown} unknown), "
                 f"max |d ood_score|/threshold {result['max_dscore']:.2e}")
    print(line)
    assert result["agreement"] == 1.0 and result["max_dp"] <= TOLERANCE, line
    if result["open_set"]:
        assert result["unknown_agreement"] == 1.0 and result["max_dscore"] <= TOLERANCE, line


def test_page_matches_litert_in_python(sites, images, browser):
    assert len(images) >= 20
    with harness.SiteServer(sites["int8"]) as server:
        page = harness.AppPage(browser, server.url)
        info, _ = page.open()
        assert "error" not in info, info
        assert info["format"] == "int8" and info["build"] == "relaxed-simd" and info["input_size"] == 64
        result = _compare(page, os.path.join(sites["int8"], "model", "dnadet-int8.tflite"), images)
        _check_parity(result, "int8 site", len(images))
        # The model input itself equals preprocess_image's (load_rgb: EXIF, transparency over white).
        pixels = {os.path.basename(p): page.preprocess(p) for p in images}
        for path, reference in zip(images, result["reference_pixels"]):
            difference = np.abs(pixels[os.path.basename(path)] - reference).max()
            assert difference <= 1e-6, (os.path.basename(path), float(difference))
        rotated = [pixels[f"exif{o}.jpg"] for o in range(2, 9)]
        assert all(not np.array_equal(a, b) for i, a in enumerate(rotated) for b in rotated[i + 1:])
        for answer in result["answers"]:
            assert set(answer["probabilities"]) == set(result["class_names"])
            assert answer["class_name"] == max(answer["probabilities"], key=answer["probabilities"].get)
            assert answer["seconds"] > 0
        assert {a["image"]["exif_orientation"] for a in result["answers"]} == set(range(1, 9))
        # Orientation 6 where Pillow finds it too: a LONG, an eXIf chunk after the image data, XMP only.
        by_name = {os.path.basename(p): a for p, a in zip(images, result["answers"])}
        for name in ("exif6_long.jpg", "exif6_after_idat.png", "xmp_orient6.jpg"):
            assert by_name[name]["image"]["exif_orientation"] == 6, (name, by_name[name]["image"])
        # A PNG's transparent colour (tRNS on RGB or grey) is white to both, as the alpha of other files is.
        for name in ("rgb_trns.png", "grey_trns.png"):
            assert (pixels[name] > 1 - 1e-5).all(axis=-1).any(), name

        # The runtime's build for browsers without relaxed SIMD gives the same answers.
        compat = harness.AppPage(browser, server.url)
        info, _ = compat.open("?build=compat&sw=0")
        assert info["build"] == "compat", info
        subset = images[::5]
        again = _compare(compat, os.path.join(sites["int8"], "model", "dnadet-int8.tflite"), subset)
        _check_parity(again, "int8 site, compat build", len(subset))
        for current in (page, compat):
            assert current.foreign_requests() == [] and current.failed == [] and current.console_errors == []
            current.close()
    assert server.served and all(not p.startswith(("http:", "https:")) for p in server.served)


def test_float32_site_matches_litert_in_python(sites, images, browser):
    with harness.SiteServer(sites["float32"]) as server:
        page = harness.AppPage(browser, server.url)
        info, _ = page.open("?sw=0")
        assert info["format"] == "float32", info
        result = _compare(page, os.path.join(sites["float32"], "model", "dnadet-float32.tflite"), images)
        _check_parity(result, "float32 site", len(images))
        assert page.foreign_requests() == [] and page.console_errors == []
        page.close()


def _bad_files(folder):
    os.makedirs(folder, exist_ok=True)
    files = {}

    def png(name, height, width):
        path = os.path.join(folder, name)
        Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(path)
        files[name] = path

    png("small_square.png", 20, 20)
    png("small_wide.png", 20, 40)
    text = os.path.join(folder, "notes.png")
    with open(text, "w") as f:
        f.write("this is not an image\n")
    files["notes.png"] = text
    good = os.path.join(folder, "good.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    with open(good, "rb") as f:
        data = f.read()
    truncated = os.path.join(folder, "truncated.png")
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 3])
    files["truncated.png"] = truncated
    empty = os.path.join(folder, "empty.jpg")
    open(empty, "wb").close()
    files["empty.jpg"] = empty
    buffer = io.BytesIO()
    Image.open(good).save(buffer, "JPEG", quality=90)
    jpeg = buffer.getvalue()
    files["truncated.jpg"] = harness.write_bytes(folder, "truncated.jpg", jpeg[: len(jpeg) // 2])
    files["scan.tif"] = os.path.join(folder, "scan.tif")
    Image.open(good).save(files["scan.tif"])
    # The start of an iPhone photo: an ISO-BMFF "ftyp" box of brand heic, then no decodable image.
    files["photo.heic"] = harness.write_bytes(folder, "photo.heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64))
    return files


def test_bad_input_is_refused_with_one_clear_message(sites, browser, tmp_path):
    files = _bad_files(str(tmp_path / "bad"))
    sidecar = harness.read_json(os.path.join(sites["int8"], "model", "dnadet-int8.json"))
    config = PreprocessConfig(**sidecar["preprocess"])
    with harness.SiteServer(sites["int8"]) as server:
        page = harness.AppPage(browser, server.url)
        page.open("?sw=0")
        answers = {name: page.attribute(path) for name, path in files.items()}
        for name, answer in answers.items():
            assert set(answer) == {"error", "error_name"}, (name, answer)
            assert answer["error_name"] == "ImageInputError" and "\n" not in answer["error"]
        assert answers["small_square.png"]["error"] == size_problem(20, 20, config.crop_size, config.min_side)
        assert answers["small_wide.png"]["error"] == size_problem(20, 40, config.crop_size, config.min_side)
        assert answers["notes.png"]["error"].startswith("not an image this browser can decode"), answers
        # A known format that fails is a damaged file; TIFF (which predict reads) and HEIC are refused by name.
        assert answers["truncated.png"]["error"].startswith("a damaged PNG file (truncated or corrupt)"), answers
        assert answers["truncated.jpg"]["error"].startswith("a damaged JPEG file (truncated or corrupt)"), answers
        for name, kind in (("scan.tif", "TIFF"), ("photo.heic", "HEIC/HEIF")):
            assert answers[name]["error"] == (f"a {kind} file, which this browser cannot decode; convert it to JPEG "
                                              f"or PNG."), answers[name]
        assert answers["empty.jpg"]["error"] == "the file is empty (0 bytes)."
        missing = page.page.evaluate("(u) => window.dnadet.attribute(u).then(() => 'answered', (e) => e.message)",
                                     server.url + "missing.png")
        assert "HTTP 404" in missing
        # In the page: the message is shown, no probability.
        page.page.set_input_files("#file-input", files["notes.png"])
        page.page.wait_for_selector("#error:not([hidden])")
        assert "notes.png: not an image this browser can decode" in page.page.inner_text("#error")
        assert page.page.is_hidden("#result")
        page.close()


def test_phone_layout_keyboard_and_screenshot(sites, images, browser, tmp_path):
    screenshot = tmp_path / "phone.png"
    with harness.SiteServer(sites["int8"]) as server:
        page = harness.AppPage(browser, server.url, viewport=harness.PHONE_VIEWPORT, device_scale_factor=2)
        p = page.page
        # Listening before the page loads turns on Playwright's file-chooser interception in time.
        p.on("filechooser", lambda chooser: None)
        page.open("?sw=0")
        photo = next(path for path in images if os.path.basename(path) == "photo0.jpg")
        # Keyboard only: Tab reaches "Choose image", Enter opens the file chooser.
        p.keyboard.press("Tab")
        assert p.evaluate("() => document.activeElement.id") == "choose"
        # The focus ring stands out (WCAG 1.4.11, 3:1) from the page and from the drop zone it sits on.
        ring = p.evaluate("() => getComputedStyle(document.activeElement).outlineColor")
        zone = p.evaluate("() => getComputedStyle(document.querySelector('#drop')).backgroundColor")
        assert p.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") == "solid"
        assert _contrast(ring, "rgb(255, 255, 255)") >= 3 and _contrast(ring, zone) >= 3, (ring, zone)
        with p.expect_file_chooser() as chooser:
            p.keyboard.press("Enter")
        chooser.value.set_files(photo)
        p.wait_for_selector("#result:not([hidden])")
        p.keyboard.press("Tab")
        assert p.evaluate("() => document.activeElement.id") == "camera"
        expected = page.attribute(photo)
        verdict = p.inner_text("#verdict")
        if expected.get("unknown"):
            assert verdict == "Unknown architecture" and expected["class_name"] in p.inner_text("#unknown")
        else:
            assert verdict.startswith(expected["class_name"]) and "%" in verdict
        assert p.locator("#bars li").count() == len(expected["probabilities"])
        assert p.inner_text("#bars li.top .name") == expected["class_name"]
        bar = p.evaluate("() => document.querySelector('#bars li.top .fill').getBoundingClientRect().width")
        track = p.evaluate("() => document.querySelector('#bars li.top .track').getBoundingClientRect().width")
        assert bar == pytest.approx(track * expected["probability"], abs=1.5)
        assert re.search(r"\d+\.\d\d s on this device", p.inner_text("#timing"))
        assert p.evaluate("() => document.documentElement.scrollWidth") <= harness.PHONE_VIEWPORT["width"]
        assert p.evaluate("() => document.querySelector('#preview').naturalWidth") > 0
        p.screenshot(path=str(screenshot), full_page=True)
        stats = harness.screenshot_stats(str(screenshot))
        assert stats["size"][0] == 2 * harness.PHONE_VIEWPORT["width"] and stats["colourful"] > 0.01
        assert page.foreign_requests() == [] and page.console_errors == []
        page.close()


def _contrast(first, second):
    """WCAG contrast ratio of two CSS colours 'rgb(r, g, b)'."""
    def luminance(css):
        channels = [int(v) / 255 for v in re.findall(r"\d+", css)[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_works_offline_after_the_first_visit(sites, images, browser):
    photo = next(path for path in images if os.path.basename(path) == "transparent.png")
    server = harness.SiteServer(sites["int8"])
    with server:
        page = harness.AppPage(browser, server.url)
        page.open()
        online = page.attribute(photo)
        # `ready` resolves once the worker is active, i.e. after it cached every file.
        cached = page.page.evaluate("""() => navigator.serviceWorker.ready
          .then(() => caches.keys()).then((names) => caches.open(names[0])).then((cache) => cache.keys())
          .then((requests) => requests.length)""")
        assert cached == sum(len(names) for _, _, names in os.walk(sites["int8"])) - 1  # all but sw.js
    served = len(server.served)
    # The server is gone: the page, the runtime and the model come from the service worker's cache.
    page.context.set_offline(True)
    page.page.reload()
    info = page.page.evaluate(harness.READY_JS)
    assert "error" not in info, info
    offline = page.attribute(photo)
    assert offline["probabilities"] == online["probabilities"]
    assert page.page.evaluate("() => navigator.serviceWorker.controller !== null")
    assert len(server.served) == served and page.foreign_requests() == []
    page.close()


def _open_set_tflite(folder, preprocess, class_names, threshold):
    """A float32 TFLite file with the outputs an open-set export adds (probabilities and ood_score), and a
    sidecar holding the threshold: score = mean |pixel|, so a white image scores 1 and a grey one 0."""
    from dnadet_tf.exports.tflite import write_tflite

    size, count = preprocess.resize2, len(class_names)

    class OpenSet(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="pixels")])
        def serve(self, pixels):
            mean = tf.reduce_mean(pixels, axis=[1, 2])
            logits = tf.matmul(mean, tf.ones([3, count]) * tf.range(count, dtype=tf.float32)[None])
            return {"probabilities": tf.nn.softmax(logits), "ood_score": tf.reduce_mean(tf.abs(pixels), [1, 2, 3])}

    module = OpenSet()
    tf.saved_model.save(module, os.path.join(folder, "savedmodel"), signatures={"serving_default": module.serve})
    converter = tf.lite.TFLiteConverter.from_saved_model(os.path.join(folder, "savedmodel"))
    path = os.path.join(folder, "openset-float32.tflite")
    common = {"name": "openset", "version": 1, "class_names": list(class_names), "preprocess": preprocess.to_dict()}
    write_tflite(converter.convert(), path, "float32", common, preprocess,
                 open_set={"score": "test", "threshold": threshold, "temperature": 1.0})
    return path


def test_open_set_fields_are_shown(sites, browser, tmp_path):
    """A file whose score is known by construction: a white image is unknown, a grey one known, and the page
    says so (the tiny run's own export is calibrated too; test_page_matches_litert_in_python compares its
    scores with Python's)."""
    sidecar = harness.read_json(os.path.join(sites["int8"], "model", "dnadet-int8.json"))
    preprocess = PreprocessConfig(**sidecar["preprocess"])
    tflite = _open_set_tflite(str(tmp_path), preprocess, sidecar["class_names"], threshold=0.5)
    site = str(tmp_path / "web")
    web.write_site(site, tflite, web.find_runtime(), Image.MAX_IMAGE_PIXELS,
                   {"name": "openset", "version": 1, "format": "float32"})
    white, grey = str(tmp_path / "white.png"), str(tmp_path / "grey.png")
    Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(white)
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(grey)
    with harness.SiteServer(site) as server:
        page = harness.AppPage(browser, server.url)
        page.open("?sw=0")
        unknown, known = page.attribute(white), page.attribute(grey)
        assert unknown["unknown"] is True and unknown["ood_score"] == pytest.approx(1.0)
        assert unknown["ood_threshold"] == 0.5 and set(unknown["probabilities"]) == set(sidecar["class_names"])
        assert known["unknown"] is False and known["ood_score"] == pytest.approx(1 / 255, abs=1e-6)
        page.page.set_input_files("#file-input", white)
        page.page.wait_for_selector("#result:not([hidden])")
        assert page.page.inner_text("#verdict") == "Unknown architecture"
        assert "nearest known" in page.page.inner_text("#unknown")
        page.page.set_input_files("#file-input", grey)
        page.page.wait_for_function("() => document.querySelector('#verdict').textContent !== 'Unknown architecture'")
        assert "a known architecture" in page.page.inner_text("#unknown")
        # A known architecture is the ordinary answer: muted text, not the error's colour and weight.
        style = page.page.evaluate("""() => [document.querySelector('#unknown'), document.querySelector('#timing')]
          .map((node) => [getComputedStyle(node).color, getComputedStyle(node).fontWeight])""")
        assert style[0] == style[1], style
        page.close()


def _eventually(page, script, timeout_s=30):
    """Polls `script` in the page until it returns something true (the page may reload meanwhile)."""
    from playwright.sync_api import Error

    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        try:
            value = page.evaluate(script)
        except Error:  # the page was reloading
            value = None
        if value:
            return value
        time.sleep(0.2)
    return value


def test_two_sites_on_one_origin_keep_their_offline_caches(sites, browser, tmp_path):
    """Two exports under one host (…/int8/ and …/float32/): visiting one must not delete the other's cache."""
    root = tmp_path / "origin"
    for name in ("int8", "float32"):
        shutil.copytree(sites[name], root / name)
    with harness.SiteServer(str(root)) as server:
        page = harness.AppPage(browser, server.url)
        for name in ("int8", "float32"):
            page.page.goto(f"{server.url}{name}/")
            assert page.page.evaluate(harness.READY_JS)["format"] == name
            page.page.evaluate("() => navigator.serviceWorker.ready")
            _eventually(page.page, "() => navigator.serviceWorker.controller !== null")
        caches = page.page.evaluate("() => caches.keys()")
        assert len(caches) == 2, caches
    page.context.set_offline(True)
    for name in ("int8", "float32"):
        page.page.goto(f"{server.url}{name}/")
        info = page.page.evaluate(harness.READY_JS)
        assert info.get("format") == name, (name, info)
    page.close()


SLOW_FIRST_ATTRIBUTION_JS = """() => {
  // The first file waits for window.releaseFirst(), as a large photo on a phone keeps the page busy.
  const attribute = window.dnadet.attribute;
  window.attributed = [];
  let first = true;
  window.dnadet.attribute = (input) => {
    window.attributed.push(input.name);
    if (!first) return attribute(input);
    first = false;
    return new Promise((resolve) => { window.releaseFirst = resolve; }).then(() => attribute(input));
  };
}"""


def test_a_file_picked_while_another_is_attributed_is_attributed_next(sites, browser, tmp_path):
    paths = {}
    for name, value in (("first.png", 60), ("second.png", 120), ("third.png", 200)):
        paths[name] = str(tmp_path / name)
        Image.fromarray(np.full((64, 64, 3), value, np.uint8)).save(paths[name])
    with harness.SiteServer(sites["int8"]) as server:
        page = harness.AppPage(browser, server.url)
        p = page.page
        page.open("?sw=0")
        p.evaluate(SLOW_FIRST_ATTRIBUTION_JS)
        p.set_input_files("#file-input", paths["first.png"])
        p.wait_for_function("() => window.releaseFirst !== undefined")
        # Two more picks while the first is attributed: the latest is next, and the status line says so.
        p.set_input_files("#file-input", paths["second.png"])
        p.set_input_files("#file-input", paths["third.png"])
        assert p.inner_text("#status") == "Attributing first.png; third.png is next."
        p.evaluate("() => window.releaseFirst()")
        p.wait_for_function("() => document.querySelector('#image-line').textContent.startsWith('third.png')")
        p.wait_for_function("() => document.querySelector('#status').textContent.startsWith('Done')")
        assert p.evaluate("() => window.attributed") == ["first.png", "third.png"]
        assert p.is_hidden("#error") and page.console_errors == []
        page.close()


def test_a_reexport_reaches_a_returning_visitor(sites, browser, tmp_path):
    """The folder a visitor's page came from is exported again (here the int8 site replaced by the float32 one):
    the next visit runs the new model and shows its build id; a page showing a result when the new export's
    worker takes over says so instead of reloading."""
    folder = tmp_path / "web"
    shutil.copytree(sites["int8"], folder)
    builds = {name: harness.read_json(os.path.join(sites[name], "site.json"))["build"] for name in ("int8", "float32")}
    assert builds["int8"] != builds["float32"] and all(re.fullmatch(r"[0-9a-f]{16}", b) for b in builds.values())
    with harness.SiteServer(str(folder)) as server:
        page = harness.AppPage(browser, server.url)
        p = page.page
        info, _ = page.open()
        assert info["site_build"] == builds["int8"] and f"Build {builds['int8']}." in p.inner_text("#model-line")
        p.evaluate("() => navigator.serviceWorker.ready")
        _eventually(p, "() => navigator.serviceWorker.controller !== null")

        shutil.rmtree(folder)
        shutil.copytree(sites["float32"], folder, copy_function=shutil.copy)
        navigations = []
        p.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == p.main_frame else None)
        p.reload()
        # Nothing on screen yet: when the new export's worker takes over, the page reloads by itself.
        deadline = time.monotonic() + 30
        while len(navigations) < 2 and time.monotonic() < deadline:
            p.wait_for_timeout(200)
        assert len(navigations) == 2, navigations
        script = f"""() => window.dnadet.ready.then((info) => info.site_build === "{builds['float32']}" &&
          navigator.serviceWorker.controller !== null &&
          caches.keys().then((names) => names.length === 1 && names[0].endsWith("{builds['float32']}")))"""
        assert _eventually(p, script), p.evaluate("() => caches.keys()")
        line = p.inner_text("#model-line")
        assert "(float32)" in line and f"Build {builds['float32']}." in line, line

        # A result on screen: the browser's next update check installs the next export; the page keeps the
        # result and says to reload.
        photo = str(tmp_path / "photo.png")
        Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(photo)
        p.set_input_files("#file-input", photo)
        p.wait_for_selector("#result:not([hidden])")
        p.evaluate("() => { window.stillHere = true; }")
        shutil.rmtree(folder)
        # Written anew, as an export writes them: a copy keeping the old times is "304 Not Modified" to the
        # browser's check (If-Modified-Since the float32 files' time).
        shutil.copytree(sites["int8"], folder, copy_function=shutil.copy)
        p.evaluate("() => navigator.serviceWorker.getRegistration().then((registration) => registration.update())")
        p.wait_for_selector("#update:not([hidden])", timeout=30000)
        assert "new model was installed" in p.inner_text("#update") and "reload" in p.inner_text("#update")
        assert p.evaluate("() => window.stillHere === true") and p.is_visible("#result")
        assert page.console_errors == []
        page.close()


def test_opened_from_disk_says_how_to_serve_it(sites, browser):
    """index.html opened as a file: the app's ES modules are refused there; a classic script says what to do."""
    context = browser.new_context()
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("file://" + os.path.join(sites["int8"], "index.html"))
    page.wait_for_selector("#error:not([hidden])", timeout=10000)
    message = page.inner_text("#error")
    assert f"python -m http.server -d {sites['int8']} 8000" in message and "http://localhost:8000/" in message
    assert page.inner_text("#status") == "" and errors == []
    context.close()
    html = open(os.path.join(sites["int8"], "index.html"), encoding="utf-8").read()
    assert "<noscript>" in html and '<script src="boot.js"' in html


def test_gif_whose_first_frame_does_not_fill_its_screen_is_refused_as_predict_does(sites, browser, tmp_path):
    from dnadet_tf.images import ImageError, load_rgb

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)).quantize(64).save(
        buffer, "GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = (120).to_bytes(2, "little") + (80).to_bytes(2, "little")  # a 120x80 screen, the frame 96x64
    path = harness.write_bytes(str(tmp_path), "small_frame.gif", bytes(data))
    with pytest.raises(ImageError) as refused:
        load_rgb(path)
    expected = str(refused.value)[len(path) + 2:]
    assert "does not fill its 120x80 px screen" in expected
    with harness.SiteServer(sites["int8"]) as server:
        page = harness.AppPage(browser, server.url)
        page.open("?sw=0")
        assert page.attribute(path) == {"error": expected, "error_name": "ImageInputError"}
        page.close()


def _page_and_predict(sites, browser, paths):
    """For each file: (the page's answer, its model input, predict's: preprocess_image(load_rgb(path)))."""
    from dnadet_tf.images import load_rgb

    sidecar = harness.read_json(os.path.join(sites["int8"], "model", "dnadet-int8.json"))
    config = PreprocessConfig(**sidecar["preprocess"])
    with harness.SiteServer(sites["int8"]) as server:
        page = harness.AppPage(browser, server.url)
        page.open("?sw=0")
        results = [(page.attribute(path), page.preprocess(path), preprocess_image(load_rgb(path), config).numpy())
                   for path in paths]
        assert page.console_errors == []
        page.close()
    return results


def _noise(seed, shape):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_apng_is_read_as_its_default_image_as_predict_does(sites, browser, tmp_path):
    """Pillow reads an APNG's default image (the IDAT), also when that image is not part of the animation
    (the browser would show the first fcTL frame)."""
    from dnadet_tf.images import load_rgb

    default, frames = _noise(0, (64, 64, 3)), [Image.fromarray(_noise(seed, (64, 64, 3))) for seed in (1, 2)]
    paths = [str(tmp_path / "apng_default_apart.png"), str(tmp_path / "apng_default_first.png")]
    Image.fromarray(default).save(paths[0], save_all=True, append_images=frames, default_image=True)
    Image.fromarray(default).save(paths[1], save_all=True, append_images=frames)
    for path in paths:
        with open(path, "rb") as f:
            assert b"acTL" in f.read()
        assert np.array_equal(load_rgb(path), default), path
    for path, (_, page, predict) in zip(paths, _page_and_predict(sites, browser, paths)):
        difference = float(np.abs(page - predict).max())
        assert difference <= 1e-6, (os.path.basename(path), difference)


def test_apng_metadata_after_its_first_frame_control_is_ignored_as_predict_ignores_it(sites, browser, tmp_path):
    """Pillow stops reading an APNG's chunks at the frame control after the image data: an EXIF orientation
    placed after it is not applied (one before the image data is); a plain PNG's after IDAT is."""
    from dnadet_tf.images import load_rgb

    pixels = _noise(5, (32, 64, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", save_all=True, append_images=[Image.fromarray(_noise(6, (32, 64, 3)))])
    apng = buffer.getvalue()
    assert b"acTL" in apng
    exif = harness.tiff_orientation(6)
    files = {"apng_exif_late.png": (harness.png_with_chunk_before_iend(apng, b"eXIf", exif), pixels, 1),
             "apng_exif_early.png": (harness.png_with_chunk_after_ihdr(apng, b"eXIf", exif), np.rot90(pixels, -1), 6)}
    paths = [harness.write_bytes(str(tmp_path), name, data) for name, (data, _, _) in files.items()]
    for path, (_, expected, _) in zip(paths, files.values()):
        assert np.array_equal(load_rgb(path), expected), path
    for path, (answer, page, predict), (_, expected, orientation) in zip(
            paths, _page_and_predict(sites, browser, paths), files.values()):
        name = os.path.basename(path)
        assert answer["image"]["exif_orientation"] == orientation, (name, answer["image"])
        difference = float(np.abs(page - predict).max())
        assert difference <= 1e-6, (name, difference)


def test_compressed_xmp_orientation_in_a_png_is_applied_as_predict_does(sites, browser, tmp_path):
    """XMP's tiff:Orientation in a PNG iTXt chunk, zlib-compressed or not, before or after the image data."""
    from dnadet_tf.images import load_rgb

    pixels = _noise(3, (48, 80, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    png = buffer.getvalue()
    files = {"xmp_zlib_before_idat.png": harness.png_with_chunk_after_ihdr(png, b"iTXt", harness.png_xmp_itxt(6, True)),
             "xmp_zlib_after_idat.png": harness.png_with_chunk_before_iend(png, b"iTXt", harness.png_xmp_itxt(6, True)),
             "xmp_plain.png": harness.png_with_chunk_after_ihdr(png, b"iTXt", harness.png_xmp_itxt(6, False))}
    paths = [harness.write_bytes(str(tmp_path), name, data) for name, data in files.items()]
    for path in paths:
        assert np.array_equal(load_rgb(path), np.rot90(pixels, -1)), path  # orientation 6: ROTATE_270
    for path, (answer, page, predict) in zip(paths, _page_and_predict(sites, browser, paths)):
        name = os.path.basename(path)
        assert answer["image"] == {"width": 48, "height": 80, "exif_orientation": 6}, (name, answer["image"])
        difference = float(np.abs(page - predict).max())
        assert difference <= 1e-6, (name, difference)


def test_several_xmp_chunks_in_a_png_the_last_readable_one_counts_as_predict_reads_it(sites, browser, tmp_path):
    """Pillow keeps the last XMP iTXt chunk it can read (a compressed one that does not inflate is skipped); the page
    took the first: orientation 6 where predict applied 3."""
    from dnadet_tf.images import load_rgb

    pixels = _noise(5, (48, 80, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    png = harness.png_with_chunk_after_ihdr(buffer.getvalue(), b"iTXt", harness.png_xmp_itxt(6, True))
    corrupt = harness.png_xmp_itxt(3, True)
    corrupt = corrupt[:22] + bytes(len(corrupt) - 22)  # the zlib data zeroed: it does not inflate
    files = {"xmp_6_then_3.png": (harness.png_with_chunk_before_iend(png, b"iTXt", harness.png_xmp_itxt(3, False)),
                                  3, np.rot90(pixels, 2)),
             "xmp_6_then_corrupt.png": (harness.png_with_chunk_before_iend(png, b"iTXt", corrupt), 6,
                                        np.rot90(pixels, -1))}
    paths = [harness.write_bytes(str(tmp_path), name, data) for name, (data, _, _) in files.items()]
    for path, (_, _, expected) in zip(paths, files.values()):
        assert np.array_equal(load_rgb(path), expected), path
    for path, (answer, page, predict), (_, orientation, _) in zip(
            paths, _page_and_predict(sites, browser, paths), files.values()):
        name = os.path.basename(path)
        assert answer["image"]["exif_orientation"] == orientation, (name, answer["image"])
        difference = float(np.abs(page - predict).max())
        assert difference <= 1e-6, (name, difference)


def test_16_bit_rgb_png_transparent_colour_is_compared_as_predict_does(sites, browser, tmp_path):
    """load_rgb compares a 16-bit RGB PNG's transparent colour by each sample's high byte: a pixel whose low
    bytes differ from the colour's is white too; one whose high bytes differ is not."""
    from dnadet_tf.images import load_rgb

    colour = np.array([10 * 256 + 3, 20 * 256 + 4, 30 * 256 + 5], np.uint16)
    samples = np.random.default_rng(4).integers(0, 65536, (64, 64, 3)).astype(np.uint16)
    samples[:, :16] = colour
    samples[:, 16:32] = colour - [3, 4, 5] + [200, 0, 77]  # the same high bytes
    samples[:, 32:40] = colour + [0, 0, 256]  # one high byte differs
    path = harness.raw_png(tmp_path / "rgb16_trns.png", samples, 16, 2, colour.tolist())
    rgb = load_rgb(path)
    assert (rgb[:, :32] == 255).all() and np.array_equal(rgb[:, 32:], (samples[:, 32:] >> 8).astype(np.uint8))
    [(_, page, predict)] = _page_and_predict(sites, browser, [path])
    difference = float(np.abs(page - predict).max())
    assert difference <= 1e-6, difference


def test_16_bit_grey_png_reads_as_predict_reads_it(sites, browser, tmp_path):
    """A 16-bit greyscale PNG keeps each sample's high byte in the browser, in load_rgb and in the SavedModel's
    decoder alike (load_rgb rounded v / 257 before: one level off in about a quarter of the pixels)."""
    from PIL import Image

    from dnadet_tf.images import load_rgb

    samples = np.random.default_rng(5).integers(0, 65536, (64, 64)).astype(np.uint16)
    path = str(tmp_path / "grey16.png")
    Image.fromarray(samples).save(path)
    assert np.array_equal(load_rgb(path), np.repeat((samples >> 8).astype(np.uint8)[..., None], 3, axis=-1))
    [(_, page, predict)] = _page_and_predict(sites, browser, [path])
    difference = float(np.abs(page - predict).max())
    assert difference <= 1e-6, difference

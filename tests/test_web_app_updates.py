"""The web app across re-exports, and three ways it answered otherwise than Python (bug hunt 8).

- A page runs the model of the build it shows: after a re-export into the same folder, a returning visitor's
  page showed the new build id (site.json came from the network) but ran the old model and sidecar (the same
  file names, served from the old build's cache); and a model that is not the one site.json names is refused.
- A page opened on the first visit hears of a later export (another tab brings its worker): it reloads when it
  shows no result, else says to reload (it ignored every takeover).
- An EXIF orientation stored as an SSHORT, SLONG, SBYTE, RATIONAL, SRATIONAL, FLOAT, DOUBLE, IFD or LONG8 is
  applied exactly when Pillow applies it (load_rgb); the page applied only SHORT and LONG ones.
- A class named "__proto__" gets its probability and its bar.

The models are tiny TFLite files made here (a softmax of the image's mean colour), not trained runs: what is
tested is the site, not the network. Needs what tests/test_web_app.py needs (playwright, chromium, node,
`npm ci --prefix web`); without them the tests skip, except under CI (CI=true), where they fail.
"""
import base64
import functools
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import threading
import time
import warnings

import numpy as np
import pytest
from PIL import Image

import web_harness as harness
from dnadet_tf.exports import web
from dnadet_tf.preprocess import PreprocessConfig, preprocess_image

APP = os.path.join(harness.ROOT, "web", "app")
PREPROCESS = PreprocessConfig(crop_size=32, resize1=32, resize2=32)
# Two exports of one name and format (so the same file names), with other models and other class names.
CLASSES = {"A": ["real", "progan", "stylegan"], "B": ["real", "biggan", "sngan"],
           "proto": ["real", "__proto__", "constructor"]}
WEIGHTS = {"A": 6.0 * np.eye(3), "B": -6.0 * np.eye(3)}
MODEL = "dnadet-float32.tflite"


@pytest.fixture(scope="session")
def chromium_path():
    return harness.require_chromium()


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = harness.launch_chromium(playwright, chromium_path)
        yield browser
        browser.close()


def _mean_colour_tflite(content_dir, weights):
    """The bytes of a float32 TFLite model: probabilities = softmax(mean colour of the pixels @ weights)."""
    import tensorflow as tf

    size = PREPROCESS.resize2

    class MeanColour(tf.Module):
        def __init__(self):
            super().__init__()
            self.weights_ = tf.constant(weights, tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="pixels")])
        def serve(self, pixels):
            return {"probabilities": tf.nn.softmax(tf.matmul(tf.reduce_mean(pixels, axis=[1, 2]), self.weights_))}

    module = MeanColour()
    tf.saved_model.save(module, content_dir, signatures={"serving_default": module.serve})
    return tf.lite.TFLiteConverter.from_saved_model(content_dir).convert()


@pytest.fixture(scope="session")
def sites(tmp_path_factory):
    """{key: site folder} for A, B (two exports named alike: the same file names) and proto (A's model, a class
    named "__proto__"); {key + "_tflite": the .tflite file} too."""
    from dnadet_tf.exports.tflite import write_tflite

    runtime = harness.require_runtime()
    root = tmp_path_factory.mktemp("web-updates")
    content = {key: _mean_colour_tflite(str(root / f"savedmodel-{key}"), weights) for key, weights in WEIGHTS.items()}
    content["proto"] = content["A"]
    found = {}
    for key, classes in CLASSES.items():
        os.makedirs(root / key)
        tflite = str(root / key / MODEL)
        write_tflite(content[key], tflite, "float32",
                     {"name": "dnadet", "version": 1, "class_names": classes, "preprocess": PREPROCESS.to_dict()},
                     PREPROCESS)
        found[key] = str(root / key / "web")
        found[key + "_tflite"] = tflite
        web.write_site(found[key], tflite, runtime, Image.MAX_IMAGE_PIXELS,
                       {"name": "dnadet", "version": 1, "format": "float32"})
    return found


@pytest.fixture(scope="session")
def photo(tmp_path_factory):
    """A reddish image: the two models' answers differ (A's top class is its first, B's its second)."""
    path = str(tmp_path_factory.mktemp("web-updates-photo") / "photo.png")
    pixels = np.random.default_rng(0).integers(-20, 21, (48, 64, 3)) + np.array([200, 40, 90])
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)
    return path


def _build(site):
    return harness.read_json(os.path.join(site, "site.json"))["build"]


def _eventually(page, script, timeout_s=30, arg=None):
    """Polls `script` in the page until it returns something true (the page may reload meanwhile)."""
    from playwright.sync_api import Error

    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        try:
            value = page.evaluate(script, arg)
        except Error:  # the page was reloading
            value = None
        if value:
            return value
        time.sleep(0.2)
    return value


def _controlled(page):
    page.evaluate("() => navigator.serviceWorker.ready")
    assert _eventually(page, "() => navigator.serviceWorker.controller !== null")


def _reexport(folder, site):
    """`site` written into `folder` as an export writes it: the files anew (new times, so no 304 to the
    browser's update check)."""
    shutil.rmtree(folder)
    shutil.copytree(site, folder, copy_function=shutil.copy)


ANSWER_JS = """async (b64) => {
  const info = await window.dnadet.ready;
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const answer = await window.dnadet.attribute(new Blob([bytes], {type: "image/png"}));
  return {build: info.site_build, line: document.getElementById("model-line").textContent,
          classes: Object.keys(answer.probabilities), probabilities: Object.values(answer.probabilities)};
}"""


def _payload(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode("ascii")


class _GatedHandler(harness._Handler):
    def __init__(self, *args, gate=None, **kwargs):
        self._gate = gate
        super().__init__(*args, **kwargs)

    def do_GET(self):
        if self._gate["suffix"] and self.path.split("?")[0].endswith(self._gate["suffix"]):
            self._gate["open"].wait(timeout=60)
        super().do_GET()


class GatedSiteServer(harness.SiteServer):
    """A SiteServer that can hold the answers for paths ending in a suffix (`hold`) until `release`."""

    def __init__(self, folder):
        super().__init__(folder)
        self._gate = {"suffix": None, "open": threading.Event()}
        self._server.RequestHandlerClass = functools.partial(_GatedHandler, directory=folder, served=self.served,
                                                             gate=self._gate)

    def hold(self, suffix):
        self._gate["open"].clear()
        self._gate["suffix"] = suffix

    def release(self):
        self._gate["open"].set()

    def stop(self):
        self.release()
        super().stop()


# --- Bug 1: the build shown is the model's ---------------------------------------------------------------

def test_site_json_names_the_sha256_of_the_model_and_sidecar(sites):
    for key in ("A", "B"):
        site = harness.read_json(os.path.join(sites[key], "site.json"))
        for field, rel in (("model_sha256", site["model"]), ("sidecar_sha256", site["sidecar"])):
            with open(os.path.join(sites[key], rel), "rb") as f:
                assert site[field] == hashlib.sha256(f.read()).hexdigest(), (key, field)
    assert harness.read_json(os.path.join(sites["A"], "site.json"))["model"] == \
        harness.read_json(os.path.join(sites["B"], "site.json"))["model"] == f"model/{MODEL}"


def test_a_returning_visitor_runs_the_model_of_the_build_it_shows(sites, browser, photo, tmp_path):
    """Re-exported into the same folder, the returning visitor's page answered with the old model and sidecar
    (served from the old build's cache) under the new build's id (site.json from the network), until the new
    worker had installed. Now the page runs one build's files: the old one (its worker's), then, when the new
    worker takes over, it reloads itself and runs the new one."""
    builds = {key: _build(sites[key]) for key in ("A", "B")}
    expected = {}
    for key in ("A", "B"):
        _, reference, _ = harness.python_reference(sites[key + "_tflite"], [photo])
        expected[builds[key]] = (key, reference["probabilities"][0])
    assert np.abs(expected[builds["A"]][1] - expected[builds["B"]][1]).max() > 0.1

    def check(answer):
        key, probabilities = expected[answer["build"]]
        assert answer["classes"] == CLASSES[key], (answer, key)
        assert np.abs(np.array(answer["probabilities"]) - probabilities).max() < 1e-5, (answer, key)
        assert f"Build {answer['build']}." in answer["line"]
        return key

    folder = str(tmp_path / "web")
    shutil.copytree(sites["A"], folder)
    with GatedSiteServer(folder) as server:
        page = harness.AppPage(browser, server.url)
        p = page.page
        info, _ = page.open()
        assert info["site_build"] == builds["A"]
        _controlled(p)
        _reexport(folder, sites["B"])
        # The new worker takes its time to install (a phone on a slow network): the page loads meanwhile.
        server.hold(".wasm")
        navigations = []
        p.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == p.main_frame else None)
        p.reload()
        payload = _payload(photo)
        first = _eventually(p, ANSWER_JS, arg=payload)
        assert first, "the page gave no answer"
        seen = [check(first)]
        server.release()
        deadline = time.monotonic() + 60
        while seen[-1] != "B" and time.monotonic() < deadline:
            answer = _eventually(p, ANSWER_JS, arg=payload)
            if answer:
                seen.append(check(answer))
            time.sleep(0.5)
        assert seen[0] == "A" and seen[-1] == "B", seen
        assert len(navigations) >= 2, navigations  # it reloaded itself
        assert page.console_errors == []
        page.close()


def test_a_model_that_is_not_the_one_site_json_names_is_refused(sites, browser, tmp_path):
    """A model file of another export (fetched while the site was exported again) never answers under this
    build's id: the page says so and to reload."""
    folder = tmp_path / "web"
    shutil.copytree(sites["A"], folder)
    shutil.copyfile(sites["B_tflite"], folder / "model" / MODEL)
    with harness.SiteServer(str(folder)) as server:
        page = harness.AppPage(browser, server.url)
        info, _ = page.open("?sw=0")
        assert "error" in info, info
        assert info["error"].startswith(f"model/{MODEL}: not the file of this site's build {_build(sites['A'])}")
        assert info["error"].endswith("reload the page.") and "\n" not in info["error"]
        assert page.page.inner_text("#model-line") == "The attributor could not start."
        page.close()


# --- Bug 2: a page opened on the first visit hears of a later export ---------------------------------------

def test_a_page_opened_on_the_first_visit_hears_of_a_later_export(sites, browser, photo, tmp_path):
    """Two first visits (two browsers): one page shows a result, the other none. The folder is exported again,
    and in each browser another tab opens the site, whose worker installs the new export and takes over both
    tabs: the page with a result keeps it and says to reload, the other reloads itself and runs the new export.
    Before, a page opened on the first visit ignored every takeover."""
    builds = {key: _build(sites[key]) for key in ("A", "B")}
    folder = str(tmp_path / "web")
    shutil.copytree(sites["A"], folder)
    with harness.SiteServer(folder) as server:
        quiet, shown = harness.AppPage(browser, server.url), harness.AppPage(browser, server.url)
        for page in (quiet, shown):
            info, _ = page.open()
            assert info["site_build"] == builds["A"], info
            _controlled(page.page)
        shown.page.set_input_files("#file-input", photo)
        shown.page.wait_for_selector("#result:not([hidden])")
        for page in (quiet, shown):
            page.page.evaluate("() => { window.stillHere = true; }")
        _reexport(folder, sites["B"])
        for page in (quiet, shown):
            page.context.new_page().goto(server.url)
        shown.page.wait_for_selector("#update:not([hidden])", timeout=30000)
        text = shown.page.inner_text("#update")
        assert "new model was installed" in text and "reload" in text, text
        assert shown.page.evaluate("() => window.stillHere === true") and shown.page.is_visible("#result")
        script = f"""() => window.stillHere === undefined &&
          window.dnadet.ready.then((info) => info.site_build === "{builds['B']}")"""
        assert _eventually(quiet.page, script), quiet.page.evaluate("() => [window.stillHere, location.href]")
        assert f"Build {builds['B']}." in quiet.page.inner_text("#model-line")
        assert quiet.console_errors == [] and shown.console_errors == []
        for page in (quiet, shown):
            page.close()


def test_the_first_visit_worker_taking_over_is_no_new_export(sites, browser):
    """The first visit's own worker takes over its page: no notice, no reload."""
    with harness.SiteServer(sites["A"]) as server:
        page = harness.AppPage(browser, server.url)
        p = page.page
        page.open()
        p.evaluate("() => { window.stillHere = true; }")
        _controlled(p)
        p.wait_for_timeout(1500)  # the controllerchange handler compares the builds asynchronously
        assert p.evaluate("() => window.stillHere === true") and p.is_hidden("#update")
        page.close()


# --- Bug 3: EXIF orientation of any numeric TIFF type, as Pillow applies it --------------------------------

ORIENTATION = 0x0112
FORMATS = {1: "B", 3: "H", 4: "I", 5: "II", 6: "b", 8: "h", 9: "i", 10: "ii", 11: "f", 12: "d", 13: "I", 16: "Q"}
UNIT = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 14: 4, 16: 8, 0: 4}


def _entry(tag, kind, *values, count=None, offset=None):
    """An IFD entry: (tag, type, count, value bytes or None, offset or None); values packed as `kind` is."""
    if kind in (2, 7):
        data = bytes(values[0])
    elif kind in (14, 0):  # types Pillow does not know: four bytes
        data = struct.pack("<I", values[0])
    else:
        data = values
    return tag, kind, count, data, offset


def _tiff(entries, little=True):
    """A TIFF block (EXIF data): IFD0 holds `entries` (see _entry); values over 4 bytes follow the IFD, or lie at
    the entry's `offset`. A count of None is the number of values."""
    order = "<" if little else ">"
    head = 8 + 2 + 12 * len(entries) + 4
    ifd, extra = struct.pack(order + "H", len(entries)), b""
    for tag, kind, count, data, offset in entries:
        if isinstance(data, tuple):
            fmt = FORMATS[kind]
            n = len(data) // len(fmt)
            data = struct.pack(order + fmt * n, *data)
        else:
            n = len(data) // UNIT[kind]
        count = n if count is None else count
        if offset is not None:
            value = struct.pack(order + "I", offset)
        elif len(data) > 4:
            value = struct.pack(order + "I", head + len(extra))
            extra += data
        else:
            value = data.ljust(4, b"\0")
        ifd += struct.pack(order + "HHI", tag, kind, count) + value
    return (b"II" if little else b"MM") + struct.pack(order + "HI", 42, 8) + ifd + struct.pack(order + "I", 0) + extra


def _past_the_limit(orientation):
    """A description whose values fill all but 4 bytes of the data, then `orientation`: Pillow's running total
    of out-of-entry values passes the data's size at the orientation (8 bytes), which it skips."""
    description = (0x010E, 2, 0, b"", 0)
    size = len(_tiff([description, orientation]))
    return [(0x010E, 2, size - 4, b"", 0), orientation]


def _orientation_cases():
    """name -> (TIFF block, XMP orientation or None)."""
    O = ORIENTATION  # noqa: N806
    cases = {
        "short6": [_entry(O, 3, 6)], "long6": [_entry(O, 4, 6)], "short9": [_entry(O, 3, 9)],
        "sbyte6": [_entry(O, 6, 6)], "sbyte_neg6": [_entry(O, 6, -6)],
        "sshort6": [_entry(O, 8, 6)], "sshort_neg6": [_entry(O, 8, -6)], "sshort0": [_entry(O, 8, 0)],
        "slong6": [_entry(O, 9, 6)], "slong_neg6": [_entry(O, 9, -6)],
        "rational6": [_entry(O, 5, 6, 1)], "rational12_2": [_entry(O, 5, 12, 2)],
        "rational13_2": [_entry(O, 5, 13, 2)], "rational6_0": [_entry(O, 5, 6, 0)], "rational0_0": [_entry(O, 5, 0, 0)],
        "srational_neg12_neg2": [_entry(O, 10, -12, -2)], "srational12_neg2": [_entry(O, 10, 12, -2)],
        "srational6_0": [_entry(O, 10, 6, 0)], "srational7": [_entry(O, 10, 7, 1)],
        "float6": [_entry(O, 11, 6.0)], "float6_5": [_entry(O, 11, 6.5)], "float_nan": [_entry(O, 11, float("nan"))],
        "double6": [_entry(O, 12, 6.0)], "double6_eps": [_entry(O, 12, 6.000000001)],
        "double_inf": [_entry(O, 12, float("inf"))],
        "ifd6": [_entry(O, 13, 6)], "long8_6": [_entry(O, 16, 6)], "long8_high6": [_entry(O, 16, 2 ** 32 + 6)],
        "short6_3": [_entry(O, 3, 6, 3)], "short7_3_3": [_entry(O, 3, 7, 3, 3)],
        "sshort_count2": [_entry(O, 8, 5, 3)],
        "dup_short1_short6": [_entry(O, 3, 1), _entry(O, 3, 6)],
        "dup_sshort6_short3": [_entry(O, 8, 6), _entry(O, 3, 3)],
        "dup_unknown_short6": [_entry(O, 14, 6), _entry(O, 3, 6)],
        "dup_count0_sshort5": [_entry(O, 3, count=0), _entry(O, 8, 5)],
        "outside_stops_before_short3": [_entry(O, 5, 6, 1, offset=4000), _entry(O, 3, 3)],
        "past_the_limit": _past_the_limit(_entry(O, 5, 6, 1)),
        "past_the_limit_short": _past_the_limit(_entry(O, 3, 6)),
    }
    xmp = {"byte6_xmp3": [_entry(O, 1, 6)], "ascii6_xmp3": [_entry(O, 2, b"6\0")],
           "undefined6_xmp3": [_entry(O, 7, b"\x06")], "unknown_type_xmp3": [_entry(O, 14, 6)],
           "type0_xmp3": [_entry(O, 0, 6)], "count0_xmp3": [_entry(O, 3, count=0)],
           "rational_outside_xmp3": [_entry(O, 5, 6, 1, offset=4000)],
           "past_the_limit_xmp3": _past_the_limit(_entry(O, 12, 6.0))}
    found = {name: (_tiff(entries), None) for name, entries in cases.items()}
    found.update({name: (_tiff(entries), 3) for name, entries in xmp.items()})
    for name in ("sshort6", "rational12_2", "srational_neg12_neg2", "float6", "double6", "long8_6", "sbyte6"):
        found[name + "_big_endian"] = (_tiff(cases[name], little=False), None)
    return found


def _png_with_orientation(pixels, tiff, xmp):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    png = harness.png_with_chunk_after_ihdr(buffer.getvalue(), b"eXIf", tiff)
    return harness.png_with_chunk_before_iend(png, b"iTXt", harness.png_xmp_itxt(xmp, False)) if xmp else png


def _pillow_orientation(path, pixels):
    """The orientation (1-8) load_rgb applied to the file, found from its pixels."""
    from dnadet_tf.images import load_rgb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns of too many values and of values outside the data
        loaded = load_rgb(path)
    stored = Image.fromarray(pixels)
    methods = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
               5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_90}
    candidates = {1: pixels, **{k: np.asarray(stored.transpose(m)) for k, m in methods.items()}}
    [orientation] = [k for k, candidate in candidates.items()
                     if candidate.shape == loaded.shape and np.array_equal(candidate, loaded)]
    return orientation


NODE_ORIENTATION = """
import fs from "fs";
import {takeOrientation} from "./app/exif.js";
const files = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const found = [];
for (const file of files) {
  const {orientation, bytes} = await takeOrientation(new Uint8Array(fs.readFileSync(file)));
  fs.writeFileSync(file + ".page", bytes);
  found.push(orientation);
}
fs.writeFileSync(process.argv[3], JSON.stringify(found));
"""


@pytest.fixture(scope="session")
def orientation_files(tmp_path_factory):
    """{name: (PNG path, the orientation load_rgb applies)}: 48x80 noise, IFD0 of an eXIf chunk before the image
    data, an XMP orientation 3 in an iTXt chunk after it for the cases named so."""
    folder = tmp_path_factory.mktemp("web-orientation")
    pixels = np.random.default_rng(7).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    files = {}
    for name, (tiff, xmp) in _orientation_cases().items():
        path = harness.write_bytes(str(folder), f"{name}.png", _png_with_orientation(pixels, tiff, xmp))
        files[name] = (path, _pillow_orientation(path, pixels))
    return files, pixels


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # values outside the data, too many values
def test_exif_orientation_of_every_tiff_type_is_read_as_pillow_reads_it(orientation_files, tmp_path):
    """exif.js against load_rgb (Pillow's exif_transpose) on 50+ orientation entries: every numeric type, values
    equal to an integer 2-8 or not (negative, zero denominator, fractional, NaN, infinite, past 32 bits), several
    values, duplicates, entries Pillow skips (unknown type, no values, values past its running limit: XMP then
    counts), values outside the data (Pillow reads no further entry), and entries it keeps that never apply (BYTE,
    ASCII, UNDEFINED: XMP does not count). The copy handed to the browser has no orientation Pillow would apply."""
    files, _ = orientation_files
    expected = {name: orientation for name, (_, orientation) in files.items()}
    if expected["past_the_limit"] == 6:  # Pillow before 13 keeps no running total; the page follows Pillow 13
        files = {name: value for name, value in files.items() if not name.startswith("past_the_limit")}
        expected = {name: value for name, value in expected.items() if not name.startswith("past_the_limit")}
    # The cases mean what they say: Pillow applies these, and not those.
    for name in ("sshort6", "slong6", "sbyte6", "rational12_2", "srational_neg12_neg2", "float6", "double6",
                 "ifd6", "long8_6", "dup_unknown_short6", "sshort6_big_endian", "double6_big_endian"):
        assert expected[name] == 6, (name, expected[name])
    for name in ("sshort_neg6", "rational13_2", "rational6_0", "srational12_neg2", "float6_5", "float_nan",
                 "double6_eps", "long8_high6", "dup_short1_short6", "byte6_xmp3", "ascii6_xmp3",
                 "outside_stops_before_short3", "past_the_limit"):
        assert expected.get(name, 1) == 1, (name, expected[name])
    for name in ("unknown_type_xmp3", "count0_xmp3", "rational_outside_xmp3", "past_the_limit_xmp3"):
        assert expected.get(name, 3) == 3, (name, expected[name])
    assert expected.get("past_the_limit_short", 6) == 6  # a value in the entry adds nothing to the running total

    node = harness.require_node()
    os.makedirs(tmp_path / "app")
    shutil.copyfile(os.path.join(APP, "exif.js"), tmp_path / "app" / "exif.js")
    (tmp_path / "package.json").write_text('{"type": "module"}')
    (tmp_path / "check.js").write_text(NODE_ORIENTATION)
    names = sorted(files)
    paths = [files[name][0] for name in names]
    (tmp_path / "files.json").write_text(json.dumps(paths))
    subprocess.run([node, str(tmp_path / "check.js"), str(tmp_path / "files.json"), str(tmp_path / "out.json")],
                   check=True, timeout=120)
    found = dict(zip(names, json.loads((tmp_path / "out.json").read_text())))
    wrong = {name: (found[name], expected[name]) for name in names if found[name] != expected[name]}
    assert not wrong, f"page, Pillow: {wrong}"
    # The bytes the browser decodes: Pillow finds no orientation it would apply there.
    for path in paths:
        with open(path + ".page", "rb") as f:
            data = f.read()
        at = data.index(b"eXIf")
        length = struct.unpack(">I", data[at - 4: at])[0]
        exif = Image.Exif()
        exif.load(data[at + 4: at + 4 + length])
        assert exif.get(ORIENTATION, 1) not in range(2, 9), (path, exif.get(ORIENTATION))


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # values outside the data, too many values
def test_exif_orientation_of_other_tiff_types_in_the_browser_matches_predict(sites, browser, orientation_files,
                                                                             tmp_path):
    """In Chromium the model input equals preprocess_image(load_rgb(path)) for PNG and JPEG files whose orientation
    is an SSHORT, SLONG, SBYTE, RATIONAL, SRATIONAL, FLOAT or DOUBLE (applied), or one Pillow does not apply (the
    browser must not apply it either); the answer equals LiteRT in Python's."""
    from dnadet_tf.images import load_rgb

    files, pixels = orientation_files
    chosen = ["sshort6", "slong6", "sbyte6", "rational12_2", "srational_neg12_neg2", "float6", "double6",
              "double6_big_endian", "long8_6", "sshort_neg6", "rational13_2", "rational6_0", "float6_5",
              "byte6_xmp3", "dup_unknown_short6", "dup_short1_short6", "dup_sshort6_short3",
              "outside_stops_before_short3"]
    paths = {name: files[name][0] for name in chosen}
    expected = {name: files[name][1] for name in chosen}
    cases = _orientation_cases()
    for name in ("sshort6", "rational12_2", "float6", "dup_short1_short6", "sshort_neg6", "dup_sshort6_short3",
                 "outside_stops_before_short3"):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=95, exif=b"Exif\0\0" + cases[name][0])
        paths[name + ".jpg"] = harness.write_bytes(str(tmp_path), f"{name}.jpg", buffer.getvalue())
        expected[name + ".jpg"] = expected[name]
    names = list(paths)
    with harness.SiteServer(sites["A"]) as server:
        page = harness.AppPage(browser, server.url)
        page.open("?sw=0")
        answers = {name: page.attribute(paths[name]) for name in names}
        inputs = {name: page.preprocess(paths[name]) for name in names}
        assert page.console_errors == []
        page.close()
    _, reference, _ = harness.python_reference(sites["A_tflite"], [paths[name] for name in names])
    for i, name in enumerate(names):
        assert answers[name]["image"]["exif_orientation"] == expected[name], (name, answers[name]["image"])
        predict = preprocess_image(load_rgb(paths[name]), PREPROCESS).numpy()
        difference = float(np.abs(inputs[name] - predict).max())
        assert difference <= 1e-6, (name, difference)
        page_probabilities = np.array([answers[name]["probabilities"][c] for c in CLASSES["A"]])
        assert np.abs(page_probabilities - reference["probabilities"][i]).max() <= 1e-5, name


# --- Bug 4: a class named "__proto__" ---------------------------------------------------------------------

def test_a_class_named_proto_gets_its_probability_and_its_bar(sites, browser, photo):
    _, reference, _ = harness.python_reference(sites["proto_tflite"], [photo])
    with harness.SiteServer(sites["proto"]) as server:
        page = harness.AppPage(browser, server.url)
        p = page.page
        page.open("?sw=0")
        answer = p.evaluate(ANSWER_JS, _payload(photo))
        assert answer["classes"] == CLASSES["proto"], answer
        assert np.abs(np.array(answer["probabilities"]) - reference["probabilities"][0]).max() < 1e-5, answer
        assert p.evaluate("""(b64) => window.dnadet.attribute(new Blob([Uint8Array.from(atob(b64),
          (c) => c.charCodeAt(0))])).then((a) => Object.getPrototypeOf(a.probabilities) === Object.prototype &&
          Object.hasOwn(a.probabilities, "__proto__"))""", _payload(photo))
        p.set_input_files("#file-input", photo)
        p.wait_for_selector("#result:not([hidden])")
        names = p.eval_on_selector_all("#bars li .name", "nodes => nodes.map((node) => node.textContent)")
        assert sorted(names) == sorted(CLASSES["proto"]), names
        top = CLASSES["proto"][int(np.argmax(reference["probabilities"][0]))]
        assert p.inner_text("#bars li.top .name") == top and p.inner_text("#verdict").startswith(top)
        assert page.console_errors == []
        page.close()

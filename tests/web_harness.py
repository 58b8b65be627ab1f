"""Drives a web app written by `dnadet-tf export --formats web` in headless Chromium, for
tests/test_web_app.py and benchmarks/web_latency.py.

- `SiteServer`: serves the site folder on 127.0.0.1 (Python's http.server in a thread) and
  remembers every path it was asked for.
- `launch_chromium`: Debian's chromium through the pip package `playwright`
  (`executable_path`: Playwright's own browser download cannot work on these machines);
  host names other than 127.0.0.1 resolve to nothing.
- `AppPage`: one browser context and page on the site; records every request the page and its
  service worker make, and calls `window.dnadet` with the bytes of local files.
- `python_reference`: what LiteRT in Python answers for the same files (load_rgb ->
  preprocess_image -> the same .tflite file).
"""
import base64
import functools
import http.server
import importlib.util
import json
import os
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHONE_VIEWPORT = {"width": 390, "height": 844}
MIME_TYPES = {".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript",
              ".webmanifest": "application/manifest+json", ".tflite": "application/octet-stream",
              ".json": "application/json", ".svg": "image/svg+xml"}
ATTRIBUTE_JS = """async ([b64, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  try {
    return await window.dnadet.attribute(new Blob([bytes], {type}));
  } catch (error) {
    return {error: error.message, error_name: error.name};
  }
}"""
PREPROCESS_JS = """async ([b64, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const pixels = await window.dnadet.preprocess(new Blob([bytes], {type}));
  const raw = new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength);
  let text = "";
  for (let i = 0; i < raw.length; i += 0x8000) text += String.fromCharCode(...raw.subarray(i, i + 0x8000));
  return btoa(text);
}"""
READY_JS = "() => window.dnadet.ready.then((info) => info, (error) => ({error: error.message}))"


def report_screenshot_module():
    spec = importlib.util.spec_from_file_location("report_screenshot",
                                                  os.path.join(ROOT, "benchmarks", "report_screenshot.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def find_chromium():
    """Path of Debian's chromium (or another Chromium), or None (as benchmarks/report_screenshot.py finds it)."""
    return report_screenshot_module().find_chromium()


def missing(what, how):
    """Fails the calling test under CI (which must run the browser tests: .ci/run installs what they need), else
    skips it, naming `what` is missing and `how` to get it."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing: CI must run the web app's tests ({how}; .ci/run does it)")
    pytest.skip(f"{what} is missing ({how})")


def require_node():
    """Path of node, or `missing`."""
    import shutil

    node = shutil.which("node")
    if node is None:
        missing("node", "apt-get install -y nodejs")
    return node


def require_runtime():
    """The LiteRT.js runtime folder (`exports.web.find_runtime`), or `missing`."""
    from dnadet_tf.errors import DnadetError
    from dnadet_tf.exports import web

    try:
        return web.find_runtime()
    except DnadetError as error:
        missing("LiteRT.js", str(error))


def require_chromium():
    """Path of chromium with pip's playwright importable, or `missing`."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("the pip package playwright", 'pip install -e ".[test]"')
    path = find_chromium()
    if path is None:
        missing("chromium", "apt-get install -y chromium")
    return path


def screenshot_stats(png_path):
    """{size, non_white, colourful, distinct_colours} of a screenshot (benchmarks/report_screenshot.py)."""
    return report_screenshot_module().screenshot_stats(png_path)


def mime_type(path):
    return {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
            ".gif": "image/gif", ".bmp": "image/bmp"}.get(os.path.splitext(path)[1].lower(), "")


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def __init__(self, *args, served=None, **kwargs):
        self._served = served
        super().__init__(*args, **kwargs)

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._served.append(self.path)
        super().do_GET()


class SiteServer:
    """`with SiteServer(folder) as server:` serves `folder` at `server.url` (http://127.0.0.1:PORT/)."""

    def __init__(self, folder):
        self.folder = folder
        self.served = []
        handler = functools.partial(_Handler, directory=folder, served=self.served)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def stop(self):
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __exit__(self, *exc):
        self.stop()


def launch_chromium(playwright, executable_path):
    """Headless Chromium (the system binary); names other than 127.0.0.1 cannot be resolved."""
    return playwright.chromium.launch(
        executable_path=executable_path, headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
              "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"],
    )


class AppPage:
    """A fresh browser context (no cache, no service worker yet) with one page of the site."""

    def __init__(self, browser, url, viewport=None, device_scale_factor=1):
        self.url = url
        self.requests = []
        self.failed = []
        self.console_errors = []
        self.context = browser.new_context(viewport=viewport or {"width": 1000, "height": 900},
                                           device_scale_factor=device_scale_factor)
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.context.on("requestfailed", lambda request: self.failed.append(request.url))
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.console_errors.append(str(error)))

    def open(self, query="", timeout_s=60):
        """Opens the page and waits for `window.dnadet.ready`; returns (info, seconds from navigation)."""
        start = time.perf_counter()
        self.page.goto(self.url + query)
        self.page.wait_for_function("() => window.dnadet !== undefined", timeout=timeout_s * 1000)
        info = self.page.evaluate(READY_JS)
        return info, time.perf_counter() - start

    def attribute(self, path):
        """The page's answer for a local file (a dict; {'error': message} when it refused the file)."""
        with open(path, "rb") as f:
            payload = base64.b64encode(f.read()).decode("ascii")
        return self.page.evaluate(ATTRIBUTE_JS, [payload, mime_type(path)])

    def preprocess(self, path):
        """The page's model input for a local file: float32 (S, S, 3)."""
        with open(path, "rb") as f:
            payload = base64.b64encode(f.read()).decode("ascii")
        raw = base64.b64decode(self.page.evaluate(PREPROCESS_JS, [payload, mime_type(path)]))
        pixels = np.frombuffer(raw, np.float32)
        size = int(round((pixels.size / 3) ** 0.5))
        return pixels.reshape(size, size, 3)

    def foreign_requests(self):
        """Requests that did not go to the site's origin (blob: and data: URLs are local)."""
        origin = self.url.rstrip("/")
        return [u for u in self.requests if not (u.startswith(origin + "/") or u.startswith(("blob:", "data:")))]

    def close(self):
        self.context.close()


def python_reference(tflite_path, paths):
    """LiteRT in Python on the same files, through dnadet_tf.images.load_rgb and preprocess_image as
    `dnadet-tf predict FILE.tflite` does: (pixels (N, S, S, 3), {'probabilities': (N, C)[, 'ood_score': (N,),
    'unknown': (N,)]}, predictor)."""
    from dnadet_tf.exports.predictors import TFLitePredictor
    from dnadet_tf.images import load_rgb
    from dnadet_tf.preprocess import preprocess_image

    predictor = TFLitePredictor(tflite_path, num_threads=1)
    pixels = np.stack([preprocess_image(load_rgb(path), predictor.preprocess).numpy() for path in paths])
    return pixels, predictor.attribute_pixels(pixels), predictor


def page_probabilities(answers, class_names):
    """(N, C) float64 from the page's answers, in `class_names` order."""
    return np.array([[answer["probabilities"][name] for name in class_names] for answer in answers], np.float64)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def demo_photos():
    """The photos shipped with the package (dnadet_tf/zoo/demo_photos, licences in its LICENSES.md)."""
    from dnadet_tf.images import find_images

    return find_images(os.path.join(ROOT, "dnadet_tf", "zoo", "demo_photos"))


def tiff_orientation(value, kind=3, little=True):
    """A TIFF block (EXIF data) whose IFD0 holds only the orientation, as a SHORT (kind 3) or a LONG (4)."""
    import struct

    order = "<" if little else ">"
    entry = struct.pack(order + "HHI", 0x0112, kind, 1)
    entry += struct.pack(order + "H", value) + b"\0\0" if kind == 3 else struct.pack(order + "I", value)
    return (b"II" if little else b"MM") + struct.pack(order + "HI", 42, 8) + struct.pack(order + "H", 1) + entry + \
        struct.pack(order + "I", 0)


def png_chunk(kind, data):
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def raw_png(path, samples, bit_depth, colour_type, transparent):
    """A PNG written by hand (Pillow cannot write these depths with tRNS): `samples` (H, W) or (H, W, 3)
    integers, already in the file's bit depth; `transparent` the tRNS values (one for grey, three for RGB)."""
    import struct
    import zlib

    height, width = samples.shape[:2]
    if bit_depth == 16:
        rows = [b"\0" + samples[y].astype(">u2").tobytes() for y in range(height)]
    else:  # packed grey samples, most significant bits first
        per_byte = 8 // bit_depth
        rows = []
        for y in range(height):
            row = np.zeros(-(-width // per_byte), np.uint8)
            for x in range(width):
                row[x // per_byte] |= samples[y, x] << (8 - bit_depth * (x % per_byte + 1))
            rows.append(b"\0" + row.tobytes())
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    trns = struct.pack(f">{len(transparent)}H", *transparent)
    chunks = [(b"IHDR", header), (b"tRNS", trns), (b"IDAT", zlib.compress(b"".join(rows))), (b"IEND", b"")]
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(kind, data) for kind, data in chunks))
    return str(path)


def png_with_chunk_before_iend(png, kind, data):
    """The PNG file `png` with one more chunk just before IEND (after the image data)."""
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + png_chunk(kind, data) + png[iend:]


def png_with_chunk_after_ihdr(png, kind, data):
    """The PNG file `png` with one more chunk just after IHDR (before the image data)."""
    ihdr_end = 8 + 12 + 13
    return png[:ihdr_end] + png_chunk(kind, data) + png[ihdr_end:]


def xmp_packet(orientation):
    """An XMP packet saying tiff:Orientation."""
    return (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
            b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
            b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="%d"/></rdf:RDF></x:xmpmeta>'
            b'<?xpacket end="w"?>' % orientation)


def png_xmp_itxt(orientation, compressed):
    """The data of a PNG iTXt chunk holding `xmp_packet(orientation)`, zlib-compressed or not."""
    import zlib

    packet = xmp_packet(orientation)
    return b"XML:com.adobe.xmp\0" + bytes([int(compressed), 0]) + b"\0\0" + (
        zlib.compress(packet) if compressed else packet)


def jpeg_with_xmp(jpeg, orientation):
    """The JPEG file `jpeg` with an XMP packet saying tiff:Orientation (an APP1 after SOI), and no EXIF."""
    import struct

    body = b"http://ns.adobe.com/xap/1.0/\0" + xmp_packet(orientation)
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def write_bytes(folder, name, data):
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def make_test_images(folder, model_images=(), photos=None):
    """Writes the files the page and Python are compared on; returns their paths.

    From the package's demo photos: non-square JPEGs as they are; square crops at several sizes
    (PNG and JPEG; downscaled with antialiasing, or not resized); a JPEG for each EXIF orientation
    2-8, and orientation 6 where Pillow also finds it (stored as a LONG, in a PNG eXIf chunk after
    the image data, only in XMP); PNGs with transparency (RGBA with an alpha gradient, grey + alpha,
    palette + tRNS, RGB + tRNS, grey + tRNS); grey JPEG, progressive JPEG, 4:4:4 JPEG, lossy and
    lossless WebP, GIF and BMP. `model_images` (files of the model's own training distribution) are
    copied as they are.
    """
    import io
    import shutil

    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    photos = sorted(photos or demo_photos())
    paths = []

    def save(image, name, **options):
        path = os.path.join(folder, name)
        image.save(path, **options)
        paths.append(path)

    for i, photo in enumerate(photos[:4]):
        path = os.path.join(folder, f"photo{i}{os.path.splitext(photo)[1].lower()}")
        shutil.copyfile(photo, path)
        paths.append(path)
    base = Image.open(photos[4]).convert("RGB")
    wide = Image.open(photos[5]).convert("RGB")
    side = min(base.size)
    square = base.crop(((base.width - side) // 2, (base.height - side) // 2,
                        (base.width + side) // 2, (base.height + side) // 2))
    for size in (32, 48, 97, 200):
        save(square.resize((size, size), Image.LANCZOS), f"square{size}.png")
    save(square, f"square{side}.jpg", quality=90)
    for orientation in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        save(wide, f"exif{orientation}.jpg", quality=88, exif=exif)
    rgba = np.asarray(wide.convert("RGBA")).copy()
    height, width = rgba.shape[:2]
    ramp = np.linspace(0, 255, width)[None, :] * np.linspace(1, 0.2, height)[:, None]
    rgba[..., 3] = ramp.astype(np.uint8)
    save(Image.fromarray(rgba, "RGBA"), "transparent.png")
    grey = np.asarray(square.convert("L"))
    save(Image.fromarray(np.dstack([grey, grey[::-1]]), "LA"), "grey_alpha.png")
    palette = square.quantize(32)
    save(palette, "palette_trns.png", transparency=5)
    # One transparent colour (what PNG optimisers make of on/off alpha), in stripes that cross the centre crop.
    stripes = (np.arange(max(height, width)) // 8) % 2 == 0
    cutout = np.asarray(wide).copy()
    cutout[:, stripes[:width]] = (10, 20, 30)
    save(Image.fromarray(cutout), "rgb_trns.png", transparency=(10, 20, 30))
    cutout = np.asarray(wide.convert("L")).copy()
    cutout[stripes[:height]] = 7
    save(Image.fromarray(cutout, "L"), "grey_trns.png", transparency=7)
    long_exif = b"Exif\0\0" + tiff_orientation(6, kind=4)
    save(wide, "exif6_long.jpg", quality=88, exif=long_exif)
    buffer = io.BytesIO()
    wide.save(buffer, "PNG")
    after_idat = png_with_chunk_before_iend(buffer.getvalue(), b"eXIf", tiff_orientation(6))
    paths.append(write_bytes(folder, "exif6_after_idat.png", after_idat))
    buffer = io.BytesIO()
    wide.save(buffer, "JPEG", quality=88)
    paths.append(write_bytes(folder, "xmp_orient6.jpg", jpeg_with_xmp(buffer.getvalue(), 6)))
    save(wide.convert("L"), "grey.jpg", quality=85)
    save(wide, "progressive.jpg", quality=80, progressive=True)
    save(wide, "subsampling444.jpg", quality=92, subsampling=0)
    save(wide, "lossy.webp", quality=80)
    save(square, "lossless.webp", lossless=True)
    save(wide.quantize(64), "palette.gif")
    save(square, "square.bmp")
    for i, image in enumerate(model_images):
        path = os.path.join(folder, f"model{i}{os.path.splitext(image)[1].lower()}")
        shutil.copyfile(image, path)
        paths.append(path)
    return paths

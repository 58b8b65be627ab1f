"""The web verification app: `DIR/NAME/web/`, a static site that runs one TFLite attributor in the browser.

Layout of the site (every path relative to it, every request same-origin):
  index.html, style.css, *.js       the app (sources: the repository's web/app/, installed as dnadet_tf.webapp);
                                    boot.js, a classic script, says what to do when the page is opened from disk
  manifest.webmanifest, icon-*.png  installable web app
  sw.js                             service worker: caches every file below on the first visit (offline use)
  site.json                         what the page loads: model and sidecar (with their SHA-256, which the page
                                    checks), runtime folder, pixel limit, and the build id (the hash of the
                                    site's files, also in sw.js's cache name)
  model/NAME-<fmt>.tflite, .json    the attributor and its sidecar (labels, preprocessing, quantization)
  vendor/litertjs/                  LiteRT.js (@litertjs/core, pinned in web/package-lock.json) and its
                                    non-threaded WASM builds (relaxed SIMD and compat), plus its licence
The LiteRT.js files come from an npm install (`npm ci --prefix web` in the repository), from
`--web-runtime NODE_MODULES` or from $DNADET_TF_WEB_RUNTIME; nothing is fetched at export or run time.
"""
import base64
import hashlib
import importlib.util
import json
import os
import shutil

from dnadet_tf.data import file_sha256
from dnadet_tf.errors import DnadetError
from dnadet_tf.runs import write_json_atomic

WEB_DIR = "web"
WEB_MODELS = ("int8", "float32")
RUNTIME_ENV = "DNADET_TF_WEB_RUNTIME"
RUNTIME_PACKAGE = "@litertjs/core"
RUNTIME_VERSION_PREFIX = "2.5."
# Site path -> path under node_modules. Only the non-threaded builds: the threaded one needs
# cross-origin isolation (COOP/COEP headers) that a plain static host does not send.
RUNTIME_FILES = {
    "vendor/litertjs/core/index.js": "@litertjs/core/dist/index.js",
    "vendor/litertjs/wasm-utils/index.js": "@litertjs/wasm-utils/dist/index.js",
    "vendor/litertjs/wasm/litert_wasm_internal.js": "@litertjs/core/wasm/litert_wasm_internal.js",
    "vendor/litertjs/wasm/litert_wasm_internal.wasm": "@litertjs/core/wasm/litert_wasm_internal.wasm",
    "vendor/litertjs/wasm/litert_wasm_compat_internal.js": "@litertjs/core/wasm/litert_wasm_compat_internal.js",
    "vendor/litertjs/wasm/litert_wasm_compat_internal.wasm": "@litertjs/core/wasm/litert_wasm_compat_internal.wasm",
}
IMPORT_MAP = {"imports": {"@litertjs/core": "./vendor/litertjs/core/index.js",
                          "@litertjs/wasm-utils": "./vendor/litertjs/wasm-utils/index.js"}}
APP_FILES = ("index.html", "style.css", "boot.js", "main.js", "ui.js", "attributor.js", "decode.js", "exif.js",
             "preprocess.js", "resize.js", "openset.js", "manifest.webmanifest", "icon.svg", "icon-192.png",
             "icon-512.png", "THIRD_PARTY_LICENSES.txt")
SERVICE_WORKER = "sw.js"
# The preprocessing fields the JavaScript implements (the default chain of preprocess_image).
SUPPORTED_PREPROCESS = ("crop_size", "resize1", "resize2", "min_side", "crop_square")


def app_source_dir():
    """The folder of the app's sources: the installed `dnadet_tf.webapp` package, else the repository's web/app."""
    spec = importlib.util.find_spec("dnadet_tf.webapp")
    if spec is not None and spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web", "app")


def default_node_modules():
    """web/node_modules of the repository this package was installed from (an editable install)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web", "node_modules")


def find_runtime(node_modules=None):
    """The node_modules folder holding LiteRT.js; raises DnadetError (one line) when its files are missing.

    node_modules: `--web-runtime`, else $DNADET_TF_WEB_RUNTIME, else the repository's web/node_modules.
    Returns (folder, version).
    """
    flag = "--web-runtime" if node_modules else (f"${RUNTIME_ENV}" if os.environ.get(RUNTIME_ENV) else None)
    folder = os.path.abspath(node_modules or os.environ.get(RUNTIME_ENV) or default_node_modules())
    missing = [rel for rel in RUNTIME_FILES.values() if not os.path.isfile(os.path.join(folder, rel))]
    if missing:
        where = f"{flag} {folder}" if flag else folder
        raise DnadetError(
            f"{where}: the web app needs LiteRT.js ({RUNTIME_PACKAGE} {RUNTIME_VERSION_PREFIX}x), missing "
            f"{os.path.join(folder, missing[0])}; run 'npm ci --prefix web' in the dnadet-tf repository once "
            f"(needs network), or pass --web-runtime NODE_MODULES (or set {RUNTIME_ENV})."
        )
    try:
        with open(os.path.join(folder, RUNTIME_PACKAGE, "package.json"), encoding="utf-8") as f:
            version = str(json.load(f)["version"])
    except (OSError, ValueError, KeyError) as error:
        raise DnadetError(f"{os.path.join(folder, RUNTIME_PACKAGE, 'package.json')}: unreadable ({error}).") from None
    if not version.startswith(RUNTIME_VERSION_PREFIX):
        raise DnadetError(f"{os.path.join(folder, RUNTIME_PACKAGE)}: expected {RUNTIME_PACKAGE} "
                          f"{RUNTIME_VERSION_PREFIX}x (web/package-lock.json), received {version}; run "
                          f"'npm ci --prefix web'.")
    return folder, version


def check_model(web_model, int8_io):
    """Raises DnadetError unless the site can run TFLite format `web_model` (one of WEB_MODELS) as exported:
    LiteRT.js has no int8 tensors, so the int8 model needs float32 input and output (no `int8_io`)."""
    if web_model not in WEB_MODELS:
        raise DnadetError(f"web_model: expected one of {', '.join(WEB_MODELS)}, received {web_model!r}.")
    if int8_io and web_model == "int8":
        raise DnadetError("int8_io: the web app runs the int8 model with float32 input and output (LiteRT.js "
                          "has no int8 tensors); export 'web' without `int8_io`, or with `web_model` float32.")


def check_preprocess(preprocess):
    """Raises DnadetError unless `preprocess` (a PreprocessConfig) is the chain the JavaScript implements.

    A field beyond crop_size/resize1/resize2/min_side/crop_square is accepted only at its default value.
    """
    values = preprocess.to_dict()
    defaults = type(preprocess)().to_dict()
    for key, value in values.items():
        if key not in SUPPORTED_PREPROCESS and value != defaults.get(key):
            raise DnadetError(
                f"--formats web: the run's preprocessing sets {key}={value!r}; the web app implements only the "
                f"default chain (centre crop, bicubic resizes, [-1, 1]; {key}={defaults.get(key)!r}); export "
                f"without 'web'."
            )


def _sha256_base64(text):
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def _copy(source, target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(source, target)


def write_site(folder, tflite_path, runtime, max_pixels, site_info):
    """Writes the site into `folder` (created); returns a summary dict for the report.

    tflite_path: the .tflite file the page runs (its sidecar JSON lies beside it).
    runtime: (node_modules folder, version) from `find_runtime`.
    max_pixels: larger images are refused (Pillow's decompression-bomb limit), or None.
    site_info: {'name', 'version', 'format'} shown by the page.
    """
    from dnadet_tf.exports.tflite import sidecar_path

    node_modules, runtime_version = runtime
    source = app_source_dir()
    os.makedirs(folder)
    for name in APP_FILES:
        path = os.path.join(source, name)
        if not os.path.isfile(path):
            raise DnadetError(f"{path}: the web app's file is missing; reinstall dnadet-tf (pip install -e .).")
        _copy(path, os.path.join(folder, name))
    for target, rel in RUNTIME_FILES.items():
        _copy(os.path.join(node_modules, rel), os.path.join(folder, target))
    model_rel = f"model/{os.path.basename(tflite_path)}"
    sidecar_rel = f"model/{os.path.basename(sidecar_path(tflite_path))}"
    _copy(tflite_path, os.path.join(folder, model_rel))
    _copy(sidecar_path(tflite_path), os.path.join(folder, sidecar_rel))

    import_map = json.dumps(IMPORT_MAP, sort_keys=True)
    index = os.path.join(folder, "index.html")
    with open(index, encoding="utf-8") as f:
        html = f.read()
    html = html.replace("__IMPORTMAP__", import_map).replace("__IMPORTMAP_SHA256__", _sha256_base64(import_map))
    with open(index, "w", encoding="utf-8") as f:
        f.write(html)
    site = {
        "created_by": "dnadet-tf export --formats web", **site_info, "model": model_rel, "sidecar": sidecar_rel,
        # The page refuses a model or sidecar that is not this export's (a newer export's, fetched meanwhile).
        "model_sha256": file_sha256(os.path.join(folder, model_rel)).hex(),
        "sidecar_sha256": file_sha256(os.path.join(folder, sidecar_rel)).hex(),
        "runtime": {"package": RUNTIME_PACKAGE, "version": runtime_version, "wasm": "vendor/litertjs/wasm/"},
        "max_pixels": max_pixels,
    }
    write_json_atomic(os.path.join(folder, "site.json"), site)

    files = sorted(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
                   for root, _, names in os.walk(folder) for name in names)
    digest = hashlib.sha256()
    for rel in files:
        digest.update(rel.encode("utf-8") + b"\0")
        digest.update(file_sha256(os.path.join(folder, rel)))
    build = digest.hexdigest()[:16]
    # The page shows which export it runs; the hash covers site.json as it was before it held the build.
    write_json_atomic(os.path.join(folder, "site.json"), {**site, "build": build})
    with open(os.path.join(source, SERVICE_WORKER), encoding="utf-8") as f:
        worker = f.read()
    worker = worker.replace("__BUILD__", build).replace("__FILES__", json.dumps(files))
    with open(os.path.join(folder, SERVICE_WORKER), "w", encoding="utf-8") as f:
        f.write(worker)
    size = sum(os.path.getsize(os.path.join(folder, rel)) for rel in files + [SERVICE_WORKER])
    return {"path": WEB_DIR, "model": model_rel, "format": site_info["format"], "runtime": f"{RUNTIME_PACKAGE} "
            f"{runtime_version}", "build": build, "files": len(files) + 1, "size_bytes": size}

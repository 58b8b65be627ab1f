"""Fuzzes the two places where a user's bytes are decoded, and counts what comes out.

  * `serving_default` of an exported SavedModel: TensorFlow's decoders and the size
    checks of `preprocess_image`, in the graph. Allowed outcomes: InvalidArgument,
    or an answer.
  * `dnadet-tf predict` (`predictor.predict_images`): Pillow, through
    `images.load_rgb`, and the same size rule. Allowed outcomes: the file is refused
    with one warning line (or the one-line DataError when no file is left), or an answer.

Anything else (another exception type, a message of several lines, a dead process)
is a crash. Inputs are seeded: real PNG (RGB, RGBA, palette, grey, 16-bit), JPEG
(baseline, progressive, grey), GIF (still, animated), BMP (24-bit, palette) and WebP
(lossy, lossless) encodings of small images, then
  * mutated: bit flips, random or boundary bytes (often in the header), inserted,
    deleted or duplicated runs, or the head of one seed spliced to the tail of another;
  * truncated at a random length;
  * random: random bytes, bare or behind a real magic number.
Every seed image is smaller than the model's `min_side` (the `tiny` preset: 32 px), so
a well-formed seed is refused too: an answer means a mutation produced bytes that
decode to an image large enough (a JPEG whose header now declares a larger size,
which libjpeg fills in with grey, in both decoders). The model is an untrained `tiny`
classifier: its weights play no part in decoding.

Prints the counts per outcome and per input kind; writes benchmarks/results/fuzz_decoders.json.

Usage: python benchmarks/fuzz_decoders.py [--count 10000] [--seed 0] [--json PATH]
"""
import argparse
import contextlib
import io
import os
import platform
import sys
import tempfile
import time

from dnadet_tf.cli.main import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported: no start-up lines

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from dnadet_tf.errors import DataError  # noqa: E402
from dnadet_tf.runs import write_json_atomic  # noqa: E402

KINDS = ("mutated", "truncated", "random")
MUTATIONS = ("bitflip", "bytes", "boundary", "insert", "delete", "duplicate", "splice")
MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"GIF87a", b"BM", b"RIFF\x00\x01\x00\x00WEBPVP8 ")
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "gif": ".gif", "bmp": ".bmp", "webp": ".webp", "random": ".png"}
PREDICT_BATCH = 50


def _encode(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def seed_encodings(seed=0):
    """[(format, name, bytes)]: real encodings of small images (every side below 32 px)."""
    rng = np.random.default_rng(seed)

    def rgb(height, width):
        return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))

    rgba = Image.fromarray(rng.integers(0, 256, (9, 14, 4), dtype=np.uint8), "RGBA")
    grey16 = Image.fromarray(rng.integers(0, 65536, (10, 10), dtype=np.uint16))
    frames = [rgb(10, 10), rgb(10, 10)]
    return [
        ("png", "png-rgb-12x12", _encode(rgb(12, 12), "PNG")),
        ("png", "png-rgba-14x9", _encode(rgba, "PNG")),
        ("png", "png-palette-16x8", _encode(rgb(8, 16).convert("P"), "PNG")),
        ("png", "png-grey-20x20", _encode(rgb(20, 20).convert("L"), "PNG")),
        ("png", "png-grey16-10x10", _encode(grey16, "PNG")),
        ("jpeg", "jpeg-16x16", _encode(rgb(16, 16), "JPEG", quality=90)),
        ("jpeg", "jpeg-progressive-24x10", _encode(rgb(10, 24), "JPEG", quality=75, progressive=True)),
        ("jpeg", "jpeg-grey-8x8", _encode(rgb(8, 8).convert("L"), "JPEG")),
        ("gif", "gif-12x12", _encode(rgb(12, 12).convert("P"), "GIF")),
        ("gif", "gif-animated-10x10", _encode(frames[0].convert("P"), "GIF", save_all=True,
                                              append_images=[frames[1].convert("P")], duration=50, loop=0)),
        ("bmp", "bmp-13x7", _encode(rgb(7, 13), "BMP")),
        ("bmp", "bmp-palette-16x16", _encode(rgb(16, 16).convert("P"), "BMP")),
        ("webp", "webp-lossy-16x16", _encode(rgb(16, 16), "WEBP", quality=80)),
        ("webp", "webp-lossless-12x20", _encode(rgb(20, 12), "WEBP", lossless=True)),
    ]


def _position(rng, length):
    """A byte position, in the first 64 bytes (headers) half of the time."""
    if length == 0:
        return 0
    return int(rng.integers(0, min(length, 64))) if rng.random() < 0.5 else int(rng.integers(0, length))


def mutate(data, other, rng):
    """(operation, mutated bytes) for one seed encoding (`other`: another seed, for splices)."""
    data = bytearray(data)
    operation = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
    if operation == "bitflip":
        for _ in range(int(rng.integers(1, 9))):
            data[_position(rng, len(data))] ^= 1 << int(rng.integers(8))
    elif operation == "bytes":
        for _ in range(int(rng.integers(1, 17))):
            data[_position(rng, len(data))] = int(rng.integers(256))
    elif operation == "boundary":
        for _ in range(int(rng.integers(1, 5))):
            data[_position(rng, len(data))] = int(rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFF]))
    elif operation == "insert":
        at = _position(rng, len(data))
        data[at:at] = rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    elif operation == "delete":
        at = _position(rng, len(data))
        del data[at:at + int(rng.integers(1, 65))]
    elif operation == "duplicate":
        start = int(rng.integers(len(data)))
        piece = data[start:start + int(rng.integers(1, 129))]
        at = int(rng.integers(len(data) + 1))
        data[at:at] = piece
    else:  # splice
        data = data[:int(rng.integers(1, len(data) + 1))] + bytearray(other[int(rng.integers(len(other))):])
    return operation, bytes(data)


def fuzz_cases(count, seed=0):
    """`count` seeded inputs: [{"index", "kind", "seed", "format", "operation", "data"}]."""
    seeds = seed_encodings(seed)
    cases = []
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        kind = KINDS[int(rng.choice(3, p=[0.7, 0.15, 0.15]))]
        fmt, name, data = seeds[int(rng.integers(len(seeds)))]
        if kind == "mutated":
            other = seeds[int(rng.integers(len(seeds)))][2]
            operation, data = mutate(data, other, rng)
        elif kind == "truncated":
            operation, data = "truncate", data[:int(rng.integers(0, len(data)))]
        else:
            noise = rng.integers(0, 256, int(rng.integers(0, 2049)), dtype=np.uint8).tobytes()
            if rng.random() < 0.5:
                operation, data, fmt, name = "bytes", noise, "random", "random"
            else:
                magic = MAGIC[int(rng.integers(len(MAGIC)))]
                operation, data = "magic+bytes", magic + noise
        cases.append({"index": index, "kind": kind, "seed": name, "format": fmt, "operation": operation,
                      "data": data})
    return cases


def make_models(folder):
    """(KerasPredictor, serving_default function): an untrained `tiny` classifier as a run dir
    and as a SavedModel, both with the run's preprocessing (crop 32, min_side 32)."""
    from dnadet_tf import runs
    from dnadet_tf.config import make_config
    from dnadet_tf.exports.savedmodel import SERVING_SIGNATURE, write_savedmodel
    from dnadet_tf.model import Backbone, Classifier
    from dnadet_tf.predictor import KerasPredictor

    run_dir = os.path.join(folder, "run")
    os.makedirs(run_dir)
    config = make_config("tiny")
    class_names = ["real", "gan"]
    runs.RunDir(run_dir).start(config, class_names)
    Classifier(Backbone(config.model.width), len(class_names), config.model.dropout, class_names, config.preprocess).save(
        os.path.join(run_dir, runs.BEST_MODEL))
    predictor = KerasPredictor(run_dir)
    version = os.path.join(folder, "savedmodel", "1")
    os.makedirs(os.path.dirname(version))
    write_savedmodel(predictor.model, class_names, predictor.preprocess, version, {"purpose": "fuzzing"})
    return predictor, tf.saved_model.load(version).signatures[SERVING_SIGNATURE]


@contextlib.contextmanager
def stderr_to_devnull():
    """Points file descriptor 2 to /dev/null (C libraries write there directly)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _reason(message):
    """Why an input was refused: the size checks, or the decoder itself."""
    if "too small" in message:
        return "too_small"
    if "too large" in message or "decompression bomb" in message:
        return "too_large"
    return "undecodable"


def serve_outcome(serve, data):
    """('invalid_argument' | 'answer' | 'crash:<exception type>', reason or None) for one input of
    `serving_default`."""
    try:
        serve(images=tf.constant([data]))
    except tf.errors.InvalidArgumentError as error:
        return "invalid_argument", _reason(error.message)
    except Exception as error:  # noqa: BLE001  anything else is what the fuzzing looks for
        return f"crash:{type(error).__name__}", None
    return "answer", None


def _predict_group(predictor, paths):
    """{path: outcome} for files predicted together; a crash of the group is narrowed down per file."""
    from dnadet_tf.predictor import predict_images

    warnings = []
    try:
        usable, _, _ = predict_images(predictor, paths, warn=warnings.append)
    except DataError as error:
        if "\n" in str(error) or "none of its" not in str(error):
            return {path: ("crash:DataError", None) for path in paths}
        usable = []
    except Exception as error:  # noqa: BLE001
        if len(paths) == 1:
            return {paths[0]: (f"crash:{type(error).__name__}", None)}
        outcomes = {}
        for path in paths:
            outcomes.update(_predict_group(predictor, [path]))
        return outcomes
    outcomes = {}
    for path in paths:
        lines = [w for w in warnings if w.startswith(f"skipped {path}:")]
        if path in usable:
            outcomes[path] = ("answer", None)
        elif len(lines) == 1 and "\n" not in lines[0]:
            outcomes[path] = ("refused", _reason(lines[0]))
        else:
            outcomes[path] = ("crash:no-one-line-warning", None)
    return outcomes


def predict_outcomes(predictor, cases, folder):
    """[('refused' | 'answer' | 'crash:<type>', reason or None)] for `cases`, run through predict in
    groups of files."""
    paths = []
    for case in cases:
        path = os.path.join(folder, f"case-{case['index']:05d}{EXTENSIONS[case['format']]}")
        with open(path, "wb") as f:
            f.write(case["data"])
        paths.append(path)
    outcomes = {}
    for start in range(0, len(paths), PREDICT_BATCH):
        outcomes.update(_predict_group(predictor, paths[start:start + PREDICT_BATCH]))
    for path in paths:
        os.remove(path)
    return [outcomes[path] for path in paths]


def decoded_size(data):
    """'WxH' as TensorFlow decodes the bytes (for answered cases), or None."""
    try:
        shape = tf.io.decode_image(data, channels=3, expand_animations=False).shape
        return f"{shape[1]}x{shape[0]}"
    except tf.errors.OpError:
        return None


def run(count, seed, folder):
    """Fuzzes both paths with `count` inputs; returns the result dict."""
    predictor, serve = make_models(folder)
    cases = fuzz_cases(count, seed)
    began = time.perf_counter()
    with stderr_to_devnull():  # libjpeg and giflib print a line per malformed input
        served, served_reasons = zip(*[serve_outcome(serve, case["data"]) for case in cases])
    serving_seconds = time.perf_counter() - began
    inputs = os.path.join(folder, "inputs")
    os.makedirs(inputs)
    began = time.perf_counter()
    predicted, predicted_reasons = zip(*predict_outcomes(predictor, cases, inputs))
    predict_seconds = time.perf_counter() - began

    def counts(outcomes, subset=None):
        chosen = [o for o, c in zip(outcomes, cases) if o is not None and (subset is None or c["kind"] == subset)]
        return {name: chosen.count(name) for name in sorted(set(chosen))}

    answered = [
        {"index": c["index"], "kind": c["kind"], "seed": c["seed"], "operation": c["operation"],
         "serving": s, "predict": p, "decoded_size": decoded_size(c["data"])}
        for c, s, p in zip(cases, served, predicted) if "answer" in (s, p)
    ]
    return {
        "count": count, "seed": seed, "model": "untrained tiny classifier (crop 32, min_side 32)",
        "serving_default": {"outcomes": counts(served), "refused_because": counts(served_reasons),
                            "by_kind": {k: counts(served, k) for k in KINDS}, "seconds": round(serving_seconds, 1),
                            "inputs_per_call": 1},
        "predict": {"outcomes": counts(predicted), "refused_because": counts(predicted_reasons),
                    "by_kind": {k: counts(predicted, k) for k in KINDS}, "seconds": round(predict_seconds, 1),
                    "files_per_call": PREDICT_BATCH},
        "kinds": {k: sum(c["kind"] == k for c in cases) for k in KINDS},
        "disagreements": sum((s == "answer") != (p == "answer") for s, p in zip(served, predicted)),
        "answered": answered,
        "environment": {"tensorflow": tf.__version__, "pillow": Image.__version__, "python": platform.python_version(),
                        "cpus": os.cpu_count()},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10000, help="inputs per decoder path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results", "fuzz_decoders.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dnadet-fuzz-") as folder:
        result = run(args.count, args.seed, folder)
    for path in ("serving_default", "predict"):
        row = result[path]
        print(f"{path}: {row['outcomes']} in {row['seconds']} s; refused because {row['refused_because']}; "
              f"by kind {row['by_kind']}")
    print(f"inputs: {result['kinds']}; answered by one path and not the other: {result['disagreements']}")
    for case in result["answered"]:
        print(f"  answered: #{case['index']} {case['kind']} {case['operation']} of {case['seed']} -> "
              f"{case['decoded_size']} (serving {case['serving']}, predict {case['predict']})")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    write_json_atomic(args.json, result)
    print(f"wrote {args.json}")
    crashed = [o for row in ("serving_default", "predict") for o in result[row]["outcomes"] if o.startswith("crash")]
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())

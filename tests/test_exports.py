"""`dnadet-tf export`: SavedModel (TF Serving layout), TFLite attributors, parity report, exported predictors."""
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dnadet_tf.calibrate import calibrated_known_rate
from dnadet_tf.errors import DnadetError
from dnadet_tf.exports.export import threshold_files
from dnadet_tf.exports.predictors import load_exported_predictor
from dnadet_tf.exports.tflite import app_preprocessing_steps, make_interpreter
from dnadet_tf.images import load_rgb
from dnadet_tf.openset import KNOWN_RATE, threshold_at_known_rate
from dnadet_tf.pipeline import inference_dataset
from dnadet_tf.api import load as load_predictor
from dnadet_tf.predictor import KerasPredictor
from dnadet_tf.preprocess import preprocess_image
from dnadet_tf.runs import RunDir
from clirun import export_rows, run_cli as _cli

FORMATS = ("float32", "float16", "dynamic", "int8")


def _test_paths(upsampling_data):
    root = upsampling_data["test"]
    return sorted(os.path.join(folder, f) for folder, _, files in os.walk(root) for f in files if f.endswith(".png"))


@pytest.fixture(scope="module")
def exported(tiny_run, upsampling_data, tmp_path_factory):
    """One full export of the tiny run (all formats), parity measured on the test images."""
    out = str(tmp_path_factory.mktemp("exports"))
    code, stdout, stderr = _cli(["export", "--model", tiny_run, "--out", out, "--eval", upsampling_data["test"]])
    assert code == 0, stderr
    base = os.path.join(out, "dnadet")
    with open(os.path.join(base, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    return {"out": out, "base": base, "version_dir": os.path.join(base, "1"), "report": report, "stdout": stdout,
            "run": tiny_run}


@pytest.fixture(scope="module")
def keras_predictor(tiny_run):
    return KerasPredictor(tiny_run)


@pytest.fixture(scope="module")
def test_pixels(upsampling_data, keras_predictor):
    paths = _test_paths(upsampling_data)
    return np.concatenate(list(inference_dataset(paths, keras_predictor.preprocess, 32).as_numpy_iterator()))


def test_layout_and_report(exported):
    base, report = exported["base"], exported["report"]
    assert sorted(os.listdir(base)) == ["1", "report.json", "tflite"]  # no temporary folder left behind
    assert os.path.isfile(os.path.join(base, "1", "saved_model.pb"))
    for fmt in FORMATS:
        assert os.path.isfile(os.path.join(base, "tflite", f"dnadet-{fmt}.tflite"))
        assert os.path.isfile(os.path.join(base, "tflite", f"dnadet-{fmt}.json"))
    assert report["version"] == 1 and report["eval"]["images"] == 36 and report["eval"]["labelled"]
    assert [row["format"] for row in report["rows"]] == ["keras", "savedmodel", *FORMATS]
    for row in report["rows"]:
        assert row["size_bytes"] > 0 and row["latency_ms"] > 0 and 0 <= row["accuracy"] <= 1
    sizes = {row["format"]: row["size_bytes"] for row in report["rows"]}
    assert sizes["int8"] < 0.5 * sizes["float32"]
    assert "top-1 agree" in exported["stdout"] and "int8" in exported["stdout"].splitlines()[-1]


def test_saved_model_cli_lists_both_signatures(exported):
    cli = shutil.which("saved_model_cli") or os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--all", "--dir", exported["version_dir"]],
                           capture_output=True, text=True, check=True).stdout
    sections = {m.group(1): m.group(2) for m in re.finditer(r"signature_def\['([^']+)'\]:(.*?)(?=signature_def\[|\Z)",
                                                             shown, re.S)}

    def tensor(section, kind, name):
        match = re.search(rf"{kind}\['{name}'\] tensor_info:\s*dtype: (\w+)\s*shape: (\([^)]*\))", section)
        assert match, f"{kind} {name} missing in:\n{section}"
        return match.group(1), match.group(2)

    serving, pixels = sections["serving_default"], sections["predict_pixels"]
    assert tensor(serving, "inputs", "images") == ("DT_STRING", "(-1)")
    assert tensor(pixels, "inputs", "pixels") == ("DT_FLOAT", "(-1, 64, 64, 3)")
    for section in (serving, pixels):
        assert tensor(section, "outputs", "probabilities") == ("DT_FLOAT", "(-1, 3)")
        assert tensor(section, "outputs", "class_id") == ("DT_INT32", "(-1)")
        assert tensor(section, "outputs", "class_name") == ("DT_STRING", "(-1)")
        # The tiny run is calibrated (fit does it with validation data): the open-set outputs travel too.
        assert tensor(section, "outputs", "ood_score") == ("DT_FLOAT", "(-1)")
        assert tensor(section, "outputs", "unknown") == ("DT_BOOL", "(-1)")


def test_open_set_outputs_agree_with_keras(exported, keras_predictor, test_pixels):
    expected = keras_predictor.attribute_pixels(test_pixels)
    threshold = keras_predictor.open_set["threshold"]
    for row in exported["report"]["rows"]:
        assert "unknown_agreement" in row and "ood_score_max_rel_diff" in row, row["format"]
    for name in ("1", *(os.path.join("tflite", f"dnadet-{fmt}.tflite") for fmt in ("float32", "float16"))):
        predictor = load_predictor(os.path.join(exported["base"], name))
        assert predictor.open_set["score"] == keras_predictor.open_set["score"]
        for key in ("threshold", "temperature"):
            assert predictor.open_set[key] == pytest.approx(keras_predictor.open_set[key], rel=1e-6)
        outputs = predictor.attribute_pixels(test_pixels)
        assert np.abs(outputs["ood_score"] - expected["ood_score"]).max() <= 1e-2 * max(1.0, abs(threshold)), name
        assert np.mean(outputs["unknown"] == expected["unknown"]) >= 0.97, name
    int8 = load_predictor(os.path.join(exported["base"], "tflite", "dnadet-int8.tflite"))
    sidecar = int8.sidecar
    # The int8 file's threshold is refitted on its own scores of the run's validation images, keeping
    # openset.KNOWN_RATE of them as known, as fit fits the float one; the float threshold stays beside it.
    config = RunDir(exported["run"]).config
    spec, paths = threshold_files(config, keras_predictor.class_names, keras_predictor.preprocess)
    assert spec == config.val and len(paths) == sidecar["open_set"]["threshold_fitted_on"]["images"] > 0
    scores = int8.attribute_pixels(np.concatenate(list(inference_dataset(paths, keras_predictor.preprocess, 16)
                                                        .as_numpy_iterator())))["ood_score"]
    assert sidecar["open_set"]["threshold"] == pytest.approx(threshold_at_known_rate(scores), rel=1e-6)
    assert (sidecar["open_set"]["threshold_fitted_on"]["known_rate"] == KNOWN_RATE
            == calibrated_known_rate(exported["run"]))
    assert sidecar["open_set"]["float_threshold"] == pytest.approx(threshold)
    # a linearly interpolated quantile: within one image of KNOWN_RATE (36 images: 34 may be at or under it)
    assert np.mean(scores <= sidecar["open_set"]["threshold"]) >= KNOWN_RATE - 1 / len(scores)
    int8_row = next(row for row in exported["report"]["rows"] if row["format"] == "int8")
    expected_flags = int8.attribute_pixels(test_pixels)["ood_score"] > sidecar["open_set"]["threshold"]
    assert int8_row["unknown_agreement"] == pytest.approx(np.mean(expected_flags == expected["unknown"]))
    assert sidecar["open_set"]["temperature"] == pytest.approx(keras_predictor.open_set["temperature"])
    # what the score measures to: fit's calibration, one mean per class and a shared radius
    assert sidecar["open_set"]["score"] == "mahalanobis"
    assert sidecar["open_set"]["radii"] == keras_predictor.open_set["radii"] == "shared"
    assert sidecar["open_set"]["means_per_class"] == keras_predictor.open_set["means_per_class"] == 1
    assert set(sidecar["outputs"]) == {"probabilities", "ood_score"}


def test_labels_and_preprocessing_travel_inside_the_savedmodel(exported, keras_predictor):
    predictor = load_predictor(exported["version_dir"])
    assert predictor.kind == "savedmodel"
    assert predictor.class_names == keras_predictor.class_names
    assert predictor.preprocess == keras_predictor.preprocess
    with open(os.path.join(exported["version_dir"], "assets", "dnadet.json"), encoding="utf-8") as f:
        asset = json.load(f)
    assert asset["class_names"] == keras_predictor.class_names
    assert asset["preprocess"] == keras_predictor.preprocess.to_dict()


def _encode(array, fmt):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def test_serving_default_matches_keras_on_jpeg_and_png(exported, keras_predictor, upsampling_data, tmp_path):
    serve = tf.saved_model.load(exported["version_dir"]).signatures["serving_default"]
    paths = _test_paths(upsampling_data)[::6]
    wide = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)  # exercises the centre crop
    wide_path = str(tmp_path / "wide.png")
    Image.fromarray(wide).save(wide_path)
    paths.append(wide_path)
    pngs = [open(path, "rb").read() for path in paths]
    jpegs = [_encode(load_rgb(path), "JPEG") for path in paths]
    config, names = keras_predictor.preprocess, keras_predictor.class_names
    for encoded in (pngs, jpegs):
        outputs = serve(images=tf.constant(encoded))
        probabilities = outputs["probabilities"].numpy()
        decoded = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in encoded]  # as `predict` reads
        expected = keras_predictor.predict_pixels(np.stack([preprocess_image(d, config) for d in decoded]))
        assert np.abs(probabilities - expected).max() < 1e-4
        assert outputs["class_id"].numpy().tolist() == probabilities.argmax(1).tolist()
        assert [n.decode() for n in outputs["class_name"].numpy()] == [names[i] for i in probabilities.argmax(1)]
    from_files = keras_predictor.predict_pixels(np.stack([preprocess_image(load_rgb(p), config) for p in paths]))
    assert np.abs(serve(images=tf.constant(pngs))["probabilities"].numpy() - from_files).max() < 1e-4


def test_serving_default_decodes_a_jpeg_as_pillow_does(exported, keras_predictor, tmp_path):
    """`predict` reads files with Pillow; TF's default (fast) IDCT moves most JPEG pixels by a few levels."""
    from dnadet_tf.exports.savedmodel import decode_as_pillow

    pixels = np.random.default_rng(1).integers(0, 256, (72, 72, 3), dtype=np.uint8)
    pixels = np.asarray(Image.fromarray(pixels).resize((144, 144), Image.BICUBIC))  # some smooth detail
    for quality, subsampling in ((95, 0), (75, 2)):
        path = str(tmp_path / f"q{quality}.jpg")
        Image.fromarray(pixels).save(path, quality=quality, subsampling=subsampling)
        encoded = open(path, "rb").read()
        pillow = load_rgb(path)
        assert np.array_equal(decode_as_pillow(tf.constant(encoded)).numpy(), pillow)
        assert not np.array_equal(tf.io.decode_image(encoded, channels=3).numpy(), pillow)  # what it replaced
        served = tf.saved_model.load(exported["version_dir"]).signatures["serving_default"](
            images=tf.constant([encoded]))["probabilities"].numpy()
        expected = keras_predictor.predict_pixels(preprocess_image(pillow, keras_predictor.preprocess)[None])
        assert np.abs(served - expected).max() < 1e-4


PIXELS_SIGNATURE_CALL = """
import sys
import numpy as np
import tensorflow as tf
fn = tf.saved_model.load(sys.argv[1]).signatures["predict_pixels"]
for shape in ({good}, (1, 16, 16, 3), ({size}, {size}, 3)):
    try:
        fn(pixels=tf.zeros(shape))
        print(shape, "answered")
    except tf.errors.InvalidArgumentError:
        print(shape, "refused")
"""


def test_pixels_of_another_shape_are_refused_by_every_predictor(exported, keras_predictor):
    size = keras_predictor.preprocess.resize2
    # In a child process: a tensor of another rank aborted the process in the first convolution.
    script = PIXELS_SIGNATURE_CALL.format(good=(2, size, size, 3), size=size)
    result = subprocess.run([sys.executable, "-c", script, exported["version_dir"]], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:3] == [f"{(2, size, size, 3)} answered", "(1, 16, 16, 3) refused",
                                             f"{(size, size, 3)} refused"], result.stdout
    predictors = [keras_predictor, load_predictor(exported["version_dir"]),
                  load_predictor(os.path.join(exported["base"], "tflite", f"dnadet-{FORMATS[0]}.tflite"))]
    for predictor in predictors:
        for shape in ((size, size, 3), (1, 2 * size, 2 * size, 3), (1, size, size, 1)):
            with pytest.raises(DnadetError, match=re.escape(f"expected pixels of shape (N, {size}, {size}, 3), "
                                                            f"received {shape}")):
                predictor.predict_pixels(np.zeros(shape, np.float32))
        assert predictor.predict_pixels(np.zeros((1, size, size, 3), np.float32)).shape == (1, len(
            predictor.class_names))


def test_predictors_take_preprocessed_pixels_only_any_batch_size_and_threads(exported, keras_predictor,
                                                                              test_pixels):
    # Decoded images handed to predict_pixels were answered with confident nonsense; each batch size retraced the
    # run dir's function (and warned after five); an empty batch failed on a run dir alone; threads sharing a
    # .tflite predictor crashed LiteRT.
    import concurrent.futures

    size = keras_predictor.preprocess.resize2
    tflite = load_predictor(os.path.join(exported["base"], "tflite", f"dnadet-{FORMATS[0]}.tflite"))
    for predictor in (keras_predictor, load_predictor(exported["version_dir"]), tflite):
        with pytest.raises(DnadetError, match=r"expected preprocessed float pixels in \[-1, 1\], received uint8"):
            predictor.predict_pixels(np.zeros((1, size, size, 3), np.uint8))
        with pytest.raises(DnadetError, match=r"expected preprocessed pixels in \[-1, 1\], received values up to 255"):
            predictor.predict_pixels(np.full((1, size, size, 3), 255.0, np.float32))
        assert predictor.predict_pixels(np.zeros((0, size, size, 3), np.float32)).shape == (0, 3)
        assert predictor.attribute_pixels(np.zeros((0, size, size, 3), np.float32))["probabilities"].shape == (0, 3)
    fresh = KerasPredictor(keras_predictor.source)
    for count in range(1, 6):
        fresh.predict_pixels(test_pixels[:count])
    assert fresh._fn.experimental_get_tracing_count() == 1
    batches = [test_pixels[i : i + 3] for i in range(0, 24, 3)]
    alone = [tflite.predict_pixels(batch) for batch in batches]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(tflite.predict_pixels, batches))
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b)


def test_bytes_that_are_not_an_image_raise_invalid_argument(exported, upsampling_data):
    serve = tf.saved_model.load(exported["version_dir"]).signatures["serving_default"]
    png = open(_test_paths(upsampling_data)[0], "rb").read()
    too_small = _encode(np.zeros((8, 8, 3), np.uint8), "PNG")  # below the run's patch size (min_side)
    for garbage in (b"definitely not an image", b"", png[: len(png) // 2], too_small):
        with pytest.raises(tf.errors.InvalidArgumentError):
            serve(images=tf.constant([png, garbage]))


def test_tflite_files_match_keras(exported, keras_predictor, test_pixels):
    expected = keras_predictor.predict_pixels(test_pixels)
    for fmt in FORMATS:
        path = os.path.join(exported["base"], "tflite", f"dnadet-{fmt}.tflite")
        predictor = load_predictor(path)
        assert predictor.kind == f"tflite-{fmt}"
        assert predictor.class_names == keras_predictor.class_names
        assert predictor.preprocess == keras_predictor.preprocess
        probabilities = predictor.predict_pixels(test_pixels)
        difference = np.abs(probabilities - expected).max()
        agreement = np.mean(probabilities.argmax(1) == expected.argmax(1))
        if fmt == "float32":
            assert difference < 1e-4
        elif fmt == "float16":
            assert difference < 1e-2
        else:
            assert agreement >= 0.95, (fmt, agreement)
    int8 = load_exported_predictor(os.path.join(exported["base"], "tflite", "dnadet-int8.tflite"))
    assert int8.sidecar["input"]["dtype"] == "float32" and int8.sidecar["calibration"]["images"] > 0
    assert set(int8.sidecar["equalization"]["blocks"]) >= {"stage1_bn1", "stage4_bn1"}  # converted equalised
    interpreter = make_interpreter(model_path=int8.source)
    assert any(np.dtype(d["dtype"]) == np.int8 for d in interpreter.get_tensor_details())  # full integer inside


def test_int8_io_quantizes_input_and_output(tiny_run, upsampling_data, keras_predictor, test_pixels, tmp_path):
    code, _, stderr = _cli(["export", "--model", tiny_run, "--out", str(tmp_path), "--name", "io", "--formats", "int8",
                            "--int8-io", "--eval", upsampling_data["test"], "--max-eval", "6"])
    assert code == 0, stderr
    path = os.path.join(str(tmp_path), "io", "tflite", "io-int8.tflite")
    predictor = load_predictor(path)
    assert predictor.sidecar["input"]["dtype"] == "int8" and predictor.sidecar["output"]["dtype"] == "int8"
    assert predictor.sidecar["input"]["quantization"]["scale"] > 0
    assert any("Quantize to int8" in step for step in predictor.sidecar["app_preprocessing"])
    assert any("Refuse an image that is too small" in step and "below 32 px" in step
               for step in predictor.sidecar["app_preprocessing"])
    assert predictor.sidecar["preprocess"]["min_side"] == 32
    expected = keras_predictor.predict_pixels(test_pixels)
    probabilities = predictor.predict_pixels(test_pixels)
    assert np.mean(probabilities.argmax(1) == expected.argmax(1)) >= 0.95
    assert not os.path.exists(os.path.join(str(tmp_path), "io", "1"))  # no SavedModel asked for
    # Only the input and the probabilities are int8: the calibrated run's score, computed in float32 (on the
    # CPU), stays a float32 output, which the app compares with the threshold as it is.
    score = predictor.sidecar["outputs"]["ood_score"]
    assert score["dtype"] == "float32" and score["quantization"] is None
    assert predictor.sidecar["outputs"]["probabilities"]["dtype"] == "int8"
    [step] = [step for step in predictor.sidecar["app_postprocessing"] if "'ood_score'" in step]
    assert "dequantized" not in step and repr(predictor.sidecar["open_set"]["threshold"]) in step, step
    assert any(step.startswith("Dequantize: probability") for step in predictor.sidecar["app_postprocessing"])
    scores = predictor.attribute_pixels(test_pixels)["ood_score"]
    assert len(np.unique(scores)) > len(test_pixels) / 2


def test_predict_command_on_exports_gives_the_keras_top_class(exported, tiny_run, upsampling_data):
    paths = _test_paths(upsampling_data)[::4]

    def top_classes(model):
        code, stdout, stderr = _cli(["predict", "--model", model, "--json", *paths])
        assert code == 0, stderr
        return [json.loads(line)["class"] for line in stdout.splitlines()]

    expected = top_classes(tiny_run)
    assert top_classes(exported["version_dir"]) == expected
    assert top_classes(os.path.join(exported["base"], "tflite", "dnadet-float32.tflite")) == expected


def test_predict_on_a_tflite_file_prints_no_litert_log_lines(exported, upsampling_data):
    image = _test_paths(upsampling_data)[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    tflite = os.path.join(exported["base"], "tflite", "dnadet-float32.tflite")
    done = subprocess.run([sys.executable, "-m", "dnadet_tf.cli.main", "predict", "--model", tflite, image],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    # no "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." (only our own notes may appear)
    assert [line for line in done.stderr.splitlines() if not line.startswith("note: ")] == []
    verbose = subprocess.run([sys.executable, "-m", "dnadet_tf.cli.main", "predict", "--verbose", "--model", tflite,
                              image], capture_output=True, text=True, env=env, timeout=300)
    assert verbose.returncode == 0 and "XNNPACK" in verbose.stderr  # --verbose shows them


def _digest(folder):
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(path.encode())
            digest.update(open(path, "rb").read())
    return digest.hexdigest()


def test_reexport_without_overwrite_fails_and_keeps_the_version(exported, tiny_run):
    before = _digest(exported["base"])
    code, stdout, stderr = _cli(["export", "--model", tiny_run, "--out", exported["out"], "--version", "1"])
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "version 1 exists" in lines[0] and "--overwrite" in lines[0]
    assert _digest(exported["base"]) == before


def test_next_version_and_overwrite(tiny_run, upsampling_data, tmp_path):
    common = ["export", "--model", tiny_run, "--out", str(tmp_path), "--formats", "savedmodel",
              "--eval", upsampling_data["test"], "--max-eval", "3"]
    assert _cli(common)[0] == 0
    assert _cli(common)[0] == 0  # no --version: the next free one
    base = os.path.join(str(tmp_path), "dnadet")
    assert sorted(os.listdir(base)) == ["1", "2", "report.json"]
    # the same run exports the same variable values (a seed generator's state, drawn anew at each load, differed;
    # within one process the saved object graph's names differ, and each fingerprint holds a uuid)
    first, second = (tf.train.load_checkpoint(os.path.join(base, version, "variables", "variables"))
                     for version in ("1", "2"))
    names = first.get_variable_to_shape_map()
    assert set(names) == set(second.get_variable_to_shape_map())
    differ = [name for name in names if not isinstance(first.get_tensor(name), bytes)
              and not np.array_equal(first.get_tensor(name), second.get_tensor(name))]
    assert differ == []
    report = _report(base)  # the second export's, the first's kept in `earlier`
    assert report["version"] == 2 and [entry["version"] for entry in report["earlier"]] == [1]
    assert [row["path"] for row in report["earlier"][0]["rows"] if row["format"] == "savedmodel"] == ["1"]
    code, _, stderr = _cli(common + ["--version", "1", "--overwrite"])
    assert code == 0, stderr
    assert sorted(os.listdir(base)) == ["1", "2", "report.json"]
    assert load_predictor(os.path.join(base, "1")).kind == "savedmodel"
    report = _report(base)
    # version 1 replaced: the first export's report, left with no file of its own, is dropped
    assert report["version"] == 1 and [entry["version"] for entry in report["earlier"]] == [2]


def _report(base):
    with open(os.path.join(base, "report.json"), encoding="utf-8") as f:
        return json.load(f)


def _snapshot(folder):
    """{path relative to `folder`: (bytes, mtime in ns)} of every file below it."""
    snapshot = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                snapshot[os.path.relpath(path, folder)] = (f.read(), os.stat(path).st_mtime_ns)
    return snapshot


def test_a_second_export_replaces_nothing_without_overwrite_and_keeps_other_formats(exported, tiny_run,
                                                                                    upsampling_data, tmp_path):
    """The audit's case: a folder holding version 1 and every TFLite file, then another run exported there with
    another --formats. Without --overwrite: one line, before any conversion, nothing on disk touched. With it:
    only this export's files are replaced, the other formats' stay, and report.json says which is which."""
    from dnadet_tf.exports.export import existing_versions

    out = str(tmp_path / "out")
    base = os.path.join(out, "dnadet")
    shutil.copytree(exported["base"], base)  # copy2: bytes and mtimes as the first export left them
    other = str(tmp_path / "other-run")
    shutil.copytree(tiny_run, other)
    before = _snapshot(base)
    command = ["export", "--model", other, "--out", out, "--formats", "float32",
               "--eval", upsampling_data["test"], "--max-eval", "3"]
    code, stdout, stderr = _cli(command)
    assert code == 2 and "converting" not in stdout
    lines = stderr.strip().splitlines()
    float32 = os.path.join(base, "tflite", "dnadet-float32.tflite")
    assert len(lines) == 1 and f"{float32}: exists" in lines[0] and "--overwrite" in lines[0], lines
    assert _snapshot(base) == before and sorted(os.listdir(base)) == ["1", "report.json", "tflite"]

    code, _, stderr = _cli(command + ["--overwrite"])
    assert code == 0, stderr
    after = _snapshot(base)
    assert set(after) == set(before)  # nothing removed: int8, float16, dynamic and version 1 stay
    changed = {rel for rel in after if after[rel] != before[rel]}
    assert changed == {os.path.join("tflite", "dnadet-float32.tflite"), os.path.join("tflite", "dnadet-float32.json"),
                       "report.json"}
    with open(os.path.join(base, "tflite", "dnadet-float32.json"), encoding="utf-8") as f:
        assert json.load(f)["source_run"] == os.path.abspath(other)
    report, first = _report(base), exported["report"]
    assert report["source_run"] == os.path.abspath(other) and report["version"] == 2
    assert [row["format"] for row in report["rows"]] == ["keras", "float32"]
    # the first export's report, less the row of the file this one replaced
    assert report["earlier"] == [{**first, "rows": [row for row in first["rows"] if row["format"] != "float32"]}]
    assert existing_versions(base) == {1, 2}


def test_a_report_json_that_is_not_an_export_report_is_kept_without_overwrite(tiny_run, tmp_path):
    from dnadet_tf.exports.export import export_outputs

    assert export_outputs("m", 3, ("savedmodel", "int8", "web")) == [
        "3", os.path.join("tflite", "m-int8.tflite"), os.path.join("tflite", "m-int8.json"), "web"]
    base = tmp_path / "dnadet"
    base.mkdir()
    (base / "report.json").write_text("my notes", encoding="utf-8")
    code, stdout, stderr = _cli(["export", "--model", tiny_run, "--out", str(tmp_path), "--formats", "float32"])
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "converting" not in stdout
    assert f"{base / 'report.json'}: expected the JSON report of an earlier export" in lines[0]
    assert "--overwrite" in lines[0]
    assert os.listdir(base) == ["report.json"] and (base / "report.json").read_text(encoding="utf-8") == "my notes"


def test_an_out_that_is_a_file_is_refused_in_one_line_before_any_work(tiny_run, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine", encoding="utf-8")
    for out, name, culprit in ((a_file, "dnadet", a_file), (a_file / "sub", "dnadet", a_file),
                               (tmp_path, "notes.txt", a_file)):
        code, stdout, stderr = _cli(["export", "--model", tiny_run, "--out", str(out), "--name", name,
                                     "--formats", "float32"])
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith(f"dnadet-tf export: error: --out {out}: "), stderr
        assert str(culprit) in lines[0] and "Traceback" not in stderr and "converting" not in stdout
    assert a_file.read_text(encoding="utf-8") == "mine" and sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_a_killed_export_removes_its_staging_folder_and_writes_nothing(tiny_run, tmp_path):
    import signal

    command = [sys.executable, "-m", "dnadet_tf.cli.main", "export", "--model", tiny_run, "--out", str(tmp_path),
               "--formats", "savedmodel,float32,float16,dynamic,int8"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:  # stop it while it writes into its staging folder
        if line.startswith("writing SavedModel version"):
            break
    assert [e for e in os.listdir(tmp_path / "dnadet") if e.startswith(".export-tmp-")]
    # As with Ctrl-C, an interrupt that lands inside TensorFlow's C++ code can be lost there (it printed a
    # SystemError and the export went on, once in a loaded CI run): a second one stops it, as a user would send it.
    def staging():
        return [e for e in os.listdir(tmp_path / "dnadet") if e.startswith(".export-tmp-")]

    for _ in range(10):
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=3)
            break
        except subprocess.TimeoutExpired:
            if not staging():  # taken: its cleanup ran and it is on its way out
                break
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr[-2000:]  # 128 + SIGTERM, as a shell reports a killed command
    assert "terminated; files already written are kept." in stderr.strip().splitlines()[-1]
    assert os.listdir(tmp_path / "dnadet") == []  # no staging folder, no half export


def test_library_errors_name_parameters_and_the_command_its_flags(tiny_run, upsampling_data, tmp_path):
    import dnadet_tf
    from dnadet_tf.exports.export import STAGING_PREFIX

    with pytest.raises(DnadetError, match=r"^formats: expected a comma list"):
        dnadet_tf.export(tiny_run, str(tmp_path), formats="int9")
    code, _, stderr = _cli(["export", "--model", tiny_run, "--out", str(tmp_path), "--formats", "int9"])
    assert code == 2 and "error: --formats: expected a comma list" in stderr
    # an export stopped before its cleanup (SIGKILL) left its staging folder: the next export removes it
    abandoned = tmp_path / "dnadet" / f"{STAGING_PREFIX}999999999-x1"  # no such process
    abandoned.mkdir(parents=True)
    (abandoned / "half.tflite").write_bytes(b"half")
    warnings = []
    dnadet_tf.export(tiny_run, str(tmp_path), formats="float32", calibration=str(tmp_path), int8_io=True,
                     progress=lambda message: None, warn=warnings.append)
    assert [w for w in warnings if "applies to the int8 file only" in w and "ignored" in w] == [
        "--calibration applies to the int8 file only, which --formats float32 does not write; ignored.",
        "--int8-io applies to the int8 file only, which --formats float32 does not write; ignored."]
    assert not abandoned.exists() and not [e for e in os.listdir(tmp_path / "dnadet") if e.startswith(STAGING_PREFIX)]
    with pytest.raises(DnadetError, match=r"pass overwrite=True to replace it, or another `out_dir` or `name`"):
        dnadet_tf.export(tiny_run, str(tmp_path), formats="float32", progress=lambda message: None)
    code, _, stderr = _cli(["export", "--model", tiny_run, "--out", str(tmp_path), "--formats", "float32"])
    assert code == 2 and "pass --overwrite to replace it, or another --out or --name." in stderr
    with pytest.raises(DnadetError, match=r"^precision: expected None \(as trained\) or one of float32, "
                                          r"mixed_bfloat16, received 'float64'"):
        dnadet_tf.load(tiny_run, precision="float64")
    image = _test_paths(upsampling_data)[0]
    paths, probabilities = dnadet_tf.predict(tiny_run, image)  # one path, not a list of its characters
    assert paths == [image] and probabilities.shape[0] == 1
    # What is not a path, a batch size or an option of the call is named as the parameter it was given for.
    for call, message in [
        (lambda: dnadet_tf.predict(tiny_run, np.zeros((2, 32, 32, 3))), r"^inputs: expected paths of image files "
                                                                          r"or folders \(str or pathlib\.Path\), "
                                                                          r"received a ndarray\.$"),
        (lambda: dnadet_tf.predict(tiny_run, []), r"^inputs: expected paths .*, received none\.$"),
        (lambda: dnadet_tf.predict(None, image), r"^model: expected a path .* received NoneType\.$"),
        (lambda: dnadet_tf.predict(tiny_run, image, batch_size=0), r"^batch_size: expected a positive integer, "
                                                                     r"received 0\.$"),
        (lambda: dnadet_tf.evaluate(tiny_run, []), r"^data: expected labeled data: .*received none\.$"),
        (lambda: dnadet_tf.export(tiny_run, str(tmp_path), verison=2), r"^verison: not an option of export; "
                                                                        r"expected one of .*version"),
        (lambda: dnadet_tf.export(str(tmp_path / "nope"), str(tmp_path)), r"^run_dir .*nope: expected a run dir "
                                                                            r"written by 'dnadet-tf fit'"),
        (lambda: dnadet_tf.fit(upsampling_data["train"], str(tmp_path / "r"), preset="tiny", steps="3"),
         r"^steps: expected an integer, received '3'\.$"),
    ]:
        with pytest.raises(DnadetError, match=message):
            call()
    assert not os.path.exists(tmp_path / "r")


def test_an_existing_web_folder_stops_a_web_export_without_overwrite(tiny_run, tmp_path):
    from dnadet_tf.exports import web

    runtime = tmp_path / "node_modules"  # stand-in LiteRT.js files: the export stops before copying them
    for rel in web.RUNTIME_FILES.values():
        (runtime / rel).parent.mkdir(parents=True, exist_ok=True)
        (runtime / rel).write_text("", encoding="utf-8")
    (runtime / web.RUNTIME_PACKAGE / "package.json").write_text('{"version": "2.5.3"}', encoding="utf-8")
    site = tmp_path / "out" / "dnadet" / "web"
    site.mkdir(parents=True)
    (site / "index.html").write_text("my own page", encoding="utf-8")
    code, stdout, stderr = _cli(["export", "--model", tiny_run, "--out", str(tmp_path / "out"), "--formats", "web",
                                 "--web-model", "float32", "--web-runtime", str(runtime)])
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "converting" not in stdout
    assert f"{site}: exists" in lines[0] and "--overwrite" in lines[0]
    assert sorted(os.listdir(site.parent)) == ["web"] and os.listdir(site) == ["index.html"]


def test_unknown_format_is_a_one_line_error(tiny_run, tmp_path):
    code, _, stderr = _cli(["export", "--model", tiny_run, "--out", str(tmp_path), "--formats", "float32,onnx"])
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "--formats" in stderr
    assert not os.listdir(str(tmp_path))


# The app-side preprocessing as docs/deployment.md and the sidecars spell it out (and its Kotlin
# snippet implements), written with NumPy only: it must reproduce `preprocess_image`.
def _keys_cubic(x, a=-0.5):
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def _resize_axis(image, out_size, axis):
    in_size = image.shape[axis]
    scale = in_size / out_size
    widen = max(scale, 1.0)  # antialiasing when shrinking
    rows = []
    for i in range(out_size):
        centre = (i + 0.5) * scale  # half-pixel centres
        taps = np.arange(max(int(np.ceil(centre - 2 * widen - 0.5)), 0),
                         min(int(np.floor(centre + 2 * widen - 0.5)), in_size - 1) + 1)
        weights = _keys_cubic((taps + 0.5 - centre) / widen)
        weights = weights / weights.sum()  # taps outside the image dropped, weights renormalised
        rows.append(np.tensordot(weights, np.take(image, taps, axis=axis), axes=([0], [axis])))
    return np.moveaxis(np.stack(rows), 0, axis)


def _documented_preprocess(rgb, crop, resize1, resize2, crop_square=False):
    x = rgb.astype(np.float64)
    height, width = x.shape[:2]
    if height != width or (crop_square and height > crop):
        top, left = (height - crop) // 2, (width - crop) // 2
        x = x[top:top + crop, left:left + crop]
    for size in (resize1, resize2):
        x = np.clip(_resize_axis(_resize_axis(x, size, 0), size, 1), 0, 255)
    return x / 127.5 - 1.0


def test_documented_app_preprocessing_matches_preprocess_image():
    from dnadet_tf.preprocess import PreprocessConfig

    rng = np.random.default_rng(1)
    cases = [((40, 52, 3), PreprocessConfig(32, 32, 64)), ((150, 131, 3), PreprocessConfig(128, 128, 256)),
             ((100, 100, 3), PreprocessConfig(128, 60, 96)), ((100, 100, 3), PreprocessConfig(64, 64, 128)),
             ((100, 100, 3), PreprocessConfig(64, 64, 128, crop_square=True)),
             ((64, 64, 3), PreprocessConfig(64, 64, 128, crop_square=True))]
    for shape, config in cases:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        expected = preprocess_image(image, config).numpy()
        documented = _documented_preprocess(image, config.crop_size, config.resize1, config.resize2,
                                            config.crop_square)
        assert np.abs(documented - expected).max() < 1e-4
    steps = app_preprocessing_steps(PreprocessConfig(64, 64, 128, crop_square=True), {})
    assert any(step.startswith("If H != W, or H == W > 64: keep the centre 64x64 square") for step in steps)
    assert any(step.startswith("If H != W: keep") and "A square image is not cropped." in step
               for step in app_preprocessing_steps(PreprocessConfig(64, 64, 128), {}))


def test_a_bfloat16_run_exports_float32_and_is_compared_in_float32(upsampling_data, tmp_path):
    """Exports compute in float32; the parity reference is the same weights in float32, not the bfloat16 run."""
    from dnadet_tf.training import fit

    run_dir = str(tmp_path / "bf16")
    fit(upsampling_data["train"], run_dir, preset="tiny", steps=4, precision="mixed_bfloat16")
    assert KerasPredictor(run_dir).model.get_layer("stage1_conv1").compute_dtype == "bfloat16"
    code, _, stderr = _cli(["export", "--model", run_dir, "--out", str(tmp_path / "out"), "--formats", "float32",
                            "--eval", upsampling_data["test"], "--max-eval", "8"])
    assert code == 0, stderr
    with open(tmp_path / "out" / "dnadet" / "report.json", encoding="utf-8") as f:
        rows = {row["format"]: row for row in json.load(f)["rows"]}
    assert rows["float32"]["max_abs_diff"] < 1e-5


def test_a_run_trained_through_the_statistics_shift_exports_plain_batchnorms(upsampling_data, tmp_path):
    """The `cpu` preset's DNA-Det trains with `statistics_shift`; its exports compute what the Keras model does at
    inference (the shift, and its random state, act in training only)."""
    from dnadet_tf.training import fit

    run_dir = str(tmp_path / "shift")
    fit(upsampling_data["train"], run_dir, preset="tiny", steps=4, statistics_shift=0.5)
    assert KerasPredictor(run_dir).model.backbone.get_layer("stage3_bn1").statistics_shift == 0.5
    rows = export_rows(run_dir, tmp_path / "out", upsampling_data["test"])
    assert rows["savedmodel"]["max_abs_diff"] < 1e-5 and rows["float32"]["max_abs_diff"] < 1e-5
    assert rows["int8"]["top1_agreement"] >= 0.75


def test_a_crop_square_run_crops_large_square_images_inside_the_savedmodel(upsampling_data, tmp_path):
    """The exported graph takes the run's preprocessing, crop_square included, from the one function."""
    from dnadet_tf.training import fit

    run_dir = str(tmp_path / "crop")
    fit(upsampling_data["train"], run_dir, preset="tiny", steps=2, crop_square=True)
    keras_predictor = KerasPredictor(run_dir)
    assert keras_predictor.preprocess.crop_square
    code, _, stderr = _cli(["export", "--model", run_dir, "--out", str(tmp_path / "out"), "--formats", "savedmodel"])
    assert code == 0, stderr
    version_dir = os.path.join(str(tmp_path / "out"), "dnadet", "1")
    assert load_predictor(version_dir).preprocess == keras_predictor.preprocess
    large = np.random.default_rng(3).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    serve = tf.saved_model.load(version_dir).signatures["serving_default"]
    served = serve(images=tf.constant([_encode(large, "PNG")]))["probabilities"].numpy()
    config = keras_predictor.preprocess
    centre = large[32:64, 32:64]  # tiny preset: crop_size 32
    expected = keras_predictor.predict_pixels(preprocess_image(centre, config).numpy()[None])
    assert np.abs(served - expected).max() < 1e-4
    squashed = keras_predictor.predict_pixels(
        preprocess_image(large, type(config)(**{**config.to_dict(), "crop_square": False})).numpy()[None])
    assert np.abs(squashed - expected).max() > 1e-4  # the crop is what made them equal


def test_calibrated_known_rate_is_the_share_calibration_json_records_or_the_default(tmp_path):
    # `calibrate --known-rate Q` records Q in calibration.json; export refits the int8 threshold at the same Q
    # (the sidecar's `threshold_fitted_on.known_rate`, test_open_set_outputs_agree_with_keras).
    assert calibrated_known_rate(str(tmp_path)) == KNOWN_RATE  # no calibration.json: the default
    (tmp_path / "calibration.json").write_text(json.dumps({"known_rate": 0.8, "threshold": 3.0}), encoding="utf-8")
    assert calibrated_known_rate(str(tmp_path)) == 0.8


@pytest.mark.parametrize("flags", [["--radii", "per-class"], ["--means", "image"], ["--means", "2"]])
def test_a_run_calibrated_with_per_class_radii_or_every_image_exports_its_score(flags, tiny_run, upsampling_data,
                                                                                 keras_predictor, test_pixels,
                                                                                 tmp_path):
    # `calibrate --radii per-class` stores one radius per class in the Calibration layer, `--means image` every
    # training image's feature; the exported graph divides by the radii, or takes each class's nearest image, as
    # the Keras model does, and the int8 file's threshold is refitted on those scores.
    run = str(tmp_path / "run")
    shutil.copytree(tiny_run, run)
    code, stdout, stderr = _cli(["calibrate", run, *flags])
    assert code == 0, stderr
    with open(os.path.join(run, "calibration.json"), encoding="utf-8") as f:
        report = json.load(f)
    keras_run = KerasPredictor(run)
    if flags[0] == "--radii":
        assert report["radii"] == "per-class" and len(report["class_radii"]) == len(keras_predictor.class_names)
        assert "distances in units of each class radius" in stdout
        assert keras_run.model.calibration.class_radii
    elif flags[1] == "image":
        per_class = keras_run.model.calibration.means_per_class
        assert report["means"] == "image" and per_class > 2 and report["class_radii"] is None
        assert keras_run.model.calibration.class_means.shape[0] == per_class * len(keras_predictor.class_names)
        assert "distances to the nearest training image of each class" in stdout
    else:  # two k-means centres of each class's training images
        assert report["means"] == 2 and keras_run.model.calibration.means_per_class == 2
        assert keras_run.model.calibration.class_means.shape[0] == 2 * len(keras_predictor.class_names)
        assert "distances to the nearest of 2 k-means centres of each class" in stdout
        assert keras_run.open_set["means_per_class"] == 2
    expected = keras_run.attribute_pixels(test_pixels)
    out = str(tmp_path / "out")
    code, _, stderr = _cli(["export", "--model", run, "--out", out, "--formats", "savedmodel,float32,int8",
                            "--eval", upsampling_data["test"], "--max-eval", "8"])
    assert code == 0, stderr
    threshold = keras_run.open_set["threshold"]
    for name in ("1", os.path.join("tflite", "dnadet-float32.tflite")):
        outputs = load_predictor(os.path.join(out, "dnadet", name)).attribute_pixels(test_pixels)
        assert np.abs(outputs["ood_score"] - expected["ood_score"]).max() <= 1e-2 * max(1.0, abs(threshold)), name
    int8 = load_predictor(os.path.join(out, "dnadet", "tflite", "dnadet-int8.tflite"))
    assert int8.sidecar["open_set"]["float_threshold"] == pytest.approx(threshold)


def test_a_run_validated_on_a_share_of_its_data_exports_int8_with_that_share(upsampling_data, tmp_path):
    """`fit --val-split` validates on a share of its training data: export compares and refits the int8 file's
    open-set threshold on that share (it stopped with 'the share val_split ...: no such file or folder')."""
    from dnadet_tf.calibrate import HELD_OUT
    from dnadet_tf.training import fit

    run_dir = str(tmp_path / "run")
    fit(upsampling_data["train"], run_dir, preset="tiny", steps=2, val_split=0.25, output=io.StringIO())
    code, stdout, stderr = _cli(["export", "--model", run_dir, "--out", str(tmp_path / "out"), "--formats", "int8"])
    assert code == 0, stderr
    report = _report(str(tmp_path / "out" / "dnadet"))
    assert report["eval"]["data"] == HELD_OUT and report["eval"]["images"] == 18  # a quarter of 3 x 24 images
    sidecar = json.load(open(tmp_path / "out" / "dnadet" / "tflite" / "dnadet-int8.json", encoding="utf-8"))
    assert sidecar["open_set"]["threshold"] > 0 and "float_threshold" in sidecar["open_set"]


def test_a_sidecar_beside_another_tflite_file_is_refused(exported, upsampling_data, tmp_path):
    # The float32 file's sidecar beside the int8 file gave it the float32 threshold (and, for --int8-io, the
    # wrong quantization) without a word: every sidecar names its file's sha256.
    tflite = os.path.join(exported["base"], "tflite")
    shutil.copy(os.path.join(tflite, "dnadet-int8.tflite"), tmp_path / "renamed.tflite")
    shutil.copy(os.path.join(tflite, "dnadet-float32.json"), tmp_path / "renamed.json")
    image = _test_paths(upsampling_data)[0]
    code, stdout, stderr = _cli(["predict", "--model", str(tmp_path / "renamed.tflite"), image])
    assert code == 2 and stdout == ""
    assert stderr.strip().startswith(f"dnadet-tf predict: error: {tmp_path / 'renamed.json'}: the sidecar of another "
                                     f"file (sha256 ") and "file 'dnadet-float32.tflite'" in stderr
    shutil.copy(os.path.join(tflite, "dnadet-int8.json"), tmp_path / "renamed.json")  # its own: answered
    assert _cli(["predict", "--model", str(tmp_path / "renamed.tflite"), image])[0] == 0


def test_a_calibrated_savedmodel_without_its_metadata_file_is_one_line(exported, upsampling_data, tmp_path):
    copy = str(tmp_path / "1")
    shutil.copytree(exported["version_dir"], copy)
    os.remove(os.path.join(copy, "assets", "dnadet.json"))
    code, stdout, stderr = _cli(["predict", "--model", copy, _test_paths(upsampling_data)[0]])
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert f"{os.path.join(copy, 'assets', 'dnadet.json')}: expected the export's metadata" in stderr


def test_parity_images_may_be_a_folder_without_classes_and_missing_data_names_the_flag(tiny_run, upsampling_data,
                                                                                       tmp_path):
    # A run that records no data (import-torch) had to be given a class-folder tree for a parity check that needs
    # no labels, and the message named `eval_data` as the flag to pass.
    from dnadet_tf.cli.main import build_parser, in_flag_words
    from dnadet_tf.exports.export import _read

    flat = tmp_path / "flat"
    flat.mkdir()
    for k, path in enumerate(_test_paths(upsampling_data)[:6]):
        shutil.copy(path, flat / f"{k}.png")
    out = str(tmp_path / "exported")
    rows = export_rows(tiny_run, out, flat, formats="float32")
    assert rows["float32"]["images"] == 6 and rows["float32"].get("accuracy") is None
    with open(os.path.join(out, "dnadet", "report.json"), encoding="utf-8") as f:
        assert json.load(f)["eval"] == {"data": str(flat), "images": 6, "labelled": False}
    with pytest.raises(DnadetError) as raised:
        _read(None, "val", "eval_data")
    export_parser = build_parser()._subparsers._group_actions[0].choices["export"]
    assert in_flag_words(str(raised.value), export_parser) == (
        "--eval: the run records no such data; pass --eval DATA.")

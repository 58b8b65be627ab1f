"""What the SavedModel's signatures do with their inputs, where they could differ from `predict` (bug hunt 12).

`serving_default` decodes with TensorFlow (`exports.savedmodel.decode_as_pillow`), `predict`, `evaluate` and
`fit` with Pillow (`images.load_rgb`). A 16-bit grey PNG must give both the same pixels (both keep each
sample's high byte); the differences docs/deployment.md lists (an animated WebP refused, a GIF's transparent
index black) are pinned here so the document stays true. `predict_pixels` refuses pixels outside [-1, 1] and
NaN, as the package's predictors do. `DNADET_TF_MAX_PIXELS` beyond int64's range (or `inf`) means no limit.

The SavedModel is that of an untrained `tiny` classifier (the weights play no part in what is decoded or
refused). Never decode with `channels=0` here: on an animated WebP it corrupts TF's heap.
"""
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dnadet_tf import images
from dnadet_tf.config import make_config
from dnadet_tf.errors import DnadetError
from dnadet_tf.exports.savedmodel import PIXELS_SIGNATURE, SERVING_SIGNATURE, decode_as_pillow, write_savedmodel
from dnadet_tf.images import load_rgb
from dnadet_tf.model import Backbone, Classifier
from dnadet_tf.preprocess import PreprocessConfig, assert_size_fits, preprocess_image
from synthetic import CLASSES


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """{'preprocess': PreprocessConfig, 'serve': serving_default, 'pixels': predict_pixels} of a SavedModel."""
    config = make_config("tiny")
    preprocess = config.preprocess
    model = Classifier(Backbone(config.model.width), len(CLASSES), config.model.dropout, CLASSES, preprocess)
    size = preprocess.resize2
    model(np.zeros((1, size, size, 3), np.float32))  # builds the variables
    path = str(tmp_path_factory.mktemp("serving-inputs") / "1")
    write_savedmodel(model, CLASSES, preprocess, path, {"test": "serving inputs"})
    loaded = tf.saved_model.load(path)
    return {"preprocess": preprocess, "serve": loaded.signatures[SERVING_SIGNATURE],
            "pixels": loaded.signatures[PIXELS_SIGNATURE], "loaded": loaded}


def _bytes(image, fmt, **params):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


# --- 16-bit grey PNG: the same pixels -----------------------------------------------------------------------


def test_a_16_bit_grey_png_gives_serving_default_and_load_rgb_identical_model_input(served, tmp_path):
    """load_rgb rounded v / 65535 * 255 where TF keeps v >> 8: about a quarter of the pixels differed by one
    level, and the probabilities and open-set score with them."""
    samples = np.random.default_rng(0).integers(0, 65536, (48, 48), dtype=np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(samples).save(path)
    with Image.open(path) as image:
        assert image.mode.startswith("I;16")
    data = path.read_bytes()
    decoded = decode_as_pillow(tf.constant(data)).numpy()  # the SavedModel's decoder, as its graph runs it
    assert np.array_equal(decoded[..., 0], samples >> 8)
    read = load_rgb(str(path))
    assert read.dtype == np.uint8 and np.array_equal(read, decoded)
    preprocess = served["preprocess"]
    np.testing.assert_array_equal(preprocess_image(read, preprocess).numpy(),
                                  preprocess_image(decoded, preprocess).numpy())
    # Through the exported graph: serving_default answers what predict_pixels answers on load_rgb's pixels.
    from_bytes = served["serve"](images=tf.constant([data]))["probabilities"].numpy()
    from_pixels = served["pixels"](pixels=preprocess_image(read, preprocess)[None])["probabilities"].numpy()
    np.testing.assert_allclose(from_bytes, from_pixels, rtol=0, atol=1e-6)


# --- The documented decoder differences (docs/deployment.md, "Five differences") ---------------------------


def test_an_animated_webp_is_refused_by_serving_default_and_read_by_predict(served, tmp_path):
    frames = [Image.fromarray(np.full((48, 48, 3), value, np.uint8)) for value in (40, 200)]
    path = tmp_path / "anim.webp"
    frames[0].save(path, format="WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)
    with Image.open(path) as image:
        assert getattr(image, "is_animated", False)
    assert np.array_equal(load_rgb(str(path)), np.full((48, 48, 3), 40, np.uint8))  # predict: the first frame
    with pytest.raises(tf.errors.InvalidArgumentError, match="WebP Animation must be 4 channel RGBA"):
        served["serve"](images=tf.constant([path.read_bytes()]))
    # A still WebP is decoded as Pillow decodes it.
    still = _bytes(frames[0], "WEBP", lossless=True)
    assert np.array_equal(decode_as_pillow(tf.constant(still)).numpy(), np.full((48, 48, 3), 40, np.uint8))


def test_a_gif_s_transparent_index_is_black_in_serving_default_and_white_in_predict(served, tmp_path):
    stored = (220, 146, 119)
    palette = [0] * 768
    palette[3:6] = stored  # index 1: the transparent colour
    palette[6:9] = (10, 90, 30)  # index 2: opaque
    indices = np.full((48, 48), 2, np.uint8)
    indices[:, :16] = 1
    image = Image.fromarray(indices, "P")
    image.putpalette(palette)
    path = tmp_path / "trans.gif"
    image.save(path, format="GIF", transparency=1)
    decoded = decode_as_pillow(tf.constant(path.read_bytes())).numpy()
    read = load_rgb(str(path))
    assert (decoded[:, :16] == 0).all(), decoded[0, 0]  # the SavedModel: black, not the stored colour
    assert (read[:, :16] == 255).all(), read[0, 0]  # predict: composited over white
    assert np.array_equal(decoded[:, 16:], read[:, 16:]) and tuple(read[0, 20]) == (10, 90, 30)
    served["serve"](images=tf.constant([path.read_bytes()]))  # answered (another image than predict's)


# --- predict_pixels: preprocessed pixels only ----------------------------------------------------------------


def test_predict_pixels_refuses_pixels_outside_minus_one_one_and_nan(served):
    size = served["preprocess"].resize2
    pixels = served["pixels"]
    ok = np.random.default_rng(1).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    ok[0, 0, 0, 0], ok[1, 0, 0, 0] = 1.0, -1.0
    assert pixels(pixels=tf.constant(ok))["probabilities"].shape == (2, len(CLASSES))
    assert pixels(pixels=tf.zeros((0, size, size, 3)))["probabilities"].shape == (0, len(CLASSES))
    decoded = np.full((2, size, size, 3), 255.0, np.float32)  # a client that skipped x / 127.5 - 1
    nan = ok.copy()
    nan[1, 3, 4, 2] = np.nan
    infinite = ok.copy()
    infinite[0, 1, 1, 1] = -np.inf
    for bad in (decoded, nan, infinite, ok * 1.01):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"pixels: expected finite values in \[-1, 1\] \(preprocessed: x / 127.5 - 1\)"):
            pixels(pixels=tf.constant(bad))
    with pytest.raises(tf.errors.InvalidArgumentError, match="received values up to.*255"):
        pixels(pixels=tf.constant(decoded))
    # The package's own predictors refuse NaN as the graph does (and 0-255 pixels, tested in test_exports).
    with pytest.raises(DnadetError, match=r"expected preprocessed pixels in \[-1, 1\], received values that are "
                                        r"not finite"):
        served["preprocess"].checked_pixels(nan, "model")


# --- DNADET_TF_MAX_PIXELS beyond int64's range ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["1e19", "9.3e18", "inf", "Infinity"])
def test_a_max_pixels_beyond_int64_is_no_limit(value, monkeypatch):
    """1e19 made every image "too large" (an int64 count compared with a larger constant), `inf` crashed every
    command at import (OverflowError)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    monkeypatch.setenv(images.MAX_PIXELS_VARIABLE, value)
    images._apply_max_pixels()
    assert Image.MAX_IMAGE_PIXELS == np.iinfo(np.int64).max
    config = PreprocessConfig(crop_size=32, resize1=32, resize2=64)
    image = np.zeros((48, 48, 3), np.uint8)
    assert assert_size_fits(tf.constant(image), config).shape == (48, 48, 3)
    assert preprocess_image(image, config).shape == (64, 64, 3)


@pytest.mark.parametrize("limit", [10 ** 19, 2 ** 63, float("inf")])
def test_the_graph_s_size_check_takes_a_limit_beyond_int64_as_no_limit(limit, monkeypatch):
    """The exported graph's check (assert_size_fits) compared an int64 count with 1e19: every image was "too
    large". A limit set in Python (a library user's), `inf` included, is no limit; a smaller one still works."""
    config = PreprocessConfig(crop_size=32, resize1=32, resize2=64)
    image = tf.zeros((48, 48, 3), tf.uint8)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    assert assert_size_fits(image, config).shape == (48, 48, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 48 * 48 - 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="image too large: expected at most 2303 pixels"):
        assert_size_fits(image, config)


def test_max_pixels_inf_does_not_stop_a_command_at_import():
    env = {**os.environ, images.MAX_PIXELS_VARIABLE: "inf"}
    script = "import PIL.Image, dnadet_tf.images; print(PIL.Image.MAX_IMAGE_PIXELS)"
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [str(np.iinfo(np.int64).max)] and "warning" not in result.stderr
    # A value that is no number still changes nothing, with one warning line.
    result = subprocess.run([sys.executable, "-c", script], env={**env, images.MAX_PIXELS_VARIABLE: "nan"},
                            capture_output=True, text=True)
    pillow_default = 1024 * 1024 * 1024 // 4 // 3
    assert result.returncode == 0 and result.stdout.split() == [str(pillow_default)], result.stderr
    assert result.stderr.count("warning: DNADET_TF_MAX_PIXELS: expected a positive number") == 1

"""dnadet_tf.images.load_rgb on PNGs with a transparent colour (a tRNS chunk on an RGB or grey image, what PNG
optimisers make of an RGBA image whose alpha is only on or off): the colour is composited over white, as it is
for an alpha channel or a palette's transparent entry, and as the web app (the browser) shows it. Pillow keeps
the colour in info["transparency"] and its convert("RGB") drops it.

The SavedModel's in-graph decoder (tf.io.decode_image, channels=3) drops it too, like an alpha channel;
docs/deployment.md lists that among its differences from predict, and the last test keeps that sentence true.
"""
import os

import numpy as np
from PIL import Image

from dnadet_tf.images import load_rgb
from web_harness import raw_png

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _image(rng, shape):
    return rng.integers(40, 200, shape, dtype=np.uint8)


def test_rgb_png_with_a_transparent_colour_is_composited_over_white(tmp_path):
    pixels = _image(np.random.default_rng(0), (40, 48, 3))
    pixels[:, :20] = (10, 20, 30)
    path = str(tmp_path / "rgb_trns.png")
    Image.fromarray(pixels).save(path, transparency=(10, 20, 30))
    rgb = load_rgb(path)
    assert (rgb[:, :20] == 255).all(), rgb[0, 0]
    assert np.array_equal(rgb[:, 20:], pixels[:, 20:])


def test_grey_png_with_a_transparent_colour_is_composited_over_white(tmp_path):
    pixels = _image(np.random.default_rng(1), (40, 48))
    pixels[10:] = 7
    path = str(tmp_path / "grey_trns.png")
    Image.fromarray(pixels, "L").save(path, transparency=7)
    rgb = load_rgb(path)
    assert (rgb[10:] == 255).all(), rgb[10, 0]
    assert np.array_equal(rgb[:10], np.repeat(pixels[:10, :, None], 3, axis=2))


def test_transparent_colour_is_compared_in_the_file_s_bit_depth(tmp_path):
    """16-bit grey: the colour matches the stored 16-bit sample only (1000, not 1001, which has the same high
    byte), then each sample keeps its high byte as for any 16-bit PNG (as TF's decoder does). 2-bit grey:
    Pillow decodes samples to 0-255 but keeps the colour as stored (1 is 85). 16-bit RGB: Pillow keeps only each sample's high byte, so the
    colour's high bytes are what is compared (a sample whose low byte differs matches too)."""
    grey16 = np.full((32, 40), 1001, np.uint16)
    grey16[:, :10] = 1000
    rgb = load_rgb(raw_png(tmp_path / "grey16.png", grey16, 16, 0, [1000]))
    assert (rgb[:, :10] == 255).all() and (rgb[:, 10:] == 1001 >> 8).all()

    grey2 = np.tile(np.array([0, 1, 2, 3]), (32, 10))
    rgb = load_rgb(raw_png(tmp_path / "grey2.png", grey2, 2, 0, [1]))
    assert np.array_equal(rgb[..., 0], np.where(grey2 == 1, 255, grey2 * 85))

    rgb16 = np.zeros((32, 40, 3), np.uint16)
    rgb16[:] = (12800, 25600, 38400)
    rgb16[:, :10] = (256 * 10, 256 * 20, 256 * 30)
    rgb16[:, 5:10] += np.array([200, 1, 77], np.uint16)
    rgb = load_rgb(raw_png(tmp_path / "rgb16.png", rgb16, 16, 2, [256 * 10, 256 * 20, 256 * 30]))
    assert (rgb[:, :10] == 255).all() and (rgb[:, 10:] == (50, 100, 150)).all()


def test_exif_orientation_then_transparency(tmp_path):
    """The transparent colour is found in the stored pixels and stays with them through the EXIF rotation."""
    pixels = _image(np.random.default_rng(2), (40, 60, 3))
    pixels[:, :20] = (10, 20, 30)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = str(tmp_path / "rotated_trns.png")
    Image.fromarray(pixels).save(path, transparency=(10, 20, 30), exif=exif)
    rgb = load_rgb(path)
    assert rgb.shape == (60, 40, 3)
    assert (rgb[:20] == 255).all() and not (rgb[20:] == 255).all(axis=-1).any()


def test_savedmodel_decoder_keeps_the_transparent_colour_as_docs_say(tmp_path):
    import tensorflow as tf

    from dnadet_tf.exports.savedmodel import decode_as_pillow

    pixels = _image(np.random.default_rng(3), (32, 40, 3))
    pixels[:, :10] = (10, 20, 30)
    path = str(tmp_path / "rgb_trns.png")
    Image.fromarray(pixels).save(path, transparency=(10, 20, 30))
    decoded = decode_as_pillow(tf.io.read_file(path)).numpy()
    assert np.array_equal(decoded, pixels) and (load_rgb(path)[:, :10] == 255).all()
    with open(os.path.join(ROOT, "docs", "deployment.md"), encoding="utf-8") as f:
        assert "transparent colour (tRNS)" in " ".join(f.read().split())

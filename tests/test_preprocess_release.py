"""The `release` preprocessing mode against Pillow itself: the in-graph bicubic and the whole chain
are compared with what the authors' data loader computes (PIL crop and resize, then torchvision's
ToTensor and Normalize, written out here in NumPy)."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dnadet_tf.errors import DnadetError
from dnadet_tf.preprocess import PreprocessConfig, pil_bicubic_resize, preprocess_image


def release_reference(rgb, crop, resize1, resize2):
    """The release's load_sample for an 8-bit RGB array: float32 (resize2, resize2, 3) in [-1, 1]."""
    image = Image.fromarray(rgb)
    width, height = image.size
    if width != height:
        top, left = int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))  # torchvision CenterCrop
        image = image.crop((left, top, left + crop, top + crop))
    for size in (resize1, resize2):
        image = image.resize((size, size))  # Pillow's default filter for RGB: bicubic
    tensor = np.asarray(image).astype(np.float32) / np.float32(255)  # ToTensor
    return (tensor - np.float32(0.5)) / np.float32(0.5)  # Normalize([0.5] * 3, [0.5] * 3)


def _random_image(rng, height, width, smooth):
    if smooth:  # natural-looking gradients: many outputs land near a rounding boundary of the uint8 grid
        walk = np.cumsum(rng.normal(0, 6, (height, width, 3)), axis=1) + np.cumsum(rng.normal(0, 6, (height, 1, 3)), 0)
        return np.clip(walk + 128, 0, 255).astype(np.uint8)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("in_size, out_size", [(128, 512), (128, 128), (64, 128), (256, 128), (1024, 128),
                                               (97, 512), (131, 64), (5, 512), (700, 128), (300, 77)])
def test_bicubic_is_pillows_bit_for_bit(in_size, out_size):
    rng = np.random.default_rng(in_size * 1000 + out_size)
    for smooth in (False, True):
        for height, width in ((in_size, in_size), (in_size, in_size + 7)):
            image = _random_image(rng, height, width, smooth)
            expected = np.asarray(Image.fromarray(image).resize((out_size, out_size), Image.BICUBIC))
            assert np.array_equal(pil_bicubic_resize(image, out_size).numpy().astype(np.uint8), expected)


@pytest.mark.parametrize("shape, sizes", [
    ((128, 128), (128, 128, 512)),     # the paper's 128 px images, in-the-wild chain
    ((128, 128), (128, 512, 512)),     # CelebA / LSUN chain: 128 -> 512 directly
    ((256, 256), (128, 128, 512)),     # square, not cropped: 256 -> 128 -> 512
    ((140, 131), (128, 128, 512)),     # crop offsets 6 and round(1.5) = 2
    ((129, 133), (128, 128, 512)),     # round(0.5) = 0 and round(2.5) = 2: half to even
    ((90, 70), (64, 64, 128)),
])
def test_release_chain_equals_the_release_loader(shape, sizes):
    rng = np.random.default_rng(sum(shape) + sum(sizes))
    config = PreprocessConfig(*sizes, mode="release")
    for smooth in (False, True):
        image = _random_image(rng, *shape, smooth)
        expected = release_reference(image, *sizes)
        got = preprocess_image(image, config).numpy()
        assert got.dtype == np.float32 and np.array_equal(got, expected)


def test_release_crop_offset_is_torchvisions_rounding():
    image = (np.arange(128 * 131 * 3).reshape(128, 131, 3) % 251).astype(np.uint8)
    config = PreprocessConfig(128, 128, 128)  # resizing 128 -> 128 keeps the crop's pixels
    release = preprocess_image(image, dataclasses.replace(config, mode="release")).numpy()
    tf_mode = preprocess_image(image, config).numpy()
    np.testing.assert_array_equal(release, (image[:, 2:130] / np.float32(255) - np.float32(0.5)) / np.float32(0.5))
    np.testing.assert_allclose(tf_mode, image[:, 1:129] / 127.5 - 1, atol=1e-5)  # (131 - 128) // 2 = 1


def test_release_mode_rounds_a_float_image_to_8_bits_first():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (70, 70, 3)).astype(np.float32)
    config = PreprocessConfig(64, 64, 96, mode="release")
    shifted = preprocess_image(image + 0.3, config).numpy()
    np.testing.assert_array_equal(shifted, release_reference(image.astype(np.uint8), 64, 64, 96))


def test_release_mode_runs_in_a_graph_with_unknown_sizes():
    config = PreprocessConfig(64, 64, 128, min_side=32, mode="release")
    fn = tf.function(lambda image: preprocess_image(image, config),
                     input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    rng = np.random.default_rng(4)
    for shape in ((64, 64), (80, 100), (200, 200)):
        image = _random_image(rng, *shape, smooth=True)
        np.testing.assert_array_equal(fn(image).numpy(), release_reference(image, 64, 64, 128))
    with pytest.raises(tf.errors.InvalidArgumentError, match="image too small"):
        fn(np.zeros((16, 16, 3), np.uint8))


def test_mode_travels_in_the_config_dict_and_is_checked():
    config = PreprocessConfig(128, 128, 512, 64, "release")
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    older = {"crop_size": 128, "resize1": 128, "resize2": 256, "min_side": 64}  # written before modes existed
    assert PreprocessConfig.from_dict(older).mode == "tf"
    with pytest.raises(DnadetError, match=r"^preprocess_mode: expected one of tf, release, received 'pil'\.$"):
        PreprocessConfig(mode="pil")

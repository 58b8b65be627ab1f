"""Tests of the 170 pre-training transformations and the image operations behind them."""
import collections
import hashlib
import importlib
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dnadet_tf import imageops, transforms
from dnadet_tf.transforms import NUM_TRANSFORMS, TRANSFORM_NAMES, apply_transform

SEED = tf.constant([3, 4], tf.int32)
NAMES_SHA256 = "0cc2eef109e1041908a2d0db16c2834b9f32e7179d65397f4ca0fc7838ed1f16"


@pytest.fixture(scope="module")
def apply():
    """apply_transform traced once, with a tensor index (as in tf.data)."""
    return tf.function(lambda image, index: apply_transform(image, index, SEED))


def smooth_photo(height=128, width=128, seed=0):
    """A photo-like uint8 (H, W, 3) image: smooth gradients, edges and mild texture."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = 100 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0) + 0.4 * x
    square = ((x > width // 4) & (x < width // 2) & (y > height // 3)) * 50.0
    channels = [base + square, base * 0.8 + 20, 255 - base * 0.9]
    image = np.stack(channels, axis=-1) + rng.normal(0, 4, (height, width, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def pillow_jpeg(array, quality):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB")).astype(np.float32)


def numpy_median(image, kernel):
    radius = kernel // 2
    padded = np.pad(image, [(radius, radius), (radius, radius), (0, 0)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kernel, kernel), axis=(0, 1))
    return np.median(windows, axis=(-2, -1))


def test_names_are_170_distinct_with_family_counts():
    assert NUM_TRANSFORMS == 170
    assert len(TRANSFORM_NAMES) == 170
    assert len(set(TRANSFORM_NAMES)) == 170
    prefixes = collections.Counter(
        next(p for p in ("double_jpeg", "jpeg", "gaussian_blur", "median_blur", "resample", "gaussian_noise") if n.startswith(p))
        for n in TRANSFORM_NAMES
    )
    assert prefixes == {
        "jpeg": 24, "double_jpeg": 24, "gaussian_blur": 14, "median_blur": 14, "resample": 80, "gaussian_noise": 14,
    }


def test_names_are_stable():
    expected = {
        0: "jpeg_q30", 23: "jpeg_q99", 24: "double_jpeg_q30_q39", 25: "double_jpeg_q33_q99",
        47: "double_jpeg_q99_q99", 48: "gaussian_blur_k3", 61: "gaussian_blur_k29", 62: "median_blur_k3",
        75: "median_blur_k29", 76: "resample_nearest_0.15", 91: "resample_nearest_0.90",
        92: "resample_bilinear_0.15", 155: "resample_lanczos_0.90", 156: "gaussian_noise_v10",
        169: "gaussian_noise_v49",
    }
    assert {i: TRANSFORM_NAMES[i] for i in expected} == expected
    assert hashlib.sha256("\n".join(TRANSFORM_NAMES).encode()).hexdigest() == NAMES_SHA256
    reloaded = importlib.reload(transforms)
    assert reloaded.TRANSFORM_NAMES == TRANSFORM_NAMES


def test_every_transform_keeps_shape_range_and_uint8_grid(apply):
    image = tf.constant(smooth_photo(), tf.float32)
    changed = 0
    for index in range(NUM_TRANSFORMS):
        out = apply(image, tf.constant(index, tf.int32)).numpy()
        assert out.shape == (128, 128, 3) and out.dtype == np.float32, TRANSFORM_NAMES[index]
        assert out.min() >= 0 and out.max() <= 255, TRANSFORM_NAMES[index]
        assert np.array_equal(out, np.round(out)), TRANSFORM_NAMES[index]
        changed += int(np.abs(out - image.numpy()).mean() > 0.05)
    assert changed >= NUM_TRANSFORMS - 2  # e.g. JPEG at q99 on a smooth image barely changes it


@pytest.mark.parametrize("quality", [30, 57, 99])
def test_jpeg_matches_pillow(apply, quality):
    image = smooth_photo(seed=1)
    expected = pillow_jpeg(image, quality)
    ours = imageops.jpeg_round_trip(tf.constant(image), quality).numpy()
    assert np.abs(ours - expected).mean() < 0.25
    via_class = apply(tf.constant(image, tf.float32), tf.constant(TRANSFORM_NAMES.index(f"jpeg_q{quality}"))).numpy()
    assert np.abs(via_class - expected).mean() < 0.25
    tensor_quality = tf.function(imageops.jpeg_round_trip)(tf.constant(image), tf.constant(quality)).numpy()
    assert np.array_equal(tensor_quality, ours)


def test_double_jpeg_differs_from_single(apply):
    image = tf.constant(smooth_photo(seed=2), tf.float32)
    for first in (0, 4, 13, 21):  # pairs with two different qualities
        single = apply(image, tf.constant(first)).numpy()
        double = apply(image, tf.constant(24 + first)).numpy()
        assert np.abs(single - double).mean() > 0.1, TRANSFORM_NAMES[24 + first]
    expected = pillow_jpeg(pillow_jpeg(smooth_photo(seed=2), 30).astype(np.uint8), 39)
    assert np.abs(apply(image, tf.constant(24)).numpy() - expected).mean() < 0.25


def test_double_jpeg_pairs_follow_the_listed_order():
    pairs = [name.split("_")[2:] for name in TRANSFORM_NAMES[24:48]]
    assert [int(b[1:]) for _, b in pairs] == list(transforms.DOUBLE_JPEG_SECOND_QUALITIES)
    assert [int(a[1:]) for a, _ in pairs] == list(range(30, 100, 3))
    # The listed pairing repeats the first quality four times (q36, q60, q75, q99); these classes are
    # (almost) the single JPEG class, as recompressing at the same quality barely changes pixels.
    assert [a for a, b in pairs if a == b] == ["q36", "q60", "q75", "q99"]


def test_resampling_keeps_128_pixels(apply):
    image = tf.constant(smooth_photo(seed=3), tf.float32)
    for method in transforms.RESAMPLE_METHODS:
        for scale in ("0.15", "0.50", "0.90"):
            index = TRANSFORM_NAMES.index(f"resample_{method}_{scale}")
            assert apply(image, tf.constant(index)).shape == (128, 128, 3)
        assert imageops.resample(image[:100, :77], 0.15, method).shape == (100, 77, 3)
    coarse = apply(image, tf.constant(TRANSFORM_NAMES.index("resample_bilinear_0.15"))).numpy()
    fine = apply(image, tf.constant(TRANSFORM_NAMES.index("resample_bilinear_0.90"))).numpy()
    assert np.abs(coarse - image.numpy()).mean() > np.abs(fine - image.numpy()).mean()


def test_blur_of_constant_image_is_constant(apply):
    image = tf.fill([128, 128, 3], 77.0)
    for index, name in enumerate(TRANSFORM_NAMES):
        if "blur" in name:
            assert np.array_equal(apply(image, tf.constant(index)).numpy(), image.numpy()), name


def test_gaussian_kernel_uses_opencv_sigma():
    for kernel in (3, 9, 29):
        sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
        taps = np.arange(kernel) - kernel // 2
        expected = np.exp(-(taps**2) / (2 * sigma**2))
        np.testing.assert_allclose(imageops.gaussian_kernel_1d(kernel).numpy(), expected / expected.sum(), atol=1e-6)
    padded = imageops.gaussian_kernel_1d(tf.constant(5), max_kernel_size=9).numpy()
    np.testing.assert_allclose(padded[2:7], imageops.gaussian_kernel_1d(5).numpy(), atol=1e-7)
    assert padded[0] == padded[1] == padded[7] == padded[8] == 0


def test_gaussian_blur_reduces_variance_of_noise():
    image = tf.constant(np.random.RandomState(5).randint(0, 256, (40, 40, 3)), tf.float32)
    variances = [float(tf.math.reduce_variance(imageops.gaussian_blur(image, k))) for k in (1, 3, 9)]
    assert variances[0] == pytest.approx(float(tf.math.reduce_variance(image)))
    assert variances[0] > variances[1] > variances[2]


@pytest.mark.parametrize("kernel", [3, 7, 13, 29])
def test_median_blur_matches_numpy(kernel):
    image = np.random.RandomState(kernel).randint(0, 256, (31, 37, 3)).astype(np.float32)
    ours = imageops.median_blur(tf.constant(image), kernel).numpy()
    np.testing.assert_array_equal(ours, numpy_median(image, kernel))


def test_median_blur_at_the_smallest_size_its_kernel_allows():
    # 15 rows is the least k = 29 can reflect into: every output window reaches both borders.
    image = np.random.RandomState(3).randint(0, 256, (15, 40, 3)).astype(np.uint8)
    ours = imageops.median_blur(tf.constant(image), 29).numpy()
    np.testing.assert_array_equal(ours, numpy_median(image.astype(np.float32), 29))


def test_median_blur_rounds_float_input_first():
    image = np.random.RandomState(9).uniform(0, 255, (20, 22, 3)).astype(np.float32)
    ours = imageops.median_blur(tf.constant(image), 5).numpy()
    np.testing.assert_array_equal(ours, numpy_median(np.round(image), 5))


def test_noise_variance_matches_class(apply):
    grey = tf.fill([128, 128, 3], 128.0)
    for variance in (10, 28, 49):
        index = TRANSFORM_NAMES.index(f"gaussian_noise_v{variance}")
        measured = float(np.var(apply(grey, tf.constant(index)).numpy() - 128.0))
        assert abs(measured - variance) < 0.1 * variance, (variance, measured)


def test_noise_depends_on_seed_only():
    grey = tf.fill([16, 16, 3], 128.0)
    first = imageops.gaussian_noise(grey, 20.0, [1, 2]).numpy()
    assert np.array_equal(first, imageops.gaussian_noise(grey, 20.0, [1, 2]).numpy())
    assert not np.array_equal(first, imageops.gaussian_noise(grey, 20.0, [1, 3]).numpy())


def test_runs_in_parallel_tf_data_map():
    photos = np.stack([smooth_photo(seed=s) for s in range(4)])
    dataset = tf.data.Dataset.from_tensor_slices(photos).enumerate()

    def transform(position, image):
        seed = tf.stack([tf.constant(11, tf.int64), position])
        index = tf.random.stateless_uniform([], seed=seed, maxval=NUM_TRANSFORMS, dtype=tf.int32)
        return apply_transform(tf.cast(image, tf.float32), index, seed), index

    outputs = list(dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE).as_numpy_iterator())
    assert len(outputs) == 4
    assert all(out.shape == (128, 128, 3) and 0 <= index < NUM_TRANSFORMS for out, index in outputs)


def test_out_of_range_index_is_refused():
    with pytest.raises(tf.errors.InvalidArgumentError):
        apply_transform(tf.zeros([128, 128, 3]), NUM_TRANSFORMS, SEED)
    with pytest.raises(ValueError):
        transforms.transform_family(-1)
    assert transforms.transform_family(100) == ("resample", 24)

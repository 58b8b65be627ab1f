"""Window crops (dnadet_tf.crops) equal crops of the one preprocessing function."""
import numpy as np
import pytest
import tensorflow as tf

from dnadet_tf.config import make_config
from dnadet_tf.crops import WindowCrops, crop_offsets, first_resize, windows_pay_off
from dnadet_tf.data import read_dataset
from dnadet_tf.pipeline import TrainingCrops, random_crops, training_dataset, transformation_dataset
from dnadet_tf.preprocess import preprocess_image

TOLERANCE = 1e-5  # in [-1, 1] units


def _image(height, width, seed=0):
    """uint8 (height, width, 3): noise, plus saturated pixels (so the clip after each resize matters)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
    image[::5, ::3] = 255
    image[2::7, 1::4] = 0
    return image


def _shapes(preprocess):
    """Square images of the resize1 size and of two others (resized first, or with crop_square
    center-cropped), and two non-square ones (center-cropped first)."""
    crop, side = preprocess.crop_size, preprocess.resize1
    return [(side, side), (side + 8, side + 8), (2 * side - 5, 2 * side - 5), (crop + 7, crop + 40), (crop + 33, crop)]


@pytest.mark.parametrize("crop_square", [False, True])
@pytest.mark.parametrize("preset", ["tiny", "cpu", "paper"])
def test_window_crops_equal_crops_of_the_preprocessed_image(preset, crop_square):
    config = make_config(preset, crop_square=crop_square)
    preprocess, patch = config.preprocess, config.sampling.patch_size
    windows = WindowCrops(preprocess, patch)
    last = preprocess.resize2 - patch
    middle = last // 2
    offsets = np.array([(0, 0), (last, last), (0, last), (last, 0), (middle, middle), (0, middle),
                        (middle, last), (1, last - 1), (last - 3, 2)], np.int32)
    for seed, shape in enumerate(_shapes(preprocess)):
        image = _image(*shape, seed=seed)
        whole = preprocess_image(image, preprocess).numpy()
        expected = np.stack([whole[top : top + patch, left : left + patch] for top, left in offsets])
        got = windows.at(tf.constant(image), tf.constant(offsets)).numpy()
        assert got.shape == expected.shape == (len(offsets), patch, patch, 3)
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE, err_msg=f"{preset} {shape} {crop_square}")


@pytest.mark.parametrize("preset", ["tiny", "cpu", "paper"])
def test_random_window_crops_take_the_offsets_random_crops_draws(preset):
    config = make_config(preset)
    preprocess, patch, count = config.preprocess, config.sampling.patch_size, config.sampling.patches_per_image
    image = _image(preprocess.crop_size + 10, preprocess.crop_size + 3)
    whole = preprocess_image(image, preprocess)
    windows = WindowCrops(preprocess, patch)
    for index in range(4):
        seed = tf.constant([config.runtime.seed, index], tf.int64)
        expected = random_crops(whole, patch, count, seed).numpy()
        np.testing.assert_allclose(windows.random(image, count, seed).numpy(), expected, rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(TrainingCrops(config, window_crops=True)(image, seed).numpy(), expected,
                                   rtol=0, atol=TOLERANCE)
        offsets = crop_offsets(preprocess.resize2, patch, count, seed).numpy()
        assert offsets.min() >= 0 and offsets.max() <= preprocess.resize2 - patch


def test_window_crops_work_in_a_graph_and_check_sizes_as_preprocess_image_does():
    config = make_config("cpu")
    windows = WindowCrops(config.preprocess, config.sampling.patch_size)
    crops = tf.function(lambda image, seed: windows.random(image, 8, seed))
    image = _image(128, 128)
    assert crops(image, tf.constant([0, 1], tf.int64)).shape == (8, 64, 64, 3)
    assert windows.span < config.preprocessing.resize1  # a window, not the whole image
    with pytest.raises(tf.errors.InvalidArgumentError, match="image too small"):
        crops(_image(100, 130), tf.constant([0, 1], tf.int64))
    np.testing.assert_array_equal(first_resize(image, config.preprocess).numpy(), image.astype(np.float32))
    # The resize it skips for such an image is exactly the identity.
    resized = tf.image.resize(tf.cast(image, tf.float32), (128, 128), method="bicubic", antialias=True)
    np.testing.assert_array_equal(resized.numpy(), image.astype(np.float32))


def test_window_crops_are_used_where_they_pay_off_and_only_in_mode_tf():
    def pays(preset, **overrides):
        config = make_config(preset, **overrides)
        return windows_pay_off(config.preprocess, config.sampling.patch_size, config.sampling.patches_per_image)

    assert pays("cpu") and pays("paper")
    assert not pays("tiny")  # 4 crops of 32 px cover as many pixels as the 64 px image
    assert not pays("paper", preprocess_mode="release")
    with pytest.raises(ValueError, match="mode 'tf'"):
        TrainingCrops(make_config("paper", preprocess_mode="release"), window_crops=True)


def test_pipelines_give_the_same_batches_with_window_crops(upsampling_data, tmp_path):
    files = read_dataset(upsampling_data["train"])
    config = make_config("tiny", patches_per_image=2)

    def batches(window_crops):
        dataset = training_dataset(files, config, start_step=1, window_crops=window_crops)
        return list(dataset.take(2).as_numpy_iterator())

    windows = batches(True)
    for (a, labels_a), (b, labels_b), (again, _) in zip(batches(False), windows, batches(True)):
        assert a.shape == (12, 2, 32, 32, 3)
        np.testing.assert_allclose(a, b, rtol=0, atol=TOLERANCE)
        np.testing.assert_array_equal(labels_a, labels_b)
        np.testing.assert_array_equal(again, b)  # the same seed gives the same batches, exactly

    photos = files.paths[:6]
    config = make_config("tiny", patches_per_image=2, crop_size=32, resize1=32)

    def pretraining(window_crops):
        return next(transformation_dataset(photos, config, 8, window_crops=window_crops).as_numpy_iterator())

    (a, labels_a), (b, labels_b) = pretraining(False), pretraining(True)
    np.testing.assert_allclose(a, b, rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(labels_a, labels_b)


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_crops_made_for_a_whole_batch_equal_each_image_s_own_to_the_bit(preset):
    """The pipelines make window crops once per batch (`TrainingCrops.batch`, in tf.data's graph); the
    batch size must not change a crop: the same products are summed in the same order for one image
    or for nine. (Eager and graph execution may differ in the last bit: the graph's rewrites.)"""
    config = make_config(preset)
    crops = TrainingCrops(config, window_crops=True)
    side = config.preprocess.resize1
    images = [tf.constant(_image(side + 3 * (i % 2), side, seed=i)) for i in range(9)]
    seeds = [tf.constant([config.runtime.seed, 100 + i], tf.int64) for i in range(9)]
    elements = [crops.element(image, seed) for image, seed in zip(images, seeds)]
    in_graph = tf.function(crops.batch)
    one_by_one = np.concatenate([in_graph(tuple(part[None] for part in element)).numpy() for element in elements])
    batched = in_graph(tuple(tf.stack(parts) for parts in zip(*elements))).numpy()
    assert batched.shape == (9, config.sampling.patches_per_image, config.sampling.patch_size,
                             config.sampling.patch_size, 3)
    np.testing.assert_array_equal(batched, one_by_one)


def test_crop_offsets_on_a_grid_are_its_multiples_and_reach_every_one():
    seeds = [tf.constant([0, i], tf.int64) for i in range(40)]
    offsets = np.concatenate([crop_offsets(128, 64, 8, seed, grid=8).numpy() for seed in seeds])
    assert set(np.unique(offsets)) == set(range(0, 65, 8))  # 0, 8, ..., 64: every position, none between
    # A grid that does not divide the free room: the last position is the last multiple below it.
    offsets = np.concatenate([crop_offsets(100, 64, 8, seed, grid=8).numpy() for seed in seeds])
    assert set(np.unique(offsets)) == set(range(0, 33, 8))
    # grid 1 is the draw from before the grid existed, to the value.
    for seed in seeds[:4]:
        before = tf.random.stateless_uniform((8, 2), seed=seed, minval=0, maxval=128 - 64 + 1, dtype=tf.int32)
        np.testing.assert_array_equal(crop_offsets(128, 64, 8, seed, grid=1).numpy(), before.numpy())


@pytest.mark.parametrize("window_crops", [False, True])
def test_training_crops_on_a_grid_are_the_preprocessed_image_at_grid_offsets(window_crops):
    config = make_config("cpu", resize2=128, crop_grid=8)
    preprocess, patch, count = config.preprocess, config.sampling.patch_size, config.sampling.patches_per_image
    image = _image(128, 128)
    whole = preprocess_image(image, preprocess).numpy()
    seed = tf.constant([0, 3], tf.int64)
    offsets = crop_offsets(preprocess.resize2, patch, count, seed, grid=8).numpy()
    assert np.all(offsets % 8 == 0) and len(np.unique(offsets)) > 1
    expected = np.stack([whole[top : top + patch, left : left + patch] for top, left in offsets])
    got = TrainingCrops(config, window_crops=window_crops)(image, seed).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)

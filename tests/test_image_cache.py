"""The decoded-image cache (dnadet_tf.image_cache) and the pipelines that use it."""
import gc
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dnadet_tf.config import make_config
from dnadet_tf.data import read_dataset
from dnadet_tf.image_cache import CACHE_BYTES_VARIABLE, DEFAULT_CACHE_BYTES, DecodedImageCache, default_cache_bytes
from dnadet_tf.images import ImageError, load_rgb
from dnadet_tf.pipeline import training_dataset, transformation_dataset


def _png(path, height, width, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


class CountingLoader:
    """`load_rgb`, counting its calls (thread-safe)."""

    def __init__(self):
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, path):
        with self._lock:
            self.calls += 1
        return load_rgb(path)


def test_hits_misses_and_copies(tmp_path):
    path = _png(tmp_path / "a.png", 20, 30)
    loader = CountingLoader()
    cache = DecodedImageCache(1 << 20, loader=loader)
    first = cache.load(path)
    second = cache.load(path)
    np.testing.assert_array_equal(first, load_rgb(path))
    np.testing.assert_array_equal(second, first)
    assert (loader.calls, cache.hits, cache.misses, len(cache), cache.bytes) == (1, 1, 1, 1, 20 * 30 * 3)
    second[:] = 0  # what a load returns is the caller's own array
    np.testing.assert_array_equal(cache.load(path), first)


def test_bound_is_respected_and_images_beyond_it_are_decoded_each_time(tmp_path):
    paths = [_png(tmp_path / f"{i}.png", 10, 10, seed=i) for i in range(5)]  # 300 bytes each
    loader = CountingLoader()
    cache = DecodedImageCache(1000, loader=loader)
    for _ in range(3):
        for path in paths:
            np.testing.assert_array_equal(cache.load(path), load_rgb(path))
    assert len(cache) == 3 and cache.bytes == 900 <= cache.max_bytes
    assert loader.calls == 3 + 2 * 3  # three decoded once, two on every visit
    off = DecodedImageCache(0, loader=loader)
    off.load(paths[0]), off.load(paths[0])
    assert len(off) == 0 and off.bytes == 0


def test_bad_files_raise_the_loaders_error_every_time(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    cache = DecodedImageCache(1 << 20)
    for path in (broken, empty, tmp_path / "missing.png"):
        with pytest.raises(ImageError) as expected:
            load_rgb(str(path))
        for _ in range(2):
            with pytest.raises(ImageError) as raised:
                cache.load(str(path))
            assert str(raised.value) == str(expected.value)
    assert len(cache) == 0


def test_loads_from_many_threads_agree(tmp_path):
    paths = [_png(tmp_path / f"{i}.png", 16, 16, seed=i) for i in range(8)]
    expected = {path: load_rgb(path) for path in paths}
    cache = DecodedImageCache(4 * 16 * 16 * 3)  # half of them fit
    failures = []

    def work(offset):
        for step in range(60):
            path = paths[(offset + step) % len(paths)]
            if not np.array_equal(cache.load(path), expected[path]):
                failures.append(path)

    with ThreadPoolExecutor(6) as pool:
        for done in [pool.submit(work, i) for i in range(6)]:
            done.result()  # a load that raised in a thread fails the test with its error
    assert not failures and len(cache) == 4 and cache.bytes == 4 * 16 * 16 * 3


def test_default_bound_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(CACHE_BYTES_VARIABLE, raising=False)
    assert default_cache_bytes() == DEFAULT_CACHE_BYTES == 1 << 30
    monkeypatch.setenv(CACHE_BYTES_VARIABLE, "12345")
    assert DecodedImageCache().max_bytes == 12345
    monkeypatch.setenv(CACHE_BYTES_VARIABLE, "lots")
    with pytest.raises(ValueError, match=CACHE_BYTES_VARIABLE):
        default_cache_bytes()


def test_pipelines_give_identical_batches_with_and_without_the_cache(upsampling_data):
    files = read_dataset(upsampling_data["train"])
    config = make_config("tiny")

    def batches(cache_bytes, steps=8):
        return list(training_dataset(files, config, image_cache=cache_bytes).take(steps).as_numpy_iterator())

    # 24 images per class, 4 per class and step: the 8 steps revisit 8 files per class.
    uncached, cached, partly = batches(0), batches(None), batches(10 * 32 * 32 * 3)
    for (a, labels_a), (b, labels_b), (c, _) in zip(uncached, cached, partly):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(labels_a, labels_b)
    shared = DecodedImageCache()
    for _ in range(2):  # a cache shared by datasets over the same files
        for (a, _), (b, _) in zip(uncached, batches(shared)):
            np.testing.assert_array_equal(a, b)
    # Each file is decoded once, up front (HeldImages); the second dataset decodes none of them.
    assert len(shared) == shared.misses == shared.hits == len(files.paths)
    photos = files.paths[:5]
    pretrain = make_config("tiny", crop_size=32, resize1=32)
    first, second = (next(transformation_dataset(photos, pretrain, 8, image_cache=b).as_numpy_iterator())
                     for b in (0, None))
    np.testing.assert_array_equal(first[0], second[0])


def test_the_dataset_holds_its_images_and_frees_them(upsampling_data):
    files = read_dataset(upsampling_data["train"])
    dataset = training_dataset(files, make_config("tiny"))
    held = dataset._dnadet_held_images
    assert len(held) == len(files.paths) and held.bytes == len(files.paths) * 32 * 32 * 3
    iterator = iter(dataset)
    for _ in range(8):
        next(iterator)
    alive = weakref.ref(held)
    del dataset, iterator, held
    gc.collect()
    # tf.numpy_function keeps the mapped Python function (the fallback decoder) for the rest of the
    # process; the held images are not kept with it.
    assert alive() is None


def test_held_images_stop_at_the_bound_and_the_rest_is_decoded_at_every_visit(upsampling_data):
    files = read_dataset(upsampling_data["train"])
    dataset = training_dataset(files, make_config("tiny"), image_cache=10 * 32 * 32 * 3)
    held = dataset._dnadet_held_images
    assert len(held) == 10 and held.bytes == 10 * 32 * 32 * 3
    uncached = training_dataset(files, make_config("tiny"), image_cache=0)
    assert uncached._dnadet_held_images is None
    for (a, _), (b, _) in zip(dataset.take(4).as_numpy_iterator(), uncached.take(4).as_numpy_iterator()):
        np.testing.assert_array_equal(a, b)


def test_pipeline_errors_for_bad_files_are_unchanged(tmp_path):
    class Files:
        class_names = ("a",)
        paths = [str(tmp_path / "broken.png")]
        labels = np.zeros(1, np.int64)

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(ImageError) as expected:
        load_rgb(Files.paths[0])
    for cache_bytes in (0, None):
        with pytest.raises(tf.errors.OpError) as raised:
            next(iter(training_dataset(Files, make_config("tiny", images_per_class=1), image_cache=cache_bytes)))
        assert str(expected.value) in str(raised.value)

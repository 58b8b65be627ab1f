"""Decode each training image once: a bounded, thread-safe cache of decoded pixels.

Training visits every file again each epoch (and pre-training draws photos with
replacement), and decoding a file (`images.load_rgb`: open, verify, decode,
convert) costs about as much as preprocessing it. `DecodedImageCache` keeps the
decoded uint8 arrays in memory up to a bound in bytes. An image takes
H * W * 3 bytes: a 128 x 128 image 48 KiB (21,845 of them per GiB), a 512 x 384
photo 576 KiB (1,820 per GiB). The default bound is 1 GiB, or the environment
variable DNADET_IMAGE_CACHE_BYTES (an integer; 0 turns caching off). When the
data are larger than the bound, the images decoded first stay and the others are
decoded on every visit (nothing is evicted: with every file visited in random
order, an evicting cache smaller than the data would mostly evict images it is
about to need, and pay for copying them in).

The training pipelines read the images through `HeldImages`: every file decoded once, up
front, into the cache, and then copied into one uint8 tensor that tf.data slices (no Python
per image); a cache the pipeline made for itself is dropped then, so each image is in memory
once (while the tensor is made, up to three copies of the held bytes exist for a moment).

What a cached load returns is what `load_rgb` returns (a fresh copy each time),
and a file that fails raises `load_rgb`'s own error, unchanged, every time (failures
are not cached); so pipelines give the same batches with or without the cache.
"""
import os
import threading

from dnadet_tf.images import load_rgb

CACHE_BYTES_VARIABLE = "DNADET_IMAGE_CACHE_BYTES"
DEFAULT_CACHE_BYTES = 1 << 30


def default_cache_bytes():
    """The bound in bytes: $DNADET_IMAGE_CACHE_BYTES when set (an integer >= 0), else 1 GiB."""
    value = os.environ.get(CACHE_BYTES_VARIABLE, "").strip()
    if not value:
        return DEFAULT_CACHE_BYTES
    try:
        bound = int(value)
    except ValueError:
        bound = -1
    if bound < 0:
        raise ValueError(f"{CACHE_BYTES_VARIABLE}: expected a number of bytes (an integer >= 0), "
                         f"received {value!r}.")
    return bound


class DecodedImageCache:
    """path -> uint8 (H, W, 3), as `images.load_rgb(path)` gives it, decoded at most once while it fits.

    Thread-safe: tf.data's parallel map calls `load` from several threads at once. Two threads
    missing the same file at the same moment both decode it; one copy is kept.
    """

    def __init__(self, max_bytes=None, loader=load_rgb):
        """`max_bytes`: the bound on the decoded bytes held (default `default_cache_bytes()`);
        `loader`: path -> uint8 array (H, W, 3), `images.load_rgb` (replaceable in tests)."""
        self.max_bytes = default_cache_bytes() if max_bytes is None else int(max_bytes)
        self._loader = loader
        self._images = {}
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self):
        return len(self._images)

    def held(self, path):
        """The cached array of `path` itself (read-only, not a copy), or None when it is not held."""
        with self._lock:
            return self._images.get(path)

    def load(self, path):
        """uint8 (H, W, 3) of the file at `path` (a str): a copy of the cached array, or decoded now.

        Raises whatever the loader raises for a bad file (`images.ImageError`), as the loader words it.
        """
        with self._lock:
            image = self._images.get(path)
            if image is not None:
                self.hits += 1
                return image.copy()  # tf.numpy_function may hand the array's memory to TF as it is
            self.misses += 1
        image = self._loader(path)
        with self._lock:
            if path not in self._images and self.bytes + image.nbytes <= self.max_bytes:
                kept = image.copy()
                kept.flags.writeable = False
                self._images[path] = kept
                self.bytes += kept.nbytes
        return image


class HeldImages:
    """The decoded pixels of a fixed list of files as one uint8 tensor, read inside tf.data by TF ops.

    Reading a cached image inside tf.data through `tf.numpy_function` costs about 0.25 ms of CPU
    per 128 px image (Python, the GIL, a copy): a quarter of what a training element costs at the
    `cpu` preset. Here every file is decoded once, up front, in a thread pool (through `cache`, which
    bounds the bytes held), and `read(path)` slices its pixels out of one tensor (measured: 24-27
    against 32-35 ms of CPU per batch of 40 images at the `cpu` preset, 2 cores). A file the cache
    does not hold (beyond its bound, or one that fails to decode) is decoded at every visit, through
    `fallback` (path tensor -> uint8 (H, W, 3)), which raises the loader's own error for a bad file.

    Args:
      paths: the files (str), in the order they are held while they fit; repeats are held once.
      cache: a `DecodedImageCache`; what it already holds is not decoded again.
      fallback: the per-visit reader of files not held.
      workers: decoding threads (default: the CPU count).
    """

    CHUNK = 64  # files decoded between two looks at whether the cache is full

    def __init__(self, paths, cache, fallback, workers=None):
        import concurrent.futures

        import numpy as np
        import tensorflow as tf

        from dnadet_tf.images import ImageError

        unique = list(dict.fromkeys(str(p) for p in paths))

        def decoded(path):
            try:
                cache.load(path)  # the cache keeps its own copy while it fits; the one returned is dropped
                return True
            except ImageError:
                return False  # raised again, in the loader's words, when the pipeline reads it

        held = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            for begin in range(0, len(unique), self.CHUNK):
                chunk = unique[begin : begin + self.CHUNK]
                loaded = list(pool.map(decoded, chunk))
                arrays = [cache.held(path) for path in chunk]
                held += [(path, image) for path, image in zip(chunk, arrays) if image is not None]
                if any(ok and image is None for ok, image in zip(loaded, arrays)):
                    break  # the cache is full: the other files are decoded at every visit
        sizes = np.array([image.size for _, image in held], np.int64)
        self.paths = [path for path, _ in held]
        self.bytes = int(sizes.sum())
        self._pixels = tf.constant(np.concatenate([image.reshape(-1) for _, image in held]) if held
                                   else np.zeros(0, np.uint8))
        self._starts = tf.constant(np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64))
        self._shapes = tf.constant(np.array([image.shape for _, image in held], np.int64).reshape(-1, 3))
        self._rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(self.paths, tf.string),
                                                tf.range(len(self.paths), dtype=tf.int64)),
            default_value=-1) if self.paths else None
        self._fallback = fallback

    def __len__(self):
        return len(self.paths)

    def read(self, path):
        """tf.string scalar path -> uint8 (H, W, 3): its held pixels, or `fallback(path)`."""
        import tensorflow as tf

        row = self._rows.lookup(path) if self._rows is not None else tf.constant(-1, tf.int64)

        def held():
            shape = tf.gather(self._shapes, row)
            start = tf.gather(self._starts, row)
            return tf.reshape(self._pixels[start : start + tf.reduce_prod(shape)], shape)

        image = tf.cond(row >= 0, held, lambda: self._fallback(path))
        return tf.ensure_shape(image, (None, None, 3))

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

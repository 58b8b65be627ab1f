"""The one preprocessing function, shared by training, evaluation, Grad-CAM
and the exported SavedModel graph.

As the authors' release does it: a non-square image is center-cropped to
`crop_size` (native pixels; with `crop_square`, also a square image larger than
`crop_size`, instead of squashing it), then resized to `resize1` and to `resize2`
(both bicubic), and scaled to [-1, 1]. Two modes (`PreprocessConfig.mode`):

  tf       TensorFlow's bicubic (`tf.image.resize`, antialiased) in float, clipped
           to [0, 255] after each resize; crop offset (H - crop) // 2; x / 127.5 - 1.
           What the package trains with by default.
  release  the release numerically, for models trained by the authors' PyTorch code
           (`dnadet-tf import-torch`): torchvision's centre-crop offset
           round((H - crop) / 2) (Python's round, half to even); Pillow's bicubic
           (`PIL.Image.resize`'s default filter) reproduced in the graph, fixed-point
           coefficients and rounding to 8 bits after each pass (horizontal first);
           then torchvision's ToTensor + Normalize(0.5, 0.5) in float32. A float input
           is rounded to 8 bits first (Pillow holds 8-bit pixels). Identical to Pillow
           on every image tested (tests/test_preprocess_release.py).

An image too small for that chain is refused, here in the graph (InvalidArgument)
and by `size_problem` before any file reaches a pipeline: a square image needs
sides >= `min_side` (a run's patch size), a non-square one both sides >=
max(`crop_size`, `min_side`), or its center crop would go out of bounds.
"""
import dataclasses

import numpy as np
import tensorflow as tf
from PIL import Image

from dnadet_tf.errors import DnadetError

PREPROCESS_MODES = ("tf", "release")
_INT64_MAX = int(np.iinfo(np.int64).max)


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """Sizes and mode (`PREPROCESS_MODES`) of the preprocessing chain, saved in every run and export."""

    crop_size: int = 128
    resize1: int = 128
    resize2: int = 512
    min_side: int = 1
    mode: str = "tf"
    crop_square: bool = False

    def __post_init__(self):
        if self.mode not in PREPROCESS_MODES:
            raise DnadetError(f"preprocess_mode: expected one of {', '.join(PREPROCESS_MODES)}, "
                              f"received {self.mode!r}.")

    def checked_pixels(self, pixels, source):
        """`pixels` as float32 (N, S, S, 3), S = resize2, in [-1, 1]: what every predictor's `predict_pixels`
        takes. Raises DnadetError naming `source` (the model) and both shapes for another shape, and for integer
        pixels, values beyond [-1, 1] (decoded images, which `dnadet_tf.predict` or `preprocess_image` take) or
        values that are not finite (the SavedModel's `predict_pixels` refuses the same in its graph)."""
        given = np.asarray(pixels)
        size = int(self.resize2)
        if given.ndim != 4 or given.shape[1:] != (size, size, 3):
            raise DnadetError(f"{source}: expected pixels of shape (N, {size}, {size}, 3), received "
                              f"{tuple(int(n) for n in given.shape)}.")
        if not np.issubdtype(given.dtype, np.floating):
            raise DnadetError(f"{source}: expected preprocessed float pixels in [-1, 1], received {given.dtype} "
                              f"pixels (decoded images: dnadet_tf.predict reads files, preprocess_image preprocesses "
                              f"an image).")
        pixels = given.astype(np.float32, copy=False)
        if not np.isfinite(pixels).all():
            raise DnadetError(f"{source}: expected preprocessed pixels in [-1, 1], received values that are not "
                              f"finite (NaN or infinite).")
        largest = float(np.max(np.abs(pixels))) if pixels.size else 0.0
        if largest > 1.0 + 1e-3:
            raise DnadetError(f"{source}: expected preprocessed pixels in [-1, 1], received values up to {largest:g} "
                              f"(decoded images: dnadet_tf.predict reads files, preprocess_image preprocesses an "
                              f"image).")
        return pixels

    def size_problem(self, height, width):
        """None when a height x width image may be preprocessed, else why not (one line)."""
        return size_problem(height, width, self.crop_size, self.min_side)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """From `to_dict`'s form; a dict written before modes existed means mode `tf`, one written
        before `crop_square` existed means False (large square images squashed)."""
        kinds = {"mode": str, "crop_square": bool}
        return cls(**{f.name: kinds.get(f.name, int)(values[f.name])
                      for f in dataclasses.fields(cls) if f.name in values})


def size_problem(height, width, crop_size, min_side):
    """None when a height x width image is large enough, else a one-line reason naming the sizes."""
    if height == width:
        if height >= min_side:
            return None
        return f"too small; expected a square image with sides >= {min_side} px, received {width}x{height} px."
    needed = max(crop_size, min_side)
    if min(height, width) >= needed:
        return None
    return (f"too small; expected a non-square image to have both sides >= {needed} px for the "
            f"{crop_size} px center crop, received {width}x{height} px.")


def assert_size_fits(image, config):
    """(H, W, C) -> the same tensor, after an in-graph check that raises InvalidArgument
    (naming the sizes) when `config.size_problem` would refuse it, or when it has more
    pixels than Pillow's decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`),
    which `images.load_rgb` applies to files; a limit beyond int64's range (`inf` included) is no limit."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    needed = tf.where(tf.equal(height, width), config.min_side, max(config.crop_size, config.min_side))
    pixels = tf.cast(height, tf.int64) * tf.cast(width, tf.int64)
    limit = Image.MAX_IMAGE_PIXELS
    if limit and limit >= _INT64_MAX:  # an int64 count is never above it (and TF cannot hold a larger constant)
        limit = None
    elif limit:
        limit = int(limit)
    checks = [
        tf.debugging.Assert(
            tf.minimum(height, width) >= needed,
            [f"image too small: expected a square image with sides >= {config.min_side} px, or a non-square "
             f"one with both sides >= {max(config.crop_size, config.min_side)} px; received height, width =",
             height, width],
        )
    ]
    if limit:
        checks.append(tf.debugging.Assert(
            pixels <= limit,
            [f"image too large: expected at most {limit} pixels (a possible decompression bomb); "
             "received height, width =", height, width],
        ))
    with tf.control_dependencies(checks):
        return tf.identity(image)


def center_crop_if_not_square(image, crop_size, mode="tf", crop_square=False):
    """(H, W, C) -> (crop_size, crop_size, C) when H != W, or with `crop_square` when
    H == W > crop_size; else unchanged.

    The offset is (H - crop_size) // 2 in mode `tf`, and torchvision's
    round((H - crop_size) / 2), half to even, in mode `release`.
    """
    shape = tf.shape(image)
    height, width = shape[0], shape[1]

    def offset(side):
        if mode == "release":
            return tf.cast(tf.round(tf.cast(side - crop_size, tf.float64) / 2.0), tf.int32)
        return (side - crop_size) // 2

    def crop():
        top, left = offset(height), offset(width)
        return image[top : top + crop_size, left : left + crop_size, :]

    keep = tf.equal(height, width)
    if crop_square:
        keep = tf.logical_and(keep, height <= crop_size)
    return tf.cond(keep, lambda: image, crop)


# Pillow's fixed-point resampling of 8-bit images (libImaging/Resample.c): coefficients
# scaled by 2**22, a rounding half added, the sum shifted back and clipped to 0..255.
_PIL_PRECISION_BITS = 22
_PIL_BICUBIC_A = -0.5
_PIL_BICUBIC_SUPPORT = 2.0


def _pil_bicubic_kernel(x):
    """Pillow's bicubic filter (a = -0.5) of float64 `x`, evaluated in Pillow's operation order."""
    a = _PIL_BICUBIC_A
    x = tf.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return tf.where(x < 1.0, near, tf.where(x < 2.0, far, tf.zeros_like(x)))


def pil_bicubic_matrix(in_size, out_size):
    """Pillow's bicubic resampling of one axis as a matrix of fixed-point coefficients.

    Args:
      in_size: int32 scalar tensor (or int), the source length.
      out_size: Python int, the target length.

    Returns:
      float64 tensor (out_size, in_size) of integers: output i is
      clip(floor((sum_j M[i, j] * x[j] + 2**21) / 2**22), 0, 255) for 8-bit x.
      Taps as Pillow computes them in double precision: centre (i + 0.5) * in / out,
      support 2 * max(in / out, 1), first tap int(centre - support + 0.5), weights
      normalised per output by their sum (accumulated in tap order), then rounded
      half away from zero to 22 fractional bits.
    """
    in_size = tf.cast(in_size, tf.int32)
    scale = tf.cast(in_size, tf.float64) / float(out_size)
    filterscale = tf.maximum(scale, 1.0)
    support = _PIL_BICUBIC_SUPPORT * filterscale
    ksize = tf.cast(tf.math.ceil(support), tf.int32) * 2 + 1
    centre = (tf.range(out_size, dtype=tf.float64) + 0.5) * scale
    first = tf.maximum(tf.cast(tf.math.floor(centre - support + 0.5), tf.int32), 0)
    last = tf.minimum(tf.cast(tf.math.floor(centre + support + 0.5), tf.int32), in_size)
    taps = tf.range(ksize)
    index = first[:, None] + taps[None, :]  # (out, ksize)
    valid = taps[None, :] < (last - first)[:, None]
    weight = _pil_bicubic_kernel((tf.cast(index, tf.float64) - centre[:, None] + 0.5) * (1.0 / filterscale))
    weight = tf.where(valid, weight, tf.zeros_like(weight))
    # The normaliser summed tap after tap, as Pillow's loop does (the last bit can decide a rounding).
    total = tf.foldl(lambda acc, column: acc + column, tf.transpose(weight),
                     initializer=tf.zeros([out_size], tf.float64))
    weight = weight / tf.where(tf.equal(total, 0.0), tf.ones_like(total), total)[:, None]
    scaled = weight * float(1 << _PIL_PRECISION_BITS)
    fixed = tf.where(weight < 0.0, tf.math.ceil(scaled - 0.5), tf.math.floor(scaled + 0.5))
    rows = tf.broadcast_to(tf.range(out_size)[:, None], tf.shape(index))
    coordinates = tf.stack([rows, tf.minimum(index, in_size - 1)], axis=-1)
    fixed = tf.where(valid, fixed, tf.zeros_like(fixed))  # padding taps scatter zeros
    return tf.scatter_nd(tf.reshape(coordinates, [-1, 2]), tf.reshape(fixed, [-1]),
                         tf.stack([out_size, in_size]))


def _pil_pass(image, matrix, axis):
    """One fixed-point pass of `matrix` (out, in) along `axis` (0 or 1) of float64 8-bit values (H, W, C)."""
    equation = "oh,hwc->owc" if axis == 0 else "ow,hwc->hoc"
    total = tf.einsum(equation, matrix, image) + float(1 << (_PIL_PRECISION_BITS - 1))
    return tf.clip_by_value(tf.math.floor(total / float(1 << _PIL_PRECISION_BITS)), 0.0, 255.0)


def pil_bicubic_resize(image, size):
    """`PIL.Image.resize((size, size), BICUBIC)` of an 8-bit image, in the graph.

    Args:
      image: tensor (H, W, C) of 8-bit values (uint8, or float64 integers in [0, 255]).
      size: Python int, the output side.

    Returns:
      float64 tensor (size, size, C) of integers in [0, 255]: the horizontal pass first,
      rounded to 8 bits, then the vertical pass, rounded to 8 bits (exact integer
      arithmetic in float64, as Pillow's int32 sums).
    """
    image = tf.cast(image, tf.float64)
    shape = tf.shape(image)
    image = _pil_pass(image, pil_bicubic_matrix(shape[1], size), axis=1)
    return _pil_pass(image, pil_bicubic_matrix(shape[0], size), axis=0)


def _to_8bit(image):
    """uint8 unchanged; a float or other integer image rounded and clipped to 0..255, as uint8."""
    if image.dtype == tf.uint8:
        return image
    return tf.cast(tf.clip_by_value(tf.round(tf.cast(image, tf.float32)), 0.0, 255.0), tf.uint8)


# torchvision's ToTensor (x / 255 in float32) then Normalize(mean 0.5, std 0.5), for each 8-bit level:
# a table, so that no graph rewrite (x / 255 -> x * (1 / 255)) can move a value by one ulp.
_RELEASE_LEVELS = (np.arange(256, dtype=np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)


def _release_chain(image, config):
    image = center_crop_if_not_square(_to_8bit(image), config.crop_size, "release", config.crop_square)
    for size in (config.resize1, config.resize2):
        image = pil_bicubic_resize(image, size)
    return tf.gather(tf.constant(_RELEASE_LEVELS), tf.cast(image, tf.int32))


# The steps of the `tf` chain, also used by the training crops of `crops` (windows of the second resize), so that
# training sees what evaluation and the exports compute.
def tf_crop(image, config):
    """(H, W, 3) uint8 or float in [0, 255] -> float32 (h, w, 3): the centre crop of a non-square image (and of a
    large square one with `crop_square`); the size check (`assert_size_fits`) is the caller's."""
    return tf.cast(center_crop_if_not_square(image, config.crop_size, crop_square=config.crop_square), tf.float32)


def tf_resize(image, size):
    """float32 (h, w, 3) in [0, 255] -> (size, size, 3): TF's bicubic antialiased resize, clipped to [0, 255]."""
    return tf.clip_by_value(tf.image.resize(image, (size, size), method="bicubic", antialias=True), 0.0, 255.0)


def to_unit_range(pixels):
    """Pixels in [0, 255] -> the network's input range [-1, 1] (`from_unit_range` inverts it)."""
    return pixels / 127.5 - 1.0


def from_unit_range(pixels):
    """The network's input in [-1, 1] -> pixels in [0, 255] (float; NumPy or TF)."""
    return (pixels + 1.0) * 127.5


def _tf_chain(image, config):
    image = tf_crop(image, config)
    for size in (config.resize1, config.resize2):
        image = tf_resize(image, size)
    return to_unit_range(image)


def preprocess_image(image, config=PreprocessConfig()):
    """Turns one decoded image into the network's input.

    Args:
      image: uint8 or float tensor (H, W, 3) with values in [0, 255].
      config: a `PreprocessConfig`; its `mode` picks the chain (module docstring).

    Returns:
      float32 tensor (resize2, resize2, 3) in [-1, 1].

    Raises InvalidArgument (in the graph) for an image that `config.size_problem` refuses
    or that is larger than Pillow's decompression-bomb limit.
    """
    image = assert_size_fits(tf.convert_to_tensor(image), config)
    chain = _release_chain if config.mode == "release" else _tf_chain
    return tf.ensure_shape(chain(image, config), (config.resize2, config.resize2, 3))

"""Low-level image operations shared by the pre-training transformations
(`dnadet_tf.transforms`) and the robustness attacks (`dnadet_tf.attacks`).

Conventions, for every public function here:

- an image is one float32 tensor of shape (H, W, 3) with values in [0, 255]
  (uint8 inputs are accepted and cast);
- the result has the input's shape and is float32 on the uint8 grid (clipped
  to [0, 255] and rounded), i.e. what a saved 8-bit image would hold;
- randomness comes only from an explicit stateless seed (an int32/int64
  tensor of shape [2]), so the same seed gives the same pixels, bit for bit;
- everything is graph-compatible and runs inside `tf.data` map functions.

Borders are handled by reflection without repeating the edge pixel
(`tf.pad(..., "REFLECT")`, OpenCV's BORDER_REFLECT_101, NumPy's "reflect"),
so a filter of kernel k needs both image sides larger than k // 2.
"""
import functools

import numpy as np
import tensorflow as tf

RESAMPLE_METHODS = ("nearest", "bilinear", "bicubic", "area", "lanczos")
_TF_RESIZE_METHOD = {
    "nearest": "nearest",
    "bilinear": "bilinear",
    "bicubic": "bicubic",
    "area": "area",
    "lanczos": "lanczos3",
}


def as_float_image(image):
    """Any (H, W, 3) uint8/float tensor -> float32 (H, W, 3), values unchanged."""
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.float32:
        image = tf.cast(image, tf.float32)
    return image


def quantize(image):
    """float (H, W, 3) -> float32 (H, W, 3) clipped to [0, 255] and rounded to integers."""
    return tf.round(tf.clip_by_value(as_float_image(image), 0.0, 255.0))


def to_uint8(image):
    """float (H, W, 3) in [0, 255] -> uint8 (H, W, 3), clipped and rounded."""
    return tf.cast(quantize(image), tf.uint8)


def as_seed(seed):
    """A shape-[2] integer seed tensor (int32 or int64 kept; anything else -> int64)."""
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        seed = tf.cast(seed, tf.int64)
    return tf.ensure_shape(seed, [2])


def opencv_gaussian_sigma(kernel_size):
    """OpenCV's sigma for a Gaussian kernel of size k when sigma is not given:
    0.3 * ((k - 1) * 0.5 - 1) + 0.8. Works on Python numbers and tensors."""
    return 0.3 * ((kernel_size - 1) * 0.5 - 1.0) + 0.8


def gaussian_kernel_1d(kernel_size, max_kernel_size=None):
    """Normalised 1-D Gaussian weights with OpenCV's sigma rule.

    Args:
      kernel_size: odd int k, a Python int or an int scalar tensor.
      max_kernel_size: odd Python int >= k; when given, the kernel has this
        length with zero weights outside the central k taps, so a tensor k
        can be used with a fixed-size convolution.

    Returns:
      float32 tensor of shape (max_kernel_size or k,).

    For k = 3, 5, 7 OpenCV (with sigma=0) uses fixed binomial tables rather
    than this formula; the formula is used for every k here.
    """
    if max_kernel_size is None:
        if not isinstance(kernel_size, int):
            raise ValueError("gaussian_kernel_1d: a tensor kernel_size needs a Python int max_kernel_size.")
        max_kernel_size = kernel_size
    radius = max_kernel_size // 2
    k = tf.cast(kernel_size, tf.float32)
    sigma = opencv_gaussian_sigma(k)
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    weights = tf.exp(-tf.square(taps) / (2.0 * sigma * sigma))
    weights = tf.where(tf.abs(taps) <= (k - 1.0) / 2.0, weights, tf.zeros_like(weights))
    return weights / tf.reduce_sum(weights)


def _separable_conv(image, kernel):
    """float32 (H, W, 3) reflect-padded by len(kernel)//2, filtered with the
    same 1-D kernel along rows and columns -> float32 (H, W, 3), unrounded."""
    radius = kernel.shape[0] // 2
    padded = tf.pad(image, [[radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    batch = padded[None]  # (1, H + 2r, W + 2r, 3)
    kernel_v = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, 3, 1])
    kernel_h = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, 3, 1])
    out = tf.nn.depthwise_conv2d(batch, kernel_v, strides=[1, 1, 1, 1], padding="VALID")
    out = tf.nn.depthwise_conv2d(out, kernel_h, strides=[1, 1, 1, 1], padding="VALID")
    return out[0]


def gaussian_blur(image, kernel_size, max_kernel_size=None):
    """Gaussian blur with kernel k x k and OpenCV's sigma rule (separable, reflect borders).

    Args:
      image: (H, W, 3) uint8 or float32 in [0, 255]; H and W > max_kernel_size // 2.
      kernel_size: odd int k >= 1 (Python int, or an int scalar tensor when
        `max_kernel_size` is given); k = 1 is the identity.
      max_kernel_size: odd Python int, the largest k a tensor k may take.

    Returns:
      float32 (H, W, 3) on the uint8 grid.
    """
    image = as_float_image(image)
    kernel = gaussian_kernel_1d(kernel_size, max_kernel_size)
    out = _separable_conv(image, kernel)
    out.set_shape(image.shape)
    return quantize(out)


def _median_of_padded(padded, kernel_size):
    """NumPy uint8 (H + k - 1, W + k - 1, 3), reflect-padded -> uint8 (H, W, 3) window medians.

    OpenCV's `medianBlur` (a constant-time histogram method for 8-bit images),
    cut to the windows that lie wholly inside the padded image, so its own
    border rule never enters the result.
    """
    import cv2

    radius = kernel_size // 2
    filtered = cv2.medianBlur(np.ascontiguousarray(padded), kernel_size)
    return filtered[radius:filtered.shape[0] - radius, radius:filtered.shape[1] - radius]


def median_blur(image, kernel_size):
    """Median filter over k x k windows, channel by channel, reflect borders.

    The input is first rounded to the uint8 grid (all images here live on
    it), so the result equals `np.median` over `np.pad(..., mode="reflect")`
    windows of the rounded image. The medians come from OpenCV's 8-bit
    median filter through `tf.numpy_function` (about 2 ms on one core for
    128 px at k = 29; grey-level counting in TF ops took 22-70 ms), so this
    runs in `tf.data` and eager code but not inside a SavedModel.

    Args:
      image: (H, W, 3) uint8 or float32 in [0, 255]; H and W > k // 2.
      kernel_size: odd Python int k >= 1.

    Returns:
      float32 (H, W, 3) on the uint8 grid.
    """
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"median_blur: kernel_size must be an odd Python int >= 1, received {kernel_size!r}.")
    image = quantize(image)
    if kernel_size == 1:
        return image
    radius = kernel_size // 2
    padded = tf.pad(tf.cast(image, tf.uint8), [[radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    out = tf.numpy_function(
        functools.partial(_median_of_padded, kernel_size=kernel_size), [padded], tf.uint8, stateful=False)
    out = tf.cast(out, tf.float32)
    out.set_shape(image.shape)
    return out


def jpeg_round_trip(image, quality):
    """Encodes as baseline JPEG (4:2:0 chroma, libjpeg standard tables) and decodes.

    Matches Pillow's `Image.save(f, "JPEG", quality=q)` then reload pixel for
    pixel: decoding uses the accurate integer IDCT (`INTEGER_ACCURATE`), not
    TF's default fast IDCT (which is what `tf.image.adjust_jpeg_quality`
    uses and differs from Pillow by about 1 grey level on average).

    Args:
      image: (H, W, 3) uint8 or float32 in [0, 255] (rounded to uint8 first).
      quality: JPEG quality in [0, 100], a Python int or an int scalar tensor.

    Returns:
      float32 (H, W, 3) on the uint8 grid.
    """
    image = as_float_image(image)
    quality = tf.cast(quality, tf.int32)
    encoded = tf.raw_ops.EncodeJpegVariableQuality(images=to_uint8(image), quality=quality)
    decoded = tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE")
    decoded = tf.cast(decoded, tf.float32)
    decoded.set_shape(image.shape)
    return decoded


def gaussian_noise(image, variance, seed):
    """Adds zero-mean Gaussian noise of the given variance (0-255 scale), then clips and rounds.

    Args:
      image: (H, W, 3) uint8 or float32 in [0, 255].
      variance: float, Python number or scalar tensor (standard deviation = sqrt(variance)).
      seed: int tensor of shape [2] for `tf.random.stateless_normal`.

    Returns:
      float32 (H, W, 3) on the uint8 grid.
    """
    image = as_float_image(image)
    stddev = tf.sqrt(tf.cast(variance, tf.float32))
    noise = tf.random.stateless_normal(tf.shape(image), seed=as_seed(seed), dtype=tf.float32)
    return quantize(image + stddev * noise)


def resample(image, scale, method, antialias=False):
    """Resizes down to round(scale * size) and back to the original size with one method.

    Args:
      image: (H, W, 3) uint8 or float32 in [0, 255].
      scale: float in (0, 1], Python number or scalar tensor; the small side
        lengths are round(scale * H) and round(scale * W), at least 1.
      method: one of RESAMPLE_METHODS ("nearest", "bilinear", "bicubic",
        "area", "lanczos" = TF's lanczos3); used for both directions.
      antialias: passed to `tf.image.resize` for the downscaling step. The
        default False mirrors OpenCV's `cv2.resize` (the nearest / linear /
        cubic / area / Lanczos methods are OpenCV's INTER_* list): no
        low-pass before linear, cubic and Lanczos decimation, so each method
        leaves its own aliasing trace; "area" averages by construction and
        "nearest" ignores the flag. Upscaling never antialiases.

    Returns:
      float32 (H, W, 3) on the uint8 grid, same size as the input.
    """
    if method not in _TF_RESIZE_METHOD:
        raise ValueError(f"resample: unknown method {method!r}; expected one of {', '.join(RESAMPLE_METHODS)}.")
    tf_method = _TF_RESIZE_METHOD[method]
    image = as_float_image(image)
    size = tf.shape(image)[:2]
    small = tf.cast(tf.round(tf.cast(size, tf.float32) * tf.cast(scale, tf.float32)), tf.int32)
    small = tf.maximum(small, 1)
    down = tf.image.resize(image, small, method=tf_method, antialias=antialias)
    down = quantize(down)  # the small image is an 8-bit image too, as with cv2.resize on uint8
    up = tf.image.resize(down, size, method=tf_method)
    up.set_shape(image.shape)
    return quantize(up)


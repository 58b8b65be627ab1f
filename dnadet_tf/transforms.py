"""The 170 image transformations of step 1 (pre-training), as the paper and its release define them.

Each class is one operation with one parameter, applied to a 128 px crop of a
natural photo. Class indices, in this fixed order:

  0- 23  JPEG, quality 30, 33, ..., 99                       jpeg_q30 ...
 24- 47  double JPEG, first quality as above, second quality
         paired in the listed order (39, 99, 36, ...)        double_jpeg_q30_q39 ...
 48- 61  Gaussian blur, kernel 3, 5, ..., 29 (OpenCV sigma)  gaussian_blur_k3 ...
 62- 75  median blur, kernel 3, 5, ..., 29                   median_blur_k3 ...
 76-155  resampling down to s*128 px and back, method-major:
         for each method (nearest, bilinear, bicubic, area,
         lanczos), each scale s = 0.15, 0.20, ..., 0.90      resample_nearest_0.15 ...
156-169  Gaussian noise, variance 10, 13, ..., 49 (0-255)   gaussian_noise_v10 ...

Four double JPEG pairs of the listed order use the same quality twice
(q36/q36, q60/q60, q75/q75, q99/q99); recompressing at the same quality
changes few or no pixels, so these classes nearly coincide with the single
JPEG class of that quality. They are kept as the release lists them.

The operations themselves live in `dnadet_tf.imageops`; every result is
float32 on the uint8 grid, as a saved 8-bit image would be.
"""
import tensorflow as tf

from dnadet_tf import imageops

JPEG_QUALITIES = tuple(range(30, 100, 3))
DOUBLE_JPEG_SECOND_QUALITIES = (
    39, 99, 36, 93, 60, 75, 81, 39, 63, 69, 60, 87, 90, 48, 81, 75, 72, 78, 54, 33, 81, 30, 36, 99,
)
GAUSSIAN_BLUR_KERNELS = tuple(range(3, 30, 2))
MEDIAN_BLUR_KERNELS = tuple(range(3, 30, 2))
RESAMPLE_SCALES = tuple(round(0.15 + 0.05 * i, 2) for i in range(16))
RESAMPLE_METHODS = imageops.RESAMPLE_METHODS
NOISE_VARIANCES = tuple(range(10, 50, 3))

# (family name, number of classes), in index order.
FAMILIES = (
    ("jpeg", len(JPEG_QUALITIES)),
    ("double_jpeg", len(DOUBLE_JPEG_SECOND_QUALITIES)),
    ("gaussian_blur", len(GAUSSIAN_BLUR_KERNELS)),
    ("median_blur", len(MEDIAN_BLUR_KERNELS)),
    ("resample", len(RESAMPLE_METHODS) * len(RESAMPLE_SCALES)),
    ("gaussian_noise", len(NOISE_VARIANCES)),
)
FAMILY_STARTS = tuple(sum(count for _, count in FAMILIES[:i]) for i in range(len(FAMILIES)))


def _build_names():
    names = [f"jpeg_q{q}" for q in JPEG_QUALITIES]
    names += [f"double_jpeg_q{q1}_q{q2}" for q1, q2 in zip(JPEG_QUALITIES, DOUBLE_JPEG_SECOND_QUALITIES)]
    names += [f"gaussian_blur_k{k}" for k in GAUSSIAN_BLUR_KERNELS]
    names += [f"median_blur_k{k}" for k in MEDIAN_BLUR_KERNELS]
    names += [f"resample_{m}_{s:.2f}" for m in RESAMPLE_METHODS for s in RESAMPLE_SCALES]
    names += [f"gaussian_noise_v{v}" for v in NOISE_VARIANCES]
    return tuple(names)


TRANSFORM_NAMES = _build_names()
NUM_TRANSFORMS = 170
assert len(TRANSFORM_NAMES) == NUM_TRANSFORMS == len(set(TRANSFORM_NAMES))
assert sum(count for _, count in FAMILIES) == NUM_TRANSFORMS


def transform_family(index):
    """Python helper: class index -> (family name, position inside the family)."""
    if not 0 <= index < NUM_TRANSFORMS:
        raise ValueError(f"transform index must be in [0, {NUM_TRANSFORMS}), received {index}.")
    for (name, _), start in reversed(list(zip(FAMILIES, FAMILY_STARTS))):
        if index >= start:
            return name, index - start
    raise AssertionError("unreachable")


def _pick(values, position, dtype):
    """Constant table `values` (Python tuple) and an int32 scalar position -> scalar tensor."""
    return tf.gather(tf.constant(values, dtype=dtype), position)


def _jpeg(image, position, seed):
    return imageops.jpeg_round_trip(image, _pick(JPEG_QUALITIES, position, tf.int32))


def _double_jpeg(image, position, seed):
    once = imageops.jpeg_round_trip(image, _pick(JPEG_QUALITIES, position, tf.int32))
    return imageops.jpeg_round_trip(once, _pick(DOUBLE_JPEG_SECOND_QUALITIES, position, tf.int32))


def _gaussian_blur(image, position, seed):
    kernel = _pick(GAUSSIAN_BLUR_KERNELS, position, tf.int32)
    return imageops.gaussian_blur(image, kernel, max_kernel_size=max(GAUSSIAN_BLUR_KERNELS))


def _median_blur(image, position, seed):
    branches = [lambda k=k: imageops.median_blur(image, k) for k in MEDIAN_BLUR_KERNELS]
    return tf.switch_case(position, branches)


def _resample(image, position, seed):
    scale = _pick(RESAMPLE_SCALES, position % len(RESAMPLE_SCALES), tf.float32)
    branches = [lambda m=m: imageops.resample(image, scale, m) for m in RESAMPLE_METHODS]
    return tf.switch_case(position // len(RESAMPLE_SCALES), branches)


def _gaussian_noise(image, position, seed):
    return imageops.gaussian_noise(image, _pick(NOISE_VARIANCES, position, tf.float32), seed)


_FAMILY_FUNCTIONS = (_jpeg, _double_jpeg, _gaussian_blur, _median_blur, _resample, _gaussian_noise)


def apply_transform(image, index, seed):
    """Applies transformation class `index` to one image.

    Args:
      image: (H, W, 3) uint8 or float32 in [0, 255]; the pre-training crop is
        (128, 128, 3). H and W must exceed 14 (the reflect border of k = 29).
      index: int scalar (Python int or int32 tensor) in [0, NUM_TRANSFORMS),
        e.g. drawn with `tf.random.stateless_uniform(..., maxval=170, dtype=tf.int32)`.
      seed: int tensor of shape [2]; only the Gaussian noise classes use it.

    Returns:
      float32 (H, W, 3) on the uint8 grid, same size as the input.

    Graph-friendly: one `tf.switch_case` over the six families (and nested
    ones over median kernels and resampling methods); runs inside
    `dataset.map(..., num_parallel_calls=tf.data.AUTOTUNE)`.
    """
    image = imageops.as_float_image(image)
    index = tf.cast(tf.convert_to_tensor(index), tf.int32)
    checks = [
        tf.debugging.assert_greater_equal(index, 0, message="transform index must be >= 0"),
        tf.debugging.assert_less(index, NUM_TRANSFORMS, message=f"transform index must be < {NUM_TRANSFORMS}"),
    ]
    with tf.control_dependencies(checks):
        starts = tf.constant(FAMILY_STARTS, tf.int32)
        family = tf.reduce_sum(tf.cast(index >= starts[1:], tf.int32))
        position = index - tf.gather(starts, family)
    branches = [lambda f=f: f(image, position, seed) for f in _FAMILY_FUNCTIONS]
    out = tf.switch_case(family, branches)
    out.set_shape(image.shape)
    return out

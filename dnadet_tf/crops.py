"""Training crops computed from windows of the first resize (preprocessing mode `tf`).

Training takes `count` random crops of `patch` px from the preprocessed image:
`pipeline.random_crops(preprocess_image(image, config), patch, count, seed)`. In
mode `tf` the second resize (resize1 -> resize2, bicubic) is linear and separable,
and every output pixel depends on at most 4 input pixels per axis when it
magnifies (TF's Keys cubic kernel, radius 2; more when it shrinks, with
antialiasing). So a crop of the resize2 image is a small window of the resize1
image (the crop's footprint plus the kernel's support) times two small weight
matrices, one per axis. `WindowCrops` computes every crop that way, without
making the resize2 image:

    crops = clip(Wy[oy] @ window(image1, oy, ox) @ Wx[ox]^T, 0, 255) / 127.5 - 1

where image1 is the chain up to and including the first resize and its clip
(`first_resize`), and the weights are rows of the matrix of the second resize
itself: `tf.image.resize(..., antialias=True)` (TF's `ScaleAndTranslate`)
applied to a one-hot image, so near the borders they are TF's clamped and
renormalised weights, not a re-derivation of them. Crop offsets are those
`random_crops` draws for the same seed (`crop_offsets`, used by both).

Equal to `random_crops(preprocess_image(...))` within 1e-6 in [-1, 1] units (the
sums run in another order; tests/test_window_crops.py checks 1e-5 at every preset's
sizes, at border and middle offsets, for square and non-square uint8 images).
`preprocess_image` stays the one preprocessing of evaluation and exports; this is
a faster way to compute training crops of that same function, taken from the
same `PreprocessConfig`. Mode `release` (8-bit rounding after each pass) is not
linear, so it has no window form.
"""
import numpy as np
import tensorflow as tf

from dnadet_tf.preprocess import assert_size_fits, tf_crop, tf_resize, to_unit_range


def crop_offsets(size, patch, count, seed, grid=1):
    """Top-left corners of `count` stateless-random `patch` px crops of a (size, size) image.

    Args:
      size: int or int32 scalar tensor, the side of the image cropped.
      patch: int, the crop's side.
      count: int, the number of crops.
      seed: int64 tensor (2,), a stateless seed.
      grid: int >= 1; the corners are multiples of it (8 keeps the JPEG blocks of an image
        that was not resized in the same place in every crop). 1: any pixel.

    Returns:
      int32 tensor (count, 2) of (top, left), each uniform over the multiples of `grid` in
      [0, size - patch].
    """
    positions = (size - patch) // grid + 1
    return grid * tf.random.stateless_uniform((count, 2), seed=seed, minval=0, maxval=positions, dtype=tf.int32)


def first_resize(image, config):
    """The `tf` chain of `preprocess.preprocess_image` up to and including its first resize.

    Args:
      image: uint8 or float tensor (H, W, 3) with values in [0, 255].
      config: a `PreprocessConfig` (mode `tf`).

    Returns:
      float32 tensor (resize1, resize1, 3) in [0, 255]: the size check, the center crop of a
      non-square image (and of a large square one with `crop_square`), the bicubic antialiased
      resize to resize1 and its clip: `preprocess.tf_crop` and `tf_resize`, the steps of `preprocess._tf_chain`.
      An image that is resize1 px already skips the resize (0.6 ms of 2 per image at the cpu preset): TF's resize
      to the same size is exactly the identity (Keys cubic weights 0, 1, 0, 0 at whole-pixel distances, summing
      to 1).
    """
    image = tf_crop(assert_size_fits(tf.convert_to_tensor(image), config), config)
    same_size = tf.reduce_all(tf.equal(tf.shape(image)[:2], (config.resize1, config.resize1)))
    return tf.cond(same_size, lambda: image, lambda: tf_resize(image, config.resize1))


def resize_matrix(in_size, out_size):
    """The matrix of TF's bicubic antialiased resize of one axis, as `preprocess_image` uses it.

    Returns:
      float32 numpy array (out_size, in_size): output i = sum_j M[i, j] * input[j]. Taken from
      `tf.image.resize` itself, applied to a one-hot image (channel j = input pixel j).
    """
    with tf.init_scope():  # eagerly, also when called while a graph is being built
        one_hot = tf.eye(in_size, dtype=tf.float32)[:, None, :]  # (in, 1, in): width 1 is left as it is
        resized = tf.image.resize(one_hot, (out_size, 1), method="bicubic", antialias=True)
        return resized.numpy()[:, 0, :]


class WindowCrops:
    """Crops of the resize2 image at given offsets, computed from windows of the resize1 image.

    For each crop offset o along an axis (0 .. resize2 - patch), `starts[o]` is the first
    resize1 pixel of the window that crop needs and `span` the window's length (the same for
    every offset; windows near the end are shifted inwards, which only adds zero weights), and
    `weights[o]` the (patch, span) block of the resize matrix that crop uses over its window:
    one gather per axis at run time instead of two (the two took a third of a crop's CPU).
    """

    def __init__(self, config, patch):
        """`config`: a `PreprocessConfig`; `patch`: the crop side (<= config.resize2)."""
        matrix = resize_matrix(config.resize1, config.resize2)
        offsets = range(config.resize2 - patch + 1)
        used = [np.flatnonzero(np.any(matrix[o : o + patch] != 0.0, axis=0)) for o in offsets]
        self.span = int(max(u[-1] + 1 - u[0] for u in used))
        self.starts = np.array([min(u[0], config.resize1 - self.span) for u in used], np.int32)
        self.weights = np.stack([matrix[o : o + patch, s : s + self.span] for o, s in zip(offsets, self.starts)])
        self.config = config
        self.patch = patch

    def __call__(self, image1, offsets):
        """Crops of `resize2(image1)` (before its clip and scaling), for a batch of images.

        Args:
          image1: float32 tensor (B, resize1, resize1, C), first resizes (`first_resize`).
          offsets: int32 tensor (B, P, 2) of (top, left) in the resize2 image, P crops per image.

        Returns:
          float32 tensor (B, P, patch, patch, C).

        Runs once per batch in the training pipelines (`pipeline.TrainingCrops`): per image, its
        dozen small ops cost more than their arithmetic. The products run channels first, as
        batched matrix products Wy (patch, span) @ window (span, span) @ Wx' (span, patch): 16
        against 21-24 ms of CPU per batch of 40 images x 8 crops at the `cpu` preset (two einsums
        with the channels last; 2 cores). A crop does not depend on B: in a graph, as the pipelines
        run it, a batch of one and a batch of nine give the same bits (tests/test_window_crops.py);
        the pipelines' batches are those of per-image crops before this change, to the bit.
        """
        window = tf.range(self.span)
        starts = tf.gather(self.starts, offsets)  # (B, P, 2)
        rows = starts[..., 0:1] + window  # (B, P, span) resize1 rows of each window
        cols = starts[..., 1:2] + window
        planes = tf.transpose(image1, (0, 3, 1, 2))  # (B, C, H, W)
        pixels = tf.gather(planes, rows, axis=2, batch_dims=1)  # (B, C, P, span, W)
        pixels = tf.transpose(pixels, (0, 2, 1, 3, 4))  # (B, P, C, span, W)
        pixels = tf.gather(pixels, cols, axis=4, batch_dims=2)  # (B, P, C, span, span)
        weights_y = tf.gather(self.weights, offsets[..., 0])[:, :, None]  # (B, P, 1, patch, span)
        weights_x = tf.gather(self.weights, offsets[..., 1])[:, :, None]
        crops = tf.matmul(tf.matmul(weights_y, pixels), weights_x, transpose_b=True)  # (B, P, C, patch, patch)
        return tf.transpose(crops, (0, 1, 3, 4, 2))

    @staticmethod
    def scaled(crops):
        """Crops of the resize2 image -> the preprocessed crops: clipped to [0, 255], then in [-1, 1]."""
        return to_unit_range(tf.clip_by_value(crops, 0.0, 255.0))

    def at(self, image, offsets):
        """Crops of `preprocess_image(image, config)` at `offsets`, from windows.

        Args:
          image: uint8 or float tensor (H, W, 3) in [0, 255], as `preprocess_image` takes it.
          offsets: int32 tensor (P, 2) of (top, left), each in [0, resize2 - patch].

        Returns:
          float32 tensor (P, patch, patch, 3) in [-1, 1].
        """
        return self.scaled(self(first_resize(image, self.config)[None], tf.convert_to_tensor(offsets)[None]))[0]

    def random(self, image, count, seed, grid=1):
        """`pipeline.random_crops(preprocess_image(image, config), patch, count, seed, grid)`, from windows.

        Args:
          image: uint8 or float tensor (H, W, 3) in [0, 255].
          count: int, crops per image.
          seed: int64 tensor (2,), the seed `random_crops` would get (the same offsets follow).
          grid: int >= 1, the corners' multiple (`crops.crop_offsets`).

        Returns:
          float32 tensor (count, patch, patch, 3) in [-1, 1].
        """
        crops = self.at(image, crop_offsets(self.config.resize2, self.patch, count, seed, grid))
        return tf.ensure_shape(crops, (count, self.patch, self.patch, 3))


def windows_pay_off(config, patch, count):
    """True when window crops are worth it: mode `tf`, and the crops cover less than the resize2 image.

    Measured per image (benchmarks/transform_throughput.py --compare, crops_<preset>; 2 shared
    cores): `cpu` as it was then (8 crops of 64 px from 256) 1.7 ms against 3.4, `paper` (16 of 64 from 512) 2.3
    against 8.7; `tiny` (4 of 32 from 64: as many crop pixels as image pixels) 0.70 against 0.63,
    slower, so it keeps resizing whole images.
    """
    return config.mode == "tf" and count * patch * patch < config.resize2 * config.resize2

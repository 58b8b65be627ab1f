"""The one preprocessing function, shared by training, evaluation, Grad-CAM
and the exported SavedModel graph.

As the authors' release does it: a non-square image is center-cropped to
`crop_size` (native pixels), then resized to `resize1` and to `resize2`
(both bicubic), and scaled to [-1, 1].

An image too small for that chain is refused, here in the graph (InvalidArgument)
and by `size_problem` before any file reaches a pipeline: a square image needs
sides >= `min_side` (a run's patch size), a non-square one both sides >=
max(`crop_size`, `min_side`), or its center crop would go out of bounds.
"""
import dataclasses

import tensorflow as tf
from PIL import Image


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """Sizes of the preprocessing chain, saved in every run and export."""

    crop_size: int = 128
    resize1: int = 128
    resize2: int = 512
    min_side: int = 1

    def size_problem(self, height, width):
        """None when a height x width image may be preprocessed, else why not (one line)."""
        return size_problem(height, width, self.crop_size, self.min_side)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        return cls(**{f.name: int(values[f.name]) for f in dataclasses.fields(cls) if f.name in values})


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
    which `images.load_rgb` applies to files."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    needed = tf.where(tf.equal(height, width), config.min_side, max(config.crop_size, config.min_side))
    pixels = tf.cast(height, tf.int64) * tf.cast(width, tf.int64)
    limit = Image.MAX_IMAGE_PIXELS
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


def center_crop_if_not_square(image, crop_size):
    """(H, W, C) -> (crop_size, crop_size, C) when H != W, else unchanged."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]

    def crop():
        top = (height - crop_size) // 2
        left = (width - crop_size) // 2
        return image[top : top + crop_size, left : left + crop_size, :]

    return tf.cond(tf.equal(height, width), lambda: image, crop)


def preprocess_image(image, config=PreprocessConfig()):
    """Turns one decoded image into the network's input.

    Args:
      image: uint8 or float tensor (H, W, 3) with values in [0, 255].
      config: a `PreprocessConfig`.

    Returns:
      float32 tensor (resize2, resize2, 3) in [-1, 1].

    Raises InvalidArgument (in the graph) for an image that `config.size_problem` refuses
    or that is larger than Pillow's decompression-bomb limit.
    """
    image = assert_size_fits(tf.convert_to_tensor(image), config)
    image = center_crop_if_not_square(image, config.crop_size)
    image = tf.cast(image, tf.float32)
    for size in (config.resize1, config.resize2):
        image = tf.image.resize(image, (size, size), method="bicubic", antialias=True)
        image = tf.clip_by_value(image, 0.0, 255.0)
    image = tf.ensure_shape(image, (config.resize2, config.resize2, 3))
    return image / 127.5 - 1.0

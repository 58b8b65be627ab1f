"""The one preprocessing function, shared by training, evaluation, Grad-CAM
and the exported SavedModel graph.

As the authors' release does it: a non-square image is center-cropped to
`crop_size` (native pixels), then resized to `resize1` and to `resize2`
(both bicubic), and scaled to [-1, 1].
"""
import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """Sizes of the preprocessing chain, saved in every run and export."""

    crop_size: int = 128
    resize1: int = 128
    resize2: int = 512

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        return cls(**{f.name: int(values[f.name]) for f in dataclasses.fields(cls) if f.name in values})


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
    """
    image = tf.convert_to_tensor(image)
    image = center_crop_if_not_square(image, config.crop_size)
    image = tf.cast(image, tf.float32)
    for size in (config.resize1, config.resize2):
        image = tf.image.resize(image, (size, size), method="bicubic", antialias=True)
        image = tf.clip_by_value(image, 0.0, 255.0)
    image = tf.ensure_shape(image, (config.resize2, config.resize2, 3))
    return image / 127.5 - 1.0

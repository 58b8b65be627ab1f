"""Fakes of other content for training (`fit --transplant P`): a fake's high-frequency residual on a real photo.

Trained on one kind of content (faces, say), the network reads a generator's traces against that content's
statistics and misreads them on another (docs/results.md, "Adapting to other content": the shift sits in the BatchNorm
statistics of the later stages). The user has fakes of one content only; what can vary is the content under the
traces. With probability P a fake training image x (any class but `real`) becomes

    s + (x - blur(x)),  clipped to [0, 255],

where s is one of the real photos of other content that `--extra-real` adds (drawn at random, resized to x's
size) and blur a 5 x 5 Gaussian of standard deviation `BLUR_SIGMA` px with reflected borders: the fake's
high-frequency residual, where upsampling and other architecture traces live, laid over other content, with the
fake's label. Real images are never changed, and the real class keeps those photos as they are, so "real" and
"fake" differ by the residual on the same contents. The draw of each image is stateless, from the training
element's seed: the same run gives the same images.

Measured (docs/results.md, "Fakes of other content", 3 seeds each): faces -> scenes cross-dataset 72.8 against 54.4, but
scenes -> faces 78.8 against 88.8 and the demo zoo 80.5 against 96.7: the model learns fakes of the photos'
content (the packaged photos are scene-like), not content-free traces, and mixes up ProGAN and SNGAN, which
differ partly in the frequencies the transplant replaces. Off by default.

The same construction makes fakes of a new content for `dnadet-tf adapt --photos` (`transplanted_fakes`): a user
with real photos of the content to attribute and no fakes of it adapts to those photos and the training fakes'
residuals laid over them (docs/results.md, "Adapting from real photos alone").
"""
import os

import numpy as np
import tensorflow as tf

BLUR_SIGMA = 1.0
BLUR_RADIUS = 2  # a (2r + 1) x (2r + 1) kernel
SEED_OFFSET = 104729  # the transplant's seeds are the element's seeds shifted by this, apart from the crops'


def gaussian_kernel(sigma=BLUR_SIGMA, radius=BLUR_RADIUS):
    """(2r + 1, 2r + 1, 3, 1) float32 depthwise kernel of a normalised 2-D Gaussian."""
    r = np.arange(-radius, radius + 1, dtype=np.float32)
    g = np.exp(-r ** 2 / (2 * sigma ** 2))
    g /= g.sum()
    return np.tile((g[:, None] * g[None, :])[:, :, None, None], (1, 1, 3, 1)).astype(np.float32)


def high_frequency_residual(image, kernel):
    """(H, W, 3) float32 -> (H, W, 3) float32: `image - blur(image)`, the blur with reflected borders."""
    radius = kernel.shape[0] // 2
    padded = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    return image - tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")[0]


class ResidualTransplant:
    """`transplant(image, label, seed)`: the training image, with probability `share` (fakes only) moved onto one
    of `photos`.

    Args:
      photos: (N, h, w, 3) uint8 real photos of other content (the `--extra-real` crops).
      share: probability P that a fake image is transplanted, 0 to 1.
      real_label: the label of the real class (never transplanted).

    `__call__`: image (H, W, 3) uint8 or float in [0, 255], label () int32, seed (2,) int64 ->
    (H, W, 3) float32 in [0, 255].
    """

    def __init__(self, photos, share, real_label):
        self.photos = tf.constant(photos, tf.uint8)
        self.share, self.real_label = float(share), int(real_label)
        self.kernel = tf.constant(gaussian_kernel())

    def __call__(self, image, label, seed):
        x = tf.cast(image, tf.float32)
        draw = tf.random.stateless_uniform((), seed=seed)

        def moved():  # built inside the branch, so images that stay pay for no resize and no blur
            index = tf.random.stateless_uniform((), seed=seed + 1, maxval=tf.shape(self.photos)[0], dtype=tf.int32)
            photo = tf.image.resize(tf.cast(self.photos[index], tf.float32), tf.shape(x)[:2])
            return tf.clip_by_value(photo + high_frequency_residual(x, self.kernel), 0.0, 255.0)

        return tf.cond(tf.logical_and(label != self.real_label, draw < self.share), moved, lambda: x)


def residual_transplant(share, photo_paths, real_label):
    """The `ResidualTransplant` of `share` over the photos at `photo_paths` (decoded once, all one size)."""
    from dnadet_tf.images import load_rgb

    photos = [load_rgb(path) for path in photo_paths]
    sizes = {photo.shape for photo in photos}
    if len(sizes) != 1:
        raise ValueError(f"photo_paths: expected photos of one size, received sizes {sorted(sizes)}.")
    return ResidualTransplant(np.stack(photos), share, real_label)


def training_transplant(config, train_files):
    """The `ResidualTransplant` of `fit`: `config.sampling.transplant` over the photos `add_extra_real` added
    to `train_files` (labelled as the real class, marked in `other_content`); None when the share is 0.

    Raises DataError when the share is above 0 and no photos were added.
    """
    from dnadet_tf.extra_real import added_crops

    share = config.sampling.transplant
    if not share:
        return None
    photos, real_label = added_crops(train_files, f"--transplant {share:g}", "to move fakes onto",
                                     config.sampling.extra_real)
    return residual_transplant(share, photos, real_label)


def residual_rms(paths, kernel=None):
    """Root mean square (pixel units, 0-255 scale) of the high-frequency residuals of the images at `paths`: how
    much fine texture their content has."""
    from dnadet_tf.images import load_rgb

    kernel = tf.constant(gaussian_kernel()) if kernel is None else kernel
    squares = [np.mean(high_frequency_residual(tf.constant(load_rgb(path), tf.float32), kernel).numpy() ** 2)
               for path in paths]
    return float(np.sqrt(np.mean(squares)))


def laid_over(photo_path, residual, path):
    """Writes the photo at `photo_path` resized to the size of `residual` ((H, W, 3) float32, pixel units) plus
    `residual`, clipped to [0, 255] and rounded, as a PNG at `path`."""
    from dnadet_tf.images import load_rgb, save_png_atomic

    photo = tf.image.resize(tf.constant(load_rgb(photo_path), tf.float32), residual.shape[:2]).numpy()
    save_png_atomic(np.round(np.clip(photo + residual, 0.0, 255.0)).astype(np.uint8), path)


def transplanted_fakes(fakes, photos, folder, scale=1.0):
    """Writes one fake of new content per pair of `fakes` and `photos` (image paths, same length) to `folder` as PNG:
    the photo resized to the fake's size plus `scale` times the fake's high-frequency residual (`laid_over`).
    Returns the written paths, in order (`fake_<i>.png`)."""
    from dnadet_tf.images import load_rgb

    if len(fakes) != len(photos):
        raise ValueError(f"fakes and photos: expected lists of one length, received {len(fakes)} and {len(photos)}.")
    kernel = tf.constant(gaussian_kernel())
    os.makedirs(folder, exist_ok=True)
    written = []
    for i, (fake_path, photo_path) in enumerate(zip(fakes, photos)):
        residual = scale * high_frequency_residual(tf.constant(load_rgb(fake_path), tf.float32), kernel)
        written.append(os.path.join(folder, f"fake_{i:05d}.png"))
        laid_over(photo_path, residual.numpy(), written[-1])
    return written

"""tf.data pipelines: files -> decoded pixels -> the one preprocessing -> batches.

Training batches are class-balanced: every batch holds `K` images of every
class, in class order. Which files a batch holds, and where its crops are, is
a pure function of (seed, step), so a resumed run sees the same data as an
uninterrupted one and two runs with the same seed are identical.
"""
import numpy as np
import tensorflow as tf

from dnadet_tf.images import load_rgb
from dnadet_tf.preprocess import preprocess_image


def decode_file(path):
    """tf.string scalar path -> uint8 (H, W, 3), decoded by `images.load_rgb`."""

    def load(p):
        return load_rgb(p.decode("utf-8"))

    image = tf.numpy_function(load, [path], tf.uint8, stateful=False)
    return tf.ensure_shape(image, (None, None, 3))


def random_crops(image, size, count, seed):
    """(S, S, C) -> (count, size, size, C): crops at stateless-random offsets."""
    limit = tf.shape(image)[0] - size + 1
    offsets = tf.random.stateless_uniform((count, 2), seed=seed, minval=0, maxval=limit, dtype=tf.int32)
    return tf.stack([image[offsets[i, 0] : offsets[i, 0] + size, offsets[i, 1] : offsets[i, 1] + size] for i in range(count)])


class BalancedSchedule:
    """Which file goes into which batch: a pure function of (seed, step).

    For class c, the files are visited in a fresh random permutation each time
    the class is exhausted; batch `step` takes the next K of every class.
    """

    def __init__(self, labels, num_classes, images_per_class, seed):
        self.by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
        self.k = images_per_class
        self.seed = seed
        self._perms = {}

    def _permutation(self, c, cycle):
        key = (c, cycle)
        if key not in self._perms:
            if len(self._perms) > 4096:
                self._perms.clear()
            rng = np.random.default_rng([self.seed, c, cycle])
            self._perms[key] = rng.permutation(self.by_class[c])
        return self._perms[key]

    def batch(self, step):
        """File indices of batch `step`: K per class, classes in order."""
        out = []
        for c, members in enumerate(self.by_class):
            n = len(members)
            for j in range(self.k):
                position = step * self.k + j
                out.append(self._permutation(c, position // n)[position % n])
        return np.asarray(out, np.int64)


def training_dataset(files, config, start_step=0, augment_fn=None):
    """Endless class-balanced batches starting at `start_step`.

    Yields (images, labels):
      mode `dnadet`: images (B, P, p, p, 3) float32 in [-1, 1], P = patches_per_image
      mode `base`: images (B, S, S, 3), S = resize2 (whole images, no patches)
    and labels (B,) int32, with B = K * num_classes.

    `augment_fn(image, seed)`, when given, perturbs the decoded image (uint8 or
    float in [0, 255]) before the preprocessing chain.
    """
    num_classes = len(files.class_names)
    k = config.batch_images_per_class(num_classes)
    schedule = BalancedSchedule(files.labels, num_classes, k, config.runtime.seed)
    paths = np.asarray(files.paths)
    labels = files.labels.astype(np.int32)
    per_batch = k * num_classes

    def elements():
        step = start_step
        while True:
            indices = schedule.batch(step)
            for position, index in enumerate(indices):
                yield paths[index], labels[index], np.int64(step * per_batch + position)
            step += 1

    dataset = tf.data.Dataset.from_generator(
        elements,
        output_signature=(
            tf.TensorSpec((), tf.string),
            tf.TensorSpec((), tf.int32),
            tf.TensorSpec((), tf.int64),
        ),
    )
    preprocess = config.preprocess

    def load(path, label, index):
        seed = tf.stack([tf.constant(config.runtime.seed, tf.int64), index])
        image = decode_file(path)
        if augment_fn is not None:
            image = augment_fn(image, tf.stack([seed[0] + 7919, seed[1]]))
        pixels = preprocess_image(image, preprocess)
        if config.model.mode == "dnadet":
            pixels = random_crops(pixels, config.sampling.patch_size, config.sampling.patches_per_image, seed)
        return pixels, label

    return _batched(dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True), per_batch)


def _batched(dataset, per_batch):
    """Global batches, sharded by data (not by file) across workers, prefetched."""
    dataset = dataset.batch(per_batch, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def random_square_crop(image, size, seed):
    """(H, W, C) -> (size, size, C) at a stateless-random position."""
    shape = tf.shape(image)
    top = tf.random.stateless_uniform((), seed=seed, maxval=shape[0] - size + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform((), seed=seed + 1, maxval=shape[1] - size + 1, dtype=tf.int32)
    return image[top : top + size, left : left + size]


def transformation_dataset(photo_paths, config, batch_size, start_step=0, images_per_class=4):
    """Endless batches for step 1 (pre-training on image transformations).

    Each step draws `batch_size // images_per_class` distinct transformations
    uniformly, each applied to `images_per_class` random crops of random photos,
    so that the contrastive loss sees positives from *other* photos with the
    same transformation (with 170 classes and one image per class, its only
    positives would be patches of the same photo, which share content).
    `images_per_class = 1` is the release's sampling instead: every image's
    transformation is drawn independently, with replacement. Each
    element: a random `crop_size` crop, the transformation (its index is the
    label), the one preprocessing chain and `patches_per_image` random crops.

    Yields images (B, P, p, p, 3) float32 in [-1, 1] and labels (B,) int32.
    Which photo, crop and transformation is a pure function of (seed, step).
    """
    from dnadet_tf.transforms import NUM_TRANSFORMS, apply_transform

    paths = np.asarray(photo_paths)
    classes_per_step = max(1, batch_size // images_per_class)
    batch_size = classes_per_step * images_per_class

    def elements():
        step = start_step
        while True:
            rng = np.random.default_rng([config.runtime.seed, 1, step])
            # One image per class draws every image's transformation independently (as the release
            # does); more draw distinct transformations, each applied to that many photos.
            labels = np.repeat(rng.choice(NUM_TRANSFORMS, size=classes_per_step, replace=images_per_class == 1),
                               images_per_class)
            chosen = rng.integers(len(paths), size=batch_size)
            for position, (index, label) in enumerate(zip(chosen, labels)):
                yield paths[index], np.int32(label), np.int64(step * batch_size + position)
            step += 1

    dataset = tf.data.Dataset.from_generator(
        elements,
        output_signature=(tf.TensorSpec((), tf.string), tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.int64)),
    )
    preprocess = config.preprocess

    def load(path, label, index):
        seed = tf.stack([tf.constant(config.runtime.seed, tf.int64), index])
        crop = random_square_crop(decode_file(path), preprocess.crop_size, seed + 13)
        pixels = preprocess_image(apply_transform(crop, label, seed + 17), preprocess)
        return random_crops(pixels, config.sampling.patch_size, config.sampling.patches_per_image, seed), label

    return _batched(dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True), batch_size)


def transformation_eval_dataset(photo_paths, config, count, batch_size, seed=12345):
    """`count` fixed (photo, transformation) pairs on held-out photos, whole images.

    Transformation of sample i is i mod 170, so every class is covered evenly.
    Yields (pixels (N, S, S, 3), labels (N,)).
    """
    from dnadet_tf.transforms import NUM_TRANSFORMS, apply_transform

    indices = np.arange(count, dtype=np.int64)
    paths = np.asarray(photo_paths)[indices % len(photo_paths)]
    labels = (indices % NUM_TRANSFORMS).astype(np.int32)
    preprocess = config.preprocess

    def load(path, label, index):
        sample_seed = tf.stack([tf.constant(seed, tf.int64), index])
        crop = random_square_crop(decode_file(path), preprocess.crop_size, sample_seed)
        return preprocess_image(apply_transform(crop, label, sample_seed + 17), preprocess), label

    dataset = tf.data.Dataset.from_tensor_slices((paths, labels, indices))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def inference_dataset(paths, preprocess, batch_size, labels=None, perturb_fn=None, seed=0):
    """Whole preprocessed images in file order: (N, S, S, 3) batches [, labels].

    `perturb_fn(image, seed)`, when given, perturbs each decoded image before
    preprocessing; image i uses seed (seed, i).
    """
    indices = np.arange(len(paths), dtype=np.int64)
    dataset = tf.data.Dataset.from_tensor_slices((np.asarray(paths, dtype=str), indices))

    def load(path, index):
        image = decode_file(path)
        if perturb_fn is not None:
            image = perturb_fn(image, tf.stack([tf.constant(seed, tf.int64), index]))
        return preprocess_image(image, preprocess)

    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if labels is not None:
        dataset = tf.data.Dataset.zip(dataset, tf.data.Dataset.from_tensor_slices(np.asarray(labels, np.int32)))
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)

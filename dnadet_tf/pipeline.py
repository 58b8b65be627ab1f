"""tf.data pipelines: files -> decoded pixels -> the one preprocessing -> batches.

Training batches are class-balanced: every batch holds `K` images of every
class, in class order. Which files a batch holds, and where its crops are, is
a pure function of (seed, step), so a resumed run sees the same data as an
uninterrupted one and two runs with the same seed are identical.

The two training pipelines decode each file once while the decoded images fit
in memory (`image_cache`), and in preprocessing mode `tf` compute their random
crops from windows of the first resize instead of resizing whole images
(`crops`; equal within 1e-6, the same crop positions), where that is faster. Their threads run
below the training step's OS priority (`input_priority`, `runtime.input_niceness`), which
changes who gets a contended core, not the batches.
"""
import weakref

import numpy as np
import tensorflow as tf

from dnadet_tf.crops import WindowCrops, crop_offsets, first_resize, windows_pay_off
from dnadet_tf.image_cache import DecodedImageCache, HeldImages
from dnadet_tf.images import load_rgb
from dnadet_tf.input_priority import at_niceness
from dnadet_tf.preprocess import preprocess_image
from dnadet_tf.transplant import SEED_OFFSET as TRANSPLANT_SEED_OFFSET

# The per-image maps lower their threads' priority during this many first elements (`input_priority`).
LOWERING_ELEMENTS = 512


def decode_file(path, cache=None):
    """tf.string scalar path -> uint8 (H, W, 3), decoded by `images.load_rgb`.

    `cache`, when given, is a `weakref.ref` to an `image_cache.DecodedImageCache` that loads
    instead: held weakly because tf.numpy_function keeps its Python function alive for the
    rest of the process, so the images belong to whoever holds the cache (the dataset, see
    `_holding`); once it is gone, files are decoded again.
    """

    def load(p):
        images = cache() if cache is not None else None
        return images.load(p.decode("utf-8")) if images is not None else load_rgb(p.decode("utf-8"))

    image = tf.numpy_function(load, [path], tf.uint8, stateful=False)
    return tf.ensure_shape(image, (None, None, 3))


def random_crops(image, size, count, seed, grid=1):
    """(S, S, C) -> (count, size, size, C): crops at stateless-random offsets (`crops.crop_offsets`,
    multiples of `grid`)."""
    offsets = crop_offsets(tf.shape(image)[0], size, count, seed, grid)
    return tf.stack([image[offsets[i, 0] : offsets[i, 0] + size, offsets[i, 1] : offsets[i, 1] + size] for i in range(count)])


class TrainingCrops:
    """The random training crops of the preprocessed image, made in two parts.

    `element(image, seed)` runs in the pipeline's per-image map and `batch(elements)` on the
    batched dataset, so that what can run once per batch does: with window crops
    (`crops.WindowCrops`, equal to the crops of `preprocess_image` within 1e-6) an element is
    the first resize and the crop offsets, and the crops of the whole batch are one set of batched
    matrix products; otherwise an element is already its crops,
    `random_crops(preprocess_image(image), p, P, seed)`, and `batch` passes them on.

    Args:
      config: a `TrainConfig` (its preprocess and sampling parts).
      window_crops: True for window crops, False for whole-image resizes, None for where
        `crops.windows_pay_off` says window crops are faster.
    """

    def __init__(self, config, window_crops=None):
        self.preprocess = config.preprocess
        self.patch, self.count = config.sampling.patch_size, config.sampling.patches_per_image
        self.grid = config.sampling.crop_grid
        if window_crops is None:
            window_crops = windows_pay_off(self.preprocess, self.patch, self.count)
        if window_crops and self.preprocess.mode != "tf":
            raise ValueError(f"window crops need preprocessing mode 'tf', not {self.preprocess.mode!r}.")
        self.windows = WindowCrops(self.preprocess, self.patch) if window_crops else None

    def element(self, image, seed):
        """One decoded image (H, W, 3) in [0, 255] and its seed (2,) -> what its batch element carries:
        (first resize (r1, r1, 3), offsets (P, 2)) with window crops, else the crops (P, p, p, 3)."""
        if self.windows is None:
            return random_crops(preprocess_image(image, self.preprocess), self.patch, self.count, seed, self.grid)
        offsets = crop_offsets(self.preprocess.resize2, self.patch, self.count, seed, self.grid)
        return first_resize(image, self.preprocess), offsets

    def batch(self, elements):
        """A batch of `element` outputs -> crops (B, P, p, p, 3) float32 in [-1, 1]."""
        if self.windows is None:
            return elements
        image1, offsets = elements
        return self.windows.scaled(self.windows(image1, offsets))

    def __call__(self, image, seed):
        """The crops of one image, (P, p, p, 3): both parts with a batch of one."""
        element = self.element(image, seed)
        if self.windows is None:
            return element
        return self.batch(tuple(tf.expand_dims(part, 0) for part in element))[0]


def _elements_by_step(step_elements, start_step, with_other_content=False):
    """Endless (path, label, index[, other_content]) elements, made one training step at a time.

    `step_elements(step)` -> (paths (B,) str, labels (B,) int32, indices (B,) int64[, other_content
    (B,) bool when `with_other_content`]), the elements of batch `step` in order; steps run from
    `start_step` on. Python runs once per step instead of once per element: 0.03 instead of 0.30 ms
    of CPU per image at the `cpu` preset (the elements and their order are the same).
    """

    def steps():
        step = start_step
        while True:
            yield step_elements(step)
            step += 1

    spec = (tf.TensorSpec((None,), tf.string), tf.TensorSpec((None,), tf.int32), tf.TensorSpec((None,), tf.int64))
    spec += (tf.TensorSpec((None,), tf.bool),) if with_other_content else ()
    return tf.data.Dataset.from_generator(steps, output_signature=spec).unbatch()


def _image_cache(image_cache):
    """`image_cache` as `training_dataset` takes it -> a `DecodedImageCache`, or None for none."""
    if isinstance(image_cache, DecodedImageCache):
        return image_cache
    cache = DecodedImageCache(image_cache)
    return cache if cache.max_bytes > 0 else None


def _image_reader(paths, image_cache):
    """(read, held) for a pipeline over `paths`: `read(path)` -> uint8 (H, W, 3) in its per-image map,
    and what the dataset keeps alive.

    With a cache (`image_cache` as `training_dataset` takes it) the files are decoded once, up front,
    and read from one tensor (`image_cache.HeldImages`); files it cannot hold, and every file without
    a cache, are decoded at every visit (`decode_file`). A cache made here is dropped once the images
    are held, so they are in memory once.
    """
    cache = _image_cache(image_cache)
    if cache is None:
        return decode_file, None
    cache_ref = weakref.ref(cache)
    held = HeldImages(paths, cache, fallback=lambda path: decode_file(path, cache_ref))
    return held.read, held


def _holding(dataset, held):
    """`dataset`, keeping `held` (its `HeldImages`) alive as long as it (and any iterator over it) lives."""
    dataset._dnadet_held_images = held
    return dataset


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


def training_dataset(files, config, start_step=0, augment_fn=None, image_cache=None, window_crops=None,
                     transplant=None):
    """Endless class-balanced batches starting at `start_step`.

    Yields (images, labels), and (images, labels, other_content) when the run trains with the
    content-alignment loss (`content_align` > 0):
      mode `dnadet`: images (B, P, p, p, 3) float32 in [-1, 1], P = patches_per_image
      mode `base`: images (B, S, S, 3), S = resize2 (whole images, no patches)
    labels (B,) int32, with B = K * num_classes; other_content (B,) bool, the images of other
    content (`files.other_content`: the extra real crops).

    `augment_fn(image, seed)`, when given, perturbs the decoded image (uint8 or
    float in [0, 255]) before the preprocessing chain; `transplant(image, label, seed)`
    (`transplant.ResidualTransplant`), when given, moves fakes onto other content before that.
    Speed only (the batches are the same): `image_cache` keeps decoded files
    (`image_cache.DecodedImageCache`): None for a new one with the default bound, a
    number for a new one bounded by that many bytes (0: no cache), or a cache to share
    (e.g. between datasets over the same files); `window_crops` is `TrainingCrops`'.
    """
    num_classes = len(files.class_names)
    k = config.batch_images_per_class(num_classes)
    schedule = BalancedSchedule(files.labels, num_classes, k, config.runtime.seed)
    paths = np.asarray(files.paths)
    labels = files.labels.astype(np.int32)
    per_batch = k * num_classes
    with_other_content = config.optimizer.content_align > 0
    other_content = files.other_content_mask() if with_other_content else None

    def step_elements(step):
        indices = schedule.batch(step)
        elements = paths[indices], labels[indices], step * per_batch + np.arange(per_batch, dtype=np.int64)
        return elements + ((other_content[indices],) if with_other_content else ())

    dataset = _elements_by_step(step_elements, start_step, with_other_content)
    read, held = _image_reader(paths, image_cache)
    crops = TrainingCrops(config, window_crops) if config.model.mode == "dnadet" else None

    def load(path, label, index, *other):
        seed = tf.stack([tf.constant(config.runtime.seed, tf.int64), index])
        image = read(path)
        if transplant is not None:
            image = transplant(image, label, tf.stack([seed[0] + TRANSPLANT_SEED_OFFSET, seed[1]]))
        if augment_fn is not None:
            image = augment_fn(image, tf.stack([seed[0] + 7919, seed[1]]))
        if crops is None:
            return (preprocess_image(image, config.preprocess), label, *other)
        return (crops.element(image, seed), label, *other)

    niceness = config.runtime.input_niceness
    load = at_niceness(load, niceness, _first_elements(start_step * per_batch))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _holding(_batched(dataset, per_batch, crops.batch if crops is not None else None, niceness), held)


def _first_elements(first_index, count=LOWERING_ELEMENTS):
    """`lower_when` for `at_niceness` over (path, label, index, ...) elements: the first `count` ones."""
    return lambda path, label, index, *other: index < first_index + count


def _batched(dataset, per_batch, batch_fn=None, niceness=0):
    """Global batches, sharded by data (not by file) across workers, prefetched; `batch_fn`, when
    given, maps the batched elements (`TrainingCrops.batch`), the labels (and what follows) passing unchanged. The
    thread that makes the batches runs at OS nice value `niceness` (`input_priority`), as the
    per-image map's threads do."""
    dataset = dataset.batch(per_batch, drop_remainder=True)
    if batch_fn is not None or niceness:
        batch_fn = batch_fn or (lambda elements: elements)
        dataset = dataset.map(at_niceness(lambda elements, *labels: (batch_fn(elements), *labels), niceness))
    # No tf.data threading options, measured on 2 cores with the runtime's one inter-op thread
    # (distribute.configure_runtime): the parallel map keeps both cores busy without them. A private
    # pool of 2 threads changed the pipeline's rate alone by +0 to +15 % (transform_throughput.py
    # --compare, variant after_private_pool_2; 1-4 % in the last run), max_intra_op_parallelism=1 by
    # -10 to +15 %; with the training step fed by the pipeline (cpu preset) the pool was slower in one
    # run (432 against 472 patches/s) and faster in the next (717 against 498): within the swings of
    # a shared machine, so nothing is set. The batches are the same in every case.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def random_square_crop(image, size, seed):
    """(H, W, C) -> (size, size, C) at a stateless-random position."""
    shape = tf.shape(image)
    top = tf.random.stateless_uniform((), seed=seed, maxval=shape[0] - size + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform((), seed=seed + 1, maxval=shape[1] - size + 1, dtype=tf.int32)
    return image[top : top + size, left : left + size]


def transformation_dataset(photo_paths, config, batch_size, start_step=0, images_per_class=4, image_cache=None,
                           window_crops=None):
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
    `image_cache` and `window_crops` change the speed only, as for `training_dataset`.
    """
    from dnadet_tf.transforms import NUM_TRANSFORMS, apply_transform

    paths = np.asarray(photo_paths)
    classes_per_step = max(1, batch_size // images_per_class)
    batch_size = classes_per_step * images_per_class

    def step_elements(step):
        rng = np.random.default_rng([config.runtime.seed, 1, step])
        # One image per class draws every image's transformation independently (as the release
        # does); more draw distinct transformations, each applied to that many photos.
        labels = np.repeat(rng.choice(NUM_TRANSFORMS, size=classes_per_step, replace=images_per_class == 1),
                           images_per_class)
        chosen = rng.integers(len(paths), size=batch_size)
        return paths[chosen], labels.astype(np.int32), step * batch_size + np.arange(batch_size, dtype=np.int64)

    dataset = _elements_by_step(step_elements, start_step)
    read, held = _image_reader(paths, image_cache)
    crops = TrainingCrops(config, window_crops)

    def load(path, label, index):
        seed = tf.stack([tf.constant(config.runtime.seed, tf.int64), index])
        crop = random_square_crop(read(path), config.preprocess.crop_size, seed + 13)
        return crops.element(apply_transform(crop, label, seed + 17), seed), label

    niceness = config.runtime.input_niceness
    load = at_niceness(load, niceness, _first_elements(start_step * batch_size))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _holding(_batched(dataset, batch_size, crops.batch, niceness), held)


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

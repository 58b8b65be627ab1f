"""Throughput of the step-1 (transformation pre-training) input pipeline.

Per image: read and decode a photo, take a random 128 px crop, draw one of the
170 transformations uniformly and apply it, run the shared preprocessing
(resize to 512, bicubic, scale to [-1, 1]) and cut 16 random 64 px crops.
Parallel map, batching and prefetch as training would use them. Prints plain
lines such as

    transform pipeline: 123.4 images/s (1974 patches/s)
    baseline without transform: 150.2 images/s (2403 patches/s)

Usage: python benchmarks/transform_throughput.py [--folder DIR] [--batches N]
Photos come from /work/shared/data/photos/scenes when it exists, else
synthetic noise images are generated in the graph. Runs in well under 2 min.
"""
import argparse
import os
import time

import tensorflow as tf

from dnadet_tf.preprocess import PreprocessConfig, preprocess_image
from dnadet_tf.transforms import NUM_TRANSFORMS, apply_transform

DEFAULT_FOLDER = "/work/shared/data/photos/scenes"
TF_DECODABLE = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
CROP = 128
PATCH = 64
PATCHES_PER_IMAGE = 16


def photo_files(folder):
    """Sorted paths of the photos TF can decode in `folder` (recursive); [] if none."""
    if not folder or not os.path.isdir(folder):
        return []
    found = []
    for root, _, names in os.walk(folder):
        found += [os.path.join(root, n) for n in names if not n.startswith(".") and n.lower().endswith(TF_DECODABLE)]
    return sorted(found)


def random_crop(image, size, seed):
    """uint8 (H, W, 3) -> uint8 (size, size, 3); images with a side below `size` are enlarged first."""
    shape = tf.shape(image)
    short = tf.minimum(shape[0], shape[1])

    def enlarge():
        scale = size / tf.cast(short, tf.float32)
        new = tf.cast(tf.math.ceil(tf.cast(shape[:2], tf.float32) * scale), tf.int32)
        return tf.cast(tf.clip_by_value(tf.round(tf.image.resize(image, new, "bicubic")), 0, 255), tf.uint8)

    image = tf.cond(short < size, enlarge, lambda: image)
    return tf.image.stateless_random_crop(image, [size, size, 3], seed=seed)


def random_patches(image, seed):
    """float32 (512, 512, 3) -> (16, 64, 64, 3) crops at uniform random positions."""
    side = tf.shape(image)[0]
    corners = tf.random.stateless_uniform(
        [PATCHES_PER_IMAGE, 2], seed=seed, maxval=side - PATCH + 1, dtype=tf.int32
    )
    offsets = tf.range(PATCH)
    rows = corners[:, :1] + offsets  # (16, 64)
    cols = corners[:, 1:] + offsets
    strips = tf.gather(image, rows)  # (16, 64, 512, 3)
    return tf.gather(strips, cols, axis=2, batch_dims=1)  # (16, 64, 64, 3)


def make_dataset(files, batch_size, seed, transform=True):
    """A repeated tf.data pipeline of (patches (B, 16, 64, 64, 3), labels (B,))."""
    config = PreprocessConfig()
    if files:
        source = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed).repeat()
        source = source.map(
            lambda path: tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        source = tf.data.Dataset.range(1 << 30).map(
            lambda i: tf.cast(
                tf.random.stateless_uniform([256, 256, 3], seed=tf.stack([tf.constant(seed, tf.int64), i]), maxval=256, dtype=tf.int32),
                tf.uint8,
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    def example(position, image):
        seeds = tf.random.experimental.stateless_split(tf.stack([tf.constant(seed, tf.int64), position]), 4)
        crop = tf.cast(random_crop(image, CROP, seeds[0]), tf.float32)
        label = tf.random.stateless_uniform([], seed=seeds[1], maxval=NUM_TRANSFORMS, dtype=tf.int32)
        if transform:
            crop = apply_transform(crop, label, seeds[2])
        return random_patches(preprocess_image(crop, config), seeds[3]), label

    dataset = source.enumerate().map(example, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def measure(dataset, warmup, batches, batch_size):
    """Images per second over `batches` batches after `warmup` batches."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        patches, _ = next(iterator)
    patches.numpy()
    return batches * batch_size / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=DEFAULT_FOLDER, help="photos folder (synthetic images if missing)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=15, help="timed batches")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-baseline", action="store_true", help="skip the run without transformations")
    args = parser.parse_args(argv)

    files = photo_files(args.folder)
    source = f"{len(files)} photos from {args.folder}" if files else "synthetic 256 px noise images"
    print(f"source: {source}; batch {args.batch_size}, {args.warmup} warm-up + {args.batches} timed batches")
    runs = [("transform pipeline", True)]
    if not args.no_baseline:
        runs.append(("baseline without transform", False))
    for title, transform in runs:
        dataset = make_dataset(files, args.batch_size, args.seed, transform=transform)
        rate = measure(dataset, args.warmup, args.batches, args.batch_size)
        print(f"{title}: {rate:.1f} images/s ({rate * PATCHES_PER_IMAGE:.0f} patches/s)")


if __name__ == "__main__":
    main()

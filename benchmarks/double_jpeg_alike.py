"""How far each double-JPEG transformation of step 1 is from the single JPEGs, in pixels.

Step 1's family errors are mostly double JPEG taken for single JPEG. This
measures how much there is to see: for each of the 24 double-JPEG classes
(first quality q1, second q2) it applies the transformation and the single
JPEGs at q1 and at q2 to the same random 128 px photo crops and reports
  - the RMS difference to each, in gray levels (0-255), after the `cpu`
    preset's preprocessing (128 -> 256 bicubic);
  - the share of pixels identical to the single JPEG at q2 (before resizing);
  - the RMS error that rounding the preprocessed input to bfloat16 adds to the
    difference from the nearer single JPEG (what `mixed_bfloat16` can lose).
A class whose difference is near 0 cannot be told from that single JPEG by any
model; `--json FILE` writes every figure.

Usage: python benchmarks/double_jpeg_alike.py --photos DIR [--crops 30] [--json FILE]
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dnadet_tf.images import load_rgb  # noqa: E402
from dnadet_tf.pipeline import random_square_crop  # noqa: E402
from dnadet_tf.preprocess import PreprocessConfig, preprocess_image  # noqa: E402
from dnadet_tf.pretraining import usable_photos  # noqa: E402
from dnadet_tf.transforms import (  # noqa: E402
    DOUBLE_JPEG_SECOND_QUALITIES, FAMILY_STARTS, JPEG_QUALITIES, TRANSFORM_NAMES, apply_transform)

JPEG_START, DOUBLE_JPEG_START = FAMILY_STARTS[0], FAMILY_STARTS[1]


def rms_levels(difference):
    """RMS of a difference of [-1, 1] images, in gray levels of 0-255."""
    return float(np.sqrt(np.mean(np.square(difference))) * 127.5)


def to_bfloat16(pixels):
    return tf.cast(tf.cast(pixels, tf.bfloat16), tf.float32).numpy()


def compare(crops, preprocess, seed):
    """One row per double-JPEG class, each figure the mean over `crops`."""
    def transformed(crop, index):
        return apply_transform(crop, index, seed)

    rows = []
    for position, (first, second) in enumerate(zip(JPEG_QUALITIES, DOUBLE_JPEG_SECOND_QUALITIES)):
        to_first, to_second, identical, bf16_error = [], [], [], []
        for crop in crops:
            double = transformed(crop, DOUBLE_JPEG_START + position)
            single_first = transformed(crop, JPEG_START + JPEG_QUALITIES.index(first))
            single_second = transformed(crop, JPEG_START + JPEG_QUALITIES.index(second))
            identical.append(float(np.mean(double.numpy() == single_second.numpy())))
            pixels = [preprocess_image(image, preprocess).numpy() for image in (double, single_first, single_second)]
            to_first.append(rms_levels(pixels[0] - pixels[1]))
            to_second.append(rms_levels(pixels[0] - pixels[2]))
            nearer = pixels[1] if to_first[-1] < to_second[-1] else pixels[2]
            exact = pixels[0] - nearer
            bf16_error.append(rms_levels(to_bfloat16(pixels[0]) - to_bfloat16(nearer) - exact))
        rows.append({
            "transformation": TRANSFORM_NAMES[DOUBLE_JPEG_START + position], "first_quality": first,
            "second_quality": second, "rms_to_jpeg_first": float(np.mean(to_first)),
            "rms_to_jpeg_second": float(np.mean(to_second)),
            "identical_to_jpeg_second": float(np.mean(identical)),
            "bfloat16_rms_error": float(np.mean(bf16_error)),
        })
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", required=True, help="a folder of photos (searched recursively)")
    parser.add_argument("--crops", type=int, default=30, help="random 128 px crops, one per photo")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    paths = usable_photos(args.photos).paths
    chosen = np.random.default_rng(0).choice(len(paths), size=min(args.crops, len(paths)), replace=False)
    crops = [random_square_crop(tf.constant(load_rgb(paths[i])), 128, tf.constant([1, n], tf.int64))
             for n, i in enumerate(chosen)]
    preprocess = PreprocessConfig(crop_size=128, resize1=128, resize2=256)
    rows = compare(crops, preprocess, tf.constant([3, 4], tf.int64))
    print(f"{len(crops)} crops of 128 px; RMS differences in gray levels after 128 -> 256 bicubic")
    print(f"{'transformation':22s} {'to q1':>6s} {'to q2':>6s} {'same px as q2':>13s} {'bf16 err':>8s}")
    for row in rows:
        print(f"{row['transformation']:22s} {row['rms_to_jpeg_first']:6.3f} {row['rms_to_jpeg_second']:6.3f} "
              f"{100 * row['identical_to_jpeg_second']:12.1f}% {row['bfloat16_rms_error']:8.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"photos": args.photos, "crops": len(crops), "resize": "128 -> 256", "rows": rows}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

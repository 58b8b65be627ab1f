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
model. For scale, it also reports each single JPEG's RMS difference to its
nearest other quality (what the 170-way task asks the model to resolve inside
the JPEG family) and, with `--errors FILE` (a `pretrain_families.py` JSON), the
RMS difference between the two classes of each cross-family error listed there
whose classes are both JPEG or double JPEG. `--resize2` sets the magnification
(the `cpu` preset had 256, has 512 now); `--json FILE` writes every figure.

Usage: python benchmarks/double_jpeg_alike.py --photos DIR [--crops 30] [--resize2 256] [--errors FILE]
                                              [--json FILE]
"""
import argparse
import itertools
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
from dnadet_tf.runs import write_json_atomic  # noqa: E402
from dnadet_tf.transforms import (  # noqa: E402
    DOUBLE_JPEG_SECOND_QUALITIES, FAMILY_STARTS, JPEG_QUALITIES, TRANSFORM_NAMES, apply_transform)

JPEG_START, DOUBLE_JPEG_START = FAMILY_STARTS[0], FAMILY_STARTS[1]


def rms_levels(difference):
    """RMS of a difference of [-1, 1] images, in gray levels of 0-255."""
    return float(np.sqrt(np.mean(np.square(difference))) * 127.5)


def to_bfloat16(pixels):
    return tf.cast(tf.cast(pixels, tf.bfloat16), tf.float32).numpy()


def transformed_crops(crops, preprocess, seed):
    """{class index: (raw outputs, preprocessed outputs)} of every JPEG and double-JPEG class on `crops`
    (two lists, one entry per crop, the transformation's seed the same for every crop)."""
    outputs = {}
    for index in range(JPEG_START, DOUBLE_JPEG_START + len(JPEG_QUALITIES)):
        raw = [apply_transform(crop, index, seed) for crop in crops]
        outputs[index] = ([image.numpy() for image in raw],
                          [preprocess_image(image, preprocess).numpy() for image in raw])
    return outputs


def mean_rms(outputs, a, b):
    """Mean over the crops of the RMS difference (gray levels) between classes a and b after preprocessing."""
    return float(np.mean([rms_levels(x - y) for x, y in zip(outputs[a][1], outputs[b][1])]))


def compare(outputs):
    """One row per double-JPEG class, each figure the mean over the crops (`transformed_crops` outputs)."""
    rows = []
    for position, (first, second) in enumerate(zip(JPEG_QUALITIES, DOUBLE_JPEG_SECOND_QUALITIES)):
        double = DOUBLE_JPEG_START + position
        single_first = JPEG_START + JPEG_QUALITIES.index(first)
        single_second = JPEG_START + JPEG_QUALITIES.index(second)
        to_first, to_second, identical, bf16_error = [], [], [], []
        for crop in range(len(outputs[double][0])):
            identical.append(float(np.mean(outputs[double][0][crop] == outputs[single_second][0][crop])))
            pixels = [outputs[index][1][crop] for index in (double, single_first, single_second)]
            to_first.append(rms_levels(pixels[0] - pixels[1]))
            to_second.append(rms_levels(pixels[0] - pixels[2]))
            nearer = pixels[1] if to_first[-1] < to_second[-1] else pixels[2]
            exact = pixels[0] - nearer
            bf16_error.append(rms_levels(to_bfloat16(pixels[0]) - to_bfloat16(nearer) - exact))
        rows.append({
            "transformation": TRANSFORM_NAMES[double], "first_quality": first,
            "second_quality": second, "rms_to_jpeg_first": float(np.mean(to_first)),
            "rms_to_jpeg_second": float(np.mean(to_second)),
            "identical_to_jpeg_second": float(np.mean(identical)),
            "bfloat16_rms_error": float(np.mean(bf16_error)),
        })
    return rows


def nearest_qualities(outputs):
    """Per single-JPEG class: the nearest other JPEG quality and the mean RMS difference to it."""
    singles = range(JPEG_START, JPEG_START + len(JPEG_QUALITIES))
    distance = {}
    for a, b in itertools.combinations(singles, 2):  # the difference is symmetric: each pair once
        distance[a, b] = distance[b, a] = mean_rms(outputs, a, b)
    rows = []
    for index in singles:
        nearest = min((other for other in singles if other != index), key=lambda other: distance[index, other])
        rows.append({"transformation": TRANSFORM_NAMES[index], "nearest_other_quality": TRANSFORM_NAMES[nearest],
                     "rms": distance[index, nearest]})
    return rows


def error_distances(outputs, errors):
    """`errors` ([{"true", "predicted", "count", "of"}]) with the RMS difference between their two classes,
    for the pairs whose classes are both in `outputs`."""
    known = {TRANSFORM_NAMES[index]: index for index in outputs}
    return [{**error, "rms": mean_rms(outputs, known[error["true"]], known[error["predicted"]])}
            for error in errors if error["true"] in known and error["predicted"] in known]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", required=True, help="a folder of photos (searched recursively)")
    parser.add_argument("--crops", type=int, default=30, help="random 128 px crops, one per photo")
    parser.add_argument("--resize2", type=int, default=256, help="the magnification's output size (default 256)")
    parser.add_argument("--errors", help="a pretrain_families.py JSON: also measure its cross-family error pairs")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if args.crops < 1:
        parser.error(f"--crops: expected a positive number of crops, received {args.crops}.")
    paths = usable_photos(args.photos).paths
    chosen = np.random.default_rng(0).choice(len(paths), size=min(args.crops, len(paths)), replace=False)
    crops = [random_square_crop(tf.constant(load_rgb(paths[i])), 128, tf.constant([1, n], tf.int64))
             for n, i in enumerate(chosen)]
    preprocess = PreprocessConfig(crop_size=128, resize1=128, resize2=args.resize2)
    outputs = transformed_crops(crops, preprocess, tf.constant([3, 4], tf.int64))
    rows, qualities = compare(outputs), nearest_qualities(outputs)
    errors = []
    if args.errors:
        with open(args.errors, encoding="utf-8") as f:
            errors = error_distances(outputs, json.load(f)["cross_family_errors"])
    print(f"{len(crops)} crops of 128 px; RMS differences in gray levels after 128 -> {args.resize2} bicubic")
    print(f"{'transformation':22s} {'to q1':>6s} {'to q2':>6s} {'same px as q2':>13s} {'bf16 err':>8s}")
    for row in rows:
        print(f"{row['transformation']:22s} {row['rms_to_jpeg_first']:6.3f} {row['rms_to_jpeg_second']:6.3f} "
              f"{100 * row['identical_to_jpeg_second']:12.1f}% {row['bfloat16_rms_error']:8.3f}")
    print("each single JPEG to its nearest other quality: RMS "
          + ", ".join(f"{row['transformation'][5:]} {row['rms']:.2f}" for row in qualities))
    for error in errors:
        print(f"error {error['true']} -> {error['predicted']} ({error['count']} of {error['of']}): "
              f"RMS {error['rms']:.2f}")
    if args.json:
        document = {"photos": args.photos, "crops": len(crops), "resize": f"128 -> {args.resize2}", "rows": rows,
                    "nearest_qualities": qualities, "errors": errors}
        write_json_atomic(args.json, document, indent=1, sort_keys=False)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

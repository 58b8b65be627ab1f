"""How well a classic forensic feature tells step 1's single and double JPEGs apart.

Step 1's family errors are mostly single JPEG against double JPEG
(`pretrain_families.py`). This asks whether the transformed 128 px crops carry
enough to tell them apart, with no network: each crop's "JPEG ghost" curve
(Farid 2009), the log mean squared change when the crop is compressed once more
at each of the 24 qualities of the class set, goes into a multinomial logistic
regression over the 48 JPEG and double-JPEG classes. It is fitted on crops of the
photos step 1 trains on and scored on crops of the photos it holds out (the same
split, `split_photos` with --seed), every class --test-per-class times. Printed:
48-way accuracy, single-vs-double accuracy (the family of the 48-way answer), the
recall of each double-JPEG class and, with `--families FILE` (a
`pretrain_families.py` JSON), the family accuracy that step 1 would have if its
answers inside the two JPEG families were decided this well and the rest of its
confusion matrix stayed as it is. `--json FILE` writes every figure.

Usage: python benchmarks/jpeg_ghost.py --photos DIR [--train-per-class 100] [--test-per-class 40]
                                       [--seed 0] [--families FILE] [--json FILE]
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dnadet_tf.imageops import jpeg_round_trip  # noqa: E402
from dnadet_tf.images import load_rgb  # noqa: E402
from dnadet_tf.pipeline import random_square_crop  # noqa: E402
from dnadet_tf.pretraining import FAMILY_NAMES, split_photos, usable_photos  # noqa: E402
from dnadet_tf.runs import write_json_atomic  # noqa: E402
from dnadet_tf.transforms import FAMILY_STARTS, JPEG_QUALITIES, TRANSFORM_NAMES, apply_transform  # noqa: E402

JPEG_CLASSES = tuple(range(FAMILY_STARTS[0], FAMILY_STARTS[1] + len(JPEG_QUALITIES)))  # 48: single, then double
CROP = 128


def recompressed(pixels, quality):
    """(H, W, 3) uint8 -> the same compressed once more at `quality` (`imageops.jpeg_round_trip`: 4:2:0, standard
    tables, pixel for pixel what Pillow gives), float32 on the uint8 grid."""
    return np.asarray(jpeg_round_trip(pixels, int(quality)))


def ghost_curve(pixels):
    """(H, W, 3) uint8 -> (24,) log mean squared change on compressing again at each quality of JPEG_QUALITIES."""
    image = pixels.astype(np.float64)
    return np.array([np.log(np.mean(np.square(image - recompressed(pixels, q))) + 1e-3) for q in JPEG_QUALITIES])


def ghost_samples(photo_paths, per_class, seed):
    """(features (N, 24), labels (N,)): every class of JPEG_CLASSES `per_class` times, photo i mod len(paths)
    and a random 128 px crop of it for sample i."""
    features, labels = [], []
    for i in range(per_class * len(JPEG_CLASSES)):
        label = JPEG_CLASSES[i % len(JPEG_CLASSES)]
        photo = tf.constant(load_rgb(photo_paths[i % len(photo_paths)]))
        crop = random_square_crop(photo, CROP, tf.constant([seed, i], tf.int64))
        pixels = apply_transform(crop, label, tf.constant([seed, i + 1], tf.int64)).numpy().astype(np.uint8)
        features.append(ghost_curve(pixels))
        labels.append(label)
    return np.array(features), np.array(labels)


def is_double(labels):
    return np.asarray(labels) >= FAMILY_STARTS[1]


def family_accuracy_with(families, single_double_accuracy):
    """A pretrain_families.py result's family accuracy if its samples of the two JPEG families that it put in one
    of those two families were decided with `single_double_accuracy`; the rest of its confusion matrix as it is."""
    confusion = np.asarray(families["confusion"], np.float64)
    jpeg = [FAMILY_NAMES.index("jpeg"), FAMILY_NAMES.index("double_jpeg")]
    inside = confusion[np.ix_(jpeg, jpeg)].sum()
    correct = np.trace(confusion) - confusion[jpeg, jpeg].sum() + single_double_accuracy * inside
    return float(correct / confusion.sum())


def ghost_figures(photos, train_per_class, test_per_class, seed, families=None):
    """{"accuracy_48", "single_double_accuracy", "double_recall", ...} of the ghost classifier (module docstring)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_paths, held_out = split_photos(usable_photos(photos).paths, seed)
    x_train, y_train = ghost_samples(train_paths, train_per_class, seed)
    x_test, y_test = ghost_samples(held_out, test_per_class, seed + 1000)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=10.0))
    predicted = classifier.fit(x_train, y_train).predict(x_test)
    single_double = float(np.mean(is_double(predicted) == is_double(y_test)))
    figures = {
        "photos": photos, "seed": seed, "train_samples": int(len(y_train)), "test_samples": int(len(y_test)),
        "held_out_photos": len(held_out), "features": "log mean squared change after recompression at "
        + ", ".join(map(str, JPEG_QUALITIES)), "classifier": "standardized multinomial logistic regression, C=10",
        "accuracy_48": float(np.mean(predicted == y_test)),
        "single_double_accuracy": single_double,
        "single_recall": float(np.mean(~is_double(predicted[~is_double(y_test)]))),
        "double_recall": {TRANSFORM_NAMES[c]: float(np.mean(is_double(predicted[y_test == c])))
                          for c in JPEG_CLASSES[len(JPEG_QUALITIES):]},
    }
    if families is not None:
        figures["families_run"] = families.get("run")
        figures["family_accuracy_run"] = families["family_accuracy"]
        figures["family_accuracy_with_ghost_jpeg"] = family_accuracy_with(families, single_double)
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", required=True, help="the photo folder step 1 trains on (searched recursively)")
    parser.add_argument("--train-per-class", type=int, default=100, help="training crops per class (default 100)")
    parser.add_argument("--test-per-class", type=int, default=40, help="held-out crops per class (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="the photo split's seed, as pretrain --seed (default 0)")
    parser.add_argument("--families", help="a pretrain_families.py JSON: its family accuracy with these decisions")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    for flag in ("train_per_class", "test_per_class"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')}: expected a positive number of crops, "
                         f"received {getattr(args, flag)}.")
    families = None
    if args.families:
        with open(args.families, encoding="utf-8") as f:
            families = json.load(f)
    figures = ghost_figures(args.photos, args.train_per_class, args.test_per_class, args.seed, families)
    print(f"{figures['train_samples']} training and {figures['test_samples']} held-out crops "
          f"({figures['held_out_photos']} held-out photos)")
    print(f"48-way accuracy {100 * figures['accuracy_48']:.1f} %, single vs double "
          f"{100 * figures['single_double_accuracy']:.1f} %, single recall {100 * figures['single_recall']:.1f} %")
    print("double recall: " + ", ".join(f"{name[12:]} {100 * r:.0f}" for name, r in figures["double_recall"].items()))
    if families is not None:
        print(f"family accuracy of {figures['families_run']}: {100 * figures['family_accuracy_run']:.1f} %, "
              f"{100 * figures['family_accuracy_with_ghost_jpeg']:.1f} % with these JPEG decisions")
    if args.json:
        write_json_atomic(args.json, figures, indent=1, sort_keys=False)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

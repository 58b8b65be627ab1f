"""Which transformation families a step-1 run tells apart: its best.keras on held-out photos.

Draws `--samples` (photo, transformation) pairs from the photos the run held out
(the same split, seed and sampling as its validation: transformation i mod 170,
`pipeline.transformation_eval_dataset`), predicts with the run's best.keras and
prints 170-way accuracy, family accuracy (the family of the 170-way answer), the
family accuracy of the most probable family (each family's probabilities summed,
`most_probable_family`), the 6 x 6 family confusion matrix
(rows true family, columns predicted) and the transformations most often taken
for one of another family (`--top`). `--json FILE` writes the figures, and
the confusion matrix as a PNG next to it (FILE with .png).

With several runs (step 1 with other seeds: each is scored on the photos it held
out) it prints each run's line, then the mean ± std over the runs (`across_runs`),
and `--json` holds {"runs": [each run's figures], "summary": {figure: {"values",
"mean", "std"}}}, its PNG the confusion matrix summed over the runs.

Usage: python benchmarks/pretrain_families.py RUN [RUN ...] --photos DIR [--samples 1700] [--top 15] [--json FILE]
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from dnadet_tf.ablation import mean_std_figures  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.metrics import classification_metrics, plot_confusion_matrix  # noqa: E402
from dnadet_tf.pipeline import transformation_eval_dataset  # noqa: E402
from dnadet_tf.predictor import KerasPredictor  # noqa: E402
from dnadet_tf.pretraining import FAMILY_NAMES, FAMILY_OF_CLASS, split_photos, usable_photos  # noqa: E402
from dnadet_tf.runs import RunDir, write_json_atomic  # noqa: E402
from dnadet_tf.transforms import TRANSFORM_NAMES  # noqa: E402


def cross_family_errors(truth, predicted, top):
    """The `top` most frequent (true, predicted) transformation pairs across families:
    [{"true", "predicted", "count", "of"}], "of" = samples of the true transformation."""
    wrong = FAMILY_OF_CLASS[truth] != FAMILY_OF_CLASS[predicted]
    pairs, counts = np.unique(np.stack([truth[wrong], predicted[wrong]], axis=1), axis=0, return_counts=True)
    order = np.lexsort((pairs[:, 1], pairs[:, 0], -counts))[:top]
    return [{"true": TRANSFORM_NAMES[pairs[i, 0]], "predicted": TRANSFORM_NAMES[pairs[i, 1]],
             "count": int(counts[i]), "of": int(np.sum(truth == pairs[i, 0]))} for i in order]


def most_probable_family(probabilities):
    """(N, 170) probabilities -> (N,) family index whose transformations' probabilities sum highest."""
    one_hot = np.eye(len(FAMILY_NAMES))[FAMILY_OF_CLASS]  # (170, families)
    return (np.asarray(probabilities, np.float64) @ one_hot).argmax(-1)


def family_figures(run_dir, photos, samples, batch_size=34, top=15):
    """{"samples", "accuracy", "family_accuracy", "family_accuracy_summed", "family_recall", "families",
    "confusion", "cross_family_errors"} of a step-1 run; "family_accuracy_summed" decides by
    `most_probable_family`, the others by the family of the 170-way answer."""
    config = RunDir(run_dir).config
    _, held_out = split_photos(usable_photos(photos).paths, config.runtime.seed)
    predictor = KerasPredictor(run_dir)
    truth, probabilities = [], []
    for pixels, labels in transformation_eval_dataset(held_out, config, samples, batch_size).as_numpy_iterator():
        probabilities.append(predictor.predict_pixels(pixels))
        truth.append(labels)
    truth, probabilities = np.concatenate(truth), np.concatenate(probabilities)
    predicted = probabilities.argmax(-1)
    families = classification_metrics(FAMILY_OF_CLASS[truth], FAMILY_OF_CLASS[predicted], list(FAMILY_NAMES))
    return {
        "run": run_dir, "samples": int(len(truth)), "held_out_photos": len(held_out),
        "accuracy": float(np.mean(truth == predicted)),
        "family_accuracy": families["accuracy"],
        "family_accuracy_summed": float(np.mean(most_probable_family(probabilities) == FAMILY_OF_CLASS[truth])),
        "family_recall": families["per_class_recall"],
        "families": list(FAMILY_NAMES), "confusion": families["confusion_matrix"],
        "cross_family_errors": cross_family_errors(truth, predicted, top),
    }


SUMMARIZED = ("accuracy", "family_accuracy", "family_accuracy_summed")


def across_runs(runs):
    """[figures of each run] -> {figure: {"values", "mean", "std"}} for the SUMMARIZED figures and each
    family's recall ("recall_<family>"), in that order; std is the population std (`ablation.mean_std`)."""
    columns = {key: [run[key] for run in runs] for key in SUMMARIZED}
    columns.update({f"recall_{name}": [run["family_recall"][name] for run in runs] for name in FAMILY_NAMES})
    summary = {}
    for key, values in columns.items():
        summary[key] = mean_std_figures(values)
    return summary


def summary_line(figures):
    return (f"{figures['samples']} samples from {figures['held_out_photos']} held-out photos: "
            f"170-way accuracy {100 * figures['accuracy']:.1f} %, "
            f"family accuracy {100 * figures['family_accuracy']:.1f} % (family of the 170-way answer), "
            f"{100 * figures['family_accuracy_summed']:.1f} % (most probable family)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="a pretrain run dir (several: step 1 with other seeds)")
    parser.add_argument("--photos", required=True, help="the photo folder the run was trained on")
    parser.add_argument("--samples", type=int, default=1700, help="held-out (photo, transformation) pairs")
    parser.add_argument("--top", type=int, default=15, help="how many cross-family confusions to list")
    parser.add_argument("--json", help="write the figures here, and the confusion matrix as a PNG next to it")
    args = parser.parse_args(argv)
    configure_runtime()
    runs = [family_figures(run, args.photos, args.samples, top=args.top) for run in args.runs]
    if len(runs) == 1:
        figures = runs[0]
        print(summary_line(figures))
        print("rows: true family; columns: predicted, in the same order")
        for name, row in zip(FAMILY_NAMES, figures["confusion"]):
            print(f"  {name:15s} " + " ".join(f"{count:5d}" for count in row)
                  + f"   recall {100 * figures['family_recall'][name]:.1f} %")
        print("most frequent cross-family errors (true -> predicted: count of samples of the true one)")
        for error in figures["cross_family_errors"]:
            print(f"  {error['true']:24s} -> {error['predicted']:24s} {error['count']:3d} of {error['of']}")
        document, confusion = figures, figures["confusion"]
        title = f"step 1 families, {figures['samples']} held-out samples"
    else:
        for run in runs:
            print(f"{run['run']}: {summary_line(run)}")
        summary = across_runs(runs)
        print(f"mean ± std over {len(runs)} runs: " + ", ".join(
            f"{key} {100 * summary[key]['mean']:.1f} ± {100 * summary[key]['std']:.1f} %" for key in SUMMARIZED))
        document = {"runs": runs, "summary": summary}
        confusion = np.sum([run["confusion"] for run in runs], axis=0).tolist()
        title = f"step 1 families, {len(runs)} runs, {sum(r['samples'] for r in runs)} held-out samples"
    if args.json:
        write_json_atomic(args.json, document, indent=1, sort_keys=False)
        plot_confusion_matrix(confusion, FAMILY_NAMES, os.path.splitext(args.json)[0] + ".png", title=title)
        print(f"wrote {args.json} and its .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

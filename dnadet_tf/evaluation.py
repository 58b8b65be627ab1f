"""Whole-image evaluation of a trained model on one or more datasets."""
import os

import numpy as np

from dnadet_tf.data import SPLITS, benchmark_split, check_files, is_benchmark_dir, read_dataset, remap_to
from dnadet_tf.metrics import classification_metrics, plot_confusion_matrix
from dnadet_tf.predictor import predict_files

SPLIT_TITLES = {
    "test": "closed-set", "val": "val", "train": "train", "cross_seed": "cross-seed", "cross_loss": "cross-loss",
    "cross_finetune": "cross-finetune", "cross_dataset": "cross-dataset",
}
EVALUATION_SPLITS = ("test", "cross_seed", "cross_loss", "cross_finetune", "cross_dataset")


def expand_data_specs(specs):
    """(name, path) rows: a benchmark folder expands to its closed-set and cross-test lists."""
    rows = []
    for spec in specs:
        if is_benchmark_dir(spec):
            for split in EVALUATION_SPLITS:
                if os.path.isfile(benchmark_split(spec, split)):
                    rows.append((SPLIT_TITLES[split], benchmark_split(spec, split)))
        else:
            base = os.path.basename(os.path.normpath(spec))
            stem = os.path.splitext(base)[0]
            rows.append((SPLIT_TITLES.get(stem, stem) if os.path.isfile(spec) else base, spec))
    return rows


def evaluate_files(predictor, files, batch_size=16, perturb_fn=None, seed=0):
    """Metrics dict for LabeledFiles (already remapped to the predictor's classes)."""
    probabilities = predict_files(predictor, files.paths, batch_size, perturb_fn=perturb_fn, seed=seed)
    metrics = classification_metrics(files.labels, np.argmax(probabilities, axis=-1), predictor.class_names)
    metrics["skipped_files"] = len(files.skipped)
    return metrics


def load_labeled(spec, class_names, crop_size, min_side=8):
    """Reads, remaps to `class_names` and checks the files of one dataset spec (too small:
    a square image below `min_side`, a non-square one below `crop_size`)."""
    files = remap_to(read_dataset(spec, "test"), class_names)
    return check_files(files, crop_size=crop_size, min_side=min_side, require_every_class=False)


def evaluate(predictor, specs, out_dir=None, batch_size=16, perturb_fn=None, seed=0, progress=print):
    """Evaluates on every dataset in `specs`; writes a confusion-matrix PNG per
    row into `out_dir` when given. Returns a list of {name, data, metrics} rows."""
    rows = []
    for name, spec in expand_data_specs(specs):
        files = load_labeled(spec, predictor.class_names, predictor.preprocess.crop_size, predictor.preprocess.min_side)
        progress(f"evaluating {name}: {len(files)} images from {spec}")
        metrics = evaluate_files(predictor, files, batch_size, perturb_fn, seed)
        row = {"name": name, "data": spec, "metrics": metrics}
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
            png = os.path.join(out_dir, f"confusion_{_slug(name)}.png")
            plot_confusion_matrix(metrics["confusion_matrix"], predictor.class_names, png,
                                  title=f"{name}: accuracy {100 * metrics['accuracy']:.2f} %")
            row["confusion_png"] = png
        rows.append(row)
    return rows


def _slug(name):
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def format_table(rows, class_names):
    """A plain-text table: one row per dataset, accuracy, macro-F1, macro recall, per-class recall."""
    header = ["data", "images", "accuracy", "macro-F1", "macro-recall"] + list(class_names)
    lines = [header]
    for row in rows:
        m = row["metrics"]
        recall = m["per_class_recall"]
        lines.append(
            [row["name"], str(m["num_images"]), f"{100 * m['accuracy']:.2f}", f"{100 * m['macro_f1']:.2f}",
             f"{100 * m['macro_recall']:.2f}"]
            + [f"{100 * recall[c]:.1f}" if c in recall else "-" for c in class_names]
        )
    return render_table(lines)


def render_table(lines):
    """Aligned plain-text table from rows of strings: first column left-aligned, the rest right-aligned."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths)))
                     for line in lines)


__all__ = ["evaluate", "format_table", "expand_data_specs", "SPLITS"]

"""Whole-image evaluation of a trained model on one or more datasets, and open-set
evaluation against images of architectures it never saw."""
import os
import sys

import numpy as np

from dnadet_tf import openset
from dnadet_tf.data import (OPEN_SET_SPLIT, SPLITS, LabeledFiles, benchmark_split, is_benchmark_dir, read_unknown,
                            read_usable, same_files, usable_files)
from dnadet_tf.metrics import classification_metrics, plot_confusion_matrix
from dnadet_tf.predictor import attribute_files, features_and_logits
from dnadet_tf.runs import RunDir

SPLIT_TITLES = {
    "test": "closed-set", "val": "val", "train": "train", "cross_seed": "cross-seed", "cross_loss": "cross-loss",
    "cross_finetune": "cross-finetune", "cross_dataset": "cross-dataset",
}
OPEN_SET_ROW = "open_set"  # the `kind` of the open-set row; the other rows have none
# the key of a row's metrics counting its images that are training images of the model (`training_images`); absent
# when none is, or when the model records no training data that still reads
TRAINING_IMAGES = "training_images"
EVALUATION_SPLITS = ("test", "cross_seed", "cross_loss", "cross_finetune", "cross_dataset")


def expand_data_specs(specs):
    """(name, path) rows: a benchmark folder expands to its closed-set and cross-test lists. A name already taken
    (two folders named `test`, two benchmark folders) gets -2, -3, ...: each row its own line and files."""
    return [(name, path) for name, path, _ in expand_data_rows(specs)]


def expand_data_rows(specs):
    """(name, path, closed_set) rows, as `expand_data_specs` names them; `closed_set` is True for a closed-set
    list (a benchmark's test.txt, or a list named test.txt), also when its name became `closed-set-2`, ... A
    folder's or list's name is that of its absolute path, so `.` and `..` are named after the folders they are."""
    rows = []
    for spec in specs:
        if is_benchmark_dir(spec):
            for split in EVALUATION_SPLITS:
                if os.path.isfile(benchmark_split(spec, split)):
                    rows.append((SPLIT_TITLES[split], benchmark_split(spec, split)))
        else:
            base = os.path.basename(os.path.abspath(spec)) or "data"
            stem = os.path.splitext(base)[0]
            rows.append((SPLIT_TITLES.get(stem, stem) if os.path.isfile(spec) else base, spec))
    closed = [name == SPLIT_TITLES["test"] for name, _ in rows]
    return [(name, path, is_closed) for (name, path), is_closed in zip(unique_names(rows), closed)]


def unique_names(rows):
    """(name, value) rows with each repeated name made unique by -2, -3, ... in order of appearance."""
    taken, unique = set(), []
    for name, value in rows:
        candidate, number = name, 1
        while candidate in taken:
            number += 1
            candidate = f"{name}-{number}"
        taken.add(candidate)
        unique.append((candidate, value))
    return unique


def uncalibrated(probabilities, temperature):
    """softmax(z) from calibrated probabilities softmax(z / T): renormalised p ** T."""
    p = np.power(np.asarray(probabilities, np.float64), float(temperature))
    return p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)


def evaluate_files(predictor, files, batch_size=16, perturb_fn=None, seed=0, outputs=None):
    """Metrics dict for LabeledFiles (already remapped to the predictor's classes): classification
    metrics, ECE (15 bins; with a calibration also `ece_uncalibrated`, the ECE at temperature 1) and,
    with an open-set score, the share of these known images flagged unknown.

    `outputs`: `attribute_files` of these files when already computed.
    """
    outputs = outputs or attribute_files(predictor, files.paths, batch_size, perturb_fn=perturb_fn, seed=seed)
    probabilities = outputs["probabilities"]
    metrics = classification_metrics(files.labels, np.argmax(probabilities, axis=-1), predictor.class_names)
    metrics["skipped_files"] = len(files.skipped)
    metrics["ece"] = openset.expected_calibration_error(probabilities, files.labels)
    if predictor.open_set:
        metrics["ece_uncalibrated"] = openset.expected_calibration_error(
            uncalibrated(probabilities, predictor.open_set["temperature"]), files.labels)
        metrics["flagged_unknown"] = float(np.mean(outputs["unknown"])) if len(files.paths) else 0.0
    return metrics


def open_set_metrics(predictor, known_files, known_outputs, unknown_paths, unknown_groups, unknown_outputs,
                     score_table=None):
    """AUROC, FPR at 95 % TPR and open-set accuracy of the stored score; per unknown group AUROC;
    `score_table` ({score: (known scores, unknown scores)}) adds every score's AUROC and FPR95."""
    known_scores, unknown_scores = known_outputs["ood_score"], unknown_outputs["ood_score"]
    threshold = predictor.open_set["threshold"]
    predictions = np.argmax(known_outputs["probabilities"], axis=-1)
    groups = np.asarray(unknown_groups)
    metrics = {
        "score": predictor.open_set["score"],
        "threshold": threshold,
        "known_images": int(len(known_scores)),
        "unknown_images": int(len(unknown_scores)),
        "auroc": openset.auroc(known_scores, unknown_scores),
        "fpr_at_95_tpr": openset.fpr_at_known_rate(known_scores, unknown_scores),
        "open_set_accuracy": openset.open_set_accuracy(known_files.labels, predictions, known_scores,
                                                       unknown_scores, threshold),
        "known_flagged": float(np.mean(known_scores > threshold)),
        "unknown_flagged": float(np.mean(unknown_scores > threshold)),
        "auroc_by_group": {g: openset.auroc(known_scores, unknown_scores[groups == g]) for g in sorted(set(groups))},
        "nearest_known": {g: {predictor.class_names[c]: int(n) for c, n in zip(*np.unique(
            np.argmax(unknown_outputs["probabilities"][groups == g], axis=-1), return_counts=True))}
            for g in sorted(set(groups))},
    }
    if score_table:
        metrics["by_score"] = {name: {"auroc": openset.auroc(k, u), "fpr_at_95_tpr": openset.fpr_at_known_rate(k, u)}
                               for name, (k, u) in score_table.items()}
    return metrics


def _every_score(predictor, known_paths, unknown_paths, batch_size):
    """{score: (known scores, unknown scores)} for every score of `openset.SCORES`, from the Keras
    model's features and its stored statistics; None for exported predictors (they hold one score)."""
    model = getattr(predictor, "model", None)
    if model is None or model.calibration is None:
        return None
    statistics = model.calibration.statistics()
    known = features_and_logits(model, known_paths, batch_size)
    unknown = features_and_logits(model, unknown_paths, batch_size)
    return {name: (openset.scores(name, *known, statistics), openset.scores(name, *unknown, statistics))
            for name in openset.SCORES}


def _stderr_line(line):
    print(line, file=sys.stderr, flush=True)


def learned_files(predictor):
    """The LabeledFiles the model of `predictor` was trained on (`RunDir.trained_files`; a run of `adapt` counts
    too: its config.json's data are the content before adaptation, training images of its encoder all the same), or
    None: an exported predictor (a SavedModel, a .tflite file) records no training data."""
    run = getattr(predictor, "run", None)
    return run.trained_files() if isinstance(run, RunDir) else None


def training_images(predictor, datasets, warn=None):
    """{row name: [(image, the training image of the same bytes)]} for the rows of `datasets` ((name, spec, files)
    ...) holding images the model of `predictor` was trained on (`learned_files`), compared by their bytes
    (`data.same_files`: the same file, through a link too, or a copy; nothing is decoded, and the training list's
    sizes are read once for every row); `warn` receives one line per such row: how many of how many, one example,
    and that the row's accuracy is measured partly on images the model learned (None: to stderr). {} when the
    training images are not known."""
    warn = warn or _stderr_line
    learned = learned_files(predictor)
    if learned is None or not datasets:
        return {}
    found = dict(same_files(list(dict.fromkeys(p for _, _, files in datasets for p in files.paths)), learned.paths))
    shared = {}
    for name, spec, files in datasets:
        pairs = [(path, found[path]) for path in files.paths if path in found]
        if not pairs:
            continue
        shared[name] = pairs
        warn(f"warning: {name} ({spec}): {len(pairs)} of its {len(files)} images are training images of the run "
             f"{predictor.run.path} (e.g. {pairs[0][0]}, the same bytes as the training image {pairs[0][1]}): the "
             f"accuracy of this row is measured {'only' if len(pairs) == len(files) else 'partly'} on images the "
             f"model learned")
    return shared


def evaluate(predictor, specs, out_dir=None, batch_size=16, perturb_fn=None, seed=0, progress=print,
             unknown_specs=(), replaceable=None, warn=_stderr_line):
    """Evaluates on every dataset in `specs`. Returns a list of {name, data, metrics} rows.

    Every dataset of `specs` and `unknown_specs` is read and checked before any inference, so a
    bad path or an unusable dataset raises DataError before the first image is attributed. With
    `out_dir`, a confusion-matrix PNG per row is written there once every row is measured (see
    `write_confusion_pngs`, which takes `replaceable`: the files there a PNG may be written over, None for
    any); nothing is written when a dataset fails.

    Open set: the images of `unknown_specs`, and the open_set.txt of every benchmark folder
    in `specs`, are scored against the known images (those of every closed-set row when there are
    some, else of every row; an image in two rows, or in two unknown lists, counts once) in one more
    row, named "open-set" with `kind` OPEN_SET_ROW (needs a calibrated model; without one it is left
    out with a note through `progress`).

    Leaks: a row's images that are training images of a run's model (`training_images`: config.json's `data` less
    its `val_split` share, compared by their bytes, not decoded) are counted in its metrics' `training_images` (an
    int, absent when none is: no such key for an exported model, which records no training data, nor when those
    data are gone), with one warning line per such row through `warn` (default: stderr), before any inference.
    """
    datasets = [(name, spec, closed_set, read_usable(spec, "test", predictor.class_names, predictor.preprocess))
                for name, spec, closed_set in expand_data_rows(specs)]
    learned = training_images(predictor, [(name, spec, files) for name, spec, _, files in datasets], warn)
    unknown_specs = list(unknown_specs) + [spec for spec in specs if is_benchmark_dir(spec)
                                           and os.path.isfile(benchmark_split(spec, OPEN_SET_SPLIT))]
    unknown_specs = [spec for i, spec in enumerate(unknown_specs)  # a benchmark given twice: its open set once
                     if os.path.abspath(spec) not in {os.path.abspath(s) for s in unknown_specs[:i]}]
    unknown = None
    if unknown_specs and predictor.open_set:
        unknown = load_unknown(predictor, unknown_specs)
    else:
        for spec in unknown_specs:
            read_unknown(spec)  # a bad --unknown is an error even when the model cannot score it
    rows, known = [], []
    for name, spec, closed_set, files in datasets:
        progress(f"evaluating {name}: {len(files)} images from {spec}")
        outputs = attribute_files(predictor, files.paths, batch_size, perturb_fn=perturb_fn, seed=seed,
                                  progress=progress)
        metrics = evaluate_files(predictor, files, batch_size, perturb_fn, seed, outputs=outputs)
        if name in learned:
            metrics[TRAINING_IMAGES] = len(learned[name])
        known.append((name, files, outputs, closed_set))
        # the order of the confusion matrix's rows and columns (per_class_recall is a dict by name)
        rows.append({"name": name, "data": spec, "class_names": list(predictor.class_names), "metrics": metrics})
    if unknown_specs:
        if not predictor.open_set:
            progress("open set: the model stores no open-set score; the unknown images are not scored "
                     "(dnadet-tf calibrate RUN fits one)")
        else:
            rows.append(_open_set_row(predictor, known, unknown_specs, *unknown, batch_size, perturb_fn, seed,
                                      progress))
    if out_dir:
        write_confusion_pngs(rows, predictor.class_names, out_dir, replaceable=replaceable)
    return rows


def write_confusion_pngs(rows, class_names, out_dir, replaceable=None):
    """Writes `out_dir/confusion_NAME.png` for every row but the open-set one (creating `out_dir`)
    and stores its path in the row's `confusion_png`. Returns the list of PNG paths.

    Every row gets a PNG of its own: a name that another row of this call took (two row names with one file
    name, `a.b` and `a_b`) takes the next free one, `confusion_NAME-2.png`, .... `replaceable`: the files in
    `out_dir` a PNG may be written over (those the evaluation JSON being replaced lists); any other file there
    keeps its name and the PNG takes the next free one. None: any file may be written over."""
    os.makedirs(out_dir, exist_ok=True)
    replaceable = None if replaceable is None else {os.path.realpath(path) for path in replaceable}
    used = set()

    def taken(name):
        path = os.path.join(out_dir, name)
        return name.casefold() in used or (replaceable is not None and os.path.lexists(path)
                                           and os.path.realpath(path) not in replaceable)

    written = []
    for row in rows:
        if row.get("kind") == OPEN_SET_ROW:
            continue
        metrics = row["metrics"]
        slug = _slug(row["name"])
        name, number = f"confusion_{slug}.png", 1
        while taken(name):
            number += 1
            name = f"confusion_{slug}-{number}.png"
        used.add(name.casefold())
        png = os.path.join(out_dir, name)
        plot_confusion_matrix(metrics["confusion_matrix"], class_names, png,
                              title=f"{row['name']}: accuracy {100 * metrics['accuracy']:.2f} %")
        row["confusion_png"] = png
        written.append(png)
    return written


def load_unknown(predictor, unknown_specs):
    """(paths, groups) of the usable images of unknown architectures in `unknown_specs` (see
    `data.read_unknown`; images too small for the predictor are dropped with a warning). Raises
    DataError for a missing spec or one left with no usable image. An image listed twice counts once."""
    group_of = {}  # an image listed twice (one benchmark given twice) counts once, in its first group
    for spec in unknown_specs:
        for path, group in zip(*read_unknown(spec)):
            group_of.setdefault(_same_file_key(path), (path, group))
    paths = [path for path, _ in group_of.values()]
    usable = LabeledFiles(paths, np.zeros(len(paths), np.int64), ["unknown"], "unknown")
    usable = usable_files(usable, predictor.preprocess)
    group_of = {path: group for path, group in group_of.values()}
    return usable.paths, [group_of[p] for p in usable.paths]


def _same_file_key(path):
    """What tells one image file from another: its absolute, link-resolved path."""
    return os.path.realpath(path)


def _open_set_row(predictor, known, unknown_specs, unknown_paths, unknown_groups, batch_size, perturb_fn, seed,
                  progress):
    """The open-set row: the unknown images against the known images of every closed-set row of `known`
    ((name, files, outputs, closed_set) per row; every row when none is closed-set), each image once."""
    closed = [k for k in known if k[3]] or known
    paths, labels, picks, seen = [], [], [], set()
    for _, files, _, _ in closed:
        picks.append([])
        for i, path in enumerate(files.paths):
            if _same_file_key(path) not in seen:
                seen.add(_same_file_key(path))
                paths.append(path)
                labels.append(files.labels[i])
                picks[-1].append(i)
    known_files = LabeledFiles(paths, np.asarray(labels, np.int64), predictor.class_names, "known")
    known_outputs = {key: np.concatenate([np.asarray(k[2][key])[np.asarray(pick, np.int64)]
                                          for k, pick in zip(closed, picks)]) for key in closed[0][2]}
    progress(f"open set: {len(unknown_paths)} images of unknown architectures "
             f"({', '.join(sorted(set(unknown_groups)))}) against {len(paths)} known images "
             f"({', '.join(k[0] for k in closed)})")
    unknown_outputs = attribute_files(predictor, unknown_paths, batch_size, perturb_fn=perturb_fn, seed=seed,
                                      progress=progress)
    table = _every_score(predictor, paths, unknown_paths, batch_size) if perturb_fn is None else None
    metrics = open_set_metrics(predictor, known_files, known_outputs, unknown_paths, unknown_groups, unknown_outputs,
                               table)
    return {"name": "open-set", "kind": OPEN_SET_ROW, "data": list(unknown_specs), "known": [k[0] for k in closed],
            "metrics": metrics}


def _slug(name):
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def format_table(rows, class_names):
    """A plain-text table: one row per dataset, accuracy, macro-F1, macro recall, ECE, per-class recall;
    then the open-set figures when a row holds them."""
    header = ["data", "images", "accuracy", "macro-F1", "macro-recall", "ECE"] + list(class_names)
    lines = [header]
    open_set = [row for row in rows if row.get("kind") == OPEN_SET_ROW]
    for row in rows:
        if row in open_set:
            continue
        m = row["metrics"]
        recall = m["per_class_recall"]
        lines.append(
            [row["name"], str(m["num_images"]), f"{100 * m['accuracy']:.2f}", f"{100 * m['macro_f1']:.2f}",
             f"{100 * m['macro_recall']:.2f}", f"{100 * m['ece']:.2f}" if "ece" in m else "-"]
            + [f"{100 * recall[c]:.1f}" if c in recall else "-" for c in class_names]
        )
    text = render_table(lines)
    for row in open_set:
        m = row["metrics"]
        text += (f"\nopen set ({m['unknown_images']} unknown vs {m['known_images']} known images, score "
                 f"'{m['score']}'): AUROC {m['auroc']:.4f}, FPR at 95 % TPR {100 * m['fpr_at_95_tpr']:.2f} %, "
                 f"open-set accuracy {100 * m['open_set_accuracy']:.2f} %, unknown flagged "
                 f"{100 * m['unknown_flagged']:.1f} %, known flagged {100 * m['known_flagged']:.1f} %")
        for name, figures in m.get("by_score", {}).items():
            text += f"\n  score {name}: AUROC {figures['auroc']:.4f}, FPR95 {100 * figures['fpr_at_95_tpr']:.2f} %"
    return text


def render_table(lines):
    """Aligned plain-text table from rows of strings: first column left-aligned, the rest right-aligned."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths)))
                     for line in lines)


__all__ = ["evaluate", "format_table", "expand_data_specs", "SPLITS"]

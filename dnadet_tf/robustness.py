"""Robustness of one model to test-time attacks (the paper's Table 5).

For every dataset (a benchmark folder expands to its closed-set and cross-test
lists, as in `evaluate`), whole-image accuracy with no attack, with each
attack alone (crop, blur, jpeg, noise, relight) and with their combination
(each applied with probability 0.5). Image i of a dataset is attacked with the
stateless seed (seed, i), the same for every attack column, so a run is
deterministic for a seed and the columns differ only by the attack.
"""
from dnadet_tf.data import read_usable
from dnadet_tf.evaluation import TRAINING_IMAGES, evaluate_files, expand_data_specs, render_table, training_images

NO_ATTACK = "none"
DEFAULT_ATTACKS = ("crop", "blur", "jpeg", "noise", "relight", "combo")
COLUMN_TITLES = {NO_ATTACK: "no attack", "crop": "crop", "blur": "blur", "jpeg": "JPEG", "noise": "noise",
                 "relight": "relight", "combo": "combination"}


def attack_fn(name):
    """perturb_fn(image, seed) for one attack name (a column), or None for no attack."""
    from dnadet_tf.attacks import attack_fn as attacks_fn

    return None if name == NO_ATTACK else attacks_fn((name,))


def robustness(predictor, specs, attacks=DEFAULT_ATTACKS, batch_size=16, seed=0, progress=print, warn=None):
    """Accuracy (and macro-F1) under no attack and each attack, per dataset.

    Args:
      predictor: from `dnadet_tf.load` (run dir, SavedModel or .tflite).
      specs: dataset paths (folder trees, annotation lists, benchmark folders).
      attacks: attack names from `attacks.ATTACK_NAMES`, one column each (ValueError
        naming an unknown one).
      seed: base seed of the perturbations.

    Every dataset is read and checked first: a bad one raises DataError before any inference. A dataset's images
    that are training images of a run's model (`evaluation.training_images`, by their bytes) are counted in its
    row's `training_images` (absent when none is), with one warning line through `warn` (default: stderr), as
    `evaluate` counts them.

    Returns:
      A list of rows {name, data, num_images, skipped_files, accuracy: {column: value},
      macro_f1: {column: value}} whose columns are "none" then `attacks`, values in [0, 1].
    """
    from dnadet_tf.attacks import parse_attacks

    columns = (NO_ATTACK,) + parse_attacks([a for a in attacks if a != NO_ATTACK])
    datasets = [(name, spec, read_usable(spec, "test", predictor.class_names, predictor.preprocess))
                for name, spec in expand_data_specs(specs)]  # every dataset checked before any inference
    learned = training_images(predictor, datasets, warn)
    rows = []
    for name, spec, files in datasets:
        progress(f"robustness {name}: {len(files)} images from {spec}, {len(columns)} settings")
        row = {"name": name, "data": spec, "num_images": len(files), "skipped_files": len(files.skipped),
               "accuracy": {}, "macro_f1": {}}
        if name in learned:
            row[TRAINING_IMAGES] = len(learned[name])
        for column in columns:
            metrics = evaluate_files(predictor, files, batch_size, perturb_fn=attack_fn(column), seed=seed)
            row["accuracy"][column] = metrics["accuracy"]
            row["macro_f1"][column] = metrics["macro_f1"]
            progress(f"  {COLUMN_TITLES.get(column, column)}: accuracy {100 * metrics['accuracy']:.2f} %")
        rows.append(row)
    return rows


def _columns(rows):
    return list(rows[0]["accuracy"]) if rows else [NO_ATTACK]


def _cells(rows):
    columns = _columns(rows)
    header = ["data", "images"] + [COLUMN_TITLES.get(c, c) for c in columns]
    body = [[row["name"], str(row["num_images"])] + [f"{100 * row['accuracy'][c]:.2f}" for c in columns]
            for row in rows]
    return header, body


def format_robustness_table(rows):
    """Plain-text table: one row per dataset, accuracy % per attack column."""
    header, body = _cells(rows)
    return render_table([header] + body)


def markdown_cell(text):
    """`text` as one cell of a Markdown table: `|` escaped (it ended the cell: a data name holding one shifted the
    row's columns) and line breaks made spaces (one ended the row)."""
    return " ".join(str(text).replace("|", "\\|").splitlines())


def robustness_markdown(rows, title="Accuracy (%) under test-time attacks"):
    """The same table as Markdown (each cell through `markdown_cell`)."""
    header, body = _cells(rows)
    lines = [f"### {title}", "", "| " + " | ".join(map(markdown_cell, header)) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(map(markdown_cell, cells)) + " |" for cells in body]
    return "\n".join(lines) + "\n"

"""How many points per class the open-set score needs: class means, K k-means centres, or every training image.

`dnadet-tf calibrate --means class|K|image` measures a distance score to one mean per class, to K k-means
centres of each class's training images, or to every training image. This script reads each run's pooled
features of the zoo's train.txt, val.txt, every cross-test and open_set.txt once, then per setting fits the
calibration as `calibrate` does (`openset.fit_statistics` on the training features, the threshold keeping
95 % of the validation images as known) and gives: the share flagged unknown on every split, the AUROC of the
closed-set test images against the unknown architectures, and the points the calibration stores (per class
times the classes). The settings `class` and `image` give the figures of `benchmarks/open_set_table.py
--means class|image` on the same runs (the same functions; docs/results.md, "Fewer points than images").

Usage: python benchmarks/open_set_points.py --zoo ZOO --runs RUN... [--points 2,4,8,16,32,64]
       [--json FILE]   (runs already in FILE are not measured again)

`--json FILE` writes {"script": "open_set_points", "command", "commit", "machine" (`provenance`: what wrote the
file last), "zoo", "zoo_sha256", "score", "known_rate", "settings", "runs", "summary"}; each run's entry holds its
absolute path, its figures and, when measured by this script since it recorded it, that command's provenance
("measured"). An existing FILE is reused only when this script wrote it (a file without "script" is recognised by
the keys the script wrote before it recorded one) for the same zoo and settings: its runs given again are not
measured again, and its runs not given again stay in it, after the given ones (a rerun with fewer --runs does not
delete finished figures); the table and summary are over every run the file then holds, and a line says which
were kept. Any other existing file is refused in one line and left as it was; so are a run given twice (by real
path), a folder that is not a run dir and a --zoo without train.txt, val.txt, open_set.txt or test.txt.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from content_adaptation import (check_json_path, checked_runs, earlier_document, kept_runs, require_lists,  # noqa: E402
                                runs_parser, say_kept_runs, write_document, zoo_digest)
from dnadet_tf.errors import DnadetError  # noqa: E402
from provenance import provenance  # noqa: E402
from dnadet_tf import openset  # noqa: E402
from dnadet_tf.ablation import mean_std_cell, mean_std_figures  # noqa: E402
from dnadet_tf.predictor import features_and_logits  # noqa: E402
from dnadet_tf.data import read_dataset, read_unknown, remap_to  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.evaluation import EVALUATION_SPLITS, SPLIT_TITLES  # noqa: E402
from dnadet_tf.predictor import KerasPredictor  # noqa: E402

SCORE = openset.DEFAULT_SCORE
DEFAULT_POINTS = "2,4,8,16,32,64"
UNKNOWN = "open_set"
SCRIPT = "open_set_points"


def settings_of(points):
    """The `means` settings measured: "class", each K of the comma list `points` (ints >= 2), "image"."""
    counts = [openset.parse_means(text) for text in points.split(",") if text.strip()]
    if any(not isinstance(count, int) for count in counts):
        raise ValueError(f"--points: expected numbers of centres per class of 2 or more, received {points!r}")
    return ["class"] + sorted(set(counts)) + ["image"]


def run_features(run, zoo):
    """{split: (features (N, D), logits (N, C), labels (N,))} of the run's model on the zoo's train, val, every
    split of EVALUATION_SPLITS it has and its open_set.txt (labels -1), and the number of classes."""
    model = KerasPredictor(run).model
    splits = {}
    for split in ("train", "val") + EVALUATION_SPLITS:
        if split not in ("train", "val") and not os.path.exists(os.path.join(zoo, f"{split}.txt")):
            continue
        files = remap_to(read_dataset(zoo, split), model.class_names)
        splits[split] = (*features_and_logits(model, files.paths), files.labels)
        print(f"  {split}: {len(files.paths)} images", flush=True)
    paths, _ = read_unknown(zoo)
    features, logits = features_and_logits(model, paths)
    splits[UNKNOWN] = (features, logits, np.full(len(paths), -1))
    print(f"  {UNKNOWN}: {len(paths)} images", flush=True)
    return splits, model.num_classes


def setting_figures(splits, num_classes, means):
    """One setting's figures: the share flagged unknown on every split, the AUROC of test against open_set, the
    points stored."""
    (train, _, train_labels), (val, val_logits, val_labels) = splits["train"], splits["val"]
    statistics, _ = openset.fit_statistics(SCORE, train, train_labels, num_classes, val, val_logits, val_labels,
                                           means=means)
    scored = {split: openset.scores(SCORE, features, logits, statistics)
              for split, (features, logits, _) in splits.items() if split not in ("train", "val")}
    figures = {split: float(np.mean(values > statistics.threshold)) for split, values in scored.items()}
    known, unknown = scored["test"], scored[UNKNOWN]
    figures["auroc"] = float(openset.auroc(known, unknown))
    figures["points"] = int(len(statistics.class_means))
    return figures


def format_table(document):
    """Markdown: a row per setting, mean ± std over the runs of the AUROC and the shares flagged, %."""
    summary = document["summary"]
    splits = [split for split in EVALUATION_SPLITS + (UNKNOWN,) if f"{document['settings'][0]}/{split}" in summary]
    titles = [SPLIT_TITLES.get(split, "unknown architectures") + " flagged" for split in splits]
    lines = ["| points per class | points | AUROC | " + " | ".join(titles) + " |",
             "|---" * (len(splits) + 3) + "|"]
    for setting in document["settings"]:
        cells = [mean_std_cell(summary[f"{setting}/{name}"]) for name in ["auroc"] + splits]
        points = int(summary[f"{setting}/points"]["values"][0])
        lines.append(f"| {setting} | {points} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = runs_parser(__doc__.splitlines()[0])
    parser.add_argument("--points", default=DEFAULT_POINTS,
                        help=f"k-means centres per class to measure between the class means and every image "
                             f"(default {DEFAULT_POINTS})")
    parser.add_argument("--json", help="write the figures here (runs already in it are not measured again)")
    args = parser.parse_args(argv)
    try:
        settings = [str(means) for means in settings_of(args.points)]  # JSON keys: "class", "2", ..., "image"
    except ValueError as error:
        parser.error(str(error))
    digest = zoo_digest(parser, args.zoo)
    require_lists(parser, args.zoo, needed=("train", "val", UNKNOWN), some=("test",))
    order = checked_runs(parser, args.runs)
    check_json_path(parser, args.json)
    stamp = {"script": SCRIPT, **provenance(__file__, argv)}
    earlier = earlier_document(parser, args.json, args.zoo, digest, SCRIPT, _legacy_open_set_points)
    if earlier and earlier["settings"] != settings:
        parser.error(f"--json {args.json}: expected figures of this zoo and these settings, received those of "
                     f"settings {earlier['settings']}; give another file.")
    previous = {os.path.realpath(run["run"]): run for run in earlier["runs"]} if earlier else {}
    if earlier:
        say_kept_runs(args.json, previous, order)
    configure_runtime()
    measured = []
    try:
        for given, run in zip(args.runs, order):
            if os.path.realpath(run) in previous:
                measured.append(previous[os.path.realpath(run)])
                continue
            print(f"{given}:", flush=True)
            splits, num_classes = run_features(given, args.zoo)
            measured.append({"run": run,
                             "figures": {setting: setting_figures(splits, num_classes, openset.parse_means(setting))
                                         for setting in settings},
                             "measured": provenance(__file__, argv)})
            if args.json:  # after every run, keeping the earlier file's runs not reached yet
                write_document(args.json, _document(args.zoo, digest, settings, kept_runs(measured, previous), stamp))
    except (DnadetError, OSError, ValueError) as error:
        parser.error(f"{error}")
    document = _document(args.zoo, digest, settings, kept_runs(measured, previous), stamp)
    if args.json:
        write_document(args.json, document)
    print(format_table(document))
    return 0


def _legacy_open_set_points(document):
    """Whether a document without "script" is one this script wrote before it recorded its name (its keys)."""
    return (set(document) == {"zoo", "zoo_sha256", "score", "known_rate", "settings", "runs", "summary"}
            and isinstance(document["runs"], list)
            and all(isinstance(run, dict) and set(run) == {"run", "figures"} for run in document["runs"]))


def _document(zoo, digest, settings, runs, stamp=None):
    """The --json document: `stamp` (the script and its provenance), zoo, digest, settings, each run's figures,
    and mean ± std over the runs."""
    flat = [{f"{setting}/{key}": value for setting, figures in run["figures"].items()
             for key, value in figures.items()} for run in runs]
    summary = {key: mean_std_figures([figures[key] for figures in flat]) for key in (flat[0] if flat else {})}
    return {**(stamp or {}), "zoo": os.path.abspath(zoo), "zoo_sha256": digest, "score": SCORE, "known_rate": openset.KNOWN_RATE,
            "settings": settings, "runs": runs, "summary": summary}


if __name__ == "__main__":
    sys.exit(main())

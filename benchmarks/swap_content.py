"""Content or weights: trained runs on a zoo's cross_dataset split and on the two splits `zoo swap-content` makes.

The zoo's cross_dataset split changes the content (domain B photos) and the generators' weights (every family
retrained on B) at once; `dnadet-tf zoo swap-content` writes cross_content (the training generators run on the
cross_dataset real crops: only the content changes) and cross_weights (the cross_dataset generators run on the
test split's real crops: only the weights change). Scoring the same runs on the three tells which of the two
shifts the attributor fails on. Per run and split: accuracy, real-class recall, the share of fakes called real and the
share the run's open-set threshold flags as unknown (when the run is calibrated); per variant the mean ± std
over its runs (population std, as `ablation.mean_std`).

The splits are written into --split-dir (default: ZOO-swap-content beside the zoo) when that folder holds none
yet. `--json FILE` writes {"zoo", "zoo_sha256", "split", "variants": {label: {"runs": [...], "summary"}}};
when FILE exists (of the same zoo), the figures of runs already in it are kept and only missing runs measured.

Usage: python benchmarks/swap_content.py --zoo ZOO --variant LABEL RUN [RUN ...] [--variant ...]
           [--split-dir DIR] [--json FILE]
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from dnadet_tf.ablation import mean_std_figures, mean_std_cell  # noqa: E402
from dnadet_tf.data import REAL_CLASS, benchmark_digest  # noqa: E402
from dnadet_tf.runs import write_json_atomic  # noqa: E402

SPLITS = ("cross_content", "cross_weights", "cross_dataset")
FIGURES = ("accuracy", "real_recall", "fakes_called_real", "flagged_unknown")
TITLES = {"cross_content": "training generators, other photos", "cross_weights": "retrained generators, training photos",
          "cross_dataset": "retrained generators, other photos"}


def figures_of(metrics, class_names):
    """{figure: fraction} of one evaluation row's metrics (see FIGURES); flagged_unknown None when not measured."""
    confusion = np.asarray(metrics["confusion_matrix"], np.float64)
    real = class_names.index(REAL_CLASS)
    fakes = np.delete(confusion, real, axis=0)
    return {
        "accuracy": float(metrics["accuracy"]),
        "real_recall": float(metrics["per_class_recall"][REAL_CLASS]),
        "fakes_called_real": float(fakes[:, real].sum() / max(1.0, fakes.sum())),
        "flagged_unknown": metrics.get("flagged_unknown"),
        "per_class_recall": metrics["per_class_recall"],
    }


def run_figures(run, lists):
    """{"run", "splits": {split: figures}} of one run dir on the lists {split: path} (in SPLITS order)."""
    import dnadet_tf

    predictor = dnadet_tf.load(run)
    rows = dnadet_tf.evaluate(predictor, [lists[split] for split in SPLITS])
    return {"run": os.path.abspath(run),
            "splits": {split: figures_of(row["metrics"], predictor.class_names) for split, row in zip(SPLITS, rows)}}


def summarize(runs):
    """{split: {figure: {"mean", "std", "values"}}} over the runs' figures."""
    summary = {}
    for split in SPLITS:
        summary[split] = {}
        for figure in FIGURES:
            values = [r["splits"][split][figure] for r in runs]
            summary[split][figure] = mean_std_figures(values)
    return summary


def format_table(document):
    """Markdown: one row per variant and split, mean ± std (%) over its runs."""
    lines = ["| method | split | runs | accuracy | real recall | fakes called real | flagged unknown |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for label, entry in document["variants"].items():
        for split in SPLITS:
            stats = entry["summary"][split]
            lines.append(f"| {label} | {split} ({TITLES[split]}) | {len(entry['runs'])} | "
                         + " | ".join(mean_std_cell(stats[figure]) for figure in FIGURES) + " |")
    return "\n".join(lines)


def measure(zoo, variants, split_dir, previous=None, progress=print):
    """The document for {label: [run dirs]} (see the module docstring); `previous` an earlier one whose runs are kept."""
    from dnadet_tf.zoo.swap_content import RECORD, SWAPPED_SPLITS, write_swapped_splits

    lists = {split: os.path.join(split_dir, f"{split}.txt") for split in SWAPPED_SPLITS}
    if not os.path.isfile(os.path.join(split_dir, RECORD)) or not all(map(os.path.isfile, lists.values())):
        write_swapped_splits(zoo, split_dir, progress=progress)
    lists["cross_dataset"] = os.path.join(zoo, "cross_dataset.txt")
    digest = benchmark_digest(zoo)
    kept = {}
    if previous and previous.get("zoo_sha256") == digest:
        kept = {r["run"]: r for entry in previous["variants"].values() for r in entry["runs"]
                if set(SPLITS) <= set(r["splits"])}
    document = {"zoo": os.path.abspath(zoo), "zoo_sha256": digest, "split": os.path.abspath(split_dir),
                "variants": {}}
    for label, runs in variants.items():
        measured = []
        for run in runs:
            figures = kept.get(os.path.abspath(run))
            if figures is None:
                figures = run_figures(run, lists)
                progress(f"{label} {run}: " + ", ".join(
                    f"{split} {100 * figures['splits'][split]['accuracy']:.1f} %" for split in SPLITS))
            measured.append(figures)
        document["variants"][label] = {"runs": measured, "summary": summarize(measured)}
    return document


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", required=True, help="the zoo the runs were trained on")
    parser.add_argument("--variant", nargs="+", action="append", required=True, metavar=("LABEL", "RUN"),
                        help="a label and its run dirs (repeat for each method)")
    parser.add_argument("--split-dir", help="where the swapped splits are (written when missing); "
                                            "default: ZOO-swap-content beside the zoo")
    parser.add_argument("--json", help="write (and resume from) this JSON file")
    args = parser.parse_args(argv)
    variants = {}
    for entry in args.variant:
        if len(entry) < 2:
            parser.error(f"--variant: expected a label and at least one run dir, received {entry!r}")
        variants[entry[0]] = entry[1:]
    split_dir = args.split_dir or os.path.normpath(args.zoo) + "-swap-content"
    previous = None
    if args.json and os.path.isfile(args.json):
        with open(args.json, encoding="utf-8") as f:
            previous = json.load(f)
    document = measure(args.zoo, variants, split_dir, previous, progress=lambda line: print(line, flush=True))
    print(format_table(document))
    if args.json:
        write_json_atomic(args.json, document)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

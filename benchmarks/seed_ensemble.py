"""Ensembles of runs trained with other seeds: does the mean of their probabilities name the cross-tests better
than one run does?

The step-2 runs of one configuration (`ablate --seeds N` writes them as OUT/VARIANT/seedK) differ by 10-30 points
on a cross-test. If each run's errors were its own, the mean of several runs' probabilities (what a user
would get by training and shipping three seeds) would beat the mean run. For every split of the benchmark
(closed set and cross-tests; accuracy, as a fraction):

- `single`: each run's accuracy, in the order given (its mean ± std is the protocol's figure);
- `combinations`: the accuracy of the mean probabilities of every combination of `--size` runs (default 3, what
  the protocol's 3 seeds would give), in `itertools.combinations` order;
- `all`: the accuracy of the mean probabilities of every run given.

The probabilities are those `predict` answers (the runs' calibrated softmax). Every run must name the same
classes in the same order.

Prints the table; `--json FILE` writes {"script": "seed_ensemble", "command", "commit", "machine"
(`provenance`), "zoo", "zoo_sha256", "runs" (absolute paths), "size", "splits": {split: {"single", "combinations",
"all"}}}. An existing FILE is replaced only when this script wrote it (a file without "script" is recognised by
the keys the script wrote before it recorded one); any other file is refused in one line and left as it was, as
are a run given twice (by real path), a folder that is not a run dir and a --zoo that is not a benchmark folder
or lists none of the scored splits.

Usage: python benchmarks/seed_ensemble.py --zoo ZOO --runs RUN RUN [RUN ...] [--size K] [--json FILE]
"""
import argparse
import itertools
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # content_adaptation.py, provenance.py beside it

import numpy as np  # noqa: E402

from content_adaptation import check_json_path, checked_runs, read_result, require_lists, zoo_digest  # noqa: E402
from dnadet_tf.ablation import mean_std_figures, mean_std_cell  # noqa: E402
from dnadet_tf.data import benchmark_split, read_usable  # noqa: E402
from dnadet_tf.errors import DnadetError  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.evaluation import EVALUATION_SPLITS, SPLIT_TITLES  # noqa: E402
from dnadet_tf.predictor import KerasPredictor, predict_files  # noqa: E402
from dnadet_tf.runs import write_json_atomic  # noqa: E402
from provenance import provenance  # noqa: E402

DEFAULT_SIZE = 3
SCRIPT = "seed_ensemble"


def ensemble_accuracies(probabilities, labels, size):
    """(single, combinations, all) for probabilities (R, N, C) of R runs on N images with true `labels` (N,):
    each run's accuracy, that of the mean probabilities of every `size` of the runs, and that of all R."""
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels)

    def accuracy(mean_probabilities):
        return float(np.mean(np.argmax(mean_probabilities, axis=-1) == labels))

    single = [accuracy(run) for run in probabilities]
    combinations = [accuracy(probabilities[list(members)].mean(axis=0))
                    for members in itertools.combinations(range(len(probabilities)), size)]
    return single, combinations, accuracy(probabilities.mean(axis=0))


def split_figures(zoo, runs, size):
    """{split: {"single", "combinations", "all"}} of the runs on every scored split `zoo` lists."""
    predictors = [KerasPredictor(run) for run in runs]
    class_names = predictors[0].class_names
    for run, predictor in zip(runs, predictors):
        if list(predictor.class_names) != list(class_names):
            raise SystemExit(f"seed_ensemble: --runs {run}: expected the classes of {runs[0]} "
                             f"({', '.join(class_names)}), received {', '.join(predictor.class_names)}.")
    preprocess = predictors[0].preprocess
    figures = {}
    for split in EVALUATION_SPLITS:
        path = benchmark_split(zoo, split)
        if not os.path.exists(path):
            continue
        files = read_usable(path, "test", class_names, preprocess)
        probabilities = [predict_files(predictor, files.paths) for predictor in predictors]
        single, combinations, together = ensemble_accuracies(probabilities, files.labels, size)
        figures[split] = {"single": single, "combinations": combinations, "all": together}
        print(f"{SPLIT_TITLES[split]} ({len(files.paths)} images): runs "
              + " ".join(f"{100 * value:.1f}" for value in single)
              + f"; ensembles of {size} {mean_std_cell(mean_std_figures(combinations))}; all {len(runs)} {100 * together:.1f}",
              flush=True)
    return figures


def format_table(document):
    """The Markdown table (accuracy %) of a --json document."""
    count, size = len(document["runs"]), document["size"]
    combinations = len(next(iter(document["splits"].values()))["combinations"]) if document["splits"] else 0
    lines = [f"accuracy (%): one run (mean ± std over {count}), the mean probabilities of {size} runs (mean ± std "
             f"over all {combinations} combinations, [lowest, highest]), of all {count}", "",
             f"| split | one run | ensembles of {size} | all {count} |", "|---|---:|---:|---:|"]
    for split in EVALUATION_SPLITS:
        if split not in document["splits"]:
            continue
        row = document["splits"][split]
        spread = f"[{100 * min(row['combinations']):.1f}, {100 * max(row['combinations']):.1f}]"
        lines.append(f"| {SPLIT_TITLES[split]} | {mean_std_cell(mean_std_figures(row['single']))} | "
                     f"{mean_std_cell(mean_std_figures(row['combinations']))} {spread} | {100 * row['all']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", required=True, help="the benchmark folder the runs were trained on")
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN",
                        help="step-2 run dirs of one configuration, other seeds")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                        help=f"runs per ensemble (default: {DEFAULT_SIZE})")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if not 2 <= args.size <= len(args.runs):
        parser.error(f"--size: expected 2 to the number of --runs ({len(args.runs)}), received {args.size}")
    digest = zoo_digest(parser, args.zoo)
    require_lists(parser, args.zoo)
    runs = checked_runs(parser, args.runs)
    check_json_path(parser, args.json)
    read_result(parser, args.json, SCRIPT, _legacy_seed_ensemble)  # replaced only when this script wrote it
    configure_runtime()
    try:
        splits = split_figures(args.zoo, runs, args.size)
    except (DnadetError, OSError, ValueError) as error:
        parser.error(f"{error}")
    document = {"script": SCRIPT, **provenance(__file__, argv), "zoo": os.path.abspath(args.zoo),
                "zoo_sha256": digest, "runs": runs, "size": args.size, "splits": splits}
    print(format_table(document))
    if args.json:
        write_json_atomic(args.json, document, indent=1, sort_keys=False)
        print(f"wrote {args.json}")
    return 0


def _legacy_seed_ensemble(document):
    """Whether a document without "script" is one this script wrote before it recorded its name (its keys)."""
    return (set(document) == {"zoo", "zoo_sha256", "runs", "size", "splits"} and isinstance(document["runs"], list)
            and all(isinstance(run, str) for run in document["runs"]))


if __name__ == "__main__":
    sys.exit(main())

"""Adapting to the content (`dnadet-tf adapt`): trained step-2 runs before and after their BatchNorm
statistics are re-estimated on unlabeled images of each split, held out from the images scored.

Every split list of the benchmark (closed set and cross-tests) is cut in two halves by position
(lines 1, 3, 5, ... and 2, 4, 6, ...; the lists are sorted by class, so both halves hold every
class in the same shares). The second half is scored (accuracy, as a fraction):

- `as_trained`: the run as it is;
- `adapted`: after `adaptation.adapt_batchnorm` over the first half, unlabeled, every stage (`adapt --first-stage 1`);
- `adapted_stage3`: the same with only the BatchNorms of stages 3 and 4 re-estimated (`adapt`, its default);

and on the cross-dataset split (the other content) also

- `adapted_20`: over 20 images of the first half drawn with a fixed seed;
- `real_only`: over the first half's real photos alone (a user who has only real photos of the content);
- `blend_0.5`: over the first half, mixed half and half with the run's own statistics (`--blend 0.5`);

and what adapting to the cross-dataset content costs on the training content (the closed set's second
half): `test_after_adapted`, `test_after_adapted_stage3`, `test_after_blend_0.5`.

Prints each run's figures and the mean ± std over the runs (population std, as `ablation.mean_std`);
`--json FILE` writes {"zoo", "zoo_sha256", "runs", "summary"}.

Usage: python benchmarks/content_adaptation.py --zoo ZOO --runs RUN [RUN ...] [--json FILE]
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from dnadet_tf.ablation import mean_std, mean_std_cell  # noqa: E402
from dnadet_tf.adaptation import adapt_batchnorm, batchnorm_layers  # noqa: E402
from dnadet_tf.data import REAL_CLASS, SPLITS, benchmark_digest  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.evaluation import load_labeled  # noqa: E402
from dnadet_tf.pipeline import inference_dataset  # noqa: E402
from dnadet_tf.predictor import KerasPredictor, predict_files  # noqa: E402

SCORED_SPLITS = tuple(split for split in SPLITS if split not in ("train", "val"))
FEW = 20
BATCH_SIZE = 16


def halves(count):
    """(adaptation indices, scored indices) of a list of `count` lines: positions 0, 2, 4, ... and 1, 3, 5, ..."""
    return list(range(0, count, 2)), list(range(1, count, 2))


def drawn(indices, count, seed=0):
    """`count` of `indices` drawn without replacement by a fixed seed, in drawn order."""
    return [int(i) for i in np.random.default_rng(seed).permutation(indices)[:count]]


def accuracy(predictor, files, indices):
    """Accuracy of the predictor on the files at `indices`."""
    truth = np.asarray(files.labels)[indices]
    answers = predict_files(predictor, [files.paths[i] for i in indices]).argmax(-1)
    return float(np.mean(answers == truth))


class AdaptedStatistics:
    """`with AdaptedStatistics(predictor, paths, blend):` the predictor's model adapted to `paths`; its own
    BatchNorm statistics are put back on leaving."""

    def __init__(self, predictor, paths, blend=1.0, first_stage=1):
        self.predictor, self.paths, self.blend, self.first_stage = predictor, paths, blend, first_stage

    def __enter__(self):
        model = self.predictor.model
        self.layers = batchnorm_layers(model)
        self.saved = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in self.layers]
        adapt_batchnorm(model, inference_dataset(self.paths, model.preprocessing, BATCH_SIZE), self.blend,
                        first_stage=self.first_stage)
        return self.predictor

    def __exit__(self, *exc):
        for layer, (mean, variance) in zip(self.layers, self.saved):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
        return False


def run_figures(zoo, run):
    """{"run", "splits": {split: {variant: accuracy}}, "training_content": {figure: accuracy}} of one run."""
    predictor = KerasPredictor(run)
    preprocess = predictor.preprocess
    files = {}
    for split in SCORED_SPLITS:
        path = os.path.join(zoo, f"{split}.txt")
        if os.path.exists(path):
            files[split] = load_labeled(path, predictor.class_names, preprocess.crop_size, preprocess.min_side)
    splits, training_content = {}, {}
    for split, split_files in files.items():
        adapt_on, scored = halves(len(split_files.paths))
        adapt_paths = [split_files.paths[i] for i in adapt_on]
        row = {"as_trained": accuracy(predictor, split_files, scored)}
        with AdaptedStatistics(predictor, adapt_paths):
            row["adapted"] = accuracy(predictor, split_files, scored)
            if split == "cross_dataset" and "test" in files:
                training_content["test_after_adapted"] = accuracy(predictor, files["test"],
                                                                  halves(len(files["test"].paths))[1])
        with AdaptedStatistics(predictor, adapt_paths, first_stage=3):
            row["adapted_stage3"] = accuracy(predictor, split_files, scored)
            if split == "cross_dataset" and "test" in files:
                training_content["test_after_adapted_stage3"] = accuracy(predictor, files["test"],
                                                                         halves(len(files["test"].paths))[1])
        if split == "cross_dataset":
            with AdaptedStatistics(predictor, [split_files.paths[i] for i in drawn(adapt_on, FEW)]):
                row["adapted_20"] = accuracy(predictor, split_files, scored)
            if REAL_CLASS in predictor.class_names:
                real = predictor.class_names.index(REAL_CLASS)
                real_paths = [split_files.paths[i] for i in adapt_on if split_files.labels[i] == real]
                with AdaptedStatistics(predictor, real_paths):
                    row["real_only"] = accuracy(predictor, split_files, scored)
            with AdaptedStatistics(predictor, adapt_paths, blend=0.5):
                row["blend_0.5"] = accuracy(predictor, split_files, scored)
                if "test" in files:
                    training_content["test_after_blend_0.5"] = accuracy(predictor, files["test"],
                                                                        halves(len(files["test"].paths))[1])
        splits[split] = row
        print(f"{run} {split} ({len(scored)} scored, {len(adapt_on)} to adapt on): "
              + ", ".join(f"{key} {100 * value:.1f}" for key, value in row.items()), flush=True)
    if training_content:
        print(f"{run} closed set after adapting to cross-dataset: "
              + ", ".join(f"{key} {100 * value:.1f}" for key, value in training_content.items()), flush=True)
    return {"run": run, "splits": splits, "training_content": training_content}


def across_runs(runs):
    """{"split/variant" | "training_content/figure": {"values", "mean", "std"}} over the runs."""
    flats = [{**{f"{split}/{key}": value for split, row in run["splits"].items() for key, value in row.items()},
              **{f"training_content/{key}": value for key, value in run["training_content"].items()}}
             for run in runs]
    summary = {}
    for key in flats[0]:
        values = [flat.get(key) for flat in flats]
        mean, std = mean_std(values)
        summary[key] = {"values": values, "mean": mean, "std": std}
    return summary


SPLIT_TITLES = {"test": "closed-set", "cross_seed": "cross-seed", "cross_loss": "cross-loss",
                "cross_finetune": "cross-finetune", "cross_dataset": "cross-dataset"}
VARIANT_TITLES = {"as_trained": "as trained", "adapted": "adapted (first half)",
                  "adapted_stage3": "adapted, stages 3-4 (first half)", "adapted_20": "adapted (20 images)",
                  "real_only": "adapted (real photos only)", "blend_0.5": "`--blend 0.5`"}


def format_table(document):
    """The Markdown table (accuracy % on each split's second half, mean ± std over the runs) of a --json document."""
    summary = document["summary"]
    splits = [split for split in SCORED_SPLITS if f"{split}/as_trained" in summary]
    lines = [f"accuracy (%) on each split's second half, mean ± std over {len(document['runs'])} runs", "",
             "| split | " + " | ".join(VARIANT_TITLES.values()) + " |", "|---|" + "---:|" * len(VARIANT_TITLES)]
    for split in splits:
        cells = [mean_std_cell(summary[f"{split}/{key}"]) if f"{split}/{key}" in summary else "-"
                 for key in VARIANT_TITLES]
        lines.append(f"| {SPLIT_TITLES[split]} | " + " | ".join(cells) + " |")
    costs = [(title, f"training_content/{key}") for key, title in
             (("test_after_adapted", "adapted"), ("test_after_adapted_stage3", "stages 3-4"),
              ("test_after_blend_0.5", "`--blend 0.5`"))]
    costs = [(title, key) for title, key in costs if key in summary]
    if costs:
        lines += ["", "closed set (training content) after adapting to cross-dataset: "
                  + ", ".join(f"{title} {mean_std_cell(summary[key])}" for title, key in costs)]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", required=True, help="the benchmark folder the runs were trained on")
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="step-2 run dirs (other seeds)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    configure_runtime()
    runs = [run_figures(args.zoo, run) for run in args.runs]
    document = {"zoo": os.path.abspath(args.zoo), "zoo_sha256": benchmark_digest(args.zoo), "runs": runs,
                "summary": across_runs(runs)}
    print(format_table(document))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

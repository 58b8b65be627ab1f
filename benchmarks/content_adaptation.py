"""Adapting to the content (`dnadet-tf adapt`): trained step-2 runs before and after their BatchNorm
statistics are re-estimated on unlabeled images of each split, held out from the images scored.

Every split list of the benchmark (closed set and cross-tests) is cut in two halves by position
(lines 1, 3, 5, ... and 2, 4, 6, ...; the lists are sorted by class, so both halves hold every
class in the same shares). The second half is scored (accuracy, as a fraction):

- `as_trained`: the run as it is;
- `adapted`: after `adaptation.adapt_model` over the first half, unlabeled, every stage (`adapt --first-stage 1`);
- `adapted_stage3`: the same with only the BatchNorms of stages 3 and 4 re-estimated (`adapt`, its default);

and on the cross-dataset split (the other content) also

- `adapted_20`: over 20 images of the first half drawn with a fixed seed (one draw: `adaptation_images.py`
  measures how much the draw and the number of images matter);
- `real_only`: over the first half's real photos alone (a user who has only real photos of the content);
- `blend_0.5`: over the first half, mixed half and half with the run's own statistics (`--blend 0.5`);

each of them every stage, and with `_stage3` appended stages 3-4 alone (`adapted_20_stage3`, ...); and what
adapting to the cross-dataset content costs on the training content (the closed set's second half):
`test_after_adapted`, `test_after_adapted_stage3`, `test_after_blend_0.5`, `test_after_blend_0.5_stage3`.

Prints each run's figures and the mean ± std over the runs (population std, as `ablation.mean_std`);
`--json FILE` writes {"script": "content_adaptation", "command", "commit", "machine" (`provenance`: what wrote the
file last), "zoo", "zoo_sha256", "runs", "summary"}; each run's entry holds its absolute path and, when this script
measured figures of it, the provenance of that command ("measured"). When FILE exists and this script wrote it
(a file without "script" is recognised by the keys the script wrote before it recorded one) for the same zoo,
its figures of the given runs are kept and only the missing ones measured, so an interrupted or extended
measurement goes on where it stopped; its runs not given again are kept too (a rerun with fewer --runs does not
delete finished figures), after the given ones, and the table and summary are over every run the file then holds
(a line says which were kept). Delete FILE to measure everything anew. Any other existing file is refused in one
line and left as it was; so are a run given twice (by real path), a folder that is not a run dir and a --zoo that
is not a benchmark folder.

Usage: python benchmarks/content_adaptation.py --zoo ZOO --runs RUN [RUN ...] [--json FILE]
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # provenance.py beside this file

import numpy as np  # noqa: E402

from dnadet_tf.ablation import mean_std_figures, mean_std_cell  # noqa: E402
from dnadet_tf.adaptation import adapt_model  # noqa: E402
from dnadet_tf.errors import DnadetError  # noqa: E402
from dnadet_tf.model import batchnorm_layers  # noqa: E402
from dnadet_tf.data import REAL_CLASS, benchmark_digest, benchmark_split, read_usable  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.evaluation import EVALUATION_SPLITS, SPLIT_TITLES  # noqa: E402
from dnadet_tf.predictor import KerasPredictor, predict_files  # noqa: E402
from dnadet_tf.runs import RunDir, describe_path, write_json_atomic  # noqa: E402
from arguments import refuse_given_twice  # noqa: E402
from provenance import provenance, written_by  # noqa: E402

SCRIPT = "content_adaptation"

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
    """`with AdaptedStatistics(predictor, paths, blend):` the predictor's model adapted to `paths` as `adapt` adapts
    (`adapt_model`; its open-set calibration kept: the figures are accuracies); its own BatchNorm statistics are put
    back on leaving."""

    def __init__(self, predictor, paths, blend=1.0, first_stage=1):
        self.predictor, self.paths, self.blend, self.first_stage = predictor, paths, blend, first_stage

    def __enter__(self):
        model = self.predictor.model
        self.layers = batchnorm_layers(model)
        self.saved = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in self.layers]
        adapt_model(model, self.paths, self.blend, self.first_stage, BATCH_SIZE)
        return self.predictor

    def __exit__(self, *exc):
        for layer, (mean, variance) in zip(self.layers, self.saved):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
        return False


# variant: (images adapted to, blend, first stage, the one split it is measured on or None for every split).
# Images: "half" the split's first half, "few" FEW of it drawn with a fixed seed, "real" its real photos alone.
VARIANTS = {
    "adapted": ("half", 1.0, 1, None),
    "adapted_stage3": ("half", 1.0, 3, None),
    "adapted_20": ("few", 1.0, 1, "cross_dataset"),
    "adapted_20_stage3": ("few", 1.0, 3, "cross_dataset"),
    "real_only": ("real", 1.0, 1, "cross_dataset"),
    "real_only_stage3": ("real", 1.0, 3, "cross_dataset"),
    "blend_0.5": ("half", 0.5, 1, "cross_dataset"),
    "blend_0.5_stage3": ("half", 0.5, 3, "cross_dataset"),
}
# Variants whose cost on the training content is measured: the closed set's second half after adapting to
# cross-dataset, as "test_after_<variant>".
COSTED = ("adapted", "adapted_stage3", "blend_0.5", "blend_0.5_stage3")


def adaptation_paths(images, split_files, adapt_on, class_names):
    """The paths a variant adapts to (see VARIANTS), or None when the split has none of them."""
    if images == "few":
        adapt_on = drawn(adapt_on, FEW)
    elif images == "real":
        if REAL_CLASS not in class_names:
            return None
        real = class_names.index(REAL_CLASS)
        adapt_on = [i for i in adapt_on if split_files.labels[i] == real]
    return [split_files.paths[i] for i in adapt_on] or None


def run_figures(zoo, run, previous=None):
    """{"run", "splits": {split: {variant: accuracy}}, "training_content": {figure: accuracy}} of one run.

    `previous`: this run's figures from an earlier document; the figures it holds are kept, not measured again."""
    previous = previous or {}
    splits = {split: dict(row) for split, row in previous.get("splits", {}).items()}
    training_content = dict(previous.get("training_content", {}))
    run_dir = RunDir(run)
    class_names, preprocess = run_dir.class_names, run_dir.config.preprocess
    loaded = []

    def predictor():
        """The run's model, loaded when a figure is first missing (never when every figure is kept)."""
        if not loaded:
            loaded.append(KerasPredictor(run))
        return loaded[0]

    files = {}
    for split in EVALUATION_SPLITS:
        path = benchmark_split(zoo, split)
        if os.path.exists(path):
            files[split] = read_usable(path, "test", class_names, preprocess)
    for split, split_files in files.items():
        adapt_on, scored = halves(len(split_files.paths))
        row = splits.setdefault(split, {})
        if "as_trained" not in row:
            row["as_trained"] = accuracy(predictor(), split_files, scored)
        for variant, (images, blend, first_stage, only_split) in VARIANTS.items():
            if only_split not in (None, split):
                continue
            cost = (f"test_after_{variant}" if variant in COSTED and split == "cross_dataset" and "test" in files
                    else None)
            if variant in row and (cost is None or cost in training_content):
                continue
            paths = adaptation_paths(images, split_files, adapt_on, class_names)
            if paths is None:
                continue
            with AdaptedStatistics(predictor(), paths, blend, first_stage) as adapted:
                row[variant] = accuracy(adapted, split_files, scored)
                if cost:
                    training_content[cost] = accuracy(adapted, files["test"], halves(len(files["test"].paths))[1])
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
    for key in dict.fromkeys(key for flat in flats for key in flat):
        values = [flat.get(key) for flat in flats]
        summary[key] = mean_std_figures(values)
    return summary


VARIANT_TITLES = {"as_trained": "as trained", "adapted_stage3": "adapted, stages 3-4 (first half)",
                  "adapted_20_stage3": "stages 3-4, 20 images", "real_only_stage3": "stages 3-4, real photos only",
                  "blend_0.5_stage3": "stages 3-4, `--blend 0.5`", "adapted": "adapted, all stages (first half)",
                  "adapted_20": "all stages, 20 images", "real_only": "all stages, real photos only",
                  "blend_0.5": "all stages, `--blend 0.5`"}
COST_TITLES = {"test_after_adapted_stage3": "stages 3-4", "test_after_blend_0.5_stage3": "stages 3-4 `--blend 0.5`",
               "test_after_adapted": "all stages", "test_after_blend_0.5": "all stages `--blend 0.5`"}


def format_table(document):
    """The Markdown table (accuracy % on each split's second half, mean ± std over the runs) of a --json document."""
    summary = document["summary"]
    splits = [split for split in EVALUATION_SPLITS if f"{split}/as_trained" in summary]
    lines = [f"accuracy (%) on each split's second half, mean ± std over {len(document['runs'])} runs", "",
             "| split | " + " | ".join(VARIANT_TITLES.values()) + " |", "|---|" + "---:|" * len(VARIANT_TITLES)]
    for split in splits:
        cells = [mean_std_cell(summary[f"{split}/{key}"]) if f"{split}/{key}" in summary else "-"
                 for key in VARIANT_TITLES]
        lines.append(f"| {SPLIT_TITLES[split]} | " + " | ".join(cells) + " |")
    costs = [(title, f"training_content/{key}") for key, title in COST_TITLES.items()
             if f"training_content/{key}" in summary]
    if costs:
        lines += ["", "closed set (training content) after adapting to cross-dataset: "
                  + ", ".join(f"{title} {mean_std_cell(summary[key])}" for title, key in costs)]
    return "\n".join(lines)


def runs_parser(description):
    """The argument parser of a benchmark over step-2 runs of one zoo: --zoo and --runs; the script adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--zoo", required=True, help="the benchmark folder the runs were trained on")
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="step-2 run dirs (other seeds)")
    return parser


def main(argv=None):
    parser = runs_parser(__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures here (an earlier file of this script: its figures kept)")
    args = parser.parse_args(argv)
    digest = zoo_digest(parser, args.zoo)
    require_lists(parser, args.zoo)
    given = checked_runs(parser, args.runs)
    check_json_path(parser, args.json)
    stamp = {"script": SCRIPT, **provenance(__file__, argv)}
    previous = {}
    earlier = earlier_document(parser, args.json, args.zoo, digest, SCRIPT, _legacy_content_adaptation)
    if earlier:
        previous = {os.path.realpath(run["run"]): run for run in earlier["runs"]}
        kept = sum(len(row) for run in given for row in previous.get(os.path.realpath(run), {}).get("splits", {}).values())
        print(f"--json {args.json} exists: keeping its {kept} figures of these runs, measuring the missing ones",
              flush=True)
        say_kept_runs(args.json, previous, given)
    configure_runtime()
    runs = []
    try:
        for run in given:
            before = previous.get(os.path.realpath(run))
            figures = run_figures(args.zoo, run, before)
            if before is None or _figures_of(figures) != _figures_of(before):
                figures["measured"] = provenance(__file__, argv)
            elif "measured" in before:
                figures["measured"] = before["measured"]
            runs.append(figures)
            if args.json:  # after every run, so that an interruption loses one run's work at most
                write_document(args.json, document_of(args.zoo, digest, kept_runs(runs, previous), stamp))
    except (DnadetError, OSError, ValueError) as error:
        parser.error(f"{error}")
    document = document_of(args.zoo, digest, kept_runs(runs, previous), stamp)
    print(format_table(document))
    if args.json:
        print(f"wrote {args.json}")
    return 0


def _figures_of(run):
    """A run entry's figures alone (what `run_figures` measures)."""
    return {"splits": run.get("splits", {}), "training_content": run.get("training_content", {})}


def _legacy_content_adaptation(document):
    """Whether a document without "script" is one this script wrote before it recorded its name: exactly the keys
    zoo, zoo_sha256, runs and summary, each run with run, splits and training_content (feature_clusters.py
    writes the same top keys with other run keys; labeled/transplant adaptation other keys)."""
    return (set(document) == {"zoo", "zoo_sha256", "runs", "summary"} and isinstance(document["runs"], list)
            and all(isinstance(run, dict) and set(run) == {"run", "splits", "training_content"}
                    for run in document["runs"]))


def read_result(parser, path, script, legacy):
    """The earlier result at --json `path` (None when there is none); one parser error line, the file kept, when
    it cannot be read or is not a result `script` wrote (`written_by`)."""
    if not path or not os.path.lexists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        parser.error(f"--json {path}: expected a result file of {script}.py (or a new file), received one that cannot "
                     f"be read as JSON ({str(error).splitlines()[0]}); give another file.")
    if not written_by(document, script, legacy):
        parser.error(f"--json {path}: expected a result file of {script}.py (or a new file), received another file; "
                     f"it is left as it was: give another file.")
    return document


def check_json_path(parser, path):
    """One parser error line when --json `path` cannot be written: a folder, or in a folder that does not exist."""
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder):
        parser.error(f"--json {path}: expected a file to write, received "
                     + (describe_path(path) if os.path.isdir(path) else f"a path in {folder}: no such folder"))


def require_lists(parser, zoo, needed=(), some=EVALUATION_SPLITS):
    """One parser error line naming --zoo when it lacks a list of `needed` or holds none of `some` (split names)."""
    missing = [f"{split}.txt" for split in needed if not os.path.isfile(benchmark_split(zoo, split))]
    if some and not any(os.path.isfile(benchmark_split(zoo, split)) for split in some):
        missing.append(" or ".join(f"{split}.txt" for split in some))
    if missing:
        parser.error(f"--zoo {zoo}: expected a benchmark folder with {', '.join(missing)}, received one without.")


def zoo_digest(parser, zoo):
    """`benchmark_digest(zoo)`, or one parser error line naming --zoo when it is not a benchmark folder."""
    try:
        return benchmark_digest(zoo)
    except (DnadetError, OSError) as error:
        parser.error(f"--zoo {zoo}: {error}")


def checked_runs(parser, runs):
    """The --runs as absolute paths, checked before any work: one parser error line for a run given twice (by
    real path) or a folder that is not a run dir with best.keras."""
    refuse_given_twice(parser, runs, lambda run, earlier, real: (
        f"--runs {run}: the same run as {earlier}, given twice; each run counts once."))
    for run in runs:
        run_dir = RunDir(run)
        if not run_dir.holds_run or not os.path.isfile(run_dir.best_model_path):
            parser.error(f"--runs {run}: expected a run dir written by 'dnadet-tf fit' with best.keras, received "
                         f"{describe_path(run)}.")
    return [os.path.abspath(run) for run in runs]


def kept_runs(measured, previous):
    """The runs measured (or kept) now, then every other run the earlier document holds (`previous`, {real path:
    run}), in its order: a rerun with fewer --runs keeps the figures it does not touch."""
    done = {os.path.realpath(run["run"]) for run in measured}
    return measured + [run for real, run in previous.items() if real not in done]


def say_kept_runs(path, previous, given):
    """The line naming the earlier file's runs not given again, which stay in it and in the table."""
    asked = {os.path.realpath(run) for run in given}
    others = [run["run"] for real, run in previous.items() if real not in asked]
    if others:
        print(f"--json {path}: its figures of {len(others)} other run(s) ({', '.join(others)}) stay in it; the table "
              f"and summary are over all {len(others) + len(given)} runs", flush=True)


def earlier_document(parser, path, zoo, digest, script=None, legacy=None):
    """The --json document already at `path` (None when there is none); one parser error line when it holds
    figures of another zoo than `zoo` (SHA-256 `digest`) or, with `script`, is not a result that script wrote
    (`read_result`; `legacy` recognises its files written before it recorded its name)."""
    if not path or not os.path.exists(path):
        return None
    if script is not None:
        earlier = read_result(parser, path, script, legacy)
    else:
        with open(path, encoding="utf-8") as f:
            earlier = json.load(f)
    if earlier.get("zoo_sha256") != digest:
        parser.error(f"--json {path} holds figures of zoo {str(earlier.get('zoo_sha256'))[:16]}, not of "
                     f"--zoo {zoo} ({digest[:16]}); give another file, or delete it to measure anew")
    return earlier


def runs_so_far(measured, previous, order):
    """The figures of the runs measured so far, then those an earlier document holds of the runs in `order`
    not measured yet: what a --json file written mid-way keeps."""
    done = {figures["run"] for figures in measured}
    return measured + [previous[run] for run in order if run not in done and run in previous]


def document_of(zoo, digest, runs, stamp=None):
    """The --json document: `stamp` (the script and its provenance), the zoo, its digest, each run's figures and
    their summary over the runs."""
    return {**(stamp or {}), "zoo": os.path.abspath(zoo), "zoo_sha256": digest, "runs": runs,
            "summary": across_runs(runs)}


def write_document(path, document):
    """Writes a --json document to `path`."""
    write_json_atomic(path, document, indent=1, sort_keys=False)


if __name__ == "__main__":
    sys.exit(main())

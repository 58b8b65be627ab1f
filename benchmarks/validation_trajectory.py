"""How the cross-tests move from one validated model of a run to the next, and what averaging gives.

Each RUN is a run dir trained with `--keep-validated` (as `dnadet-tf ablate --compare-select`
trains them), so RUN/validated/ holds the model of every validation. This scores every one of
them on every split of the benchmark ZOO, and the mean of the last K of them for each K of
`--average` (the model rule `average` keeps; `selection.average_weights`). Evaluations are
cached next to the run (RUN/evaluation/step-NNNNNN.json, average-*.json), as `ablate` caches them.

Prints, per run, each model's cross-test accuracies, then per model (validation step or
average) the mean ± population std over the runs; `--json OUT` writes every figure, the zoo's
digest (`zoo_sha256`) and the command, commit and machine; `render_results.py` renders it. A cached
evaluation answers only the zoo it was measured on (its digest): another zoo's is measured again.
ZOO needs every evaluation split (test.txt and the four cross-tests' lists); a missing one is refused
before any work, as are a run given twice (by real path: it would count twice in every mean ± std) and an
`--average` count above a run's validated models (the mean of all of them is no average of the last K).

Usage: python benchmarks/validation_trajectory.py RUN [RUN ...] --zoo ZOO [--average 3 4 5] [--json OUT]
"""
import argparse
import os
import sys

import numpy as np

from dnadet_tf import runs
from dnadet_tf.ablation import _split_figures, evaluate_validated, mean_std_cell, mean_std_figures
from dnadet_tf.data import benchmark_digest, benchmark_split
from dnadet_tf.errors import DnadetError
from dnadet_tf.evaluation import EVALUATION_SPLITS, SPLIT_TITLES
from dnadet_tf.selection import averaged_steps

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # provenance.py beside this script, also when it is loaded by path (render_results, tests)
    sys.path.insert(0, HERE)
from arguments import refuse_given_twice  # noqa: E402
from provenance import provenance  # noqa: E402

SPLITS = tuple(SPLIT_TITLES[split] for split in EVALUATION_SPLITS)
CROSS = SPLITS[1:]


def run_trajectory(run_dir, zoo, averages, output, zoo_sha256=None):
    """{"run_dir", "models": {name: {"steps": [...], "accuracy": {split: a}}}} for one run; `zoo_sha256`: the zoo's
    digest (computed when not given), which the cached evaluations must have been measured on. A count of
    `averages` above the run's validated models raises ValueError (`too_few_validated`) before any scoring."""
    zoo_sha256 = zoo_sha256 or benchmark_digest(zoo)
    steps = sorted(record["step"] for record in runs.RunDir(run_dir).validation_records())
    too_many = [count for count in averages if count > len(steps)]
    if too_many:  # before any model is scored
        raise ValueError(too_few_validated(run_dir, too_many[0], len(steps)))
    models = {}
    for step in steps:
        rows = evaluate_validated(run_dir, zoo, [step], output=output, zoo_sha256=zoo_sha256)
        models[f"step {step}"] = {"steps": [step], "accuracy": _accuracies(rows)}
    for count in averages:
        members = averaged_steps([{"step": s} for s in steps], count)
        rows = evaluate_validated(run_dir, zoo, members, average=True, output=output, zoo_sha256=zoo_sha256)
        models[f"average of last {count}"] = {"steps": members, "accuracy": _accuracies(rows)}
    return {"run_dir": run_dir, "models": models}


def too_few_validated(run_dir, count, validated):
    """The line refusing `--average count` for a run with fewer validated models: `averaged_steps` would take all
    `validated` of them, and the table and JSON would name that mean 'average of last {count}'."""
    models = "validated model" if validated == 1 else "validated models"
    return (f"--average {count}: {run_dir} has {validated} {models}, fewer than {count} (its 'average of "
            f"last {count}' would average {validated}); give counts of at most {validated} for it.")


def _accuracies(rows):
    return {split: figures["accuracy"] for split, figures in _split_figures(rows).items()}


def summarize(trajectories):
    """{model name: {split: {"mean", "std", "values"}, "cross_mean": m}} over the runs that have the model."""
    names = []
    for trajectory in trajectories:
        names += [name for name in trajectory["models"] if name not in names]
    summary = {}
    for name in names:
        values = {split: [t["models"][name]["accuracy"][split] for t in trajectories if name in t["models"]]
                  for split in SPLITS}
        summary[name] = {split: mean_std_figures(v) for split, v in values.items()}
        summary[name]["cross_mean"] = float(np.mean([summary[name][split]["mean"] for split in CROSS]))
    return summary


def _model_order(name):
    """Validation steps in step order, then the averages by how many models they average."""
    return (name.startswith("average"), int(name.split()[-1]))


def format_tables(document):
    """Markdown: each run's cross-tests per model, then mean ± std per model over the runs (accuracy, %)."""
    names = sorted(document["summary"], key=_model_order)  # JSON files keep their keys sorted as text
    short = lambda name: name.replace("average of last ", "avg ")  # noqa: E731
    lines = ["cross-seed / cross-loss / cross-finetune / cross-dataset (%) of each model of each run", "",
             "| run | " + " | ".join(short(n) for n in names) + " |", "|---|" + "---:|" * len(names)]
    for trajectory in document["runs"]:
        cells = ["/".join(f"{100 * m['accuracy'][s]:.0f}" for s in CROSS) if m else "-"
                 for m in (trajectory["models"].get(n) for n in names)]
        lines.append(f"| {trajectory['label']} | " + " | ".join(cells) + " |")
    lines += ["", f"accuracy (%), mean ± std over {len(document['runs'])} runs", "",
              "| model | " + " | ".join(SPLITS) + " | mean of the cross-tests |", "|---|" + "---:|" * (len(SPLITS) + 1)]
    for name in names:
        figures = document["summary"][name]
        lines.append(f"| {name} | " + " | ".join(mean_std_cell(figures[s]) for s in SPLITS)
                     + f" | {100 * figures['cross_mean']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run dirs trained with --keep-validated")
    parser.add_argument("--zoo", required=True, help="the benchmark the runs were trained on")
    parser.add_argument("--average", type=int, nargs="*", default=[3, 4, 5],
                        help="also score the mean of the last K validated models, for each K (at most each run's count)")
    parser.add_argument("--label", nargs="*", help="a name per run (default: its last three path parts)")
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args(argv)
    labels = args.label or ["/".join(os.path.normpath(r).split(os.sep)[-3:]) for r in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"--label: expected one name per run ({len(args.runs)}), received {len(labels)}.")
    bad_counts = [count for count in args.average if count < 1]
    if bad_counts:
        parser.error(f"--average: expected counts of 1 or more validated models, received {bad_counts[0]}.")
    if not os.path.isdir(args.zoo):
        parser.error(f"--zoo: expected a benchmark folder, found none at {args.zoo}.")
    missing = [os.path.basename(benchmark_split(args.zoo, split)) for split in ("classes",) + EVALUATION_SPLITS
               if not os.path.isfile(benchmark_split(args.zoo, split))]
    if missing:
        parser.error(f"--zoo {args.zoo}: expected a benchmark with classes.txt and every evaluation split "
                     f"({', '.join(split + '.txt' for split in EVALUATION_SPLITS)}), it lacks {', '.join(missing)}.")
    refuse_given_twice(parser, args.runs, lambda run, earlier, real: (
        f"{run}: the same run as {earlier} (real path {real}), given twice; give each run once."))
    for run_dir in args.runs:
        if not os.path.isdir(os.path.join(run_dir, runs.VALIDATED)):
            parser.error(f"{run_dir}: expected a run trained with --keep-validated (RUN/validated/), found none.")
        try:
            validated = runs.RunDir(run_dir).validation_records()
        except (DnadetError, OSError, ValueError) as error:
            parser.error(f"{run_dir}: {error}")
        if not validated:
            parser.error(f"{run_dir}: expected a run with validated models (RUN/validated/), found none recorded.")
        too_many = [count for count in args.average if count > len(validated)]
        if too_many:
            parser.error(too_few_validated(run_dir, too_many[0], len(validated)))
    try:
        zoo_sha256 = benchmark_digest(args.zoo)
        trajectories = []
        for label, run_dir in zip(labels, args.runs):
            print(f"scoring the validated models of {run_dir} ...", file=sys.stderr, flush=True)
            trajectories.append(dict(run_trajectory(run_dir, args.zoo, args.average, sys.stderr, zoo_sha256),
                                     label=label))
    except (DnadetError, OSError, ValueError) as error:
        parser.error(str(error))
    document = {"zoo": os.path.abspath(args.zoo), "zoo_sha256": zoo_sha256, "figure": "accuracy",
                "runs": trajectories, "summary": summarize(trajectories), **provenance(__file__, argv)}
    print(format_tables(document))
    if args.json:
        runs.write_json_atomic(args.json, document)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

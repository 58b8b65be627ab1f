"""How many unlabeled images `dnadet-tf adapt` needs: trained step-2 runs adapted to K images of the other content.

The protocol of `content_adaptation.py`: the cross-dataset split is cut in two halves by position; K images
are drawn from the first half (`--draws` draws per K, each with its own fixed seed), the BatchNorm statistics
of encoder stages 3-4 (adapt's default) are re-estimated on them, unlabeled, and the second half is scored
(accuracy, as a fraction); the run's own statistics are put back after each draw. Two figures bracket the
curve: the run as trained (no image) and adapted to the whole first half. `--blend B` mixes the images'
statistics with the run's own as `adapt --blend B` does (1, the default: the images' alone; 0: the run as
trained).

A run's figure for K is the mean over its draws (each draw is kept); the summary gives, per K, the mean ±
std over the runs of those figures (population std, as `ablation.mean_std`) and the lowest and the highest
single draw of any run: what a user who collects K images may get.

`--json FILE` writes {"zoo", "zoo_sha256", "draws", "blend", "runs", "summary"}; when FILE exists (same zoo,
draws and blend), the figures it holds for the given runs are kept and only the missing ones measured.

Usage: python benchmarks/adaptation_images.py --zoo ZOO --runs RUN [RUN ...] [--counts 1,2,5,10,20,50]
    [--draws 5] [--blend 1] [--json FILE]
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from content_adaptation import (AdaptedStatistics, accuracy, drawn, halves, runs_parser, runs_so_far,  # noqa: E402
                                 write_document)

from dnadet_tf.ablation import mean_std_cell, mean_std_figures  # noqa: E402
from dnadet_tf.config import ADAPT_FIRST_STAGE, ENCODER_STAGES  # noqa: E402
from dnadet_tf.data import benchmark_digest, benchmark_split, read_annotation_list, read_usable  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.predictor import KerasPredictor  # noqa: E402
from dnadet_tf.runs import RunDir  # noqa: E402

SPLIT = "cross_dataset"
DEFAULT_COUNTS = (1, 2, 5, 10, 20, 50)


def draw_seed(count, draw):
    """The seed of draw `draw` of `count` images: fixed, and different for every (count, draw)."""
    return 1000 * count + draw


def run_figures(zoo, run, counts, draws, previous=None, blend=1.0):
    """{"run", "as_trained", "whole_half", "counts": {str(K): [accuracy of each draw]}} of one run.

    `previous`: this run's figures from an earlier document; those it holds are kept, not measured again."""
    figures = {"run": run, **{key: value for key, value in (previous or {}).items() if key != "run"}}
    figures["counts"] = dict(figures.get("counts", {}))
    missing = [k for k in counts if len(figures["counts"].get(str(k), [])) != draws]
    if not missing and "as_trained" in figures and "whole_half" in figures:
        return figures
    run_dir = RunDir(run)
    preprocess = run_dir.config.preprocess
    files = read_usable(benchmark_split(zoo, SPLIT), "test", run_dir.class_names, preprocess)
    adapt_on, scored = halves(len(files.paths))
    predictor = KerasPredictor(run)
    if "as_trained" not in figures:
        figures["as_trained"] = accuracy(predictor, files, scored)
    if "whole_half" not in figures:
        with AdaptedStatistics(predictor, [files.paths[i] for i in adapt_on], blend, ADAPT_FIRST_STAGE) as adapted:
            figures["whole_half"] = accuracy(adapted, files, scored)
    for count in missing:
        if count > len(adapt_on):
            raise ValueError(f"--counts: expected counts up to the {len(adapt_on)} images of the first half of "
                             f"{SPLIT}, received {count}")
        results = []
        for draw in range(draws):
            paths = [files.paths[i] for i in drawn(adapt_on, count, seed=draw_seed(count, draw))]
            with AdaptedStatistics(predictor, paths, blend, ADAPT_FIRST_STAGE) as adapted:
                results.append(accuracy(adapted, files, scored))
        figures["counts"][str(count)] = results
        print(f"{run}: {count} image(s), {draws} draws: " + " / ".join(f"{100 * r:.1f}" for r in results), flush=True)
    print(f"{run}: as trained {100 * figures['as_trained']:.1f}, adapted to the whole first half "
          f"({len(adapt_on)} images) {100 * figures['whole_half']:.1f}", flush=True)
    return figures


def across_runs(runs):
    """{"as_trained", "whole_half", str(K): {"mean", "std", "values", "lowest", "highest"}} over the runs."""
    summary = {key: mean_std_figures([run[key] for run in runs]) for key in ("as_trained", "whole_half")}
    counts = sorted({k for run in runs for k in run["counts"]}, key=int)
    for count in counts:
        per_run = [run["counts"][count] for run in runs if count in run["counts"]]
        every_draw = [value for draws in per_run for value in draws]
        summary[count] = {**mean_std_figures([sum(draws) / len(draws) for draws in per_run]),
                          "lowest": min(every_draw), "highest": max(every_draw)}
    return summary


def format_table(document):
    """The Markdown table: accuracy % on the second half of cross-dataset per number of images adapted to."""
    summary, draws = document["summary"], document["draws"]
    blend = document.get("blend", 1.0)
    how = f"(stages {ADAPT_FIRST_STAGE}-{ENCODER_STAGES}" + (f", --blend {blend:g})" if blend != 1.0 else ")")
    lines = [f"accuracy (%) on the second half of cross-dataset after `adapt` {how} to K images of its first "
             f"half, mean ± std over {len(document['runs'])} runs of each run's mean over {draws} draws; lowest and "
             f"highest single draw", "", "| images adapted to | accuracy | lowest draw | highest draw |",
             "|---|---:|---:|---:|", f"| none (as trained) | {mean_std_cell(summary['as_trained'])} | | |"]
    for count in sorted((key for key in summary if key.isdigit()), key=int):
        figures = summary[count]
        lines.append(f"| {count} | {mean_std_cell(figures)} | {100 * figures['lowest']:.1f} | "
                     f"{100 * figures['highest']:.1f} |")
    lines.append(f"| the whole first half | {mean_std_cell(summary['whole_half'])} | | |")
    return "\n".join(lines)


def counts_flag(text):
    """`--counts 1,2,5`: positive integers, ascending."""
    try:
        counts = sorted({int(part) for part in text.split(",")})
    except ValueError:
        counts = []
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"expected a comma list of image counts of 1 or more such as 1,2,5,10,20, "
                                         f"received {text!r}")
    return counts


def main(argv=None):
    parser = runs_parser(__doc__.splitlines()[0])
    parser.add_argument("--counts", type=counts_flag, default=list(DEFAULT_COUNTS),
                        help="numbers of images to adapt to (default: 1,2,5,10,20,50)")
    parser.add_argument("--draws", type=int, default=5, help="draws of images per count and run (default: 5)")
    parser.add_argument("--blend", type=float, default=1.0,
                        help="share of the images' statistics, as adapt --blend (default: 1, theirs alone)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if args.draws < 1:
        parser.error(f"--draws: expected 1 or more, received {args.draws}")
    if not 0.0 <= args.blend <= 1.0:
        parser.error(f"--blend: expected a number from 0 to 1, received {args.blend:g}")
    digest = benchmark_digest(args.zoo)
    previous = {}
    if args.json and os.path.exists(args.json):
        with open(args.json, encoding="utf-8") as f:
            earlier = json.load(f)
        settings = (earlier.get("zoo_sha256"), earlier.get("draws"), earlier.get("blend", 1.0))
        if settings != (digest, args.draws, args.blend):
            parser.error(f"--json {args.json} holds figures of zoo {str(settings[0])[:16]} with {settings[1]} draws "
                         f"and blend {settings[2]:g}, not of --zoo {args.zoo} ({digest[:16]}) with --draws "
                         f"{args.draws} and --blend {args.blend:g}; give another file, or delete it to measure anew")
        previous = {run["run"]: run for run in earlier["runs"]}
        print(f"--json {args.json} exists: keeping its figures of these runs, measuring the missing ones", flush=True)
    listed = read_annotation_list(benchmark_split(args.zoo, SPLIT)).paths
    first_half = len(halves(len(listed))[0])  # an upper bound: unreadable or too small files leave it smaller
    if args.counts[-1] > first_half:
        parser.error(f"--counts: expected counts up to the {first_half} images of the first half of {SPLIT} in "
                     f"{args.zoo}, received {args.counts[-1]}")
    configure_runtime()
    runs = []
    for run in args.runs:
        runs.append(run_figures(args.zoo, run, args.counts, args.draws, previous.get(run), args.blend))
        if args.json:  # after every run, so that an interruption loses one run's work at most
            write_document(args.json, document_of(args.zoo, digest, args.draws, args.blend,
                                                  runs_so_far(runs, previous, args.runs)))
    print(format_table(document_of(args.zoo, digest, args.draws, args.blend, runs)))
    if args.json:
        print(f"wrote {args.json}")
    return 0


def document_of(zoo, digest, draws, blend, runs):
    """The --json document: the zoo, its digest, the draws per count, the blend, each run's figures and their
    summary."""
    return {"zoo": os.path.abspath(zoo), "zoo_sha256": digest, "draws": draws, "blend": blend, "runs": runs,
            "summary": across_runs(runs)}


if __name__ == "__main__":
    sys.exit(main())

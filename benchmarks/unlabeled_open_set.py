"""The open set after `dnadet-tf adapt RUN --images IMAGES` (unlabeled): the run's own calibration, fitted on its
training content, against one refitted on the images adapted to, each labeled by the adapted run's own answer.

The cross-dataset split of ZOO (the other content) is cut in halves as `content_adaptation.py` cuts it: the run's
statistics are re-estimated on the first half, unlabeled, as `adapt --images` does (stages 3-4, blend 1), and the
second half is scored. Calibrations of the adapted run, each a threshold that keeps the run's known rate (95 %):

- `as_trained_*`: the run's own (what the adapted run would carry if `adapt` kept it; none for a run without);
- `answered_*`: `calibrate.answered_calibration` on the first half: every image labeled by the adapted run's
  answer, the class statistics of those labels, each image scored with the statistics of the others (what
  `adapt --images` stores);
- `labeled_*`: the same with the images' true labels (`calibrate.labeled_calibration`): what the answers cost;
- `contaminated_*`: adapted and answered on the first half together with the even-numbered images of `--unknown`
  (a user's images holding unseen architectures too), scored on its odd-numbered ones (`answered_*` on those
  alone: `answered_unknown_odd_flagged`); `contaminated_10_*` the same with as many of them, drawn with seed 0,
  as a tenth of the first half;
- `same_content_*`: adapted and answered on the first half of the closed set (the training content: no shift),
  scored on its second half and ZOO's open_set.txt, against the run's own calibration there
  (`same_content_as_trained_*`).

Each gives `<name>_auroc` (the second half against `--unknown`, which holds architectures the run never saw on the
new content: a benchmark folder's open_set.txt, a list or a folder) and `<name>_{known,unknown,training}_flagged`,
the share called unknown of the second half, of `--unknown` and of the closed set's second half; `accuracy` of the
adapted run on the second half and `answer_accuracy` of its answers on the first half.
A run's figures are printed and the summary is the mean ± std over the runs (population std).

Usage: python benchmarks/unlabeled_open_set.py --zoo ZOO --unknown UNKNOWN --runs RUN [RUN ...] [--json FILE]
Resumable: with --json FILE present (of the same zoo), the runs it holds are kept and the others measured.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from content_adaptation import drawn, halves, runs_parser, runs_so_far, write_document  # noqa: E402
from labeled_adaptation import Restored, earlier_runs, model_and_splits, pixels_of  # noqa: E402
from labeled_open_set import UNKNOWN_HELP, as_trained, features_of, figure_table  # noqa: E402

from dnadet_tf import openset  # noqa: E402
from dnadet_tf.ablation import mean_std_figures  # noqa: E402
from dnadet_tf.adaptation import adapt_model  # noqa: E402
from dnadet_tf.calibrate import (answered_calibration, calibrated_known_rate, calibrated_radii,  # noqa: E402
                                 labeled_calibration)
from dnadet_tf.config import ADAPT_FIRST_STAGE  # noqa: E402
from dnadet_tf.data import LabeledFiles, benchmark_digest, read_unknown  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402

SCORE = openset.DEFAULT_SCORE
BATCH = 16  # adapt's default batch
FEW_UNKNOWN = 0.1  # contaminated_10: unknown images added, as a share of the first half


def adapted_to(model, paths):
    """Re-estimates the model's statistics on `paths` as `adapt --images` does by default (in place), its open-set
    calibration kept: the calibrations compared are fitted here, with the primitives of `calibrate` (other
    images, true labels, and the run's own calibration as trained)."""
    adapt_model(model, paths, 1.0, ADAPT_FIRST_STAGE, BATCH)


def flagged(statistics, outputs, prefix):
    """{`<prefix>_<part>_flagged`: share of each part's features (`outputs`: {part: features}) above the
    threshold, `<prefix>_auroc`: known against unknown}."""
    scores = {part: openset.scores(SCORE, features, None, statistics) for part, features in outputs.items()}
    figures = {f"{prefix}_{part}_flagged": float(np.mean(values > statistics.threshold))
               for part, values in scores.items()}
    figures[f"{prefix}_auroc"] = openset.auroc(scores["known"], scores["unknown"])
    return figures


def run_figures(zoo, unknown, run):
    """{"run", "figures"} of one run dir."""
    model, cross, test = model_and_splits(zoo, run)
    known_rate, radii = calibrated_known_rate(run), calibrated_radii(run) or openset.DEFAULT_RADII
    temperature = float(model.calibration.temperature.numpy()) if model.calibration is not None else 1.0
    on, scored = halves(len(cross.paths))
    test_on, test_scored = halves(len(test.paths))
    first = [cross.paths[i] for i in on]
    unknown_paths = read_unknown(unknown)[0]
    pixels = {"known": pixels_of([cross.paths[i] for i in scored], model.preprocessing),
              "unknown": pixels_of(unknown_paths, model.preprocessing),
              "training": pixels_of([test.paths[i] for i in test_scored], model.preprocessing)}
    odd = np.arange(1, len(unknown_paths), 2)

    def fitted(labels=None):
        if labels is None:
            return answered_calibration(model, first, SCORE, known_rate, radii, temperature=temperature)[0]
        return labeled_calibration(model, LabeledFiles(first, labels, cross.class_names, cross.source), SCORE,
                                   known_rate, radii)[0]

    figures = {}
    with Restored(model):
        adapted_to(model, first)
        outputs = {part: features_of(model, values) for part, values in pixels.items()}
        figures["accuracy"] = float(np.mean(outputs["known"][1].argmax(-1) == cross.labels[scored]))
        figures["answer_accuracy"] = float(np.mean(features_of(model, pixels_of(first, model.preprocessing))[1]
                                                   .argmax(-1) == cross.labels[on]))
        figures.update({f"as_trained_{key}": value for key, value in
                        (as_trained(model, pixels["known"], pixels["unknown"], pixels["training"]) or {}).items()})
        features = {part: values[0] for part, values in outputs.items()}
        answered = fitted()
        figures.update(flagged(answered, features, "answered"))
        figures["answered_unknown_odd_flagged"] = float(np.mean(
            openset.scores(SCORE, features["unknown"][odd], None, answered) > answered.threshold))
        figures.update(flagged(fitted(cross.labels[on]), features, "labeled"))
    even = list(range(0, len(unknown_paths), 2))
    for name, added in (("contaminated_10", drawn(even, round(FEW_UNKNOWN * len(first)))), ("contaminated", even)):
        with Restored(model):
            mixed = first + [unknown_paths[i] for i in added]
            adapted_to(model, mixed)
            contaminated = answered_calibration(model, mixed, SCORE, known_rate, radii, temperature=temperature)[0]
            parts = {part: features_of(model, pixels[part][odd] if part == "unknown" else pixels[part])[0]
                     for part in pixels}
            figures.update(flagged(contaminated, parts, name))
    with Restored(model):
        own = [test.paths[i] for i in test_on]
        training_unknown = pixels_of(read_unknown(zoo)[0], model.preprocessing)
        figures.update({f"same_content_as_trained_{key}": value for key, value in (as_trained(
            model, pixels["training"], training_unknown, pixels["training"]) or {}).items()
            if key != "training_flagged"})
        adapted_to(model, own)
        same = answered_calibration(model, own, SCORE, known_rate, radii, temperature=temperature)[0]
        parts = {"known": features_of(model, pixels["training"])[0], "unknown": features_of(model, training_unknown)[0]}
        figures.update(flagged(same, parts, "same_content"))
    print(f"{run}: " + ", ".join(f"{key} {100 * value:.1f}" for key, value in figures.items()), flush=True)
    return {"run": run, "unknown_images": len(unknown_paths), "figures": figures}


def figure_summary(runs):
    """{figure: mean ± std over `runs`} of every figure that each run holds."""
    keys = [key for key in (runs[0]["figures"] if runs else {}) if all(key in run["figures"] for run in runs)]
    return {key: mean_std_figures([run["figures"][key] for run in runs]) for key in keys}


def document_of(zoo, digest, unknown, runs):
    """The --json document: the zoo, its digest, the unknown images, each run's figures, mean ± std."""
    return {"zoo": os.path.abspath(zoo), "zoo_sha256": digest, "unknown": os.path.abspath(unknown), "score": SCORE,
            "first_stage": ADAPT_FIRST_STAGE, "runs": runs, "summary": figure_summary(runs)}


def format_table(document):
    """One Markdown row per figure, mean ± std over the runs, in %."""
    return figure_table(f"mean ± std over {len(document['runs'])} runs (%)", document["summary"])


def main(argv=None):
    return measured_main(runs_parser(__doc__.splitlines()[0]), argv,
                         lambda args, run: run_figures(args.zoo, args.unknown, run),
                         lambda args, digest, runs: document_of(args.zoo, digest, args.unknown, runs))


def measured_main(parser, argv, measure, document):
    """The main of an open-set script: `parser` (its own arguments added) gains --unknown and --json; each --runs
    run dir is kept from an earlier --json of the same zoo or measured (`measure(args, run)`: its entry), the
    document (`document(args, digest, runs)`) written after each measured run, and its table printed."""
    parser.add_argument("--unknown", required=True, help=UNKNOWN_HELP)
    parser.add_argument("--json", help="write the figures here (runs already in it are not measured again)")
    args = parser.parse_args(argv)
    digest = benchmark_digest(args.zoo)
    previous = earlier_runs(parser, args.json, args.zoo, digest)
    configure_runtime()
    runs = []
    for run in args.runs:
        if run in previous:
            runs.append(previous[run])
            continue
        runs.append(measure(args, run))
        if args.json:
            write_document(args.json, document(args, digest, runs_so_far(runs, previous, args.runs)))
    print(format_table(document(args, digest, runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

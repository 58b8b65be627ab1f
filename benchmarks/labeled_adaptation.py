"""A few labeled images of the new content (`dnadet-tf adapt --labeled`): the head made the nearest of their class
means, and generators the run never saw added as classes.

For each run and each number of labeled images per class in --shots, DRAWS draws (seed = draw) of that many images
of every class from the first half of the zoo's cross-dataset split (positions 0, 2, 4, ...; the other content),
scored on its second half as `content_adaptation.py` scores:

- `as_trained`: the run as it is;
- `means_kept_<k>`: the head = the class means of the k labeled images per class, the run's statistics kept
  (`adapt --labeled --blend 0`);
- `labeled_<k>`: `adapt --labeled --means-per-class 1`: the statistics of every stage re-estimated on the labeled
  images, then their class means (the default before `all`);
- `labeled_each_<k>`: the same statistics, every labeled image its own mean (`--means-per-class all`: the nearest
  labeled image answers), with its calibration;
- `labeled_stage3_<k>`: the same from stage 3 (`--first-stage 3`);

and the closed set's second half after `labeled_<k>` (`test_after_labeled_<k>`: the cost on the training content),
and after `adapt --labeled` with k images per class of the training content (the closed set's first half;
`same_content_labeled_<k>`: no content shift; `same_content_each_<k>` with every image its own mean). How far the
probabilities can be trusted (`calibration`): the expected calibration error (`ece_*`, 15 bins), the mean top
probability (`confidence_*`) and the negative log-likelihood (`nll_*`) of `as_trained`, of `labeled_<k>`, of
`labeled_each_<k>`, of `mixed_contents_<k>`, of `mixed_clustered_<k>` and of `mixed_each_<k>` on cross-dataset's
second half.
`--with-images` adds `labeled_images_<k>`: the statistics re-estimated on the whole first half of cross-dataset
(unlabeled, as `adapt --images` would take them, every stage), the head then the class means of the k labeled
images. `--mixed` adds labeled images of both contents (k per class from each first half), scored on both second
halves: `mixed_<k>` one mean per class over both contents (`adapt --labeled DATA --means-per-class 1` with both in
DATA), `mixed_contents_<k>` a mean per content and class (`adapt --labeled NEW TRAINING --means-per-class 1`),
`mixed_clustered_<k>` two means per class found by k-means in both contents' images given as one (`adapt --labeled
DATA --means-per-class 2`), `mixed_each_<k>` every image of both its own mean (`--means-per-class all`);
`test_after_*` on the closed set; and `labeled_clustered_<k>`, the k-means head on the new content's images alone
(what two means per class cost where there is one content). With an `open_set.txt` in the zoo
(architectures the run never saw), `--enroll` measures adding them as classes within the training content: k
images of every known class (closed set's first half) and of every unseen architecture (open set's first half),
scored on both second halves (`enroll_<k>`: all classes; `enroll_new_<k>`: the unseen architectures' images alone;
`enroll_known_<k>`: the closed set's; `enroll_kept_*`: the same with the run's statistics kept; `enroll_each*`: the
same with every labeled image its own mean).

Usage: python benchmarks/labeled_adaptation.py --zoo ZOO --runs RUN [RUN ...] [--shots 1,2,5] [--draws 3]
    [--enroll] [--with-images] [--mixed] [--json FILE]
Resumable like `content_adaptation.py`: with --json FILE present, only the runs it lacks are measured.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from content_adaptation import earlier_document, halves, runs_parser, runs_so_far, write_document  # noqa: E402

from dnadet_tf.ablation import mean_std_cell, mean_std_figures  # noqa: E402
from dnadet_tf.adaptation import adapt_model  # noqa: E402
from dnadet_tf.labeled_head import ALL_IMAGES, labeled_head  # noqa: E402
from dnadet_tf.config import LABELED_FIRST_STAGE  # noqa: E402
from dnadet_tf.data import LabeledFiles, benchmark_digest, benchmark_split, read_unknown, read_usable  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.model import probabilities  # noqa: E402
from dnadet_tf.openset import expected_calibration_error  # noqa: E402
from dnadet_tf.pipeline import inference_dataset  # noqa: E402
from dnadet_tf.runs import RunDir  # noqa: E402

DRAWS = 3
BATCH = 16
MIXED_MEANS = 2  # --mixed: means per class k-means finds in the labeled images of both contents, one DATA
PARTS = ("cross_dataset", "training_content", "calibration", "enroll")


def pixels_of(paths, preprocessing):
    """(N, S, S, 3) preprocessed pixels of image files, in order."""
    return np.concatenate([batch.numpy() for batch in inference_dataset(paths, preprocessing, BATCH)])


def probability_rows(model, pixels):
    """(N, C) float64 probabilities of the model for each image, inference mode."""
    return np.concatenate([probabilities(model, pixels[i:i + 32]).numpy().astype(np.float64)
                           for i in range(0, len(pixels), 32)])


def answers(model, pixels):
    """Top class of each image: (N,) ints."""
    return probability_rows(model, pixels).argmax(-1)


def calibration_figures(rows, truth):
    """{"ece", "confidence", "nll"} of (N, C) probabilities against (N,) true classes (the NLL's probabilities
    floored at 1e-12)."""
    chosen = np.maximum(rows[np.arange(len(truth)), truth], 1e-12)
    return {"ece": expected_calibration_error(rows, truth), "confidence": float(rows.max(axis=1).mean()),
            "nll": float(-np.mean(np.log(chosen)))}


def drawn_shots(labels, indices, count, draw, classes):
    """`count` of `indices` of each class in `classes` (labels[indices] == class), drawn with seed `draw`."""
    rng = np.random.default_rng(draw)
    chosen = []
    for label in classes:
        members = [i for i in indices if labels[i] == label]
        chosen += [members[j] for j in rng.permutation(len(members))[:count]]
    return chosen


class Restored:
    """`with Restored(model):` every weight of the model (statistics and head included) put back on leaving."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.saved = self.model.get_weights()
        return self.model

    def __exit__(self, *exc):
        self.model.set_weights(self.saved)
        return False


def statistics_of(model, paths, first_stage):
    """The model's weights after its statistics are re-estimated on `paths` from `first_stage` (the model is left
    so): what `labeled_images_<k>` starts each draw from (`adapt --images` with `--first-stage`)."""
    adapt_model(model, paths, 1.0, first_stage, BATCH)
    return model.get_weights()


def adapted(model, files, first_stage, blend=1.0, groups=None, means_per_class=1):
    """`adapt --labeled` in memory: statistics re-estimated on `files` (LabeledFiles) from `first_stage` at
    `blend` (0: kept), then the head of their class means (with `groups`: a mean per group and class, as `adapt
    --labeled` with several DATA; with `means_per_class` G: G k-means clusters per class, as `adapt --labeled DATA
    --means-per-class G`). Returns the classifier (a new one with new classes or groups), its open-set calibration
    not refitted (what `labeled_open_set.py` studies)."""
    return adapt_model(model, files.paths, blend, first_stage, BATCH, labeled=files, groups=groups,
                       means_per_class=means_per_class)[0]


def model_and_splits(zoo, run):
    """(best.keras of the run dir `run`, its cross-dataset `LabeledFiles` of `zoo`, its closed set's), the images
    in the run's classes."""
    run_dir = RunDir(run)
    class_names, preprocess = run_dir.class_names, run_dir.config.preprocess
    cross = read_usable(benchmark_split(zoo, "cross_dataset"), "test", class_names, preprocess)
    test = read_usable(benchmark_split(zoo, "test"), "test", class_names, preprocess)
    return run_dir.load_model(), cross, test


def run_figures(zoo, run, shots, draws, enroll, with_images=False, mixed=False):
    """{"run", "cross_dataset": {...}, "training_content": {...}, "calibration": {...}, "enroll": {...}} of one
    run, each figure the mean over `draws` draws."""
    model, cross, test = model_and_splits(zoo, run)
    cross_on, cross_scored = halves(len(cross.paths))
    test_on, test_scored = halves(len(test.paths))
    cross_pixels = pixels_of([cross.paths[i] for i in cross_scored], model.preprocessing)
    test_pixels = pixels_of([test.paths[i] for i in test_scored], model.preprocessing)
    cross_truth, test_truth = cross.labels[cross_scored], test.labels[test_scored]
    classes = sorted(set(cross.labels.tolist()))
    rows = probability_rows(model, cross_pixels)
    row = {"as_trained": float(np.mean(rows.argmax(-1) == cross_truth))}
    calibration = {f"{key}_as_trained": value for key, value in calibration_figures(rows, cross_truth).items()}
    training_content = {}
    if with_images:
        with Restored(model):
            unlabeled_statistics = statistics_of(model, [cross.paths[i] for i in cross_on], LABELED_FIRST_STAGE)

    def shots_of(files, indices, count, draw, wanted=None):
        chosen = drawn_shots(files.labels, indices, count, draw, wanted or sorted(set(files.labels.tolist())))
        return LabeledFiles([files.paths[i] for i in chosen], files.labels[chosen], files.class_names, files.source)

    def scored(figures, name, head, calibrated=False):
        """Appends the head's cross-dataset accuracy under `name` (and its calibration figures with `calibrated`)."""
        head_rows = probability_rows(head, cross_pixels)
        figures.setdefault(name, []).append(float(np.mean(head_rows.argmax(-1) == cross_truth)))
        if calibrated:
            for key, value in calibration_figures(head_rows, cross_truth).items():
                figures.setdefault(f"{key}_{name}", []).append(value)

    for count in shots:
        figures = {}
        for draw in range(draws):
            labeled = shots_of(cross, cross_on, count, draw, classes)
            for name, first_stage, blend in ((f"means_kept_{count}", 1, 0.0),
                                             (f"labeled_{count}", LABELED_FIRST_STAGE, 1.0),
                                             (f"labeled_stage3_{count}", 3, 1.0)):
                with Restored(model):
                    head = adapted(model, labeled, first_stage, blend)
                    scored(figures, name, head, calibrated=name == f"labeled_{count}")
                    if name == f"labeled_{count}":
                        figures.setdefault(f"test_after_labeled_{count}", []).append(
                            float(np.mean(answers(head, test_pixels) == test_truth)))
            with Restored(model):  # every labeled image its own mean, the statistics as `labeled_<k>`
                scored(figures, f"labeled_each_{count}",
                       adapted(model, labeled, LABELED_FIRST_STAGE, means_per_class=ALL_IMAGES), calibrated=True)
            if with_images:
                with Restored(model):  # statistics of unlabeled images, a head of labeled ones: not what adapt does
                    model.set_weights(unlabeled_statistics)
                    scored(figures, f"labeled_images_{count}",
                           labeled_head(model, labeled, BATCH, means_per_class=1)[0])
            if mixed:
                with Restored(model):  # the k-means head where there is one content: what it costs when not needed
                    scored(figures, f"labeled_clustered_{count}",
                           adapted(model, labeled, LABELED_FIRST_STAGE, means_per_class=MIXED_MEANS))
                training = shots_of(test, test_on, count, draw)
                both = LabeledFiles(list(labeled.paths) + list(training.paths),
                                    np.concatenate([labeled.labels, training.labels]), cross.class_names, cross.source)
                contents = np.repeat([0, 1], [len(labeled.paths), len(training.paths)])
                for name, groups, means in ((f"mixed_{count}", None, 1), (f"mixed_contents_{count}", contents, 1),
                                            (f"mixed_clustered_{count}", None, MIXED_MEANS),
                                            (f"mixed_each_{count}", None, ALL_IMAGES)):
                    with Restored(model):
                        head = adapted(model, both, LABELED_FIRST_STAGE, groups=groups, means_per_class=means)
                        scored(figures, name, head, calibrated=groups is not None or means != 1)
                        figures.setdefault(f"test_after_{name}", []).append(
                            float(np.mean(answers(head, test_pixels) == test_truth)))
            for name, means in ((f"same_content_labeled_{count}", 1), (f"same_content_each_{count}", ALL_IMAGES)):
                with Restored(model):
                    head = adapted(model, shots_of(test, test_on, count, draw), LABELED_FIRST_STAGE,
                                   means_per_class=means)
                    figures.setdefault(name, []).append(float(np.mean(answers(head, test_pixels) == test_truth)))
        for name, values in figures.items():
            part = (training_content if name.startswith(("test_after", "same_content"))
                    else calibration if name.startswith(("ece_", "confidence_", "nll_")) else row)
            part[name] = float(np.mean(values))
    figures = {"run": run, "cross_dataset": row, "training_content": training_content, "calibration": calibration}
    open_set = benchmark_split(zoo, "open_set")
    if enroll and os.path.isfile(open_set):
        figures["enroll"] = enroll_figures(model, test, test_on, test_scored, test_pixels, open_set, shots, draws)
    print(f"{run}: " + ", ".join(f"{key} {100 * value:.1f}" for part in PARTS
                                 for key, value in figures.get(part, {}).items()), flush=True)
    return figures


def enroll_figures(model, test, test_on, test_scored, test_pixels, open_set, shots, draws):
    """Unseen architectures added as classes within the training content (see the module docstring)."""
    unseen_paths, groups = read_unknown(open_set)
    names = list(test.class_names) + sorted(set(groups))
    new_labels = np.asarray([names.index(group) for group in groups])
    new_on, new_scored = halves(len(unseen_paths))
    new_pixels = pixels_of([unseen_paths[i] for i in new_scored], model.preprocessing)
    known_truth, new_truth = test.labels[test_scored], new_labels[new_scored]
    result = {}
    for count in shots:
        for kept, means in ((False, 1), (True, 1), (False, ALL_IMAGES), (True, ALL_IMAGES)):
            scores = {"all": [], "new": [], "known": []}
            for draw in range(draws):
                known = drawn_shots(test.labels, test_on, count, draw, sorted(set(test.labels.tolist())))
                new = drawn_shots(new_labels, new_on, count, draw, sorted(set(new_labels.tolist())))
                files = LabeledFiles([test.paths[i] for i in known] + [unseen_paths[i] for i in new],
                                     np.concatenate([test.labels[known], new_labels[new]]), names, open_set)
                with Restored(model):
                    head = adapted(model, files, LABELED_FIRST_STAGE, 0.0 if kept else 1.0, means_per_class=means)
                    right_known = answers(head, test_pixels) == known_truth
                    right_new = answers(head, new_pixels) == new_truth
                scores["known"].append(float(np.mean(right_known)))
                scores["new"].append(float(np.mean(right_new)))
                scores["all"].append(float(np.mean(np.concatenate([right_known, right_new]))))
            prefix = ("enroll_each" if means == ALL_IMAGES else "enroll") + ("_kept" if kept else "")
            result[f"{prefix}_{count}"] = float(np.mean(scores["all"]))
            result[f"{prefix}_new_{count}"] = float(np.mean(scores["new"]))
            result[f"{prefix}_known_{count}"] = float(np.mean(scores["known"]))
    return result


def document_of(zoo, digest, runs, shots, draws):
    """The --json document: the zoo, its digest, the settings, each run's figures and their mean ± std."""
    summary = {}
    for part in PARTS:
        keys = [key for key in (runs[0].get(part, {}) if runs else {}) if all(key in run.get(part, {}) for run in runs)]
        for key in keys:
            summary[f"{part}/{key}"] = mean_std_figures([run[part][key] for run in runs])
    return {"zoo": os.path.abspath(zoo), "zoo_sha256": digest, "shots": list(shots), "draws": draws,
            "first_stage": LABELED_FIRST_STAGE, "runs": runs, "summary": summary}


def format_table(document):
    """One Markdown row per figure, mean ± std over the runs: accuracy, ECE and confidence in %, NLL in nats."""
    lines = [f"mean ± std over {len(document['runs'])} runs, each the mean of {document['draws']} draws "
             "(accuracy, ECE, confidence: %; NLL: nats)", "", "| figure | value |", "|---|---:|"]
    lines += [f"| {key} | " + (mean_std_cell(stats, scale=1.0, digits=3) if key.startswith("calibration/nll_")
                                else mean_std_cell(stats)) + " |" for key, stats in document["summary"].items()]
    return "\n".join(lines)


def parsed_shots(parser, text, draws, least=1):
    """--shots `text` as a tuple of ints, each `least` or more, with --draws `draws` 1 or more; else one parser error
    line."""
    wanted = "positive integers" if least == 1 else f"integers of {least} or more"
    try:
        shots = tuple(int(value) for value in text.split(","))
    except ValueError:
        parser.error(f"--shots: expected a comma list of {wanted}, received {text!r}")
    if not shots or min(shots) < least or draws < 1:
        parser.error(f"--shots, --draws: expected {wanted} and 1 or more, received {text!r}, {draws}")
    return shots


def earlier_runs(parser, path, zoo, digest):
    """{run: its entry} of the --json document at `path` of `zoo` (SHA-256 `digest`; empty when there is none;
    `earlier_document`)."""
    earlier = earlier_document(parser, path, zoo, digest)
    return {run["run"]: run for run in earlier["runs"]} if earlier else {}


def main(argv=None):
    parser = runs_parser(__doc__.splitlines()[0])
    parser.add_argument("--shots", default="1,2,5", help="labeled images per class, comma list (default: 1,2,5)")
    parser.add_argument("--draws", type=int, default=DRAWS, help=f"draws of the labeled images (default: {DRAWS})")
    parser.add_argument("--enroll", action="store_true",
                        help="also add the zoo's open-set architectures as classes (needs its open_set.txt)")
    parser.add_argument("--with-images", action="store_true",
                        help="also re-estimate the statistics on the whole first half of cross-dataset (unlabeled) "
                             "before the class means of the labeled images (labeled_images_<k>)")
    parser.add_argument("--mixed", action="store_true",
                        help="also take labeled images of both contents, k per class of each (mixed_<k>)")
    parser.add_argument("--json", help="write the figures here (runs already in it are not measured again)")
    args = parser.parse_args(argv)
    shots = parsed_shots(parser, args.shots, args.draws)
    digest = benchmark_digest(args.zoo)
    previous = earlier_runs(parser, args.json, args.zoo, digest)
    configure_runtime()
    runs = []
    for run in args.runs:
        wanted = [f"{name}_{shots[0]}" for name, on in (("labeled_each", True), ("labeled_images", args.with_images),
                                                          ("mixed_each", args.mixed)) if on]
        enrolled = not args.enroll or f"enroll_each_{shots[0]}" in previous.get(run, {}).get("enroll", {})
        if run in previous and enrolled and all(key in previous[run]["cross_dataset"] for key in wanted):
            runs.append(previous[run])
            continue
        runs.append(run_figures(args.zoo, run, shots, args.draws, args.enroll, args.with_images, args.mixed))
        if args.json:
            write_document(args.json, document_of(args.zoo, digest, runs_so_far(runs, previous, args.runs), shots,
                                                  args.draws))
    print(format_table(document_of(args.zoo, digest, runs, shots, args.draws)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

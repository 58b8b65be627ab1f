"""The open set after `dnadet-tf adapt RUN --labeled DATA`: can the adapted run still answer "unknown
architecture" on the new content, and how its threshold should be fitted on a few labeled images.

The cross-dataset split of ZOO (the other content) is cut in halves as `content_adaptation.py` cuts it. In each of
`--draws` draws, k images per class of the first half (`labeled_adaptation.drawn_shots`) are the labeled images:
the run is adapted to them in memory as `adapt --labeled` does by default (statistics of every stage, every image
its own mean), and its open-set score (Mahalanobis, class statistics of the labeled images' features) is given a
threshold that keeps 95 % of known images, fitted three ways:

- `in_sample_<k>`: on the labeled images as they are (`calibrate OUT --data LABELED --val LABELED` before it
  left them out);
- `left_out_<k>`: on the labeled images, each scored with the class statistics of the others
  (`calibrate.labeled_calibration`, what `adapt --labeled` now stores);
- `unlabeled_<k>`: on the rest of the first half, unlabeled (a user with more images of the content, no labels).

`image_*_<k>`: the same left out, with every labeled image its own mean (`openset.MEANS` "image": a class's
distance is that to its nearest labeled image, the one the head answers; `image_unlabeled_*` its threshold fitted
on the unlabeled rest, `image_auroc_<k>` its AUROC).

Scored: the known images of the new content (cross-dataset's second half: `*_known_flagged_<k>`, the share called
unknown), those of the training content (the closed set's second half: `*_training_flagged_<k>`; the labeled
images are of the new content alone) and the images of `--unknown` (architectures the run never saw, of the new
content: a benchmark folder whose open_set.txt holds them, or a list or folder as `evaluate --unknown` takes;
`*_unknown_flagged_<k>`), with
`auroc_<k>` (the same statistics for all three) and `accuracy_<k>` of the adapted head. `as_trained_*`: the run's
own calibration, fitted on its training content. `--mixed` adds `mixed_*`: k labeled images per class of each
content in one set (both first halves), the head and the left-out calibration of `adapt --labeled` on them,
scored on both second halves (`known`, `training`: flagged and accuracy), on `--unknown` and on ZOO's
open_set.txt (the training content's unseen architectures: `training_unknown`), with an AUROC for each content;
`mixed_image_*` the same with every labeled image its own mean; `mixed_clustered_*` with the head of
`adapt --labeled DATA --means-per-class 2` (two k-means centres per class) and its threshold fitted with the class
means, `mixed_clustered_centres_*` with the distance to the nearer of the head's own two centres (`--means 2`).
A run's figure is the mean of its draws; the summary the mean ± std over the runs (population std).

Usage: python benchmarks/labeled_open_set.py --zoo ZOO --unknown UNKNOWN --runs RUN [RUN ...] [--shots 5,20]
    [--draws 3] [--mixed] [--json FILE]
Resumable: with --json FILE present (of the same zoo), the runs it holds are kept and the others measured.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from content_adaptation import halves, runs_parser, runs_so_far, write_document  # noqa: E402
from labeled_adaptation import (Restored, adapted, drawn_shots, earlier_runs, model_and_splits,  # noqa: E402
                                parsed_shots, pixels_of)

from dnadet_tf import openset  # noqa: E402
from dnadet_tf.ablation import mean_std_cell, mean_std_figures  # noqa: E402
from dnadet_tf.labeled_head import ALL_IMAGES  # noqa: E402
from dnadet_tf.calibrate import labeled_calibration  # noqa: E402
from dnadet_tf.config import LABELED_FIRST_STAGE  # noqa: E402
from dnadet_tf.data import LabeledFiles, benchmark_digest, read_unknown  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.model import attribute, feature_and_logits  # noqa: E402

DRAWS = 3
UNKNOWN_HELP = ("images of architectures the runs never saw, of the new content (a benchmark folder's open_set.txt, "
                "a list or a folder)")
SCORE = openset.DEFAULT_SCORE


def features_of(model, pixels):
    """(features (N, D), logits (N, C)) float64 of preprocessed pixels (N, S, S, 3), inference mode."""
    pairs = [feature_and_logits(model, pixels[i:i + 32]) for i in range(0, len(pixels), 32)]
    return (np.concatenate([f.numpy() for f, _ in pairs]).astype(np.float64),
            np.concatenate([z.numpy() for _, z in pairs]).astype(np.float64))


MEANS = {"": "class", "image_": "image"}  # key prefix -> `openset.MEANS` of the left-out calibration
CLUSTERS = 2  # --mixed: the k-means head of `adapt --labeled DATA --means-per-class 2`
CLUSTERED_MEANS = {"clustered_": "class", "clustered_centres_": CLUSTERS}  # its calibrations, as MEANS
MIXED_HEADS = {ALL_IMAGES: MEANS, CLUSTERS: CLUSTERED_MEANS}  # means_per_class -> its calibrations
MIXED_PREFIXES = [*MEANS, *CLUSTERED_MEANS]


def threshold_figures(statistics, thresholds, parts, rest_features, count, prefix, per_draw):
    """Appends to `per_draw` the figures of one score (that of `statistics`): for each of `thresholds` ({name:
    value}) and `unlabeled` (the threshold fitted on the unlabeled `rest_features`), the share of each of `parts`
    ({"known", "unknown", "training": features}) above it, `<prefix><name>_<part>_flagged_<count>`, and the AUROC
    of known against unknown, `<prefix>auroc_<count>`."""
    scores = {part: openset.scores(SCORE, features, None, statistics) for part, features in parts.items()}
    thresholds = {**thresholds, "unlabeled": openset.threshold_at_known_rate(
        openset.scores(SCORE, rest_features, None, statistics))}
    for name, threshold in thresholds.items():
        for part, values in scores.items():
            per_draw.setdefault(f"{prefix}{name}_{part}_flagged_{count}", []).append(float(np.mean(values > threshold)))
    per_draw.setdefault(f"{prefix}auroc_{count}", []).append(openset.auroc(scores["known"], scores["unknown"]))


def as_trained(model, known_pixels, unknown_pixels, training_pixels):
    """{auroc, known_flagged, unknown_flagged, training_flagged} of the run's own calibration (None when it has
    none)."""
    if model.calibration is None:
        return None

    def scored(pixels):
        rows = [attribute(model, pixels[i:i + 32]) for i in range(0, len(pixels), 32)]
        return (np.concatenate([row["ood_score"].numpy() for row in rows]),
                np.concatenate([row["unknown"].numpy() for row in rows]))

    known_scores, known_flags = scored(known_pixels)
    unknown_scores, unknown_flags = scored(unknown_pixels)
    return {"auroc": openset.auroc(known_scores, unknown_scores), "known_flagged": float(known_flags.mean()),
            "unknown_flagged": float(unknown_flags.mean()),
            "training_flagged": float(scored(training_pixels)[1].mean())}


def mixed_figures(model, cross, cross_on, test, test_on, pixels, count, draws):
    """The `mixed_*_<count>` figures: k labeled images per class of both contents in one set (the new content's
    first half and the closed set's), the head and the left-out calibration of `adapt --labeled` on them.
    `pixels`: {"known", "training", "unknown", "training_unknown"} preprocessed images, the first two those
    of the second halves (truth: `cross` and `test` labels of their second halves)."""
    classes = sorted(set(cross.labels.tolist()))
    truth = {"known": cross.labels[halves(len(cross.paths))[1]], "training": test.labels[halves(len(test.paths))[1]]}
    per_draw = {}
    for draw in range(draws):
        new = drawn_shots(cross.labels, cross_on, count, draw, classes)
        old = drawn_shots(test.labels, test_on, count, draw, classes)
        labeled = LabeledFiles([cross.paths[i] for i in new] + [test.paths[i] for i in old],
                               np.concatenate([cross.labels[new], test.labels[old]]), cross.class_names, cross.source)
        for means_per_class, calibrations in MIXED_HEADS.items():
            with Restored(model):  # the calibrations compared fitted with `labeled_calibration` itself, as above
                head = adapted(model, labeled, LABELED_FIRST_STAGE, means_per_class=means_per_class)
                labeled_features = features_of(head, pixels_of(list(labeled.paths), head.preprocessing))[0]
                left_out = {prefix: labeled_calibration(head, labeled, SCORE, means=means,
                                                        features=labeled_features)[0]
                            for prefix, means in calibrations.items()}
                outputs = {name: features_of(head, images) for name, images in pixels.items()}
            head_prefix = "" if means_per_class == ALL_IMAGES else "clustered_"
            for name in truth:
                per_draw.setdefault(f"mixed_{head_prefix}{name}_accuracy_{count}", []).append(
                    float(np.mean(outputs[name][1].argmax(-1) == truth[name])))
            for prefix, statistics in left_out.items():
                scores = {name: openset.scores(SCORE, features, None, statistics)
                          for name, (features, _) in outputs.items()}
                for name in pixels:
                    per_draw.setdefault(f"mixed_{prefix}{name}_flagged_{count}", []).append(
                        float(np.mean(scores[name] > statistics.threshold)))
                per_draw.setdefault(f"mixed_{prefix}auroc_{count}", []).append(
                    openset.auroc(scores["known"], scores["unknown"]))
                per_draw.setdefault(f"mixed_{prefix}training_auroc_{count}", []).append(
                    openset.auroc(scores["training"], scores["training_unknown"]))
    return {key: float(np.mean(values)) for key, values in per_draw.items()}


def run_figures(zoo, unknown, run, shots, draws, mixed=False, previous=None):
    """{"run", "figures": {...}} of one run, each figure the mean over `draws` draws; the figures of `previous`
    (this run's entry of an earlier document) are kept, and the parts they hold not measured again."""
    model, cross, test = model_and_splits(zoo, run)
    on, scored = halves(len(cross.paths))
    known_pixels = pixels_of([cross.paths[i] for i in scored], model.preprocessing)
    training_pixels = pixels_of([test.paths[i] for i in halves(len(test.paths))[1]], model.preprocessing)
    unknown_paths, _ = read_unknown(unknown)
    unknown_pixels = pixels_of(unknown_paths, model.preprocessing)
    truth = cross.labels[scored]
    figures = dict(previous["figures"]) if previous else {}
    trained = None if "as_trained_auroc" in figures else as_trained(model, known_pixels, unknown_pixels,
                                                                      training_pixels)
    if trained:
        figures.update({f"as_trained_{key}": value for key, value in trained.items()})
    classes = sorted(set(cross.labels.tolist()))
    if mixed:
        pixels = {"known": known_pixels, "training": training_pixels, "unknown": unknown_pixels,
                  "training_unknown": pixels_of(read_unknown(zoo)[0], model.preprocessing)}
        for count in shots:
            if any(f"mixed_{prefix}auroc_{count}" not in figures for prefix in MIXED_PREFIXES):
                figures.update(mixed_figures(model, cross, on, test, halves(len(test.paths))[0], pixels, count,
                                             draws))
                print(f"{run}: k = {count}, both contents: " + ", ".join(
                    f"{key} {100 * value:.1f}" for key, value in figures.items() if key.startswith("mixed_")
                    and key.endswith(f"_{count}")), flush=True)
    for count in shots:
        if f"auroc_{count}" in figures and f"image_auroc_{count}" in figures:
            continue
        per_draw = {}
        for draw in range(draws):
            chosen = drawn_shots(cross.labels, on, count, draw, classes)
            labeled = LabeledFiles([cross.paths[i] for i in chosen], cross.labels[chosen], cross.class_names,
                                   cross.source)
            rest = [i for i in on if i not in set(chosen)]
            with Restored(model):
                head = adapted(model, labeled, LABELED_FIRST_STAGE, means_per_class=ALL_IMAGES)
                labeled_features, labeled_logits = features_of(head, pixels_of(list(labeled.paths), head.preprocessing))
                known_features, known_logits = features_of(head, known_pixels)
                unknown_features, _ = features_of(head, unknown_pixels)
                training_features, _ = features_of(head, training_pixels)
                rest_features, _ = features_of(head, pixels_of([cross.paths[i] for i in rest], head.preprocessing))
                # the labeled images' features, read once (features_of gives features_and_logits' values); the
                # calibrations compared are fitted with `labeled_calibration` itself (both kinds of means, the
                # default known rate and radii), not the one `adapt --labeled` refits
                left_out, _ = labeled_calibration(head, labeled, SCORE, features=labeled_features)
                each_image, _ = labeled_calibration(head, labeled, SCORE, means="image", features=labeled_features)
            in_sample, _ = openset.fit_statistics(SCORE, labeled_features, labeled.labels, head.num_classes,
                                                  labeled_features, labeled_logits, labeled.labels)
            parts = {"known": known_features, "unknown": unknown_features, "training": training_features}
            # the class means' in-sample and left-out statistics share their means and covariance, so one score
            threshold_figures(in_sample, {"in_sample": in_sample.threshold, "left_out": left_out.threshold}, parts,
                              rest_features, count, "", per_draw)
            # every labeled image its own mean: its own statistics, so its own scores and thresholds
            threshold_figures(each_image, {"left_out": each_image.threshold}, parts, rest_features, count, "image_",
                              per_draw)
            per_draw.setdefault(f"accuracy_{count}", []).append(float(np.mean(known_logits.argmax(-1) == truth)))
        figures.update({key: float(np.mean(values)) for key, values in per_draw.items()})
        print(f"{run}: k = {count}: " + ", ".join(f"{key} {100 * np.mean(values):.1f}"
                                                   for key, values in per_draw.items()), flush=True)
    return {"run": run, "unknown_images": len(unknown_paths), "figures": figures}


def document_of(zoo, digest, unknown, runs, shots, draws):
    """The --json document: the zoo, its digest, the unknown images, the settings, each run's figures, mean ± std."""
    keys = [key for key in (runs[0]["figures"] if runs else {}) if all(key in run["figures"] for run in runs)]
    summary = {key: mean_std_figures([run["figures"][key] for run in runs]) for key in keys}
    return {"zoo": os.path.abspath(zoo), "zoo_sha256": digest, "unknown": os.path.abspath(unknown),
            "shots": list(shots), "draws": draws, "score": SCORE, "known_rate": openset.KNOWN_RATE,
            "means": MEANS, "clustered_means": CLUSTERED_MEANS,
            "runs": runs, "summary": summary}


def figure_table(caption, summary):
    """`caption`, then one Markdown row per figure of `summary` ({key: mean_std_figures}), in %."""
    lines = [caption, "", "| figure | value |", "|---|---:|"]
    lines += [f"| {key} | {mean_std_cell(stats)} |" for key, stats in summary.items()]
    return "\n".join(lines)


def format_table(document):
    """One Markdown row per figure, mean ± std over the runs, in %."""
    return figure_table(f"mean ± std over {len(document['runs'])} runs, each the mean of {document['draws']} draws "
                        "(%)", document["summary"])


def main(argv=None):
    parser = runs_parser(__doc__.splitlines()[0])
    parser.add_argument("--unknown", required=True, help=UNKNOWN_HELP)
    parser.add_argument("--shots", default="5,20", help="labeled images per class, comma list (default: 5,20)")
    parser.add_argument("--draws", type=int, default=DRAWS, help=f"draws of the labeled images (default: {DRAWS})")
    parser.add_argument("--mixed", action="store_true",
                        help="also label k images per class of both contents in one set (mixed_*: the training "
                             "content's unknown architectures are ZOO's open_set.txt)")
    parser.add_argument("--json", help="write the figures here (runs already in it are not measured again)")
    args = parser.parse_args(argv)
    shots = parsed_shots(parser, args.shots, args.draws, least=2)  # a left-out image needs another of its class
    digest = benchmark_digest(args.zoo)
    previous = earlier_runs(parser, args.json, args.zoo, digest)
    configure_runtime()
    runs = []
    for run in args.runs:
        wanted = [f"{prefix}auroc_{count}" for count in shots for prefix in MEANS] + [
            f"mixed_{prefix}auroc_{count}" for count in shots for prefix in MIXED_PREFIXES if args.mixed]
        if run in previous and all(key in previous[run]["figures"] for key in wanted):
            runs.append(previous[run])
            continue
        runs.append(run_figures(args.zoo, args.unknown, run, shots, args.draws, args.mixed, previous.get(run)))
        if args.json:
            write_document(args.json, document_of(args.zoo, digest, args.unknown,
                                                  runs_so_far(runs, previous, args.runs), shots, args.draws))
    print(format_table(document_of(args.zoo, digest, args.unknown, runs, shots, args.draws)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

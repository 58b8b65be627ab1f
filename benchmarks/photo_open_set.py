"""The open set after `dnadet-tf adapt RUN --photos DIR` (real photos of the new content, no fakes): the run's own
calibration, fitted on its training content, against ones refitted on the mix `adapt --photos` makes and adapts to.

The run is adapted as `adapt --photos` adapts it by default (`photo_mix.photo_mix` of --photos and the zoo's
training fakes; every stage re-estimated, a quarter of the mix's statistics blended with three quarters of the
run's) and scored on the second half of the zoo's cross-dataset split (cut as `content_adaptation.py` cuts it).
Calibrations of the adapted run, each a threshold that keeps the run's known rate (95 %), each image of the set it
is fitted on scored with the class statistics of the others (left out in turn):

- `as_trained_*`: the run's own (what the adapted run would carry if `adapt` kept it; none for a run without);
- `made_*`: `calibrate.labeled_calibration` on the mix, each image labeled by how it was made (a crop of the
  photos: the real class; a training fake's residual over a crop: that fake's class);
- `made_answered_*`: `calibrate.answered_calibration` on the mix, each image labeled by the adapted run's answer
  (missing, with `made_answered_failed` saying why, where a class is the answer for fewer than 2 images of it);
- `labeled_*`: `calibrate.labeled_calibration` on the cross-dataset split's first half with its true labels (200
  labeled images of the new content, which `adapt --photos` does not have: what the mix's images stand for).

Each gives `<name>_auroc` (the second half against `--unknown`, architectures the run never saw on the new content:
a benchmark folder's open_set.txt, a list or a folder) and `<name>_{known,unknown,training}_flagged`, the share
called unknown of the second half, of `--unknown` and of the closed set's second half; `accuracy` is the adapted
run's on the second half, `made_answer_accuracy` its answers' on the mix (against how each image was made). A run's figures are printed and the summary is the mean ± std over the runs
(population std).

Usage: python benchmarks/photo_open_set.py --zoo ZOO --photos DIR --unknown UNKNOWN --runs RUN [RUN ...]
    [--json FILE]
--photos: real photos of the cross-dataset content that the zoo never used (`faces_scenes_photos.py --other 60`).
Resumable: with --json FILE present (of the same zoo), the runs it holds are kept and the others measured.
"""
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from content_adaptation import halves, runs_parser  # noqa: E402
from labeled_adaptation import Restored, model_and_splits, pixels_of  # noqa: E402
from labeled_open_set import as_trained, features_of  # noqa: E402
from unlabeled_open_set import SCORE, figure_summary, flagged, measured_main  # noqa: E402

from dnadet_tf import openset  # noqa: E402
from dnadet_tf.adaptation import adapt_model  # noqa: E402
from dnadet_tf.calibrate import (answered_calibration, calibrated_known_rate, calibrated_radii,  # noqa: E402
                                 labeled_calibration)
from dnadet_tf.config import PHOTO_FIRST_STAGE  # noqa: E402
from dnadet_tf.data import LabeledFiles, benchmark_split, read_unknown, real_class_candidates  # noqa: E402
from dnadet_tf.photo_mix import PHOTO_BLEND, photo_mix  # noqa: E402

BATCH = 16  # adapt's default batch


def made_files(crops, made, class_names, real_class):
    """`LabeledFiles` of the mix of `photo_mix`: the crops labeled `real_class`, each made fake its class."""
    paths = list(crops) + [path for paths in made.values() for path in paths]
    labels = [class_names.index(real_class)] * len(crops) + [
        class_names.index(name) for name, paths in made.items() for _ in paths]
    return LabeledFiles(paths, np.array(labels, np.int64), class_names, "adapt --photos mix")


def run_figures(zoo, photos, unknown, run, work):
    """{"run", "figures"} of one run dir; the mix is made under `work`."""
    model, cross, test = model_and_splits(zoo, run)
    known_rate, radii = calibrated_known_rate(run), calibrated_radii(run) or openset.DEFAULT_RADII
    temperature = float(model.calibration.temperature.numpy()) if model.calibration is not None else 1.0
    on, scored = halves(len(cross.paths))
    test_scored = halves(len(test.paths))[1]
    unknown_paths = read_unknown(unknown)[0]
    pixels = {"known": pixels_of([cross.paths[i] for i in scored], model.preprocessing),
              "unknown": pixels_of(unknown_paths, model.preprocessing),
              "training": pixels_of([test.paths[i] for i in test_scored], model.preprocessing)}
    crops, made, _ = photo_mix(run, photos, os.path.join(work, "made"), fakes=benchmark_split(zoo, "train"))
    mix = made_files(crops, made, cross.class_names, real_class_candidates(cross.class_names)[0])
    figures, unanswered = {}, None
    with Restored(model):
        # `adapt --photos` on the mix, the run's calibration kept: the calibrations compared are fitted below with
        # the primitives of `calibrate` (adapt drops it)
        adapt_model(model, mix.paths, PHOTO_BLEND, PHOTO_FIRST_STAGE, BATCH, made=True)
        outputs = {part: features_of(model, values) for part, values in pixels.items()}
        figures["accuracy"] = float(np.mean(outputs["known"][1].argmax(-1) == cross.labels[scored]))
        figures.update({f"as_trained_{key}": value for key, value in
                        (as_trained(model, pixels["known"], pixels["unknown"], pixels["training"]) or {}).items()})
        features = {part: values[0] for part, values in outputs.items()}
        mix_answers = features_of(model, pixels_of(mix.paths, model.preprocessing))[1].argmax(-1)
        figures["made_answer_accuracy"] = float(np.mean(mix_answers == mix.labels))
        fitted = {
            "made": labeled_calibration(model, mix, SCORE, known_rate, radii, BATCH)[0],
            "labeled": labeled_calibration(model, LabeledFiles([cross.paths[i] for i in on], cross.labels[on],
                                                               cross.class_names, cross.source),
                                           SCORE, known_rate, radii, BATCH)[0]}
        try:
            fitted["made_answered"] = answered_calibration(model, mix.paths, SCORE, known_rate, radii, BATCH,
                                                           temperature=temperature)[0]
        except ValueError as error:  # a class answered for fewer than 2 images of the mix: adapt would drop it
            unanswered = str(error)
        for name, statistics in fitted.items():
            figures.update(flagged(statistics, features, name))
    print(f"{run}: " + ", ".join(f"{key} {100 * value:.1f}" for key, value in figures.items()), flush=True)
    if unanswered:
        print(f"{run}: no made_answered calibration: {unanswered}", flush=True)
    return {"run": run, "unknown_images": len(unknown_paths), "figures": figures,
            **({"made_answered_failed": unanswered} if unanswered else {})}


def document_of(zoo, digest, photos, unknown, runs):
    """The --json document: the zoo, its digest, the photos, the unknown images, each run's figures, mean ± std."""
    return {"zoo": os.path.abspath(zoo), "zoo_sha256": digest, "photos": os.path.abspath(photos),
            "unknown": os.path.abspath(unknown), "score": SCORE, "blend": PHOTO_BLEND,
            "first_stage": PHOTO_FIRST_STAGE, "runs": runs, "summary": figure_summary(runs)}


def measured(zoo, photos, unknown, run):
    """`run_figures` of one run, its mix made in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="photo-open-set-") as work:
        return run_figures(zoo, photos, unknown, run, work)


def main(argv=None):
    parser = runs_parser(__doc__.splitlines()[0])
    parser.add_argument("--photos", required=True,
                        help="real photos of the cross-dataset content that the zoo never used (a folder)")
    return measured_main(parser, argv, lambda args, run: measured(args.zoo, args.photos, args.unknown, run),
                         lambda args, digest, runs: document_of(args.zoo, digest, args.photos, args.unknown, runs))


if __name__ == "__main__":
    sys.exit(main())

"""Adapting to a content from its real photos alone (`dnadet-tf adapt --photos`), and the mixes tried before it.

`dnadet-tf adapt --images` needs a mix of fakes and real photos of the new content (docs/results.md, "Adapting to
other content": real photos alone are another mix and fail). A user often has real photos of the content to
attribute and no fakes of it. `adapt --photos` makes the fakes (`photo_mix.photo_mix`): 128 px crops of the photos
(`fit --extra-real`'s, cached the same way), PHOTO_REAL of them as the real images, and per fake class
PHOTO_FAKES_PER_CLASS training fakes (drawn with seed 0) whose high-frequency residual
(`transplant.high_frequency_residual`, the construction of `fit --transplant`) is laid over further crops, scaled
by the ratio of the crops' residual RMS to the training reals', at most 1. The mix holds the classes in the
cross-dataset split's first half's shares. Stages 3-4 re-estimated (`adapt --images`' default) on each mix unless
a variant names another first stage, scored as in
`content_adaptation.py` on the second half of each run's cross-dataset split (the other content):

- `as_trained`: the run as it is;
- `adapted_stage3`: adapted to the split's first half (real fakes and real photos of the new content, unlabeled):
  what `adapt --images` gets from images as they come;
- `photos_stage3`: adapted to the PHOTO_REAL crops alone (the photos without fakes);
- `made_stage3`: `adapt --photos --blend 1 --first-stage 3` (the crops and the made fakes, `photo_mix` itself, the run's own
  statistics replaced);
- `made_blend_<b>_stage3`: `adapt --photos --blend b --first-stage 3` for b in BLENDS (0.25 its default blend:
  three quarters of the run's own statistics kept; 0.5 the default before the blends were compared);
- `made_blend_<b>_stage<s>`: `adapt --photos --blend b --first-stage s` for (b, s) in STAGED (stages s-4
  re-estimated where the variants above re-estimate 3-4; 0.25 from stage 1 the default since they were compared);
- `transplanted_stage3`: the same fakes with every residual at scale 1;
- `scaled_stage3`: at the ratio of the residual RMS, not capped at 1 (above 1 over photos of finer texture);
- `fingerprint_stage3`: each class's mean residual over all of its training fakes (its fixed pattern) in place of
  one fake's, at scale 1;

and the closed set's second half after each `made_*` variant and `transplanted_stage3` (`test_after_<variant>`);
with --training-photos DIR (real photos of the training content the zoo never used), the closed set's second half
as trained and after `adapt --photos DIR` (`test_as_trained`, `test_after_same_content_photos` at `--blend 1`,
`test_after_same_content_photos_blend_<b>` at the other blends, `..._blend_<b>_first_stage_<s>` for STAGED): the
cost of adapting where the content did not change.

--photos must be real photos of the cross-dataset content that the zoo never used (`faces_scenes_photos.py
--other 60` writes them to OUT/other). The made fakes go to --work (default: a temporary folder). Resumable like
`content_adaptation.py`: with --json FILE present, only the figures it lacks are measured.

Usage: python benchmarks/transplant_adaptation.py --zoo ZOO --photos DIR --runs RUN [RUN ...] [--json FILE]
    [--training-photos DIR] [--variants A,B,...]
"""
import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from content_adaptation import (AdaptedStatistics, accuracy, earlier_document, halves,  # noqa: E402
                                runs_so_far, write_document)

from dnadet_tf.ablation import mean_std_cell, mean_std_figures  # noqa: E402
from dnadet_tf.photo_mix import PHOTO_FAKES_PER_CLASS, PHOTO_REAL, photo_mix, training_images  # noqa: E402
from dnadet_tf.config import ADAPT_FIRST_STAGE  # noqa: E402
from dnadet_tf.data import REAL_CLASS, benchmark_digest, benchmark_split, read_usable  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.extra_real import extra_real_crops  # noqa: E402
from dnadet_tf.images import load_rgb  # noqa: E402
from dnadet_tf.predictor import KerasPredictor  # noqa: E402
from dnadet_tf.runs import RunDir  # noqa: E402
from dnadet_tf.transplant import residual_rms  # noqa: E402

BLENDS = (0.1, 0.25, 0.5, 0.75)  # `adapt --photos --blend` below 1, from stage 3
STAGED = ((0.25, 1), (0.25, 2), (0.25, 4), (0.1, 1), (0.5, 1))  # (blend, first stage) pairs from other stages
MADE_ADAPTS = {"made_stage3": (1.0, 3),  # `adapt --photos` on the made mix: variant -> (blend, first stage)
               **{f"made_blend_{blend}_stage{stage}": (blend, stage)
                  for blend, stage in [(blend, 3) for blend in BLENDS] + list(STAGED)}}
MADE = tuple(MADE_ADAPTS)
VARIANTS = ("as_trained", "adapted_stage3", "photos_stage3") + MADE + ("transplanted_stage3", "scaled_stage3",
                                                                       "fingerprint_stage3")
COSTED = MADE + ("transplanted_stage3",)  # their cost on the training content too
SAME_ADAPTS = {"test_after_same_content_photos": (1.0, 3),  # with --training-photos: key -> (blend, first stage)
               **{f"test_after_same_content_photos_blend_{blend}": (blend, 3) for blend in BLENDS},
               **{f"test_after_same_content_photos_blend_{blend}_first_stage_{stage}": (blend, stage)
                  for blend, stage in STAGED}}
SAME_CONTENT = ("test_as_trained",) + tuple(SAME_ADAPTS)


def _made_title(blend, stage):
    return f"`adapt --photos --blend {blend:g} --first-stage {stage}`"


TITLES = {"as_trained": "as trained", "adapted_stage3": "adapted to the first half (`--images`)",
          "photos_stage3": "the photos' crops alone",
          **{variant: _made_title(blend, stage) for variant, (blend, stage) in MADE_ADAPTS.items()},
          "transplanted_stage3": "residuals at scale 1", "scaled_stage3": "residuals at the RMS ratio, uncapped",
          "fingerprint_stage3": "class fingerprints",
          "test_after_transplanted_stage3": "closed set after residuals at scale 1",
          "test_as_trained": "closed set as trained",
          **{key: f"closed set after {_made_title(blend, stage)} with photos of the training content"
             for key, (blend, stage) in SAME_ADAPTS.items()}}
TITLES.update({f"test_after_{variant}": f"closed set after {TITLES[variant]}" for variant in MADE})


def tried_mix(run, zoo, photos, work, kind, real_crops):
    """The made fakes of a mix tried next to `adapt --photos` (`kind`), drawn as `photo_mix` draws them
    (`real_crops`: its real crops): "transplanted" every residual at scale 1, "scaled" at the ratio of the residual
    RMS uncapped (`photo_mix` at those scales), "fingerprint" each fake class's mean residual over all of its
    training fakes at scale 1, laid over the crops `photo_mix` lays that class's fakes over."""
    import tensorflow as tf

    from dnadet_tf.transplant import gaussian_kernel, high_frequency_residual, laid_over

    train = benchmark_split(zoo, "train")
    folder = os.path.join(work, kind)
    if kind == "transplanted":
        return photo_mix(run, photos, folder, fakes=train, scale=1.0)[1]
    source = RunDir(run)
    training = training_images(train, source.class_names, source.config.preprocess)  # the images fit trained on
    if kind == "scaled":
        ratio = residual_rms(real_crops) / residual_rms(training[REAL_CLASS])
        return photo_mix(run, photos, folder, fakes=train, scale=ratio)[1]
    groups = [name for name, paths in training.items() if name != REAL_CLASS and paths]
    crops = extra_real_crops(photos, PHOTO_REAL + PHOTO_FAKES_PER_CLASS * len(groups), flag="--photos",
                             packaged=False)
    kernel = tf.constant(gaussian_kernel())
    made = {}
    for k, name in enumerate(groups):
        paths = training[name]
        under = crops[PHOTO_REAL + k * PHOTO_FAKES_PER_CLASS:][:min(len(paths), PHOTO_FAKES_PER_CLASS)]
        pattern = np.mean([high_frequency_residual(tf.constant(load_rgb(path), tf.float32), kernel).numpy()
                           for path in paths], axis=0)
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        made[name] = [os.path.join(folder, name, f"fake_{j:05d}.png") for j in range(len(under))]
        for crop, path in zip(under, made[name]):
            laid_over(crop, pattern, path)
    return made


def flattened(made):
    """The made fakes of every class ({class: paths}), in class order."""
    return [path for paths in made.values() for path in paths]


def run_figures(zoo, photos, run, work, previous=None, training_photos=None, variants=VARIANTS):
    """{"run", "cross_dataset": {variant: accuracy}, "training_content": {...}} of one run (figures in
    `previous` kept). With `training_photos` (real photos of the training content the zoo never used), also the
    closed set's second half as trained and after `adapt --photos` with them (`test_as_trained`,
    `test_after_same_content_photos`): what adapting costs where the content did not change. `variants`: the ones
    of VARIANTS to measure (`as_trained` always)."""
    previous = previous or {}
    variants = ("as_trained",) + tuple(variant for variant in variants if variant != "as_trained")
    row = dict(previous.get("cross_dataset", {}))
    training_content = dict(previous.get("training_content", {}))
    wanted = (["test_after_" + key for key in COSTED if key in variants]
              + (list(SAME_CONTENT) if training_photos else []))
    if all(key in row for key in variants) and all(key in training_content for key in wanted):
        return {"run": run, "cross_dataset": row, "training_content": training_content}
    run_dir = RunDir(run)
    class_names, preprocess = run_dir.class_names, run_dir.config.preprocess
    predictor = KerasPredictor(run)
    cross = read_usable(benchmark_split(zoo, "cross_dataset"), "test", class_names, preprocess)
    test = read_usable(benchmark_split(zoo, "test"), "test", class_names, preprocess)
    adapt_on, scored = halves(len(cross.paths))
    test_scored = halves(len(test.paths))[1]
    real_crops, made, _ = photo_mix(run, photos, os.path.join(work, "made"), fakes=benchmark_split(zoo, "train"))
    made_mix = real_crops + flattened(made)
    stage = 3  # the "_stage3" variants: stages 3-4, as `--images` adapts by default
    mixes = {"adapted_stage3": (lambda: [cross.paths[i] for i in adapt_on], 1.0, stage),
             "photos_stage3": (lambda: real_crops, 1.0, stage),
             **{variant: (lambda: made_mix, blend, first) for variant, (blend, first) in MADE_ADAPTS.items()}}
    for kind in ("transplanted", "scaled", "fingerprint"):
        mixes[f"{kind}_stage3"] = (lambda kind=kind: real_crops + flattened(
            tried_mix(run, zoo, photos, work, kind, real_crops)), 1.0, stage)
    if "as_trained" not in row:
        row["as_trained"] = accuracy(predictor, cross, scored)
    for variant, (paths, blend, first_stage) in mixes.items():
        costed = variant in COSTED
        if variant not in variants or variant in row and (not costed or "test_after_" + variant in training_content):
            continue
        with AdaptedStatistics(predictor, paths(), blend, first_stage) as adapted:
            row[variant] = accuracy(adapted, cross, scored)
            if costed:
                training_content["test_after_" + variant] = accuracy(adapted, test, test_scored)
    if training_photos and "test_as_trained" not in training_content:
        training_content["test_as_trained"] = accuracy(predictor, test, test_scored)
    same_mix = None
    for key, (blend, first_stage) in SAME_ADAPTS.items():
        if not training_photos or key in training_content:
            continue
        if same_mix is None:
            same_crops, same_made, _ = photo_mix(run, training_photos, os.path.join(work, "same"),
                                                 fakes=benchmark_split(zoo, "train"))
            same_mix = same_crops + flattened(same_made)
        with AdaptedStatistics(predictor, same_mix, blend, first_stage) as adapted:
            training_content[key] = accuracy(adapted, test, test_scored)
    print(f"{run} cross-dataset ({len(scored)} scored): "
          + ", ".join(f"{key} {100 * value:.1f}" for key, value in {**row, **training_content}.items()), flush=True)
    return {"run": run, "cross_dataset": row, "training_content": training_content}


def document_of(zoo, digest, photos, runs, training_photos=None):
    """The --json document: zoo, digest, photos, each run's figures and their mean ± std over the runs."""
    keys = ([("cross_dataset", key) for key in VARIANTS] + [("training_content", "test_after_" + key) for key in COSTED]
            + [("training_content", key) for key in SAME_CONTENT])
    summary = {f"{part}/{key}": mean_std_figures([run[part].get(key) for run in runs]) for part, key in keys
               if all(key in run[part] for run in runs)}
    return {"zoo": os.path.abspath(zoo), "zoo_sha256": digest, "photos": os.path.abspath(photos),
            "training_photos": os.path.abspath(training_photos) if training_photos else None, "real": PHOTO_REAL,
            "fakes_per_class": PHOTO_FAKES_PER_CLASS, "first_stage": ADAPT_FIRST_STAGE, "runs": runs,
            "summary": summary}


def format_table(document):
    """One Markdown row per figure: accuracy %, mean ± std over the runs."""
    lines = [f"accuracy (%) on the cross-dataset split's second half, mean ± std over {len(document['runs'])} runs",
             "", "| figure | accuracy |", "|---|---:|"]
    for key, stats in document["summary"].items():
        variant = key.split('/', 1)[1]  # a file of an earlier version may name a variant since renamed: as it is
        lines.append(f"| {TITLES.get(variant, variant.replace('_', ' '))} | {mean_std_cell(stats)} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", required=True, help="the benchmark folder the runs were trained on")
    parser.add_argument("--photos", required=True, help="real photos of the cross-dataset content the zoo never used")
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="step-2 run dirs (other seeds)")
    parser.add_argument("--json", help="write the figures here (kept figures are not measured again)")
    parser.add_argument("--work", help="folder for the synthetic fakes (default: a temporary folder)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma list of the figures to measure (default: all of them)")
    parser.add_argument("--training-photos", metavar="DIR",
                        help="real photos of the training content the zoo never used: also measure the closed set "
                             "after `adapt --photos` with them (no content shift)")
    args = parser.parse_args(argv)
    variants = tuple(name for name in args.variants.split(",") if name)
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown or not variants:
        parser.error(f"--variants: expected a comma list of {', '.join(VARIANTS)}, received {args.variants!r}")
    for flag, folder in (("--photos", args.photos), ("--training-photos", args.training_photos)):
        if folder is not None and not os.path.isdir(folder):
            parser.error(f"{flag} {folder}: expected a folder of photos, which does not exist")
    digest = benchmark_digest(args.zoo)
    previous, recorded = {}, None
    earlier = earlier_document(parser, args.json, args.zoo, digest)
    if earlier:
        previous = {run["run"]: run for run in earlier["runs"]}
        recorded = earlier.get("training_photos")
    configure_runtime()
    named = args.training_photos or recorded  # the file keeps naming the photos its figures were measured with
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for run in args.runs:
            runs.append(run_figures(args.zoo, args.photos, run, args.work or scratch, previous.get(run),
                                    args.training_photos, variants))
            if args.json:
                write_document(args.json, document_of(args.zoo, digest, args.photos,
                                                      runs_so_far(runs, previous, args.runs), named))
    print(format_table(document_of(args.zoo, digest, args.photos, runs, named)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

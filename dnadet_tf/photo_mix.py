"""The mix `dnadet-tf adapt --photos` adapts to: real photos of the new content and no fakes of it, made into a
mix of the classes a run attributes.

    a folder of real photos of the new content + the run's training fakes
      -> PHOTO_REAL 128 px crops of the photos (cut and cached as `fit --extra-real`'s): the real images
      -> per fake class PHOTO_FAKES_PER_CLASS training fakes (drawn with seed 0), each one's high-frequency
         residual laid over a further crop (`transplant.transplanted_fakes`), scaled down by the ratio of the
         photos' fine texture to the training reals' when the photos have less (`photo_scale`)
      -> (crops, {fake class: made fakes}, report), which `adaptation.adapt_run` adapts to, keeping three
         quarters of the run's own statistics by default (PHOTO_BLEND)

The made fakes stand in for the new content's fakes in the BatchNorm statistics only: an open-set threshold fitted
on them flags most of the new content's own fakes (docs/results.md, "The open set after `adapt --photos`").
"""
import os

import numpy as np

from dnadet_tf.errors import DataError
from dnadet_tf.runs import RunDir

# The made mix holds the classes in a benchmark cross-test's shares (40 images of each class).
PHOTO_REAL = 40
PHOTO_FAKES_PER_CLASS = 40
PHOTO_TEXTURE_SAMPLE = 240  # training reals whose texture `photo_scale` measures (drawn with seed 0 when more)
FEW_PHOTOS = 20  # fewer photos than this: a warning that the crops repeat them (20 and 60 did as well)
# The mix made of photos is not the generators' fakes: keeping the run's own statistics in part gained on every content
# shift measured and cost far less where the content had not changed. Of the blends 0.1-1, 0.25 is best on the mean of
# six content shifts (87.6 against 87.1 with 0.5) and keeps the training content (99.3-100 after adapting to photos of
# it; docs/results.md, "Adapting from real photos alone").
PHOTO_BLEND = 0.25


def training_images(spec, class_names, preprocess):
    """{class name: image paths} of the dataset spec `spec` (a run's training data), in the run's class order: the
    images `preprocess` (the run's PreprocessConfig) can take, as `fit` trained on them (`data.read_usable`: a file
    that is empty, undecodable or too small is skipped with one warning line, as `fit` skipped it)."""
    from dnadet_tf.data import read_usable

    files = read_usable(spec, "train", class_names, preprocess)
    return {name: [path for path, label in zip(files.paths, files.labels) if label == index]
            for index, name in enumerate(class_names)}


def photo_scale(crops, real_paths):
    """The factor of the training fakes' residuals laid over `crops`: the ratio of the crops' residual RMS to that
    of the training reals (`PHOTO_TEXTURE_SAMPLE` of `real_paths` drawn with seed 0), at most 1.

    Fakes of a textured training content (scenes) carry its texture in their residual; over smoother photos
    (faces) it turns them into the training content again: at scale 1 the adapted runs lost 4.2 and 6.6 points
    towards faces, scaled down they were level with the runs as trained (at `--blend 1`; docs/results.md, "Adapting
    from real photos alone", 6 seeds). Scaled up over more textured photos, the residuals lost 18.7 and 6.8 of what
    scale 1 gained."""
    from dnadet_tf.transplant import residual_rms

    sample = real_paths
    if len(real_paths) > PHOTO_TEXTURE_SAMPLE:
        chosen = np.random.default_rng(0).permutation(len(real_paths))[:PHOTO_TEXTURE_SAMPLE]
        sample = [real_paths[i] for i in sorted(chosen)]
    training = residual_rms(sample)
    return min(1.0, residual_rms(crops) / training) if training > 0 else 1.0


def few_photos_line(photos):
    """The warning line when fewer than FEW_PHOTOS of the photos in the folder `photos` are usable (readable, CROP px
    or more on the shorter side: those the crops are cut from), else None; it counts the folder's other photos too."""
    from dnadet_tf.extra_real import source_photos
    from dnadet_tf.images import ImageError, load_rgb
    from dnadet_tf.zoo.photos import CROP

    paths = source_photos(photos, "--photos", packaged=False)
    usable = 0
    for path in paths:
        try:
            load_rgb(path, min_side=CROP)
        except ImageError:
            continue
        usable += 1
        if usable >= FEW_PHOTOS:
            return None
    found = (f"{usable} photo(s)" if usable == len(paths) else
             f"{usable} of its {len(paths)} photos usable (readable, {CROP} px or more on the shorter side)")
    return (f"warning: --photos {photos}: {found}, fewer than {FEW_PHOTOS}: the crops of the mix repeat "
            f"{'that one' if usable == 1 else 'them'} (20 did as well as 60: docs/results.md, 'Adapting from real "
            f"photos alone').")


def photo_mix(run_dir, photos, folder, fakes=None, output=None, scale=None):
    """(real crops, {fake class: made fakes}, report) of `adapt --photos`: PHOTO_REAL 128 px crops of the photos
    in the folder `photos` (cut and cached as `fit --extra-real`'s), and per fake class of the run
    PHOTO_FAKES_PER_CLASS of its training fakes (drawn with seed 0) laid over further crops, scaled by
    `photo_scale` (or by `scale`, when given), written to `folder`. `fakes`: the dataset spec of the training fakes
    (default: the run's training data); a line to `output` warns when fewer than FEW_PHOTOS photos are usable
    (`few_photos_line`). Raises DataError when
    the run has no real class or `fakes` no fake or no real image of its classes."""
    from dnadet_tf.data import real_class_candidates
    from dnadet_tf.extra_real import extra_real_crops
    from dnadet_tf.transplant import transplanted_fakes

    source = RunDir(run_dir)
    class_names = source.class_names
    candidates = real_class_candidates(class_names)
    if len(candidates) != 1:
        raise DataError(f"--photos: expected a run with one class of real photos, received the classes "
                        f"{class_names}; give a mix of images of the new content with --images instead.")
    real_class = candidates[0]
    fakes = fakes or source.config.data
    training = training_images(fakes, class_names, source.config.preprocess)
    groups = {name: paths for name, paths in training.items() if name != real_class and paths}
    if not groups or not training[real_class]:
        lacking = "fakes of the run's classes" if not groups else f"real images (class '{real_class}')"
        raise DataError(f"--fakes {fakes}: expected the run's training images, fakes and real photos; found no "
                        f"{lacking} to lay over the photos and measure their texture against.")
    few = few_photos_line(photos)
    if few and output is not None:
        print(few, file=output, flush=True)
    crops = extra_real_crops(photos, PHOTO_REAL + PHOTO_FAKES_PER_CLASS * len(groups), output, flag="--photos",
                             packaged=False)
    if scale is None:
        scale = photo_scale(crops[:PHOTO_REAL], training[real_class])
    rng = np.random.default_rng(0)
    made = {}
    for k, (name, paths) in enumerate(groups.items()):
        chosen = [paths[i] for i in rng.permutation(len(paths))[:PHOTO_FAKES_PER_CLASS]]
        start = PHOTO_REAL + k * PHOTO_FAKES_PER_CLASS
        made[name] = transplanted_fakes(chosen, crops[start:start + len(chosen)], os.path.join(folder, name), scale)
    short = [f"{name} ({len(paths)})" for name, paths in made.items() if len(paths) < PHOTO_FAKES_PER_CLASS]
    if short and output is not None:
        print(f"warning: the training data holds fewer than {PHOTO_FAKES_PER_CLASS} fakes of {', '.join(short)}; the "
              f"mix has that many of each beside {PHOTO_REAL} real crops, so it leans to the real class.",
              file=output, flush=True)
    report = {"photos": os.path.abspath(photos), "fakes_from": os.path.abspath(fakes),
              "real_crops": PHOTO_REAL, "fakes_per_class": {name: len(paths) for name, paths in made.items()},
              "residual_scale": scale}
    return crops[:PHOTO_REAL], made, report

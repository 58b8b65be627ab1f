"""`pretrain`: step 1 of DNA-Det, classifying 170 image transformations of
natural photos, with the same loop, losses and run dir as `fit`."""
import hashlib
import json
import os
import sys

import numpy as np

from dnadet_tf.data import LabeledFiles, check_files, find_images
from dnadet_tf.distribute import check_strategy, make_strategy
from dnadet_tf.errors import DataError, RunDirError
from dnadet_tf.pipeline import transformation_dataset, transformation_eval_dataset
from dnadet_tf.runs import RunDir, write_json_atomic
from dnadet_tf.training import require_resumed_data, resolve_config, train
from dnadet_tf.transforms import NUM_TRANSFORMS, TRANSFORM_NAMES, transform_family

PHOTO_SIZE = 128  # transformations are defined on 128 px crops
MIN_PHOTOS = 10
PHOTOS_FILE = "photos.json"  # the usable photos a run started with, relative to --photos, sorted, with their SHA-256


FAMILY_NAMES = tuple(dict.fromkeys(transform_family(i)[0] for i in range(NUM_TRANSFORMS)))
FAMILY_OF_CLASS = np.array([FAMILY_NAMES.index(transform_family(i)[0]) for i in range(NUM_TRANSFORMS)])


def family_metrics(y_true, y_pred):
    """Family-level figures of 170-way predictions: {"family_accuracy": float}.

    A prediction counts as right when it names a transformation of the same
    family (JPEG, double JPEG, Gaussian blur, median blur, resampling, noise)
    as the true one, whatever its parameter.
    """
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    same = FAMILY_OF_CLASS[y_true] == FAMILY_OF_CLASS[y_pred]
    return {"family_accuracy": float(np.mean(same)) if len(same) else 0.0}


def list_photos(folder):
    """Image files under `folder`, recursively (`data.find_images`); DataError when it is no folder, or holds a
    folder that cannot be read."""
    if not os.path.isdir(folder):
        raise DataError(f"photos {folder}: no such folder; expected a folder of photos.")
    return find_images(folder)


def usable_photos(folder, output=None):
    """Photos with both sides >= 128 px; smaller or broken ones are skipped with a
    warning. Raises DataError when fewer than MIN_PHOTOS remain."""
    paths = list_photos(folder)
    files = LabeledFiles(paths, np.zeros(len(paths), np.int64), ["photo"], folder)
    kept = (check_files(files, crop_size=PHOTO_SIZE, min_side=PHOTO_SIZE, require_every_class=False)
            if paths else files)
    if len(kept) < MIN_PHOTOS:
        raise DataError(
            f"photos {folder}: found {len(kept)} usable photos (both sides >= {PHOTO_SIZE} px) "
            f"of {len(paths)} image files; pre-training needs at least {MIN_PHOTOS}."
        )
    return kept


def photo_names(folder, paths):
    """The photos `paths` as sorted paths relative to `folder`, with "/" separators: what PHOTOS_FILE records."""
    return sorted(os.path.relpath(path, folder).replace(os.sep, "/") for path in paths)


def photos_sha256(folder, paths):
    """{relative path (as `photo_names`): SHA-256 of the file's bytes} of the photos `paths` in `folder`, sorted."""
    digests = {}
    for path in paths:
        with open(path, "rb") as f:
            digests[photo_names(folder, [path])[0]] = hashlib.sha256(f.read()).hexdigest()
    return dict(sorted(digests.items()))


def photos_record(folder, paths):
    """What PHOTOS_FILE holds: the photos' names (`photo_names`) and each one's SHA-256 (`photos_sha256`)."""
    return {"photos": photo_names(folder, paths), "sha256": photos_sha256(folder, paths)}


def require_same_photos(run, folder, paths):
    """Raises DataError unless the usable photos `paths` in `folder` are those the resumed `run` started with
    (PHOTOS_FILE): the same names and, where the file records them, the same contents (a photo edited or replaced
    under its name), so that its training and held-out photos stay the same; a run made before the file was
    written is not checked."""
    path = run.file(PHOTOS_FILE)
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    recorded = set(document["photos"])
    now = set(photo_names(folder, paths))
    if now != recorded:
        raise DataError(
            f"photos: expected the {len(recorded)} usable photos the resumed run started with, received "
            f"{len(now)} in {folder} ({len(now - recorded)} added, {len(recorded - now)} removed); restore them "
            f"or train into a new `out`.")
    recorded_sha256 = document.get("sha256")
    if isinstance(recorded_sha256, dict):
        changed = sorted(name for name, digest in photos_sha256(folder, paths).items()
                         if recorded_sha256.get(name) != digest)
        if changed:
            more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
            raise DataError(
                f"photos: expected the photos the resumed run started with, received {len(changed)} with other "
                f"contents under the same names in {folder} ({changed[0]}{more}); restore them or train into a new "
                f"`out`.")


def split_photos(paths, seed, val_fraction=0.1):
    """(train, val) lists of photos: a seeded shuffle, at least 2 held out for validation."""
    order = np.random.default_rng([seed, 2]).permutation(len(paths))
    n_val = max(2, int(round(len(paths) * val_fraction)))
    return [paths[i] for i in order[n_val:]], [paths[i] for i in order[:n_val]]


def pretrain(photos, out, preset=None, resume=False, overwrite=False, output=None, **overrides):
    """Trains the encoder to tell the 170 transformations apart; returns the summary.

    The run dir has the same layout as `fit`'s, with the transformation names
    in labels.txt; `fit --init` takes its encoder.
    """
    output = output or sys.stdout
    run = RunDir(out)
    if resume and overwrite:
        raise RunDirError("resume and overwrite: expected at most one of them, received both.")
    run.check(overwrite=overwrite, resume=resume)  # fail before any slow work
    # photos inside the `out` that overwrite=True empties would be deleted before they are read
    run.require_inputs_outside([("photos", photos, "a folder of photos")], overwrite=overwrite, resume=resume)
    overrides.setdefault("metric", "macro_f1")
    # Step 1 keeps one validated model (rule nll by macro-F1), as every step-1 figure was measured;
    # rule `average`, the cpu preset's for step 2, was measured on step 2 only.
    if overrides.get("select") is None:
        overrides["select"] = "nll"
    config = resolve_config(run, resume, preset, overrides)
    if resume:
        require_resumed_data("photos", photos, config.data)
    else:
        # Step 1 has a long plateau (measured: about 1000 `cpu` steps at chance before it learns), so it
        # has its own step budget, patience, learning-rate schedule and validation interval unless the
        # flags say otherwise.
        # Transformations act on a 128 px crop; it is then resized to resize2 as in step 2.
        own = {name: getattr(config.pretrain, name) for name in ("steps", "patience", "lr_decay_every", "val_every")
               if overrides.get(name) is None}
        # Step 1 starts from random weights, whatever a preset's step 2 starts from, has no classes of real
        # photos to align (`content_align`), and trains as the step 1 shipped with the package was trained, without
        # the BatchNorm statistics shift of the preset's DNA-Det (`statistics_shift`).
        config = config.replace(
            **own,
            crop_size=PHOTO_SIZE, resize1=PHOTO_SIZE, mode="dnadet", data=os.path.abspath(photos), init="",
            content_align=0.0,
            statistics_shift=0.0)
    check_strategy(config.runtime.strategy)  # a bad TF_CONFIG stops here, before the slow work and any write
    print(f"checking photos in {photos} ...", file=output, flush=True)
    files = usable_photos(photos)
    train_photos, val_photos = split_photos(files.paths, config.runtime.seed)
    if resume:
        require_same_photos(run, photos, files.paths)
    strategy = make_strategy(config.runtime.strategy)  # one that cannot be built leaves the run dir as it was
    run.start(config, TRANSFORM_NAMES, overwrite=overwrite, resume=resume)
    if not resume:
        write_json_atomic(run.file(PHOTOS_FILE), photos_record(photos, files.paths))
    banner = lambda replicas: (  # noqa: E731
        f"pre-training ({config.preset} preset, width {config.model.width}, {config.runtime.precision}) on "
        f"{len(TRANSFORM_NAMES)} transformations of {len(train_photos)} photos "
        f"({len(val_photos)} held out, {config.pretrain.val_samples} validation samples); "
        f"{config.pretrain.batch_size} images x {config.sampling.patches_per_image} patches per step, "
        + (f"{config.pretrain.images_per_class} images per drawn transformation"
           if config.pretrain.images_per_class > 1 else "one independently drawn transformation per image")
        + f"; run dir {out}"
    )
    summary = train(
        run, config, TRANSFORM_NAMES,
        train_dataset=lambda start: transformation_dataset(
            train_photos, config, config.pretrain.batch_size, start, config.pretrain.images_per_class),
        val_dataset=lambda: transformation_eval_dataset(
            val_photos, config, config.pretrain.val_samples, config.loop.eval_batch_size),
        resume=resume, val_extras=family_metrics, banner=banner, output=output, strategy=strategy,
    )
    summary.update(skipped_files=len(files.skipped), run_dir=out)
    print(
        f"done: step {summary['end_step']}, best validation {config.loop.metric} {summary['best_metric']:.4f}, "
        f"{len(files.skipped)} photo(s) skipped, {summary['seconds']} s; run dir {out}",
        file=output, flush=True,
    )
    return summary

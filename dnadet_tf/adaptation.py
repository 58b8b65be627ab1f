"""Adapting a trained attributor to another kind of content: its BatchNorm statistics re-estimated on
unlabeled images of that content (AdaBN, Li et al. 2016), every weight kept.

    run dir (best.keras) + unlabeled images of the content to attribute
      -> layer by layer, input to output, from encoder stage `first_stage` on (`adapt` re-estimates
         stages 3-4 by default, where the content shift sits): the statistics of each BatchNorm's input
         over every position of every image, the earlier layers already adapted (inference mode; any
         batching, any order)
      -> each BatchNorm's moving mean and variance = those statistics, mixed with the run's by `blend`
      -> a new run dir: best.keras (without the open-set calibration, which described the old
         content), config.json and labels.txt of the run, adaptation.json

A model trained on one content keeps the generators' traces in its kernels but normalises them with
that content's statistics; images of another content shift every layer's activations, and unseen
fakes are read as real (or real photos as fakes). Re-estimated statistics undo that shift. The images
should be a mix of what is to be attributed (fakes of several generators and real photos, unlabeled):
statistics of real photos alone, or of one generator, are statistics of another mix
(docs/results.md, "Adapting to other content").

With real photos of the new content and no fakes of it (`adapt --photos`), the mix is made (`photo_mix.photo_mix`:
crops of the photos and the run's training fakes' residuals laid over further crops) and three quarters of the
run's own statistics kept by default (PHOTO_BLEND).

With a few labeled images of the new content (`adapt --labeled`), the statistics are re-estimated on them (every
stage by default) and the logits layer answers the class of the nearest of them (`labeled_head.labeled_head`).

The open-set calibration described the training content: `adapt --labeled` refits it on the labeled images,
`adapt --images` on the images, each labeled by the adapted run's answer; `adapt --photos` drops it; `--images` and
`--photos` keep it (calibration.json copied) with blend 0, which leaves the model the run's own.

`adapt_model` does all of it in memory (a model and image paths -> the adapted classifier and a report; what the
benchmarks measure); `adapt_run` reads the run dir and the images, calls it, and writes the new run dir
(`write_adapted_run`).
"""
import dataclasses
import json
import os
import sys
import tempfile

import numpy as np

from dnadet_tf.calibrate import CALIBRATION_FILE
from dnadet_tf.config import ADAPT_FIRST_STAGE, ENCODER_STAGES, LABELED_FIRST_STAGE, PHOTO_FIRST_STAGE
from dnadet_tf.data import collect_image_paths, file_identity, readable_images, repeated_files
from dnadet_tf.errors import DataError, DnadetError, RunDirError
from dnadet_tf.labeled_head import (check_means_per_class, head_line, labeled_files, labeled_head, repeats,
                                    repeats_line)
from dnadet_tf.model import batchnorm_layers, layer_stage
from dnadet_tf.photo_mix import PHOTO_BLEND, photo_mix
from dnadet_tf.predictor import features_and_logits
from dnadet_tf.prototypes import ALL_IMAGES, head_points
from dnadet_tf.runs import ADAPTATION_FILE, CONFIG_FILE, RunDir, place_in, save_model_atomic, write_json_atomic

FEW_IMAGES = 20  # from 20 the draw of images mattered little (docs/results.md): fewer are allowed, with a warning
ONE_CLASS_SHARE = 0.6  # above this share of one answer before adapting, a warning: one class's statistics fail
PHOTO_SHEET = "adaptation_images.png"
# adaptation.json's "calibration" of a run whose model is the source run's (`adapt --images/--photos --blend 0`)
KEPT_CALIBRATION = "the run's own, kept: --blend 0 left its model unchanged"
# `adapt --labeled` refits the open-set calibration on its labeled images when every class has this many, each
# scored with the statistics of the others (class means, 5 per class, six content shifts: 3.7-5.4 % of the new content's
# known images flagged, where scored in-sample 96.7-99.1 %; docs/results.md, "The open set after `adapt --labeled`")
MIN_CALIBRATION_IMAGES = 2
SHEET_COLUMNS = 8


def _combined(count, mean, m2, batch_count, batch_mean, batch_var):
    """Running (count, mean, sum of squared deviations) merged with one batch's (Chan et al.'s update)."""
    total = count + batch_count
    delta = batch_mean - mean
    mean = mean + delta * (batch_count / total)
    m2 = m2 + batch_var * batch_count + delta ** 2 * (count * batch_count / total)
    return total, mean, m2


def estimate_batchnorm_statistics(model, batches, blend=1.0, progress=None, first_stage=1):
    """The statistics each encoder BatchNorm's input has over `batches` of preprocessed pixels (N, S, S, 3).

    Layer by layer, input to output: the encoder up to a BatchNorm runs in inference mode, every
    earlier BatchNorm already normalising with its new statistics (as the adapted model will), and
    the layer's input is summarised over every position of every image (mean and biased variance,
    float64). So the result depends on the images, not on how they are batched or ordered. `blend`
    in [0, 1] mixes each layer's result with its own statistics (1: the images' alone) before the next
    layer is estimated. The BatchNorms of stages before `first_stage` keep their own statistics (and
    are not estimated). `batches` is iterated once per estimated layer (a tf.data.Dataset or a list);
    `progress(index, count, name)`, when given, is called as each estimated layer starts.

    Returns [(mean (C,), variance (C,))] per layer, float32; the model's own statistics are restored
    before returning. Raises DataError when `batches` is empty.
    """
    import keras
    import tensorflow as tf

    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"blend: expected a number from 0 to 1, received {blend}.")
    layers = batchnorm_layers(model)
    stages = sorted({layer_stage(layer) for layer in layers})
    if first_stage not in stages:
        raise ValueError(f"first_stage: expected one of the encoder's stages {stages}, received {first_stage!r}.")
    saved = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in layers]
    kept = sum(layer_stage(layer) < first_stage for layer in layers)  # the layers run input to output
    statistics = saved[:kept]
    # One function for every estimated layer (traced once per call, not once per layer); the pass for
    # layer k runs only the encoder up to that layer's input, the earlier layers normalising with the
    # statistics already assigned.
    prefixes = [keras.Model(model.backbone.input, layer.input) for layer in layers[kept:]]

    @tf.function(reduce_retracing=True)
    def moments(pixels, position):
        return tf.switch_case(position, [
            lambda prefix=prefix: tf.nn.moments(tf.cast(prefix(pixels, training=False), tf.float32), axes=[0, 1, 2])
            for prefix in prefixes])

    try:
        for index, (layer, (own_mean, own_var)) in enumerate(zip(layers[kept:], saved[kept:]), start=1):
            if progress is not None:
                progress(index, len(layers) - kept, layer.name)
            count, mean, m2 = 0, 0.0, 0.0
            for pixels in batches:
                batch_mean, batch_var = moments(pixels, tf.constant(index - 1))
                positions = int(np.prod(pixels.shape[:3]))
                count, mean, m2 = _combined(count, mean, m2, positions, batch_mean.numpy().astype(np.float64),
                                            batch_var.numpy().astype(np.float64))
            if count == 0:
                raise DataError("images: expected at least one image to estimate BatchNorm statistics on, "
                                "received none.")
            (mean, variance), = blend_statistics([(own_mean, own_var)], [(mean, m2 / count)], blend)
            statistics.append((mean, variance))
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
    finally:
        for layer, (mean, variance) in zip(layers, saved):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
    return statistics


def blend_statistics(own, new, blend):
    """Per layer, the statistics of a mixture: `blend` of the new images' and 1 - `blend` of the model's own
    (mean = blend * new + (1 - blend) * own; variance the mixture's, between-means term included).
    own, new: [(mean, variance)] -> [(mean, variance)], float32."""
    mixed = []
    for (own_mean, own_var), (new_mean, new_var) in zip(own, new):
        mean = blend * new_mean + (1.0 - blend) * own_mean
        variance = (blend * (new_var + (new_mean - mean) ** 2)
                    + (1.0 - blend) * (own_var + (own_mean - mean) ** 2))
        mixed.append((np.asarray(mean, np.float32), np.asarray(variance, np.float32)))
    return mixed


def adapt_batchnorm(model, batches, blend=1.0, progress=None, first_stage=1):
    """Sets each encoder BatchNorm's moving statistics to `estimate_batchnorm_statistics(model, batches,
    blend, progress, first_stage)` (1 = the new images' alone, 0 = unchanged). Returns the statistics set."""
    statistics = estimate_batchnorm_statistics(model, batches, blend, progress, first_stage)
    for layer, (mean, variance) in zip(batchnorm_layers(model), statistics):
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(variance)
    return statistics


def answer_counts(model, batches):
    """How many of the images in `batches` the model attributes to each class: (C,) int64, inference mode."""
    from dnadet_tf.model import probabilities

    counts = np.zeros(model.num_classes, np.int64)
    for pixels in batches:
        counts += np.bincount(probabilities(model, pixels).numpy().argmax(-1), minlength=model.num_classes)
    return counts


def without_calibration(model):
    """The classifier with its `Calibration` (temperature and open-set statistics) removed."""
    model.calibration = None
    return model


def adapt_run(run_dir, images, out, blend=None, batch_size=16, overwrite=False, output=None,
              first_stage=None, photos=None, fakes=None, labeled=None, means_per_class=None):
    """Writes `out`, a run dir whose best.keras is `run_dir`'s adapted to `images` (files or folders,
    unlabeled), or, with `photos` (a folder of real photos of the new content) in place of `images`, to the mix
    `photo_mix` makes of them and the training fakes (`fakes`: their dataset spec, default the run's training
    data; a contact sheet of the mix goes to out/adaptation_images.png); returns the report written to
    out/adaptation.json. `blend` (None: 1 with `images`, PHOTO_BLEND with `photos`) mixes the new statistics with
    the run's own (`adapt_batchnorm`) in the encoder stages from `first_stage` on (None: ADAPT_FIRST_STAGE with
    `images`, PHOTO_FIRST_STAGE with `photos`).

    With `labeled` (a dataset spec, or a list of them, one per content: a folder per class or an annotation list of
    a few labeled images, every class of the run among them all) in place of `images`, the statistics are
    re-estimated on those images (from LABELED_FIRST_STAGE by default) and the logits layer answers the class of
    the nearest labeled image (`means_per_class` None or ALL_IMAGES, "all": every image its own mean), or with 1
    the nearest mean of their features per class, or per spec and class (`labeled_head`); classes the run does
    not have are added after its own (`prototypes`). `means_per_class` G > 1 (one spec): G means per class, of the
    clusters k-means finds in each class's features (labeled images of several contents in one folder).

    Files that cannot be decoded or are too small are skipped with one warning line each; a file given more than
    once (the same real path), or one of the same bytes as an earlier file (a copy, a hard link:
    `data.repeated_files`), counts once, where it first occurs, with one warning line saying how many repeats were
    dropped (one labeled with two classes is refused: `labeled_head.without_repeats`, `without_copies`). The open-set
    calibration described the training content: with `labeled` images, MIN_CALIBRATION_IMAGES or more of every
    class, it is refitted on them, each scored with the statistics of the others (`labeled_calibration`: its
    distance to the nearest other labeled image of each class for the default head, which answers by those
    images, else to the class means of the others; the run's known rate and radii, its score when a distance
    score), and written to out/calibration.json; with `images`, on those images, each labeled by the adapted run's
    answer (`answered_calibration`; MIN_CALIBRATION_IMAGES or more answers of every class; the run's temperature,
    known rate, radii and means kept, `refit_settings`); otherwise it is dropped (`dnadet-tf calibrate OUT --data
    ... --val ...` refits it on labeled images of the new content). With `images` or `photos` and `blend` 0, which
    leave the model the run's own, it is kept as it was (the run's calibration.json copied). With `photos`, a line
    warns when fewer than FEW_PHOTOS of them are usable (`photo_mix.few_photos_line`). Raises DataError when no
    image is usable, RunDirError when `out` is `run_dir` (by real path: a symbolic link to it too) or a folder
    holding it, or already holds files without `overwrite` (or is a symbolic link with it, `RunDir.check`), or when
    `overwrite` would empty it with `images`, `photos`, `fakes` or `labeled` inside it (`_inputs`,
    `RunDir.require_inputs_outside`); nothing is written then.
    """
    output = output or sys.stdout
    specs = None if labeled is None else [labeled] if isinstance(labeled, (str, os.PathLike)) else list(labeled)
    _check_settings(images, photos, specs, fakes, blend, first_stage, means_per_class)
    source = RunDir(run_dir)
    _check_out(run_dir, out)
    target = RunDir(out).check(overwrite=overwrite, resumable=False)
    if target.will_empty(overwrite):  # images read inside the `out` that overwrite=True empties would be deleted
        target.require_inputs_outside(_inputs(source, images, photos, fakes, specs), overwrite=overwrite)
    if blend is None:
        blend = 1.0 if photos is None else PHOTO_BLEND
    if first_stage is None:
        first_stage = PHOTO_FIRST_STAGE if photos is not None else LABELED_FIRST_STAGE if labeled else ADAPT_FIRST_STAGE
    if specs is not None:
        means_per_class = ALL_IMAGES if means_per_class is None else means_per_class

        def warn(line):
            print(f"warning: {line}", file=output, flush=True)

        files, groups = without_copies(*labeled_files(specs, source.class_names, source.config.preprocess, warn),
                                       " ".join(str(spec) for spec in specs), warn)
        return _adapt(source, files.paths, target, blend, batch_size, overwrite, output, first_stage,
                      labeled=(files, groups, specs), means_per_class=means_per_class)
    if photos is None:
        return _adapt(source, images, target, blend, batch_size, overwrite, output, first_stage)
    with tempfile.TemporaryDirectory(prefix="dnadet-tf-adapt-") as folder:
        crops, made, made_report = photo_mix(run_dir, photos, folder, fakes, output)
        print(f"--photos {photos}: {len(crops)} crops as the real images, "
              + ", ".join(f"{len(paths)} {name}" for name, paths in made.items())
              + f" made of the training fakes' residuals over further crops (scaled by "
              f"{made_report['residual_scale']:.3f})", file=output, flush=True)
        report = _adapt(source, crops + [path for paths in made.values() for path in paths], target, blend,
                        batch_size, overwrite, output, first_stage, made=(crops, made, made_report))
    return report


def _check_out(run_dir, out):
    """Raises RunDirError when `out` is the run `run_dir` itself or a folder that holds it (what `--overwrite`
    would empty), with or without `overwrite`, compared by real path (`runs.place_in`): a symbolic link to the run,
    or `out` reached through a linked folder, is the run too."""
    place = place_in(run_dir, out)
    if place == "itself":
        source = os.path.realpath(run_dir)
        via = "" if os.path.abspath(out) == os.path.abspath(run_dir) else f", {source}, through a symbolic link"
        raise RunDirError(f"out {out}: expected a new folder for the adapted run, received the run itself{via} "
                          f"(adaptation keeps {run_dir} as it is).")
    if place == "inside":
        raise RunDirError(f"out {out}: expected a new folder for the adapted run, received a folder that holds the "
                          f"run {run_dir} (adaptation keeps it as it is; replacing {out} would delete it).")


def _inputs(source, images, photos, fakes, labeled):
    """The paths `adapt_run` reads besides the run (`_check_out` guards it), for `RunDir.require_inputs_outside`:
    the `images` (files or folders), the folder of `photos`, the `fakes` laid over them (given, else the run
    `source`'s training data when it records one), the `labeled` specs."""
    inputs = [("images", path, "images") for path in images or ()]
    if photos is not None:
        inputs.append(("photos", photos, "a folder of photos"))
        if fakes is None and os.path.isfile(source.file(CONFIG_FILE)):
            fakes = source.config.data or None
        if fakes is not None:
            inputs.append(("fakes", fakes, "the training fakes"))
    inputs += [("labeled", spec, "labeled images") for spec in labeled or ()]
    return inputs


def _check_settings(images, photos, labeled, fakes, blend, first_stage, means_per_class):
    """Raises DnadetError, before any slow work, for settings `adapt_run` cannot use: not exactly one of `images`,
    `photos` and `labeled` (a list of dataset specs or None); `fakes` without `photos`; `blend` outside [0, 1];
    `first_stage` not an encoder stage; `means_per_class` without `labeled`, or not a count `check_means_per_class`
    accepts."""
    given = [name for name, value in (("images", images), ("photos", photos), ("labeled", labeled)) if value]
    if len(given) != 1:
        raise DnadetError(f"images, photos and labeled: expected exactly one of them, received "
                          f"{' and '.join(given) or 'none'}.")
    if fakes is not None and photos is None:
        raise DnadetError(f"fakes: expected with `photos` (the fakes to lay over them), received with `{given[0]}`.")
    if blend is not None and (isinstance(blend, bool) or not isinstance(blend, (int, float)) or
                              not 0.0 <= blend <= 1.0):
        raise DnadetError(f"blend: expected a number from 0 to 1, received {blend}.")
    if first_stage is not None and (isinstance(first_stage, bool) or not isinstance(first_stage, int)
                                    or not 1 <= first_stage <= ENCODER_STAGES):
        raise DnadetError(f"first_stage: expected an encoder stage from 1 to {ENCODER_STAGES}, received {first_stage}.")
    if means_per_class is not None:
        if labeled is None:
            raise DnadetError(f"means_per_class: expected with `labeled`, received {means_per_class} with "
                              f"`{given[0]}`.")
        check_means_per_class(means_per_class, len(labeled))


def without_copies(files, groups, given, warn):
    """(files, groups) of `labeled_files` without the images that are an earlier one by their bytes
    (`data.repeated_files`: a copy, or a hard link across DATA, which `labeled_head.repeats`, comparing real paths,
    does not see), each counted once where it first occurs, with one warning line to `warn` (`_repeats_line`;
    `given`: the labeled DATA), the groups numbered 0.. over those left. Raises DataError naming both files and
    both classes for an image in two classes (a copy too: one image has one source)."""
    dropped = repeated_files(files.paths)
    if not dropped:
        return files, groups
    paths, labels, names = files.paths, files.labels, files.class_names
    for index, earlier in dropped.items():
        if labels[index] != labels[earlier]:
            raise DataError(f"--labeled {given}: {paths[index]}: {_same(paths[index], paths[earlier])}, in class "
                            f"{names[labels[earlier]]!r} and class {names[labels[index]]!r}; expected each file in "
                            f"one class.")
    warn(_repeats_line(f"--labeled {given}", paths, dropped))
    kept = [index for index in range(len(paths)) if index not in dropped]
    files = dataclasses.replace(files, paths=[paths[index] for index in kept], labels=labels[kept])
    return files, np.unique(np.asarray(groups)[kept], return_inverse=True)[1].astype(np.int64)


def _same(path, first):
    """How file `path` is the earlier `first`: "the same file as FIRST" (a link), else "the same bytes as FIRST"."""
    return f"the same {'file' if file_identity(path) == file_identity(first) else 'bytes'} as {first}"


def _repeats_line(flag, paths, dropped):
    """`labeled_head.repeats_line` of `flag` for the `dropped` of `paths` ({index: index of its first occurrence}),
    its example the first of them, or, where some are copies (the same bytes, not the same file), the first copy,
    with the file it has the same bytes as."""
    copies = [index for index in sorted(dropped)
              if file_identity(paths[index]) != file_identity(paths[dropped[index]])]
    if not copies:
        return repeats_line(flag, len(dropped), paths[min(dropped)])
    copy, first = paths[copies[0]], paths[dropped[copies[0]]]
    return repeats_line(flag, len(dropped), f"{copy} ({_same(copy, first)})")


def _adapt(source, images, target, blend, batch_size, overwrite, output, first_stage, made=None, labeled=None,
           means_per_class=ALL_IMAGES):
    """`adapt_run` from the run dir `source` to `images` into the checked run dir `target`; `made`: the
    (crops, {class: fakes}, report) of `photo_mix` when the images are its mix; `labeled`: the checked
    (`LabeledFiles`, groups, specs) of `labeled_files` and its specs when the images are labeled ones, with
    `means_per_class` for `labeled_head`."""
    model = source.load_model()
    if labeled is None:
        def warn(line):
            print(f"warning: {line}", file=output, flush=True)

        paths = collect_image_paths(list(images))
        first, repeated = repeats(paths)
        copies = {} if made else {first[index]: first[earlier]  # the mix made of photos may repeat a crop
                                  for index, earlier in repeated_files([paths[index] for index in first]).items()}
        if (repeated or copies) and made is None:  # a file given twice counts once: twice, its statistics and
            # answer would weigh double, and in the open-set threshold it would be its own nearest neighbour
            warn(_repeats_line(f"--images {' '.join(map(str, images))}", paths, {**repeated, **copies}))
        paths, skipped = readable_images([paths[index] for index in first if index not in copies],
                                         model.preprocessing, warn=warn)
        files = groups = specs = None
    else:
        files, groups, specs = labeled
        paths, skipped = list(files.paths), files.skipped
    model, adapted = adapt_model(model, paths, blend, first_stage, batch_size, labeled=files, groups=groups,
                                 means_per_class=means_per_class, refit=refit_settings(source.path),
                                 made=made is not None, name=source.path, output=output)
    class_names = source.class_names if files is None else model.class_names  # the head's, classes added
    inputs = [made[2]["photos"]] if made else [os.path.abspath(item) for item in images]
    report = run_report(adapted, source.path, [list(item) for item in skipped], inputs, specs,
                        made[2] if made else None)
    write_adapted_run(target, source.config, class_names, model, report, adapted.get("calibration"), made,
                      overwrite, output, kept_from=source.path if adapted["calibration_kept"] else None)
    return report


def adapt_model(model, paths, blend=1.0, first_stage=ADAPT_FIRST_STAGE, batch_size=16, labeled=None, groups=None,
                means_per_class=ALL_IMAGES, refit=None, made=False, name="the model", output=None):
    """(classifier, report): what `adapt` does to a run's model, in memory (nothing is written).

    `model`'s encoder BatchNorm statistics are re-estimated on the images `paths` (N usable image files; with
    `labeled`, its paths) from encoder stage `first_stage` on and mixed with its own by `blend`
    (`adapt_batchnorm`; 0: kept, nothing estimated), in place, inference mode, `batch_size` images a batch. With
    `labeled` (`LabeledFiles` in the model's classes, then any new ones) the logits layer then answers the class of
    the nearest of their features (`labeled_head` with `groups` and `means_per_class`; a new classifier around the
    same encoder when classes or groups are added).

    `refit`: None leaves the open-set calibration as it is (benchmarks that study calibrations fit their own);
    (known rate, radii, means) of the run's calibration (`refit_settings`) drops it, as `adapt` does, and refits
    it: on the labeled images when every class has MIN_CALIBRATION_IMAGES (`_labeled_calibration`), else, when the
    model had one, on the images each labeled by the adapted model's answer (`_answered_calibration`), unless
    `made`; but with `blend` 0 and no `labeled` head the model is the run's own, so its calibration, which still
    describes it, is kept.
    `made`: the images are a mix `photo_mix` made (no warnings about their number or their mix; no refit on them).
    Lines (warnings, progress, the head, the calibration) go to `output` (None: none), naming the model `name`.

    Report: images, blend, first_stage, batch_size, calibration_dropped, calibration_kept (the model's own
    calibration kept as it was), answers_before ({class: images} before
    adapting), layers ([{name, mean_shift_in_std, std_ratio}] per BatchNorm), and with `labeled` "labeled" (the
    head's report), with a refitted calibration "calibration" (the fit's report). Raises DataError when `paths` is
    empty.
    """
    from dnadet_tf.pipeline import inference_dataset

    say = _printer(output)
    checked = labeled is None and not made  # images a user gave: warn when too few, or seen as one class
    if checked and len(paths) < FEW_IMAGES:
        say(f"warning: {len(paths)} images to adapt on; below {FEW_IMAGES} which images they are decides (5: up to "
            f"35 points short of 200 images; 1-2: below the run as trained where it was right; docs/results.md, "
            f"'How many images adapt needs').")
    answers = answer_counts(model, inference_dataset(paths, model.preprocessing, batch_size))
    top = int(np.argmax(answers))
    if checked and answers[top] > ONE_CLASS_SHARE * len(paths):
        say(f"warning: {name} attributes {answers[top]} of the {len(paths)} images to {model.class_names[top]!r}; "
            f"statistics of one class are not the content's (adapted to one generator's images, the model "
            f"fails on them: docs/results.md, 'Adapting to other content'); give a mix of fakes and real photos.")
    answers_before = dict(zip(model.class_names, (int(count) for count in answers)))
    own = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in batchnorm_layers(model)]
    statistics = _adapted_statistics(model, paths, blend, first_stage, batch_size, name, say)
    # before a new head's classifier, which has none
    had_calibration = model.calibration is not None
    score = model.calibration.score if had_calibration else None
    temperature = float(model.calibration.temperature) if had_calibration else 1.0
    head = calibration = None
    if labeled is not None:
        # one pass over the labeled images: the head's means and the open-set calibration use the same features
        features = features_and_logits(model, labeled.paths, batch_size)[0]
        model, head = labeled_head(model, labeled, batch_size, groups, means_per_class, features)
        say(head_line(head, len(paths)))
    # With blend 0 and no new head the model is the run's own: `_adapted_statistics` estimates and assigns nothing,
    # so every BatchNorm statistic and weight is the run's, bit for bit, and so is its calibration (with `--images`
    # as with `--photos`: refitted on the model's own answers, it would replace the run's for the same model).
    # The mix made of photos gives no calibration otherwise.
    kept = blend == 0 and labeled is None
    if refit is not None and not kept:
        without_calibration(model)
        if head is not None and min(labeled.class_counts()) >= MIN_CALIBRATION_IMAGES:
            calibration = _labeled_calibration(model, labeled, score, refit, batch_size, say, head, groups, features)
        elif had_calibration and head is None and not made:
            calibration = _answered_calibration(model, paths, score, refit, temperature, batch_size, say)
    report = {
        "images": len(paths), "blend": blend, "first_stage": first_stage, "batch_size": batch_size,
        "calibration_dropped": had_calibration and model.calibration is None,
        "calibration_kept": had_calibration and calibration is None and model.calibration is not None,
        "answers_before": answers_before,
        # Per layer, how far the statistics moved: mean |new mean - old mean| in old standard deviations, and
        # the mean ratio of new to old standard deviation (1 = unchanged).
        "layers": [{"name": layer.name,
                    "mean_shift_in_std": float(np.mean(np.abs(new[0] - old[0]) / np.sqrt(old[1] + layer.epsilon))),
                    "std_ratio": float(np.mean(np.sqrt(new[1] + layer.epsilon) / np.sqrt(old[1] + layer.epsilon)))}
                   for layer, old, new in zip(batchnorm_layers(model), own, statistics)],
    }
    if head is not None:
        report["labeled"] = head
    if calibration is not None:
        report["calibration"] = calibration
    return model, report


def _printer(output):
    """A function printing one line to `output` (flushed), or doing nothing when `output` is None."""
    if output is None:
        return lambda line: None
    return lambda line: print(line, file=output, flush=True)


def _adapted_statistics(model, paths, blend, first_stage, batch_size, name, say):
    """The model's encoder BatchNorm statistics [(mean (C,), variance (C,))] after `adapt_batchnorm` on the images
    `paths` (set in place; with `blend` 0 its own, kept, nothing estimated); `say` prints its lines."""
    from dnadet_tf.pipeline import inference_dataset

    if blend == 0:  # the run's own statistics, exactly what a blend of 0 gives: nothing to estimate
        say(f"adapting {name}: BatchNorm statistics kept (--blend 0)")
        return [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in batchnorm_layers(model)]
    say(f"adapting {name}: BatchNorm statistics of {len(paths)} images"
        + (f" in stages {first_stage}-{ENCODER_STAGES}" if first_stage > 1 else "") + ", one pass per layer ...")
    return adapt_batchnorm(model, inference_dataset(paths, model.preprocessing, batch_size), blend,
                           progress=lambda index, count, layer: say(f"  layer {index}/{count} ({layer})"),
                           first_stage=first_stage)


def run_report(adapted, run_dir, skipped, inputs, specs=None, made=None):
    """The report `adapt_run` writes to adaptation.json: `adapt_model`'s report `adapted` with the run dir adapted
    (`run_dir`), the files skipped ([[path, why]]), the `inputs` (the files and folders given, or the photos
    folder), the labeled dataset `specs` and the `photo_mix` report `made`, when any; "calibration" says how it
    was refitted, or that it was kept."""
    report = {"source_run": os.path.abspath(run_dir), "images": adapted["images"], "skipped": skipped,
              "inputs": inputs}
    report.update((key, adapted[key]) for key in ("blend", "first_stage", "batch_size", "calibration_dropped",
                                                  "answers_before", "layers"))
    if "labeled" in adapted:
        report["labeled"] = {"data": [os.path.abspath(str(spec)) for spec in specs], **adapted["labeled"]}
    if "calibration" in adapted:
        report["calibration"] = ("refitted on the labeled images, each left out in turn" if "labeled" in adapted else
                                 "refitted on the images adapted to, each labeled by the adapted run's answer and "
                                 "left out in turn")
    elif adapted["calibration_kept"]:
        report["calibration"] = KEPT_CALIBRATION
    if made is not None:
        report["made_from_photos"] = made
    return report


def write_adapted_run(target, config, class_names, model, report, calibration=None, made=None, overwrite=False,
                      output=None, kept_from=None):
    """Writes the adapted run dir `target` (a checked `RunDir`): config.json (`config`) and labels.txt
    (`class_names`), best.keras (`model`), adaptation.json (`report`, `run_report`), calibration.json (the refitted
    calibration's report `calibration`, with the images it was fitted on) when refitted, or a copy of the run dir
    `kept_from`'s when the model kept that run's calibration as it was, and with `made` (the crops, {class: fakes}
    and report of `photo_mix`) the contact sheet of the mix; prints the line that says so."""
    output = output or sys.stdout
    target.start(config, class_names, overwrite=overwrite, resumable=False)
    save_model_atomic(model, target.best_model_path)
    if calibration is not None:
        inputs = report["labeled"]["data"] if "labeled" in report else report["inputs"]
        write_json_atomic(target.file(CALIBRATION_FILE), {**calibration, "data": inputs, "val": inputs})
    kept = kept_from is not None and os.path.isfile(os.path.join(kept_from, CALIBRATION_FILE))
    if kept:
        with open(os.path.join(kept_from, CALIBRATION_FILE), encoding="utf-8") as f:
            write_json_atomic(target.file(CALIBRATION_FILE), json.load(f))
    if made:
        from dnadet_tf.zoo.sheets import contact_sheet

        crops, fakes = made[0], made[1]
        contact_sheet([("real (crops)", crops[:SHEET_COLUMNS])]
                      + [(name, paths[:SHEET_COLUMNS]) for name, paths in fakes.items()], target.file(PHOTO_SHEET))
    write_json_atomic(target.file(ADAPTATION_FILE), report)
    print(f"wrote {target.best_model_path} and {ADAPTATION_FILE}" + (f" and {PHOTO_SHEET} (the mix adapted to)"
                                                                     if made else "") + (
        f" and {CALIBRATION_FILE}" if calibration is not None else
        f" and {CALIBRATION_FILE} ({KEPT_CALIBRATION})" if kept else "") + (
        "; its open-set calibration was dropped (it described the training content"
        + ("; one fitted on the mix made of the photos flags most of the new content's fakes: docs/results.md, 'The "
           "open set after adapt --photos'" if made else "") + "): "
        f"'dnadet-tf calibrate {target.path} --data LABELED --val LABELED' refits it on labeled images of this "
        f"content, {MIN_CALIBRATION_IMAGES} or more of every class" if report["calibration_dropped"] else ""),
        file=output, flush=True)


def refit_settings(run_dir):
    """(known rate, radii, means) of `run_dir`'s open-set calibration, as calibration.json records them (the
    defaults when it has none, or for radii and means when its score measures no distance): what an adapted run's
    refitted calibration keeps (`adapt_model`'s `refit`), every setting `calibrate` takes but the data (`--known-rate`,
    `--radii`, `--means`; its `--score` is read from the model, `_refit_score`). `adapt --labeled` keeps the known rate
    and radii but not the means: its score measures to the points its head answers by (`head_points`), whatever
    the run measured to (`_labeled_calibration`)."""
    from dnadet_tf.calibrate import calibrated_known_rate, calibrated_means, calibrated_radii
    from dnadet_tf.openset import DEFAULT_MEANS, DEFAULT_RADII

    return (calibrated_known_rate(run_dir), calibrated_radii(run_dir) or DEFAULT_RADII,
            calibrated_means(run_dir) or DEFAULT_MEANS)


def _refit_means(refit):
    """The means of a `refit` tuple (known rate, radii[, means]); DEFAULT_MEANS where it has none (a caller of the
    two settings of before)."""
    from dnadet_tf.openset import DEFAULT_MEANS

    return refit[2] if len(refit) > 2 else DEFAULT_MEANS


def _refit_score(score):
    """The score a refitted calibration uses: the run's `score` when a distance score, else DEFAULT_SCORE (a
    left-out image needs distances)."""
    from dnadet_tf.openset import DEFAULT_SCORE, RADIUS_SCORES

    return score if score in RADIUS_SCORES else DEFAULT_SCORE


def _labeled_calibration(model, labeled, score, refit, batch_size, say, head, groups=None, features=None):
    """Attaches to `model` the open-set calibration of `labeled_calibration` on the labeled images, with the
    (known rate, radii) `refit` of the run's own and its `score` when a distance score, else DEFAULT_SCORE (None
    when it had none), measured to the points the head answers by (`head_points` of `head`, the report of the
    `labeled_head` made of them with `groups`, each image's DATA; the temperature fitted on each image's logits
    under the head made of the others), from the labeled images' pooled `features` when given; returns the report.
    `say` prints its line."""
    from dnadet_tf.calibrate import labeled_calibration

    # the run's means (refit[2]) are not the points: the head answers by its own, which the score measures to
    score, (known_rate, radii), means = _refit_score(score), refit[:2], head_points(head)
    statistics, report = labeled_calibration(model, labeled, score, known_rate, radii, batch_size, means, features,
                                             head, groups)
    model.calibrate(statistics)
    say(f"open-set calibration fitted on the {len(labeled)} labeled images, each scored {_scored(means)}: score "
        f"'{score}', threshold {report['threshold']:.4g} (keeps {100 * report['known_rate']:.0f} % of them as "
        f"known)")
    return report


def _scored(means):
    """How a left-out image is scored with `means` ("class", "image" or K), as the calibration lines say it."""
    return ("by its distance to the nearest of the others of each class" if means == "image" else
            f"by its distance to the nearest of {means} k-means centres of the others of each class"
            if isinstance(means, int) else "with the class statistics of the others")


def _answered_calibration(model, paths, score, refit, temperature, batch_size, say):
    """Attaches to `model` the open-set calibration of `answered_calibration` on the unlabeled images it was
    adapted to (`paths`), each labeled by the model's answer, with the (known rate, radii, means) `refit` and
    `temperature` of the run's own (its `score` when a distance score, else DEFAULT_SCORE); returns the report, or
    None (a line says why) when a class is the answer for fewer than MIN_CALIBRATION_IMAGES of them. `say` prints its
    lines."""
    from dnadet_tf.calibrate import answered_calibration

    score, (known_rate, radii), means = _refit_score(score), refit[:2], _refit_means(refit)
    try:
        statistics, report = answered_calibration(model, paths, score, known_rate, radii, batch_size, means=means,
                                                  temperature=temperature, min_images=MIN_CALIBRATION_IMAGES)
    except ValueError as error:
        say(f"open-set calibration not refitted on the images: {error}")
        return None
    model.calibrate(statistics)
    say(f"open-set calibration fitted on the {len(paths)} images, each labeled by the adapted run's answer ("
        + ", ".join(f"{count} {name}" for name, count in report["answers"].items())
        + f") and scored {_scored(means)}: score '{score}', threshold "
        f"{report['threshold']:.4g} (keeps {100 * report['known_rate']:.0f} % of them as known); images of "
        f"architectures the run never saw among them count as known")
    return report

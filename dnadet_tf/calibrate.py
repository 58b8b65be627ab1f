"""Fitting a run's `Calibration` after training: temperature scaling and the open-set score.

    run dir (best.keras, config.json) + its training and validation images
      -> pooled features and logits (one pass of the encoder per image)
      -> `openset.fit_statistics` -> best.keras with a `Calibration`, calibration.json

`fit` calls `calibrate_run` at its end; `dnadet-tf calibrate RUN` refits an existing run
(another score, other validation images, or a run made before calibration existed).
"""
import json
import os
import sys

import numpy as np
import tensorflow as tf

from dnadet_tf.data import hold_out, is_benchmark_dir, read_dataset, read_usable
from dnadet_tf.errors import DataError, DnadetError, RunDirError
from dnadet_tf.openset import (DEFAULT_MEANS, DEFAULT_RADII, DEFAULT_SCORE, KNOWN_RATE, MIN_RADIUS_IMAGES,
                               RADIUS_SCORES, check_known_rate, check_means, check_radii, fit_statistics)
from dnadet_tf.predictor import features_and_logits
from dnadet_tf.prototypes import head_points
from dnadet_tf.runs import ADAPTATION_FILE, RunDir, read_by_tree, write_json_atomic

CALIBRATION_FILE = "calibration.json"
FEW_VALIDATION_IMAGES = 20  # below this, calibrate says that its threshold rests on one or two images
# calibration.json's `val` for a run that held out its validation images from its training data (`val_split`)
HELD_OUT = "the share val_split of the training data, held out"
# What rests on the validation images of `calibrate`, for `require_val_unlearned_by`'s lines.
CALIBRATED_ON_VAL = "the temperature and the open-set threshold"


def _calibration_report(run_dir):
    """The run's calibration.json as a dict, or None when the run has none."""
    path = os.path.join(run_dir, CALIBRATION_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def calibrated_known_rate(run_dir, default=KNOWN_RATE):
    """The share of validation images the run's open-set threshold keeps as known, as its calibration.json
    records it (`calibrate --known-rate`; KNOWN_RATE in a file written before the field existed), or `default`
    when the run has no calibration.json."""
    report = _calibration_report(run_dir)
    return default if report is None else float(report.get("known_rate", KNOWN_RATE))


def calibrated_radii(run_dir):
    """The radii of a run's stored calibration as its calibration.json records them: "per-class", "shared"
    ("shared" in a file written before radii existed), None for a score without radii or a run with no
    calibration.json."""
    report = _calibration_report(run_dir)
    if report is None:
        return None
    return report.get("radii", "shared" if report.get("score") in RADIUS_SCORES else None)


def calibrated_means(run_dir):
    """What the distance score of a run's stored calibration measures to, as its calibration.json records it:
    "class", "image" or a number of k-means centres per class ("class" in a file written before `means` existed),
    None for a score without distances or a run with no calibration.json."""
    report = _calibration_report(run_dir)
    if report is None or report.get("score") not in RADIUS_SCORES:
        return None
    return report.get("means") or DEFAULT_MEANS


def calibrated_left_out(run_dir):
    """calibration.json's `val` (a spec or a list of them) of a run whose threshold was fitted with its validation
    images left out of the class statistics (`val_left_out`: `adapt --labeled`, or `calibrate` with --val among
    --data), else None (any other run, or none calibrated)."""
    report = _calibration_report(run_dir)
    return report["val"] if report is not None and report.get("val_left_out") else None


def calibrated_val(run_dir):
    """calibration.json's `val` (a spec, HELD_OUT, or a list of specs): the known images the run's stored
    temperature and open-set threshold were fitted on, as `fit`, `calibrate` or `adapt` recorded them; None for a
    run with no calibration.json (or one that records none)."""
    report = _calibration_report(run_dir)
    return None if report is None else report.get("val") or None


def calibrated_data(run_dir):
    """calibration.json's `data` (a spec or a list of them): the training images the run's stored class statistics
    were fitted on; None for a run with no calibration.json (or one that records none)."""
    report = _calibration_report(run_dir)
    return None if report is None else report.get("data") or None


def recorded_settings(run_dir):
    """The settings of a run's stored calibration as its calibration.json records them, to fit it again alike:
    {"score", "known_rate", "radii", "means", "data", "val"} (radii and means as `calibrate_run` takes them:
    DEFAULT_RADII and None for a score without distances; data and val None where not recorded), or None for a run
    with no calibration.json."""
    report = _calibration_report(run_dir)
    if report is None:
        return None
    score = report.get("score") or DEFAULT_SCORE
    distances = score in RADIUS_SCORES
    return {"score": score, "known_rate": calibrated_known_rate(run_dir),
            "radii": (calibrated_radii(run_dir) or DEFAULT_RADII) if distances else DEFAULT_RADII,
            "means": calibrated_means(run_dir) if distances else None,
            "data": report.get("data") or None, "val": report.get("val") or None}


def settings_text(settings):
    """`recorded_settings` in words, as a line names them: "score 'cosine', known rate 0.9, radii per-class,
    means class; --data D --val V"."""
    words = [f"score '{settings['score']}'", f"known rate {settings['known_rate']:g}"]
    if settings["score"] in RADIUS_SCORES:
        words += [f"radii {settings['radii']}", f"means {settings['means']}"]
    specs = [f"--{name} {spec_text(settings[name])}" for name in ("data", "val") if settings[name]]
    return ", ".join(words) + (f"; {' '.join(specs)}" if specs else "")


def spec_text(spec):
    """A data spec, or a list of them (as `adapt` records several), in words: the paths joined by spaces."""
    return " ".join(map(str, spec)) if isinstance(spec, (list, tuple)) else str(spec)


def validation_spec(config, data=None):
    """The known images a run's temperature and open-set threshold are fitted on: HELD_OUT when the run held
    them out of its own training data (`val_split`, as `fit` did: `data.hold_out`; also when the class statistics
    come from other `data`), else config.json `val`, else the benchmark's val.txt of `data` (default the run's
    training data); None when there are none."""
    data = data or config.data
    if config.val_split and config.data:  # config forbids val beside val_split
        return HELD_OUT
    return config.val or (data if data and is_benchmark_dir(data) else None)


def labeled_calibration(model, files, score=DEFAULT_SCORE, known_rate=KNOWN_RATE, radii=DEFAULT_RADII,
                        batch_size=32, means=DEFAULT_MEANS, features=None, head=None, groups=None):
    """(OpenSetStatistics, report) of `fit_statistics` with the labeled images `files` (`LabeledFiles` in the
    model's classes) as both the training and the validation images, each scored leave-one-out: the calibration
    `adapt --labeled` fits on its labeled images. `score` must be a distance score (RADIUS_SCORES), the kind a
    left-out image can be scored by; `means` "class", "image" or K (`openset.check_means`). `features`: (N, D) pooled
    features of `files` under `model`'s encoder when the caller has them (`labeled_head` read them already);
    the logits then come from the model's head alone, without a second pass over the images. `head`: the report of
    the `labeled_head` the model's logits layer was made of `files` (with `groups`, each image's DATA), when it was:
    the temperature is then fitted on each image's logits under the head made of the others
    (`labeled_head.left_out_logits`), as the threshold scores it with the class statistics of the others."""
    check_left_out_score(score)
    if features is None:
        features, logits = features_and_logits(model, files.paths, batch_size)
    else:
        features = np.asarray(features, np.float32)
        if features.shape != (len(files.labels), model.backbone.feature_dim):
            raise ValueError(f"features: expected shape ({len(files.labels)}, {model.backbone.feature_dim}) "
                             f"(one pooled feature per labeled image), received {features.shape}.")
        logits = np.asarray(model.head_logits(tf.constant(features)), np.float32)
    left_out = None
    if head is not None:
        from dnadet_tf.labeled_head import left_out_logits

        left_out = left_out_logits(features, files.labels, logits, head, groups)
    return left_out_statistics(score, features, logits, files.labels, model.num_classes, known_rate, radii, means,
                               left_out)


def check_left_out_score(score):
    """Raises ValueError unless `score` is a distance score (RADIUS_SCORES), the kind a left-out image can be
    scored by."""
    if score not in RADIUS_SCORES:
        raise ValueError(f"score: expected one of {', '.join(RADIUS_SCORES)} (a distance score, which can leave "
                         f"an image out), received {score!r}.")


def left_out_statistics(score, features, logits, labels, num_classes, known_rate, radii, means,
                        temperature_logits=None):
    """`fit_statistics` with the same images (features (N, D), logits (N, C), labels (N,)) as training and
    validation images, each scored with the statistics of the others (`temperature_logits`: `fit_statistics`')."""
    return fit_statistics(score, features, labels, num_classes, features, logits, labels, known_rate, radii,
                          val_in_train=np.arange(len(labels)), means=means, temperature_logits=temperature_logits)


def answered_calibration(model, paths, score=DEFAULT_SCORE, known_rate=KNOWN_RATE, radii=DEFAULT_RADII,
                         batch_size=32, means=DEFAULT_MEANS, temperature=1.0, min_images=2):
    """(OpenSetStatistics, report) of `fit_statistics` on unlabeled images, each labeled by the model's own answer
    (a pseudo-label) and scored leave-one-out, as `labeled_calibration` scores labeled ones: the calibration `adapt
    --images` fits on the images it adapted to. paths: N image files; `score` a distance score. The temperature is
    not fitted (an answer is always the most probable class, so its NLL would fall with the temperature to 0):
    `temperature` is kept (the run's own). The report adds `answers` ({class name: images answered so}) and
    `pseudo_labels` True. Raises ValueError naming the classes answered for fewer than `min_images` images
    (their statistics would be those of others)."""
    check_left_out_score(score)
    features, logits = features_and_logits(model, paths, batch_size)
    labels = logits.argmax(axis=-1).astype(np.int64)
    counts = np.bincount(labels, minlength=model.num_classes)
    few = [f"{name} ({count})" for name, count in zip(model.class_names, counts) if count < min_images]
    if few:
        raise ValueError(f"expected {min_images} or more images answered as each class to fit the open set on, "
                         f"received fewer for {', '.join(few)} of {len(labels)} images.")
    statistics, report = left_out_statistics(score, features, logits, labels, model.num_classes, known_rate, radii,
                                             means)
    statistics.temperature = float(temperature)
    for key in ("val_nll_before", "val_nll_after", "val_ece_before", "val_ece_after"):
        report.pop(key)  # measured against the answers themselves: no measure of calibration
    report.update(temperature=float(temperature), pseudo_labels=True,
                  answers={name: int(count) for name, count in zip(model.class_names, counts)})
    return statistics, report


def rows_among(paths, others):
    """(len(paths),) ints: each path's index in `others` (the same file, by real path), -1 where it is not there."""
    where = {os.path.realpath(path): index for index, path in enumerate(others)}
    return np.array([where.get(os.path.realpath(path), -1) for path in paths], np.int64)


def validation_outputs(model, paths, in_train, train_features, train_logits, batch_size=32):
    """(features (N, D), logits (N, C)) of the validation images `paths`: those of a training image (`in_train`,
    `rows_among`: its row, else -1) copied from the training images' (`train_features`, `train_logits`), only the
    others read and encoded (`--val` equal to `--data` reads every image once)."""
    shared = in_train >= 0
    new = np.flatnonzero(~shared)
    features = np.zeros((len(paths), train_features.shape[1]), train_features.dtype)
    logits = np.zeros((len(paths), train_logits.shape[1]), train_logits.dtype)
    features[shared] = train_features[in_train[shared]]
    logits[shared] = train_logits[in_train[shared]]
    if len(new):
        features[new], logits[new] = features_and_logits(model, [paths[i] for i in new], batch_size)
    return features, logits


def _spec_record(spec):
    """A data spec (or a list of them) as calibration.json records it: a path made absolute when it exists."""
    if isinstance(spec, (list, tuple)):
        return [_spec_record(item) for item in spec]
    return os.path.abspath(spec) if os.path.exists(spec) else spec


def adapted_labeled(run, data=None, val=None):
    """What a run written by `dnadet-tf adapt --labeled` is calibrated on by default: {"data": the labeled DATA (a
    list; the training and validation images when `data` is None), "points": the `openset.MEANS` its head answers
    by (the default `means`), "head": adaptation.json's report of its head (`labeled_head`)}; None for a run not
    adapted, or adapted to unlabeled images with `data` and `val` given.
    Raises DataError for a run adapted to unlabeled images (`--images`, `--photos`) when `data` is None, and for any
    adapted run given `data` without `val`: config.json's training and validation data are the content before
    adaptation, the one the run no longer describes."""
    path = run.file(ADAPTATION_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        adaptation = json.load(f)
    if data and not val:
        own = validation_spec(run.config, data)
        raise DataError(f"val: expected along with `data` for {run.path}, a run adapted by 'dnadet-tf adapt' to "
                        f"images of other content ({ADAPTATION_FILE}), whose own validation images "
                        f"({'none' if own is None else own}) are the content before it; pass `val` with labeled "
                        f"images of the content it was adapted to (the same as `data` scores each left out).")
    if "labeled" not in adaptation:
        if data:
            return None
        raise DataError(f"{run.path}: adapted by 'dnadet-tf adapt' to images of other content ({ADAPTATION_FILE}), "
                        f"where config.json's training data {run.config.data} is the content before it; expected "
                        f"--data and --val with labeled images of the content it was adapted to.")
    return {"data": list(adaptation["labeled"]["data"]), "points": head_points(adaptation["labeled"]),
            "head": adaptation["labeled"]}


def calibrate_run(run_dir, score=DEFAULT_SCORE, data=None, val=None, batch_size=32, output=None, files=None,
                  known_rate=KNOWN_RATE, radii=DEFAULT_RADII, means=None, check_val=True):
    """Fits and stores the run's calibration; returns the report (also written to calibration.json).

    Args:
      run_dir: a run dir with best.keras.
      score: the open-set score to store (`openset.SCORES`).
      data: training images for the class statistics; default the run's own (config.json `data`), or for a run
        of `adapt --labeled` the labeled images it was adapted to (`adapted_labeled`; a run adapted to unlabeled
        images needs `data`).
      val: known images for the temperature and the threshold; default the run's validation data
        (config.json `val`, the images `fit` held out of its data by `val_split`, also with other `data`, or the
        benchmark's val.txt), or for a run of `adapt --labeled` without `data` its labeled images, each scored
        leave-one-out; an adapted run given `data` needs `val` (its own validation data are the content before
        adaptation).
      known_rate: the share of the validation images the open-set threshold keeps as known (0 to 1; default
        0.95): lower flags more unknown architectures, and more known ones under a shift (docs/results.md, "Unknown
        architectures").
      radii: "shared" (default): one scale for every class; "per-class": the distance scores measure each
        class's distance in units of its own radius, the distance that keeps `known_rate` of that class's
        validation images.
      means: "class" (None, the default, for a run not adapted by `adapt --labeled`, where it is the points its
        head answers by): a distance score measures to each class's mean of the training images;
        "image": to the nearest training image of each class (every image its own mean; the calibration stores
        every training image's feature); a number K: to the nearest of K k-means centres of each class's
        training images (at most K points per class, whatever the number of images).
      files: (training, validation) LabeledFiles already read and checked in the run's label order
        (`fit` passes its own), in place of reading `data` and `val` again.
      check_val: whether a given `val` is checked against the images the run trained on
        (`require_val_unlearned_by`); `fit --resume`, calibrating again on what calibration.json records, passes
        False.

    Raises DataError when there are no validation images, or, before the model is loaded, when every image of a
    given `val` is one the run trained on (some: a warning line), and RunDirError, before the model is loaded, when
    `run_dir` lies inside a folder tree it would read (`require_run_outside_data`).
    """
    output = output or sys.stdout
    run = RunDir(run_dir)
    labeled = adapted_labeled(run, data, val)
    known_rate, means = checked_settings(known_rate, radii, means, labeled, score)  # before any slow work
    config = run.config
    if files is None:  # before the model is loaded: a run dir its own data would read as a class
        require_run_outside_data(run_dir, config, data, val, labeled)
        if check_val and isinstance(val, (str, os.PathLike)):
            require_val_unlearned_by(run, val)
    model = run.load_model()
    if labeled and not data and files is None:  # its labeled images, as `adapt --labeled` calibrated on them
        data, val, files = adapted_labeled_files(run_dir, labeled, model, val, output)
    data, val = calibration_specs(run_dir, config, data, val)
    train_files, val_files = files if files is not None else read_calibration_files(model, config, data, val)
    check_calibration_files(model, train_files, val_files, data, val, output)
    statistics, report = fit_calibration(run_dir, model, train_files, val_files, score, known_rate, radii, means,
                                         batch_size, output, labeled)
    store_calibration(run, model, statistics, report, data, val)
    say_calibration(run, model, report, score, output)
    return report


def require_run_outside_data(run_dir, config, data=None, val=None, labeled=None):
    """Raises RunDirError, one line naming the run, the folder tree and what to do, when run dir `run_dir` is or lies
    inside a folder tree `calibrate_run` would read: `data` and `val`, or where not given the run's own (config.json's
    training data, validation data or the training data `val_split` held a share of; for a run of `adapt --labeled`
    without `data`, the labeled images of adaptation.json). Such a tree would read the run dir as a class, or its
    files as images of a class (`runs.read_by_tree`: a benchmark folder, a list or a hidden folder read nothing of
    it), as `fit` refuses an `out` there (`training.require_out_outside_trees`). Compared by real path."""
    if labeled and not data:
        own = {"data": (labeled["data"], "the labeled images it was adapted to", ADAPTATION_FILE), "val": None}
    else:
        spec = validation_spec(config, data)
        own = {"data": (config.data, "its own training data", "config.json"),
               "val": (config.data, "its own training data", "config.json; it validates on a share held out of it")
               if spec == HELD_OUT else (spec, "its own validation data", "config.json")}
    for name, given in (("data", data), ("val", val)):
        if not given and own[name] is None:
            continue
        specs, what, record = (given, None, None) if given else own[name]
        for tree in specs if isinstance(specs, (list, tuple)) else [specs]:
            words = read_by_tree(run_dir, tree) if isinstance(tree, (str, os.PathLike)) else None
            if words is None:
                continue
            where = f"the `{name}` folder tree {tree}" if given else f"the folder tree of {what} {tree} ({record})"
            advice = (f"pass another `{name}`" if words == "the folder itself" else
                      f"move the run dir out of {tree} and calibrate it there")
            raise RunDirError(f"{run_dir}: expected a run dir outside {where}, received {words}; {advice}.")


def require_val_unlearned_by(run, val):
    """`training.require_val_unlearned` for the `val` given to calibrate `run` (a `RunDir`): raises DataError when
    every image of `val` is, by its bytes, one the run trained on (config.json's `data`, less the share `val_split`
    held out of it), warns when some are. Nothing is decoded (`data.same_files`), and nothing is checked when
    that training data is gone or no longer reads, nor for a run of `adapt` (its config.json's data are the content
    before adaptation, which it no longer describes)."""
    from dnadet_tf.training import require_val_unlearned

    def quiet(line):  # what is wrong with the files is said where they are read for the calibration
        return None

    train_files = None if os.path.isfile(run.file(ADAPTATION_FILE)) else run.trained_files()
    if train_files is None:
        return
    require_val_unlearned(train_files, read_dataset(os.fspath(val), "val", warn=quiet), val, CALIBRATED_ON_VAL,
                          "pass other labeled images as `val`")


def checked_settings(known_rate, radii, means, labeled, score=None):
    """(known_rate, means) checked (`openset.check_known_rate`, `check_radii`, `check_means`), `means` None being
    the points the head of a run of `adapt --labeled` answers by (`labeled`, `adapted_labeled`), else each class's
    mean; raises DnadetError with the reason (the CLI names the flags: --known-rate, --radii, --means), also for
    per-class radii or given means with a `score` that measures no distance (they were dropped without a word)."""
    if score is not None and score not in RADIUS_SCORES:
        given = [f"{name}={value!r}" for name, value, default in (("radii", radii, DEFAULT_RADII),
                                                                   ("means", means, None))
                 if value is not None and value != default]
        if given:
            raise DnadetError(f"{given[0].split('=')[0]}: expected with a distance score ({', '.join(RADIUS_SCORES)}), "
                              f"received {' and '.join(given)} with score {score!r}, which reads the logits.")
    if means is None:
        means = labeled["points"] if labeled else DEFAULT_MEANS
    try:
        known_rate = check_known_rate(known_rate)
        check_radii(radii)
        means = check_means(means)
    except ValueError as error:
        raise DnadetError(str(error)) from None
    return known_rate, means


def adapted_labeled_files(run_dir, labeled, model, val, output):
    """(data, val, files) of a run of `adapt --labeled` calibrated on the labeled images it was adapted to
    (`labeled`, `adapted_labeled`): those images as the training images, and as the validation images unless
    `val` is given; files: (training, validation) LabeledFiles in the model's classes."""
    from dnadet_tf.labeled_head import labeled_files as labeled_sets

    train_files = labeled_sets(labeled["data"], model.class_names, model.preprocessing)[0]
    files = (train_files, read_usable(val, "val", model.class_names, model.preprocessing) if val else train_files)
    print(f"{run_dir}: adapted to the labeled images {' '.join(labeled['data'])} ('adapt --labeled'); "
          f"calibrating on them" + (f" and --val {val}" if val else ""), file=output, flush=True)
    return labeled["data"], val or labeled["data"], files


def calibration_specs(run_dir, config, data, val):
    """(data, val): the training and validation data to calibrate on, the run's own (`validation_spec`) where not
    given; raises DataError when either is missing."""
    data = data or config.data
    val = val or validation_spec(config, data)
    if not data:
        raise DataError(f"{run_dir}: config.json names no training data; pass --data DATA.")
    if not val:
        raise DataError(f"{run_dir}: no validation images to calibrate on (the run had none); pass --val DATA.")
    return data, val


def validation_files(val, config, class_names, preprocess):
    """LabeledFiles of the usable images of `val` (a spec, or `validation_spec`'s HELD_OUT: the share val_split of
    the run's training data held out, as `fit` held it out) in `class_names`."""
    if val == HELD_OUT:
        return hold_out(read_usable(config.data, "train", class_names, preprocess), config.val_split)[1]
    return read_usable(val, "val", class_names, preprocess)


def read_calibration_files(model, config, data, val):
    """(training, validation) LabeledFiles of the usable images of `data` and `val` in the model's classes; `val`
    HELD_OUT: the share `val_split` of the run's training data held out, as `fit` held it out (out of `data`, whose
    rest are then the training images, when `data` is the run's own)."""
    train_files = read_usable(data, "train", model.class_names, model.preprocessing)
    if val == HELD_OUT and isinstance(data, str) and os.path.abspath(data) == config.data:
        return hold_out(train_files, config.val_split)
    return train_files, validation_files(val, config, model.class_names, model.preprocessing)


def data_words(flag, spec):
    """How a message names the data `spec` given for `flag` ("--data", "--val"): "--data SPEC", or for the list of
    labeled DATA of a run of `adapt --labeled` (calibrated on them by default, no flag given) "the labeled images
    the run was adapted to (A B)"."""
    if isinstance(spec, (list, tuple)):
        return f"the labeled images the run was adapted to ({spec_text(spec)})"
    return f"{flag} {spec}"


def check_calibration_files(model, train_files, val_files, data, val, output):
    """Raises DataError unless there are validation images and training images of every class of the model, two or
    more of a class whose validation images are among them (left out in turn, one would leave none); warns when
    there are fewer than FEW_VALIDATION_IMAGES validation images."""
    if len(val_files) == 0:
        raise DataError(f"{data_words('--val', val)}: no usable images; expected known images of the run's classes.")
    missing = [name for label, name in enumerate(model.class_names) if not np.any(train_files.labels == label)]
    if missing:
        raise DataError(f"{data_words('--data', data)}: expected training images of every class of the run, received "
                        f"none of {', '.join(missing)} (a class's statistics need its own images).")
    shared = rows_among(val_files.paths, train_files.paths) >= 0  # scored with themselves left out
    alone = [name for label, name in enumerate(model.class_names)
             if np.any(shared & (val_files.labels == label)) and np.sum(train_files.labels == label) < 2]
    if alone:
        raise DataError(f"{data_words('--data', data)}: expected 2 or more training images of every class whose "
                        f"validation images are training images too (each is scored with itself left out), "
                        f"received one of {', '.join(alone)}; add labeled images of it or pass --val with other "
                        f"images.")
    if len(val_files) < FEW_VALIDATION_IMAGES:
        print(f"warning: {len(val_files)} validation images; the temperature and the open-set threshold (a quantile "
              f"of their scores) rest on them alone, so one or two images set the threshold.", file=output, flush=True)


def fit_calibration(run_dir, model, train_files, val_files, score, known_rate, radii, means, batch_size, output,
                    labeled=None):
    """(OpenSetStatistics, report) of `fit_statistics` on the pooled features and logits of the training and
    validation images (one pass of the encoder per image: a validation image that is a training image too is
    read once, and scored leave-one-out by a distance score); for a run of `adapt --labeled` (`labeled`,
    `adapted_labeled`'s) the temperature is fitted with each validation image that is one of its head's labeled
    images left out of the head (`left_out_head_logits`)."""
    print(f"calibrating {run_dir}: features of {len(train_files)} training and {len(val_files)} validation images "
          f"...", file=output, flush=True)
    train_features, train_logits = features_and_logits(model, train_files.paths, batch_size)
    val_in_train = rows_among(val_files.paths, train_files.paths)
    val_features, val_logits = validation_outputs(model, val_files.paths, val_in_train, train_features,
                                                  train_logits, batch_size)
    shared = int(np.sum(val_in_train >= 0))
    if shared:
        print(shared_validation_note(shared, len(val_files), score, known_rate), file=output, flush=True)
    temperature_logits = left_out_head_logits(model, labeled, val_files.paths, val_logits,
                                              (train_files.paths, train_features, train_logits), batch_size)
    return fit_statistics(score, train_features, train_files.labels, model.num_classes, val_features, val_logits,
                          val_files.labels, known_rate, radii, val_in_train, means, temperature_logits)


def left_out_head_logits(model, labeled, val_paths, val_logits, known, batch_size=32):
    """`val_logits` (N_val, C) of the validation images `val_paths` of a run of `adapt --labeled` (`labeled`,
    `adapted_labeled`'s) with the row of each that is one of its head's labeled images replaced by its logits under
    the head made of the others (`labeled_head.left_out_logits`), as the distance scores leave it out of the class
    statistics; None when none is (or `labeled` is None). known: (paths, features, logits) of images encoded
    already, taken rather than read again."""
    if labeled is None:
        return None
    from dnadet_tf.labeled_head import labeled_files, left_out_logits

    try:  # read and checked before (`adapted_labeled_files`), or where --data is other images, maybe gone since
        files, groups = labeled_files(labeled["data"], model.class_names, model.preprocessing, warn=lambda line: None)
    except DataError:
        return None
    rows = rows_among(val_paths, files.paths)
    if not np.any(rows >= 0):
        return None
    features, logits = validation_outputs(model, files.paths, rows_among(files.paths, known[0]), known[1], known[2],
                                          batch_size)
    result = np.array(val_logits, np.float64)
    result[rows >= 0] = left_out_logits(features, files.labels, logits, labeled["head"], groups)[rows[rows >= 0]]
    return result


def shared_validation_note(shared, count, score, known_rate):
    """The line saying that `shared` of the `count` validation images are training images too, and what `score`
    does with them."""
    return (f"--val: {shared} of the {count} validation images are training images too"
            + ("; each is scored with the class statistics fitted without it (leave-one-out)"
               if score in RADIUS_SCORES else
               f"; the '{score}' score cannot leave them out, so the threshold keeps fewer new images than "
               f"{100 * known_rate:.0f} %"))


def store_calibration(run, model, statistics, report, data, val):
    """Stores `statistics` in the model and the run's best.keras, records the data specs in `report`, and writes
    it to the run's calibration.json."""
    model.calibrate(statistics)
    run.save_best(model)
    report.update(data=_spec_record(data), val=_spec_record(val))
    write_json_atomic(run.file(CALIBRATION_FILE), report)


def say_calibration(run, model, report, score, output):
    """Prints what was fitted: a warning for classes of --radii per-class too few to have their own radius, then
    the temperature, the open-set score and its threshold."""
    if report["shared_radius_classes"]:
        names = ", ".join(model.class_names[c] for c in report["shared_radius_classes"])
        print(f"warning: --radii per-class: fewer than {MIN_RADIUS_IMAGES} validation images of {names}; "
              f"{'its' if len(report['shared_radius_classes']) == 1 else 'their'} radius is the one of every "
              f"validation image (shared)", file=output, flush=True)
    print(f"calibration: temperature {report['temperature']:.3f} (validation NLL {report['val_nll_before']:.4f} -> "
          f"{report['val_nll_after']:.4f}, ECE {100 * report['val_ece_before']:.2f} -> "
          f"{100 * report['val_ece_after']:.2f} %); open-set score '{score}', threshold "
          f"{report['threshold']:.4g} (keeps {100 * report['known_rate']:.0f} % of validation images as known"
          f"{'; distances in units of each class radius' if report['class_radii'] else ''}"
          f"{points_text(report, model.class_names)}); "
          f"stored in {run.best_model_path}", file=output, flush=True)


def points_text(report, class_names):
    """What the distance score measures to, as the calibration line says it after the threshold: "" for each
    class's mean; the nearest training image, or the nearest of K k-means centres (naming the classes with fewer
    training images than K)."""
    if report["means"] == "image":
        return "; distances to the nearest training image of each class"
    if not isinstance(report["means"], int):
        return ""
    fewer = [f"{name} {count}" for name, count in zip(class_names, report["points_per_class"] or [])
             if count < report["means"]]
    return (f"; distances to the nearest of {report['means']} k-means centres of each class"
            + (f" (as many as its training images where fewer: {', '.join(fewer)})" if fewer else ""))

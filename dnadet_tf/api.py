"""The public API, re-exported by `dnadet_tf`: train, load, predict, evaluate, export.

The examples run as doctests (tests/test_api.py) with two names given: DATA, a folder
with train/ and val/ trees of three classes (`ROOT/<class>/*.png`), and TMP, an empty
scratch folder.
"""
import os

from dnadet_tf.errors import DnadetError

PRECISIONS = ("float32", "mixed_bfloat16")  # what `load(precision=...)` computes a run dir's encoder in


def fit(data, out, val=None, preset=None, **options):
    """Trains an attributor on `data` into run dir `out`; returns the training summary (a dict).

    `data` and `val`: a folder tree `ROOT/<class>/...`, an annotation list, or a benchmark
    folder. `preset`: `cpu` (None: `cpu` for a new run, the run's own with `resume`), `paper` or `tiny`.
    `options`: `resume`, `overwrite`, `init_partial`, `output` (a stream for the
    progress lines) and any flat configuration parameter (`steps`, `width`, `mode`, ...).
    The `cpu` preset starts from the step 1 shipped with the package (`init="packaged"`), so it
    trains the full method, DNA-Det; `init="none"` trains from random initialisation (the paper's
    Base+PCL, the `paper` and `tiny` presets' default); `init=PRETRAIN_RUN` starts from your own step 1.
    With validation data, the run is then calibrated (`calibration.json`: temperature and open-set score).
    For runs that repeat exactly, training sets process-wide state: Python's, NumPy's and Keras' random seeds
    (the run's `seed`) and, on a machine without GPUs, TensorFlow's inter-op pool to one thread (which must happen
    before TensorFlow starts; after, a warning line says the run may differ in the last digits).

    >>> import io, os, dnadet_tf
    >>> run = os.path.join(TMP, "run")
    >>> summary = dnadet_tf.fit(os.path.join(DATA, "train"), run, val=os.path.join(DATA, "val"),
    ...                         preset="tiny", steps=4, output=io.StringIO())
    >>> summary["end_step"], sorted(os.listdir(run))[:3], summary["calibration"]["score"]
    (4, ['best.keras', 'calibration.json', 'checkpoints'], 'mahalanobis')
    """
    from dnadet_tf.training import fit as fit_run

    return fit_run(data, out, val=val, preset=preset, **options)


def load(path, precision=None):
    """A predictor for a run dir (its best.keras), a SavedModel folder or a .tflite file, with
    `class_names`, `preprocess` (a PreprocessConfig) and `predict_pixels(pixels (N, S, S, 3)
    float32 in [-1, 1]) -> (N, C) probabilities`; a run dir's predictor also has `model`,
    the `Classifier`. `precision` ("float32" or "mixed_bfloat16") applies to run dirs only:
    the encoder computes in it (exports keep their own).

    >>> import os, dnadet_tf
    >>> model = dnadet_tf.load(os.path.join(TMP, "run"))
    >>> model.class_names, model.model.backbone.width
    (['real', 'nearest', 'transposed'], 0.0625)
    """
    from dnadet_tf.config import path_parameter
    from dnadet_tf.predictor import KerasPredictor
    from dnadet_tf.runs import RunDir, describe_path, is_exported_model

    path = path_parameter("path", path, "a run dir, a SavedModel folder or a .tflite file")
    if is_exported_model(path):
        from dnadet_tf.exports.predictors import load_exported_predictor

        if precision is not None:
            raise DnadetError(f"precision: applies to a run dir's best.keras, not to the export {path}.")
        return load_exported_predictor(path)
    if precision not in (None, *PRECISIONS):
        raise DnadetError(f"precision: expected None (as trained) or one of {', '.join(PRECISIONS)}, "
                          f"received {precision!r}.")
    if not RunDir(path).holds_run:
        raise DnadetError(f"model {path}: expected a run dir written by 'dnadet-tf fit', a SavedModel folder or a "
                          f".tflite file, received {describe_path(path)}.")
    return KerasPredictor(path, precision=precision)


def _predictor(model):
    """`model` as a predictor: a path (str or os.PathLike) is loaded, a predictor `load` returned is kept; anything
    else raises DnadetError naming `model`."""
    if isinstance(model, (str, os.PathLike)):
        return load(model)
    if not all(hasattr(model, name) for name in ("predict_pixels", "attribute_pixels", "preprocess", "class_names")):
        raise DnadetError(f"model: expected a path (a run dir, a SavedModel folder or a .tflite file) or a predictor "
                          f"returned by dnadet_tf.load, received {type(model).__name__}.")
    return model


def _paths(name, values, what, required=True):
    """`values` (one path, or several) as a list of str; DnadetError naming `name` for an item that is not a path
    (str or os.PathLike; bytes are one wrong item, not a sequence of them), or for none unless not `required` (then
    None or an empty list is []): `what` says what the paths should be."""
    from dnadet_tf.config import path_parameter

    if values is None and not required:
        return []
    values = [values] if isinstance(values, (str, os.PathLike, bytes, bytearray)) else values
    try:
        values = list(values)
    except TypeError:
        values = [values]
    if not values and required:
        raise DnadetError(f"{name}: expected {what} (str or pathlib.Path), received none.")
    return [path_parameter(name, value, what) for value in values]


def _batch_size(batch_size):
    """`batch_size` as an int (a NumPy integer too); DnadetError unless it is a positive integer."""
    from dnadet_tf.config import plain

    value = plain(batch_size)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DnadetError(f"batch_size: expected a positive integer, received {batch_size!r}.")
    return value


def predict(model, inputs, batch_size=16):
    """(paths, probabilities): the image files found in `inputs` (a path or a list of them: files and folders,
    read recursively) that can be decoded and are large enough, and their (N, C) class probabilities; a file
    skipped gets one warning line on stderr. `model`: a path for `load`, or a predictor it returned.

    >>> import os, dnadet_tf
    >>> paths, p = dnadet_tf.predict(os.path.join(TMP, "run"), [os.path.join(DATA, "val", "nearest")])
    >>> p.shape, bool(abs(p.sum(axis=1) - 1).max() < 1e-5)
    ((12, 3), True)
    """
    from dnadet_tf.data import collect_image_paths
    from dnadet_tf.predictor import predict_images

    inputs = _paths("inputs", inputs, "paths of image files or folders")
    batch_size = _batch_size(batch_size)
    model = _predictor(model)
    usable, probabilities, _ = predict_images(model, collect_image_paths(inputs), batch_size)
    return usable, probabilities


def _check_folder_path(out_dir):
    """Raises DnadetError, before any inference, unless a folder can be made at `out_dir`: an existing folder, or a
    missing one whose nearest existing ancestor is a folder (`FILE/sub` failed after the whole evaluation)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DnadetError(f"out_dir {out_dir}: expected a folder for the confusion-matrix PNGs, received a file.")
    from dnadet_tf.runs import nearest_existing

    parent = nearest_existing(os.path.dirname(os.path.abspath(out_dir)))
    if not os.path.isdir(parent):
        raise DnadetError(f"out_dir {out_dir}: expected a folder path for the confusion-matrix PNGs, but {parent} "
                          f"is a file.")


def evaluate(model, data, batch_size=16, out_dir=None, unknown=None):
    """Rows {name, data, metrics} of accuracy, macro-F1, macro recall, per-class recall and the
    confusion matrix, one per dataset in `data` (a path or a list of paths; a benchmark folder
    expands to its closed-set and cross-test splits). `model`: a path for `load` or a predictor. `out_dir`:
    a folder for a confusion-matrix PNG per row, confusion_NAME.png, its path in the row's `confusion_png` (None:
    none written); a file already there is never written over, the PNG then takes the next free name
    (confusion_NAME-2.png, ...). `unknown`: images of architectures
    the model was not trained on (a path or a list: folders, image files, `path<TAB>group` lists or benchmark
    folders; None or an empty list: none);
    with a calibrated model they, and a benchmark folder's open_set.txt, add one last row (`kind`
    "open_set": AUROC, FPR at 95 % TPR, open-set accuracy); an uncalibrated model leaves it out with a
    warning line on stderr (`dnadet-tf calibrate RUN` fits a score).
    A row's images that are, by their bytes (a copy, a link; nothing decoded), training images of the run (its
    config.json's `data`, less the share `val_split` held out of it; a run of `adapt` too) are counted in its
    metrics' `training_images` (an int; the key is absent when none is, and for an exported model or a run whose
    training data are gone, which cannot be checked), with one warning line on stderr per such row: its accuracy
    is measured partly on images the model learned.

    >>> import os, dnadet_tf
    >>> rows = dnadet_tf.evaluate(os.path.join(TMP, "run"), os.path.join(DATA, "val"))
    >>> rows[0]["name"], rows[0]["metrics"]["num_images"]
    ('val', 36)
    """
    import sys

    from dnadet_tf.config import path_parameter
    from dnadet_tf.evaluation import evaluate as evaluate_predictor

    specs = _paths("data", data, "labeled data: folder trees, annotation lists or benchmark folders")
    unknown_specs = _paths("unknown", unknown, "paths of images of unknown architectures (folders, image files, "
                           "lists or benchmark folders)", required=False)
    batch_size = _batch_size(batch_size)
    out_dir = None if out_dir is None else path_parameter("out_dir", out_dir, "a folder for the confusion-matrix PNGs")
    if out_dir is not None:
        _check_folder_path(out_dir)
    model = _predictor(model)
    if unknown_specs and not model.open_set:
        print("warning: unknown: the model stores no open-set score, so the unknown images are not scored "
              "(dnadet-tf calibrate RUN fits one).", file=sys.stderr)
    # no file in out_dir is known to be an earlier evaluation's (there is no listing): none is written over
    return evaluate_predictor(model, specs, out_dir=out_dir, batch_size=batch_size, progress=lambda message: None,
                              unknown_specs=unknown_specs, replaceable=())


def export(run_dir, out_dir, formats="savedmodel,float32,float16,dynamic,int8", **options):
    """Exports run dir `run_dir` to `out_dir/NAME` (default NAME `dnadet`): a SavedModel in TF
    Serving's layout and TFLite attributors, with a parity report; returns the report (a dict
    whose `rows` compare every format with the Keras model). `options`: as
    `dnadet_tf.exports.export.export_run` (name, version, calibration, eval_data, ...).

    >>> import os, dnadet_tf
    >>> report = dnadet_tf.export(os.path.join(TMP, "run"), os.path.join(TMP, "export"), formats="float32",
    ...                           progress=lambda message: None)
    >>> [row["format"] for row in report["rows"]], report["rows"][1]["top1_agreement"]
    (['keras', 'float32'], 1.0)
    """
    import inspect

    from dnadet_tf.config import path_parameter, plain
    from dnadet_tf.exports.export import export_run
    from dnadet_tf.runs import RunDir, describe_path

    expected = "a run dir written by 'dnadet-tf fit' (exports are made from runs)"
    run_dir = path_parameter("run_dir", run_dir, expected)
    out_dir = path_parameter("out_dir", out_dir, "a folder to write the exports into")
    if not RunDir(run_dir).holds_run:
        raise DnadetError(f"run_dir {run_dir}: expected {expected}, received {describe_path(run_dir)}.")
    known = set(inspect.signature(export_run).parameters) - {"run_dir", "out_dir", "formats"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise DnadetError(f"{unknown[0]}: not an option of export; expected one of {', '.join(sorted(known))}.")
    # paths (calibration, eval_data, web_runtime) as str, numbers (version, max_eval, ...) as int or float
    options = {key: plain(value) for key, value in options.items()}
    return export_run(run_dir, out_dir, formats=formats, **options)

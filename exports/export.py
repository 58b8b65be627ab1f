"""A run dir -> SavedModel (TF Serving layout) + TFLite attributors + parity report.

Layout under `--out DIR`:
  DIR/NAME/VERSION/        SavedModel; TF Serving (model base path DIR/NAME) serves the highest VERSION
  DIR/NAME/tflite/         NAME-{float32,float16,dynamic,int8}.tflite, each with a NAME-<format>.json sidecar
  DIR/NAME/report.json     parity report
  DIR/NAME/web/            with format `web`: the static web app running one TFLite file (exports/web.py)
An export adds files: one that it would write and that exists already (its TFLite files and their
JSON, `web/`) stops it before any work unless `overwrite`, and the files of formats it was not asked
for are never removed. `report.json` describes the latest export; the reports of earlier ones stay
in its `earlier` list, each with the rows of its files still in the folder (`_earlier_reports`).
Everything is built in a hidden `DIR/NAME/.export-tmp-*` folder (TF Serving ignores
non-numeric folders) and renamed into place only once complete; an existing
version is replaced only with `overwrite`.
"""
import datetime
import json
import os
import re
import shutil
import tempfile

import numpy as np

from dnadet_tf.data import is_benchmark_dir, read_dataset, remap_to, usable_files
from dnadet_tf.errors import DataError, DnadetError
from dnadet_tf.exports.tflite import TFLITE_FORMATS, sidecar_path, tflite_filename
from dnadet_tf.exports import web
from dnadet_tf.runs import process_alive, write_json_atomic

ALL_FORMATS = ("savedmodel",) + TFLITE_FORMATS + ("web",)
TFLITE_DIR = "tflite"
REPORT_FILE = "report.json"
METADATA_NOTE = (
    "sidecar JSON beside each .tflite file: tflite-support (the TFLite metadata writer) requires protobuf < 4, "
    "which conflicts with the protobuf that TensorFlow 2.21 needs"
)
STAGING_PREFIX = ".export-tmp-"  # + pid + "-": where an export writes its files before moving them into place
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_formats(text):
    """'savedmodel,int8' -> ('savedmodel', 'int8') in canonical order; raises DnadetError on unknown names."""
    names = [part.strip() for part in str(text).split(",") if part.strip()]
    unknown = [name for name in names if name not in ALL_FORMATS]
    if unknown or not names:
        raise DnadetError(f"formats: expected a comma list of {','.join(ALL_FORMATS)}, received {text!r}.")
    return tuple(fmt for fmt in ALL_FORMATS if fmt in names)


def _report_versions(base):
    try:
        with open(os.path.join(base, REPORT_FILE), encoding="utf-8") as f:
            report = json.load(f)
        return {int(entry["version"]) for entry in [report, *report.get("earlier", [])]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def existing_versions(base):
    """Versions present under a model base folder: numeric subfolders, and the versions of the reports
    (the latest export's and its `earlier` ones)."""
    versions = set()
    if os.path.isdir(base):
        versions.update(int(d) for d in os.listdir(base) if d.isdigit() and os.path.isdir(os.path.join(base, d)))
    return versions | _report_versions(base)


def next_version(base):
    return max(existing_versions(base), default=0) + 1


def balanced_subset(labels, count):
    """Sorted indices of at most `count` items, spread evenly over each class and over the files of a class."""
    labels = np.asarray(labels)
    if count <= 0 or count >= len(labels):
        return np.arange(len(labels))
    classes = np.unique(labels)
    per_class = [np.flatnonzero(labels == c) for c in classes]
    chosen, quota = [], count
    for i, members in enumerate(sorted(per_class, key=len)):
        take = min(len(members), quota // (len(per_class) - i))
        chosen.extend(members[np.linspace(0, len(members) - 1, take).round().astype(int)] if take else [])
        quota -= take
    return np.unique(np.asarray(chosen, int))


def _subset(files, indices):
    return type(files)([files.paths[i] for i in indices], files.labels[indices], files.class_names, files.source)


def _read(spec, split, flag):
    if not spec:
        raise DnadetError(f"{flag}: the run records no such data; pass {flag} DATA.")
    if is_benchmark_dir(spec) and not os.path.isfile(os.path.join(spec, f"{split}.txt")):
        split = "test"
    try:
        return read_dataset(spec, split)
    except DataError as error:
        raise DataError(f"{flag}: {error}") from None


def evaluation_files(spec, class_names, preprocess, limit, warn):
    """(paths, labels or None) of the parity images; labels are None when the classes differ from the model's."""
    files = _read(spec, "val", "eval_data")
    try:
        files = remap_to(files, class_names)
        labelled = True
    except DataError as error:
        warn(f"--eval: {error} Accuracy is not reported.")
        labelled = False
    files = usable_files(_subset(files, balanced_subset(files.labels, limit)), preprocess, warn)
    return files.paths, (files.labels if labelled else None)


def calibration_files(spec, preprocess, count, warn):
    """Paths of about `count` training images, balanced over classes, for int8 calibration."""
    files = _read(spec, "train", "calibration")
    return usable_files(_subset(files, balanced_subset(files.labels, count)), preprocess, warn).paths


def threshold_files(config, class_names, preprocess):
    """(spec, paths) of the known images an int8 file's open-set threshold is refitted on: the images
    `calibrate` fits the float threshold on (`calibrate.validation_spec`), or (None, []) when the run has none."""
    from dnadet_tf.calibrate import validation_spec
    from dnadet_tf.data import read_usable

    spec = validation_spec(config)
    if not spec:
        return None, []
    return spec, read_usable(spec, "val", class_names, preprocess).paths


def int8_open_set(predictor, open_set, spec, paths, preprocess, known_rate):
    """The open-set entry of an int8 file's sidecar: `open_set` with the threshold refitted on the int8 scores.

    Int8 activations can inflate the Mahalanobis score (the faces -> scenes default's 3 runs: refitted
    thresholds 3.3-5.9 times the float ones, README "TFLite for mobile apps"): the threshold that keeps
    `known_rate` of the validation images (the float threshold's, `calibrate.calibrated_known_rate`) is fitted
    again on the int8 file's own scores of `paths`; the float model's threshold stays beside it as
    `float_threshold`.
    """
    from dnadet_tf.openset import threshold_at_known_rate
    from dnadet_tf.pipeline import inference_dataset

    scores = np.concatenate([predictor.attribute_pixels(batch)["ood_score"]
                             for batch in inference_dataset(paths, preprocess, 16).as_numpy_iterator()])
    return {**open_set, "threshold": float(threshold_at_known_rate(scores, known_rate)),
            "float_threshold": open_set["threshold"],
            "threshold_fitted_on": {"data": spec, "images": len(paths), "scores": "this int8 file's",
                                    "known_rate": known_rate}}


def left_out_open_set(open_set, spec):
    """The open-set entry of an int8 file's sidecar for a float threshold fitted with its validation images left
    out of the class statistics (`calibrate.calibrated_left_out`): the float threshold, kept. An int8 file cannot leave an image
    out, and its scores of those images are no guide (an adapted faces -> scenes run, 5 labeled images per class:
    the int8 file scored most of them 0; scaling the float threshold by the two quantiles flagged no image, the
    float threshold kept 2.5 % of the new content's known images and 47.5 % of unseen architectures where the
    float file flagged 6.0 and 58.8; docs/results.md, "The open set after `adapt --labeled`")."""
    return {**open_set, "float_threshold": open_set["threshold"],
            "threshold_fitted_on": {"data": spec, "scores": "the float model's, with the images left out (kept: an "
                                                            "int8 file cannot leave them out)"}}


def export_outputs(name, version, formats):
    """Paths, relative to DIR/NAME, that an export of `formats` writes besides report.json: the version
    folder (with savedmodel), each TFLite file and its sidecar JSON, and `web/`."""
    outputs = [str(version)] if "savedmodel" in formats else []
    for fmt in formats:
        if fmt in TFLITE_FORMATS:
            path = os.path.join(TFLITE_DIR, tflite_filename(name, fmt))
            outputs += [path, sidecar_path(path)]
    return outputs + ([web.WEB_DIR] if "web" in formats else [])


def _refuse_existing(base, outputs, what):
    """Raises DnadetError naming the first of `outputs` (paths relative to `base`) that exists."""
    for rel in outputs:
        path = os.path.join(base, rel)
        if os.path.lexists(path):
            raise DnadetError(f"{path}: {what}; pass overwrite=True to replace it, or another `out_dir` or `name`.")


def _earlier_reports(base, outputs, overwrite):
    """The reports of earlier exports that report.json keeps in its `earlier` list: the current report.json and
    its own `earlier` ones, each with only the rows (and web app) of its files still in `base` and not among
    `outputs` (what this export writes); one left with none is dropped. A report.json that is not an export's
    report stops the export unless `overwrite` (then it is replaced)."""
    path = os.path.join(base, REPORT_FILE)
    if not os.path.lexists(path):
        return []
    try:
        with open(path, encoding="utf-8") as f:
            latest = json.load(f)
        reports = [latest, *latest.pop("earlier", [])]
        if not all(isinstance(row, dict) for report in reports for row in report["rows"]):
            raise ValueError("a row that is not an object")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        if overwrite:
            return []
        raise DnadetError(f"{path}: expected the JSON report of an earlier export, received a file that is not "
                          f"one; pass overwrite=True to replace it, or another `out_dir` or `name`.") from None

    def kept(rel):
        return isinstance(rel, str) and rel not in outputs and os.path.exists(os.path.join(base, rel))

    earlier = []
    for report in reports:
        rows = [row for row in report["rows"] if row.get("format") == "keras" or kept(row.get("path"))]
        web_app = report.get("web") if isinstance(report.get("web"), dict) and kept(report["web"].get("path")) \
            else None
        if web_app or any(row.get("format") != "keras" for row in rows):
            earlier.append({**{k: v for k, v in report.items() if k != "web"}, "rows": rows,
                            **({"web": web_app} if web_app else {})})
    return earlier


def _folder_size(path):
    return sum(os.path.getsize(os.path.join(folder, f)) for folder, _, names in os.walk(path) for f in names)


def _check_out(out_dir, name):
    """Raises DnadetError unless DIR/NAME can be a folder: neither DIR, NAME in it nor a folder above
    DIR is a file."""
    base = os.path.join(out_dir, name)
    if os.path.exists(base) and not os.path.isdir(base):
        raise DnadetError(f"out_dir {out_dir}: {base} exists and is not a folder; pass another `out_dir` or `name`.")
    parent = os.path.abspath(out_dir)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise DnadetError(f"out_dir {out_dir}: expected a folder, but {parent} is a file.")


def _remove_abandoned_staging(base, warn):
    """Removes the staging folders of exports into `base` whose process is gone (killed before its
    cleanup ran); those of running exports stay."""
    for entry in sorted(os.listdir(base)):
        pid = entry[len(STAGING_PREFIX):].split("-")[0]
        if entry.startswith(STAGING_PREFIX) and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(os.path.join(base, entry), ignore_errors=True)
            warn(f"removed {os.path.join(base, entry)}, left by an export that was stopped")


def export_run(run_dir, out_dir, name="dnadet", version=None, formats=ALL_FORMATS, calibration=None,
               calibration_images=200, eval_data=None, max_eval=1000, int8_io=False, overwrite=False,
               num_threads=None, web_model="int8", web_runtime=None, equalize=True, progress=print, warn=None):
    """Exports a run dir; returns the report dict (also written to DIR/NAME/report.json).

    `calibration` defaults to the run's training data, `eval_data` to its
    validation data (else its training data). `max_eval` caps the parity images
    (0: all), `calibration_images` the int8 calibration images. Format `web`
    also exports the TFLite format `web_model` (int8 or float32) that the site
    runs; `web_runtime` is the node_modules folder holding LiteRT.js (see
    exports/web.py). `equalize` converts the int8 model from a float-identical
    copy whose channels span equal ranges (exports/equalize.py).
    """
    import tensorflow as tf

    from dnadet_tf.calibrate import calibrated_known_rate, calibrated_left_out
    from dnadet_tf.exports.equalize import equalized_copy
    from dnadet_tf.exports.parity import parity_rows
    from dnadet_tf.exports.predictors import SavedModelPredictor, TFLitePredictor
    from dnadet_tf.exports.savedmodel import write_savedmodel
    from dnadet_tf.exports.tflite import convert, save_pixels_savedmodel, write_sidecar, write_tflite
    from dnadet_tf.pipeline import inference_dataset
    from dnadet_tf.predictor import KerasPredictor

    warn = warn or progress
    formats = parse_formats(",".join(formats)) if not isinstance(formats, str) else parse_formats(formats)
    if not _NAME.match(name) or name.isdigit():
        raise DnadetError(f"name: expected letters, digits, '.', '_' or '-' (not only digits), received {name!r}.")
    if version is not None and int(version) < 1:
        raise DnadetError(f"version: expected a positive integer, received {version}.")
    _check_out(out_dir, name)
    runtime = None
    if "web" in formats:
        if web_model not in web.WEB_MODELS:
            raise DnadetError(f"web_model: expected one of {', '.join(web.WEB_MODELS)}, received {web_model!r}.")
        if int8_io and web_model == "int8":
            raise DnadetError("int8_io: the web app runs the int8 model with float32 input and output (LiteRT.js "
                              "has no int8 tensors); export 'web' without `int8_io`, or with `web_model` float32.")
        runtime = web.find_runtime(web_runtime)
        formats = parse_formats(",".join(formats + (web_model,)))
    if "int8" not in formats:
        for given, flag in ((calibration, "--calibration"), (int8_io, "--int8-io")):
            if given:
                warn(f"{flag} applies to the int8 file only, which --formats {','.join(formats)} does not "
                     f"write; ignored.")
    # Exports compute in float32; so does the reference they are compared with, also for a run trained in
    # bfloat16 (the same weights: its own bfloat16 outputs would differ from any float32 export by ~1e-2).
    reference = KerasPredictor(run_dir, precision="float32")
    run, class_names, preprocess = reference.run, reference.class_names, reference.preprocess
    if "web" in formats:
        web.check_preprocess(preprocess)
    config = run.config
    base = os.path.join(out_dir, name)
    if version is None:
        version = next_version(base)
    elif int(version) in existing_versions(base) and not overwrite:
        raise DnadetError(f"{os.path.join(base, str(version))}: version {version} exists; pass overwrite=True to "
                          f"replace it or another `version`.")
    version = int(version)
    outputs = export_outputs(name, version, formats)
    if not overwrite:
        _refuse_existing(base, outputs, "exists, written by an earlier export")
    earlier = _earlier_reports(base, outputs, overwrite)

    eval_spec = os.path.abspath(eval_data) if eval_data else config.val or config.data  # reports name absolute paths
    eval_paths, eval_labels = evaluation_files(eval_spec, class_names, preprocess, max_eval, warn)
    calibration_spec, calibration_paths = os.path.abspath(calibration) if calibration else config.data, []
    threshold_spec, threshold_paths, left_out = None, [], False
    if "int8" in formats:
        calibration_paths = calibration_files(calibration_spec, preprocess, calibration_images, warn)
        if reference.open_set is not None:
            threshold_spec = calibrated_left_out(run_dir)
            left_out = threshold_spec is not None
            if not left_out:
                threshold_spec, threshold_paths = threshold_files(config, class_names, preprocess)

    common = {
        "created_by": "dnadet-tf export", "name": name, "version": version, "class_names": list(class_names),
        "preprocess": preprocess.to_dict(), "source_run": os.path.abspath(run_dir), "tensorflow": tf.__version__,
        "open_set": reference.open_set,
    }
    if reference.open_set is None:
        warn(f"{run_dir}: no open-set score or temperature stored; the exports answer probabilities only "
             f"(dnadet-tf calibrate {run_dir} fits them).")
    model = reference.model
    os.makedirs(base, exist_ok=True)
    _remove_abandoned_staging(base, warn)
    tmp = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=base)
    try:
        candidates, paths = [], {}
        staged_version = os.path.join(tmp, str(version))
        if "savedmodel" in formats:
            progress(f"writing SavedModel version {version} ...")
            signatures = {"serving_default": "images: string [None] (encoded image bytes)",
                          "predict_pixels": f"pixels: float32 [None, {preprocess.resize2}, {preprocess.resize2}, 3]",
                          "outputs": "probabilities float32 [None, C], class_id int32 [None], class_name string [None]"
                          + (", ood_score float32 [None], unknown bool [None]" if reference.open_set else "")}
            write_savedmodel(model, class_names, preprocess, staged_version, {**common, "signatures": signatures})
            candidates.append(("savedmodel", SavedModelPredictor(staged_version), _folder_size(staged_version)))
            paths["savedmodel"] = str(version)
        tflite_formats = [fmt for fmt in formats if fmt in TFLITE_FORMATS]
        staged_tflite = os.path.join(tmp, TFLITE_DIR)
        if tflite_formats:
            os.makedirs(staged_tflite)
            pixels_model = save_pixels_savedmodel(model, preprocess.resize2, os.path.join(tmp, "pixels-savedmodel"))

            def representative():
                for batch in inference_dataset(calibration_paths, preprocess, 1):
                    yield [batch.numpy()]

            int8_source, equalization = pixels_model, None
            if "int8" in tflite_formats and equalize:
                progress(f"equalising channel ranges on {len(calibration_paths)} calibration images ...")
                equalized, equalization = equalized_copy(model, inference_dataset(calibration_paths, preprocess, 8))
                int8_source = save_pixels_savedmodel(equalized, preprocess.resize2,
                                                     os.path.join(tmp, "pixels-savedmodel-equalized"))
            for fmt in tflite_formats:
                progress(f"converting {tflite_filename(name, fmt)} ...")
                content = convert(int8_source if fmt == "int8" else pixels_model, fmt,
                                  representative if fmt == "int8" else None, int8_io)
                path = os.path.join(staged_tflite, tflite_filename(name, fmt))
                extra = {"calibration": {"data": calibration_spec, "images": len(calibration_paths)},
                         "equalization": equalization} if fmt == "int8" else None
                write_tflite(content, path, fmt, common, preprocess, extra, open_set=reference.open_set)
                if fmt == "int8" and left_out:
                    warn(f"{run_dir}: its open-set threshold was fitted with each validation image left out of the "
                         f"class statistics, which an int8 file cannot do; the int8 file keeps the float threshold.")
                    write_sidecar(content, path, fmt, common, preprocess, extra,
                                  open_set=left_out_open_set(reference.open_set, threshold_spec))
                elif fmt == "int8" and threshold_paths:
                    progress(f"refitting the int8 open-set threshold on {len(threshold_paths)} images of "
                             f"{threshold_spec} ...")
                    open_set = int8_open_set(TFLitePredictor(path, num_threads=num_threads), reference.open_set,
                                             threshold_spec, threshold_paths, preprocess,
                                             calibrated_known_rate(run_dir))
                    write_sidecar(content, path, fmt, common, preprocess, extra, open_set=open_set)
                elif fmt == "int8" and reference.open_set is not None:
                    warn(f"{run_dir}: no validation images recorded; the int8 file keeps the float model's open-set "
                         f"threshold, which int8 scores can exceed on known images.")
                candidates.append((fmt, TFLitePredictor(path, num_threads=num_threads), len(content)))
                paths[fmt] = os.path.join(TFLITE_DIR, tflite_filename(name, fmt))
            shutil.rmtree(pixels_model)
            if int8_source != pixels_model:
                shutil.rmtree(int8_source)
        staged_web = os.path.join(tmp, web.WEB_DIR)
        web_summary = None
        if "web" in formats:
            from PIL import Image

            progress(f"writing the web app ({web_model} model) ...")
            web_summary = web.write_site(staged_web, os.path.join(staged_tflite, tflite_filename(name, web_model)),
                                         runtime, Image.MAX_IMAGE_PIXELS,
                                         {"name": name, "version": version, "format": web_model})

        progress(f"parity on {len(eval_paths)} images of {eval_spec} ...")
        rows = parity_rows(reference, candidates, inference_dataset(eval_paths, preprocess, 16).as_numpy_iterator(),
                           eval_labels, reference_size=os.path.getsize(reference.model_path))
        for row in rows:
            row["path"] = paths.get(row["format"], os.path.abspath(reference.model_path))
        report = {
            **{k: common[k] for k in ("name", "version", "class_names", "preprocess", "source_run", "tensorflow",
                                      "open_set")},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "formats": list(formats), "int8_io": bool(int8_io),
            "eval": {"data": eval_spec, "images": len(eval_paths), "labelled": eval_labels is not None},
            "calibration": {"data": calibration_spec, "images": len(calibration_paths)} if "int8" in formats else None,
            "tflite_metadata": METADATA_NOTE,
            "latency": {"batch": 1, "warmup": 3, "runs": 20, "litert_num_threads": num_threads or os.cpu_count(),
                        "litert_delegate": "XNNPACK (LiteRT default)", "savedmodel_signature": "predict_pixels"},
            "rows": rows,
        }
        if web_summary:
            report["web"] = web_summary
        if earlier:
            report["earlier"] = earlier
        write_json_atomic(os.path.join(tmp, REPORT_FILE), report)
        _install(tmp, base, outputs, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["out"] = base
    return report


def _install(tmp, base, outputs, overwrite):
    """Renames the staged `outputs` (paths relative to `tmp` and `base`) into place, then report.json; the
    files they replace go to `tmp` (deleted by the caller)."""
    if not overwrite:
        _refuse_existing(base, outputs, "appeared during the export")
    replaced = os.path.join(tmp, "replaced")
    os.makedirs(replaced)
    for i, rel in enumerate(outputs):
        target = os.path.join(base, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            os.rename(target, os.path.join(replaced, str(i)))
        os.rename(os.path.join(tmp, rel), target)
    os.replace(os.path.join(tmp, REPORT_FILE), os.path.join(base, REPORT_FILE))

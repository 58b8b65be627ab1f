"""A run dir -> SavedModel (TF Serving layout) + TFLite attributors + parity report.

Layout under `--out DIR`:
  DIR/NAME/VERSION/        SavedModel; TF Serving (model base path DIR/NAME) serves the highest VERSION
  DIR/NAME/tflite/         NAME-{float32,float16,dynamic,int8}.tflite, each with a NAME-<format>.json sidecar
  DIR/NAME/report.json     parity report
  DIR/NAME/web/            with format `web`: the static web app running one TFLite file (exports/web.py)
An export adds files: one that it would write and that exists already (its TFLite files and their
JSON, `web/`) stops it before any work unless `overwrite`, and the files of formats it was not asked
for are never removed. So an export with `overwrite` into an existing version also stops before any work
when a file of another format says it is of that version (the version folder, a TFLite file's sidecar,
`web/site.json`: `version_files`): it would stay, claiming a version it is not of. `report.json`
describes the latest export; the reports of earlier ones stay in its `earlier` list, each with the rows
of its files still in the folder (`_earlier_reports`).
Everything is built in a hidden `DIR/NAME/.export-tmp-*` folder (TF Serving ignores
non-numeric folders) and renamed into place only once complete; an existing
version is replaced only with `overwrite`.
"""
import dataclasses
import datetime
import json
import os
import re
import shutil
import tempfile

import numpy as np

from dnadet_tf.data import LabeledFiles, is_benchmark_dir, read_dataset, remap_to, usable_files
from dnadet_tf.errors import DataError, DnadetError
from dnadet_tf.images import find_images, is_image_file
from dnadet_tf.exports.tflite import TFLITE_FORMATS, sidecar_path, tflite_filename
from dnadet_tf.exports import web
from dnadet_tf.runs import interrupts_deferred, nearest_existing, process_alive, read_json, write_json_atomic

ALL_FORMATS = ("savedmodel",) + TFLITE_FORMATS + ("web",)
TFLITE_DIR = "tflite"
REPORT_FILE = "report.json"
WEB_SITE_FILE = "site.json"  # in web.WEB_DIR: the web app's settings, its export's name and version among them
METADATA_NOTE = (
    "sidecar JSON beside each .tflite file: tflite-support (the TFLite metadata writer) requires protobuf < 4, "
    "which conflicts with the protobuf that TensorFlow 2.21 needs"
)
# the TFLite formats with int8 weights: each file's open-set threshold is refitted on its own scores (`refitted_open_set`);
# float32 and float16 keep the float model's (their scores are the Keras model's to within float16 rounding)
REFITTED_FORMATS = ("dynamic", "int8")
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
    """The versions the report.json of `base` records: its own and its `earlier` ones (none when it cannot be read)."""
    report = read_json(os.path.join(base, REPORT_FILE))
    try:
        return {int(entry["version"]) for entry in [report, *report.get("earlier", [])]}
    except (ValueError, KeyError, TypeError, AttributeError):
        return set()


def _recorded_version(path):
    """The `version` the JSON object at `path` records (an int), or None when it records none or cannot be read."""
    document = read_json(path)
    version = document.get("version") if isinstance(document, dict) else None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def _recorded_files(base):
    """[(path relative to `base`, format, version)] of the files of `base` that record their version, other than
    the SavedModel folders: each TFLite file by its sidecar (`tflite/NAME-<format>.json`, listed with the .tflite
    file beside it when there is one) and the web app by its `web/site.json`."""
    found = []
    folder = os.path.join(base, TFLITE_DIR)
    for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        fmt = entry[:-len(".json")].rsplit("-", 1)[-1] if entry.endswith(".json") else None
        sidecar = os.path.join(TFLITE_DIR, entry)
        version = _recorded_version(os.path.join(base, sidecar)) if fmt in TFLITE_FORMATS else None
        if version is None:
            continue
        model = os.path.splitext(sidecar)[0] + ".tflite"
        found += [(rel, fmt, version) for rel in ([model] if os.path.lexists(os.path.join(base, model)) else [])
                  + [sidecar]]
    version = _recorded_version(os.path.join(base, web.WEB_DIR, WEB_SITE_FILE))
    return found + ([(web.WEB_DIR, "web", version)] if version is not None else [])


def version_files(base, version):
    """[(path relative to `base`, format)] of what in `base` says it is of `version` (an int): the SavedModel folder
    VERSION, the TFLite files (and their sidecars) whose sidecar records it, and `web/` when its site.json does."""
    folder = [(str(version), "savedmodel")] if os.path.isdir(os.path.join(base, str(version))) else []
    return folder + [(rel, fmt) for rel, fmt, recorded in _recorded_files(base) if recorded == version]


def existing_versions(base):
    """Versions present under a model base folder: numeric subfolders, the versions of the reports
    (the latest export's and its `earlier` ones) and those the TFLite sidecars and the web app record."""
    versions = set()
    if os.path.isdir(base):
        versions.update(int(d) for d in os.listdir(base) if d.isdigit() and os.path.isdir(os.path.join(base, d)))
        versions.update(recorded for _, _, recorded in _recorded_files(base))
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


def _spec_words(spec):
    """A data spec, or a list of them, as a line names it (`calibrate.spec_text`)."""
    from dnadet_tf.calibrate import spec_text

    return spec_text(spec)


UNLABELED = "unlabeled"  # the one class of a folder of images without class subfolders (`_read`)


def _is_unlabeled_folder(spec):
    """Whether `spec` is a folder of images without subfolders: images to compare, with no classes to score."""
    if not os.path.isdir(spec) or is_benchmark_dir(spec):
        return False
    entries = [name for name in os.listdir(spec) if not name.startswith(".")]
    return (not any(os.path.isdir(os.path.join(spec, name)) for name in entries)
            and any(is_image_file(name) for name in entries))


def _read(spec, split, flag):
    """The images of DATA `spec` for the parameter `flag` (LabeledFiles; the split `split` of a benchmark, else its
    test split): a dataset, or a folder of images without class subfolders, read as one class UNLABELED (parity and
    int8 calibration need no labels); a list of them (as calibration.json and adaptation.json record the images of
    `adapt`, image files among them) is read as one class UNLABELED. Raises DnadetError without `spec`, DataError
    for a bad one."""
    if not spec:
        raise DnadetError(f"{flag}: the run records no such data; pass `{flag}` DATA.")
    if isinstance(spec, (list, tuple)):
        def image_file(item):
            return os.path.isfile(item) and is_image_file(item)

        if len(spec) == 1 and not image_file(spec[0]):
            return _read(spec[0], split, flag)  # one DATA, read with its classes
        paths = [path for item in spec for path in ([item] if image_file(item) else _read(item, split, flag).paths)]
        return LabeledFiles(paths, np.zeros(len(paths), np.int64), [UNLABELED], _spec_words(spec))
    if _is_unlabeled_folder(spec):
        paths = find_images(spec)
        return LabeledFiles(paths, np.zeros(len(paths), np.int64), [UNLABELED], spec)
    if is_benchmark_dir(spec) and not os.path.isfile(os.path.join(spec, f"{split}.txt")):
        split = "test"
    try:
        return read_dataset(spec, split)
    except DataError as error:
        raise DataError(f"{flag}: {error}") from None


def evaluation_files(spec, class_names, preprocess, limit, warn, files=None):
    """(paths, labels or None) of the parity images (`files`, LabeledFiles, else read from `spec`); labels are None
    when the classes differ from the model's."""
    files = _read(spec, "val", "eval_data") if files is None else files
    labelled = list(files.class_names) != [UNLABELED]
    try:
        files = remap_to(files, class_names) if labelled else files
    except DataError as error:
        warn(f"--eval: {error} Accuracy is not reported.")
        labelled = False
    files = usable_files(_subset(files, balanced_subset(files.labels, limit)), preprocess, warn)
    return files.paths, (files.labels if labelled else None)


def calibration_files(spec, preprocess, count, warn):
    """Paths of about `count` training images, balanced over classes, for int8 calibration."""
    files = _read(spec, "train", "calibration")
    return usable_files(_subset(files, balanced_subset(files.labels, count)), preprocess, warn).paths


def threshold_files(config, class_names, preprocess, run_dir=None):
    """(spec, paths) of the known images the open-set threshold of a file of int8 weights (REFITTED_FORMATS) is
    refitted on: the images the float
    threshold was fitted on, as the calibration.json of the run dir `run_dir` records them
    (`calibrate.calibrated_val`: `fit`'s, `calibrate --val`'s, `adapt`'s), else the run's own validation images
    (`calibrate.validation_spec` of its `config`), or (None, []) when the run has none."""
    from dnadet_tf.calibrate import calibrated_val, validation_files, validation_spec

    spec = (calibrated_val(run_dir) if run_dir else None) or validation_spec(config)
    if not spec:
        return None, []
    if isinstance(spec, list):  # `adapt`'s images: datasets, folders or image files, their classes not needed here
        return spec, usable_files(_read(spec, "val", "val"), preprocess).paths
    return spec, validation_files(spec, config, class_names, preprocess).paths


def refitted_open_set(predictor, open_set, spec, paths, preprocess, known_rate, fmt="int8"):
    """The open-set entry of the sidecar of a file of format `fmt` with int8 weights (REFITTED_FORMATS): `open_set`
    with the threshold refitted on that file's scores.

    Int8 activations can inflate the Mahalanobis score (the faces -> scenes default's 3 runs: refitted
    thresholds 3.3-5.9 times the float ones, README "TFLite for mobile apps"), and so can int8 weights alone (a
    `dynamic` file of a tiny run scored its validation images above the float model and flagged about twice the
    share at the float threshold): the threshold that keeps `known_rate` of the validation images (the float
    threshold's, `calibrate.calibrated_known_rate`) is fitted again on the file's own scores of `paths`; the float
    model's threshold stays beside it as `float_threshold`.
    """
    from dnadet_tf.openset import threshold_at_known_rate
    from dnadet_tf.pipeline import inference_dataset

    scores = np.concatenate([predictor.attribute_pixels(batch)["ood_score"]
                             for batch in inference_dataset(paths, preprocess, 16).as_numpy_iterator()])
    return {**open_set, "threshold": float(threshold_at_known_rate(scores, known_rate)),
            "float_threshold": open_set["threshold"],
            "threshold_fitted_on": {"data": spec, "images": len(paths), "scores": f"this {fmt} file's",
                                    "known_rate": known_rate}}


def left_out_open_set(open_set, spec):
    """The open-set entry of the sidecar of a file of int8 weights (REFITTED_FORMATS) for a float threshold fitted
    with its validation images left out of the class statistics (`calibrate.calibrated_left_out`): the float
    threshold, kept. A TFLite file cannot leave an image out, and its scores of those images are no guide (an adapted faces -> scenes run, 5 labeled images per class:
    the int8 file scored most of them 0; scaling the float threshold by the two quantiles flagged no image, the
    float threshold kept 2.5 % of the new content's known images and 47.5 % of unseen architectures where the
    float file flagged 6.0 and 58.8; docs/results.md, "The open set after `adapt --labeled`")."""
    return {**open_set, "float_threshold": open_set["threshold"],
            "threshold_fitted_on": {"data": spec, "scores": "the float model's, with the images left out (kept: a "
                                                            "TFLite file cannot leave them out)"}}


def export_outputs(name, version, formats):
    """Paths, relative to DIR/NAME, that an export of `formats` writes besides report.json: the version
    folder (with savedmodel), each TFLite file and its sidecar JSON, and `web/`."""
    outputs = [str(version)] if "savedmodel" in formats else []
    for fmt in formats:
        if fmt in TFLITE_FORMATS:
            outputs += [_output_path(name, version, fmt), sidecar_path(_output_path(name, version, fmt))]
    return outputs + ([web.WEB_DIR] if "web" in formats else [])


def _output_path(name, version, fmt):
    """The path, relative to DIR/NAME, of the file (or SavedModel folder) of format `fmt`; None for `keras`
    and `web` (the web app is a folder of files, `web.WEB_DIR`)."""
    if fmt == "savedmodel":
        return str(version)
    return os.path.join(TFLITE_DIR, tflite_filename(name, fmt)) if fmt in TFLITE_FORMATS else None


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
    parent = nearest_existing(out_dir)
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


@dataclasses.dataclass(frozen=True)
class ExportImages:
    """The images an export reads from the run's data, all before any slow work.

    eval_spec, eval_paths (N paths), eval_labels ((N,) int, or None when unlabelled): the parity images.
    calibration_spec, calibration_paths (about `calibration_images` paths, [] without int8): int8 calibration.
    threshold_spec, threshold_paths, left_out: the open-set threshold of the files of int8 weights
    (REFITTED_FORMATS, `threshold_images`).
    """
    eval_spec: str
    eval_paths: list
    eval_labels: object
    calibration_spec: str
    calibration_paths: list
    threshold_spec: object = None
    threshold_paths: list = dataclasses.field(default_factory=list)
    left_out: bool = False


@dataclasses.dataclass(frozen=True)
class ExportJob:
    """One export, settled before any slow work; each step of `export_run` reads what it needs from it.

    run_dir: as given (messages name it so); name, version (int), formats (canonical order, the web app's TFLite
    format included); reference: the run's float32 KerasPredictor (model, class_names, preprocess, open_set);
    images: ExportImages; common: the metadata every artefact carries (`_common_metadata`); int8_io, equalize,
    num_threads, web_model, runtime ((node_modules, version) or None): as `export_run` takes them.
    """
    run_dir: str
    name: str
    version: int
    formats: tuple
    reference: object
    images: ExportImages
    common: dict
    int8_io: bool
    equalize: bool
    num_threads: object
    web_model: str
    runtime: object
    progress: object
    warn: object


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
    from dnadet_tf.predictor import KerasPredictor

    warn = warn or progress
    formats, runtime = _checked_request(formats, name, version, out_dir, int8_io, web_model, web_runtime)
    _warn_ignored_int8_flags(formats, calibration, int8_io, warn)
    # Exports compute in float32; so does the reference they are compared with, also for a run trained in
    # bfloat16 (the same weights: its own bfloat16 outputs would differ from any float32 export by ~1e-2).
    reference = KerasPredictor(run_dir, precision="float32")
    if "web" in formats:
        web.check_preprocess(reference.preprocess)
    base = os.path.join(out_dir, name)
    version, outputs, earlier = _planned_outputs(base, name, version, formats, overwrite)
    images = read_images(run_dir, reference, formats, eval_data, max_eval, calibration, calibration_images, warn,
                         progress)
    common = _common_metadata(run_dir, name, version, reference)
    job = ExportJob(run_dir, name, version, formats, reference, images, common, int8_io, equalize, num_threads,
                    web_model, runtime, progress, warn)
    if reference.open_set is None:
        warn(f"{run_dir}: no open-set score or temperature stored; the exports answer probabilities only "
             f"(dnadet-tf calibrate {run_dir} fits them).")
    tmp = _staging_folder(base, warn)
    try:
        candidates = [_write_savedmodel(job, tmp)] if "savedmodel" in formats else []
        candidates += _write_tflite_files(job, tmp)
        web_summary = _write_web_app(job, tmp) if "web" in formats else None
        report = _report(job, _parity_rows(job, candidates), web_summary, earlier)
        write_json_atomic(os.path.join(tmp, REPORT_FILE), report)
        _install(tmp, base, outputs, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["out"] = base
    return report


def _checked_request(formats, name, version, out_dir, int8_io, web_model, web_runtime):
    """Refuses bad arguments before the run is loaded; returns (formats in canonical order, with the TFLite
    format the web app runs added, the web runtime (node_modules, version) from `web.find_runtime` or None)."""
    formats = parse_formats(",".join(formats)) if not isinstance(formats, str) else parse_formats(formats)
    if not _NAME.match(name) or name.isdigit():
        raise DnadetError(f"name: expected letters, digits, '.', '_' or '-' (not only digits), received {name!r}.")
    if version is not None and int(version) < 1:
        raise DnadetError(f"version: expected a positive integer, received {version}.")
    _check_out(out_dir, name)
    if "web" not in formats:
        return formats, None
    web.check_model(web_model, int8_io)
    runtime = web.find_runtime(web_runtime)
    return parse_formats(",".join(formats + (web_model,))), runtime


def _warn_ignored_int8_flags(formats, calibration, int8_io, warn):
    """Warns about `calibration` and `int8_io` when `formats` (a tuple) has no int8 file to apply them to."""
    if "int8" in formats:
        return
    for given, flag in ((calibration, "--calibration"), (int8_io, "--int8-io")):
        if given:
            warn(f"{flag} applies to the int8 file only, which --formats {','.join(formats)} does not "
                 f"write; ignored.")


def _planned_outputs(base, name, version, formats, overwrite):
    """(version, outputs, earlier): the version written (int; the next free one when `version` is None), the paths
    the export writes relative to `base` (`export_outputs`) and the earlier reports report.json keeps
    (`_earlier_reports`). Unless `overwrite`, raises DnadetError when the version or one of the outputs exists."""
    if version is None:
        version = next_version(base)
    elif int(version) in existing_versions(base) and not overwrite:
        folder = os.path.join(base, str(version))
        if not os.path.isdir(folder):  # an earlier export's TFLite files or web app carry it, its folder is gone
            records = [os.path.join(rel, WEB_SITE_FILE) if fmt == "web" else rel
                       for rel, fmt in version_files(base, int(version)) if fmt == "web" or rel.endswith(".json")]
            record = os.path.join(base, REPORT_FILE if int(version) in _report_versions(base) else records[0])
            raise DnadetError(f"{folder}: version {version} is recorded in {record} (an earlier export's files carry "
                              f"it, its folder is gone); pass overwrite=True to export it again or another `version`.")
        raise DnadetError(f"{folder}: version {version} exists; pass overwrite=True to "
                          f"replace it or another `version`.")
    outputs = export_outputs(name, int(version), formats)
    if not overwrite:
        _refuse_existing(base, outputs, "exists, written by an earlier export")
    _refuse_other_formats_of(base, int(version), outputs, formats)
    return int(version), outputs, _earlier_reports(base, outputs, overwrite)


def _refuse_other_formats_of(base, version, outputs, formats):
    """Raises DnadetError naming the first file in `base` that says it is of `version` (`version_files`) and that
    this export of `formats` does not write (not among `outputs`): replacing the version would leave it there,
    claiming a version it is not of; the files of formats not asked for are never removed."""
    for rel, fmt in version_files(base, version):
        if rel not in outputs:
            raise DnadetError(f"{os.path.join(base, rel)}: version {version} of an earlier export, which this export "
                              f"(`formats` {','.join(formats)}) does not write, so it would still claim version "
                              f"{version} once replaced; add {fmt} to `formats` to replace it too, remove it, or pass "
                              f"another `version`.")


def default_images(run_dir, config, stored_points):
    """((parity spec, where from), (int8 calibration spec, where from)): the images an export takes without
    `eval_data` and `calibration`, each with the words that say where it comes from (None for the run's own data).

    A run's own: its validation data (the share of its training data it held out with val_split), else the
    validation images its calibration.json records (a run calibrated later with `calibrate --val`), else its
    training data; the training data for int8 calibration. A run of `adapt` (adaptation.json), whose config.json
    data are the content before adaptation: the validation and training images its calibration.json records
    (`calibrate`'s or `adapt`'s own), else the images it was adapted to (adaptation.json: the labeled DATA of
    `--labeled`, the images of `--images`); a run of `adapt --photos` without a calibration.json, which records
    real photos alone, takes the run's own data, said as the content before adaptation.

    The validation images calibration.json records are never the parity default when they are points of the
    run's open-set class statistics (`stored_points`, from `stored_point_images`: `adapt --labeled`'s, each labeled image its own point,
    which every format scores 0): the run's own validation data, else its training data, take their place (said
    so), and with none the parity spec is None (`read_images` asks for `eval_data`)."""
    from dnadet_tf.calibrate import HELD_OUT, calibrated_data, calibrated_val
    from dnadet_tf.runs import ADAPTATION_FILE

    own_val = HELD_OUT if config.val_split else config.val
    adaptation_path = os.path.join(run_dir, ADAPTATION_FILE)
    adapted_run = os.path.isfile(adaptation_path)
    before = f"its config.json's data are the content before adaptation ({ADAPTATION_FILE})"
    val, data = calibrated_val(run_dir), calibrated_data(run_dir)
    if val and (adapted_run and data or not own_val) and stored_points is not None:
        where = (f"the run's own {'validation' if own_val else 'training'} images, not the validation images its "
                 f"calibration.json records: those are points of its open-set class statistics, each its own, which "
                 f"every format scores 0" + (f"; {before}" if adapted_run else ""))
        calibration_from = (data, f"the training images its calibration.json records; {before}") if adapted_run \
            else (config.data, None)
        return (own_val or config.data, where), calibration_from
    if not adapted_run:
        recorded = None if own_val else val
        if recorded:
            return (recorded, "the validation images its calibration.json records (the run has none of its "
                              "own)"), (config.data, None)
        return (own_val or config.data, None), (config.data, None)
    if val and data:
        return ((val, f"the validation images its calibration.json records; {before}"),
                (data, f"the training images its calibration.json records; {before}"))
    with open(adaptation_path, encoding="utf-8") as f:
        adaptation = json.load(f)
    adapted = (adaptation.get("labeled") or {}).get("data") or (
        None if "made_from_photos" in adaptation else adaptation.get("inputs"))
    if not adapted:
        where = (f"the run's own, the content before adaptation ({ADAPTATION_FILE}: it records no images of every "
                 f"class of the content it was adapted to)")
        return (own_val or config.data, where), (config.data, where)
    where = f"the images the run was adapted to; {before}"
    return (adapted, where), (adapted, where)


def stored_point_images(run_dir):
    """The real paths (a set) of the images a run's open-set class statistics hold each as its own point, when its
    calibration.json records validation images among them (a left-out fit, `calibrate.calibrated_left_out`, whose
    `points_per_class` add up to its `train_images`, or `means` "image": `adapt --labeled`'s default, `calibrate
    --means image` with --val among --data); else None. Every format scores such an image 0 (and the head of
    `adapt --labeled` names its own class), so a parity report on them certifies nothing. An empty
    set when the images are gone."""
    from dnadet_tf.calibrate import CALIBRATION_FILE, calibrated_left_out

    if calibrated_left_out(run_dir) is None:
        return None
    with open(os.path.join(run_dir, CALIBRATION_FILE), encoding="utf-8") as f:
        report = json.load(f)
    points = report.get("points_per_class")
    if report.get("means") != "image" and not (isinstance(points, list) and sum(points) == report.get("train_images")):
        return None
    try:
        return {os.path.realpath(path) for path in _read(report.get("data"), "train", "calibration").paths}
    except DnadetError:
        return set()


def _without_stored_points(run_dir, spec, files, stored, progress):
    """The default parity images `files` (LabeledFiles of `spec`) without those among `stored` (real paths,
    `stored_point_images`), a line to `progress` when some were left out; DnadetError when none is left."""
    kept = [i for i, path in enumerate(files.paths) if os.path.realpath(path) not in stored]
    if not kept:
        raise DnadetError(_stored_points_message(run_dir, spec))
    if len(kept) < len(files.paths):
        progress(f"parity images: {len(files.paths) - len(kept)} of {_spec_words(spec)} left out, points of the "
                 f"run's open-set class statistics, each its own, which every format scores 0")
    return _subset(files, np.asarray(kept, int))


def _stored_points_message(run_dir, spec):
    words = f" (and {_spec_words(spec)} holds only such images)" if spec else ""
    return (f"eval_data: {run_dir} records as validation images points of its open-set class statistics, each its "
            f"own, which every format scores 0, and no other images{words}; pass `eval_data` DATA with other images "
            f"of its content.")


def read_images(run_dir, reference, formats, eval_data, max_eval, calibration, calibration_images, warn,
                progress=None):
    """The ExportImages of an export of `formats`: `eval_data` (absolute), `calibration` (absolute), their defaults
    (`default_images`, a line given to `progress` for each taken from the run's records; without the points of
    the run's open-set class statistics, `stored_point_images`) and, for the formats of int8 weights
    (REFITTED_FORMATS), the open-set threshold's images (`threshold_images`). Raises DnadetError naming both
    `eval_data` and `calibration` when the run records neither and both are needed."""
    from dnadet_tf.calibrate import HELD_OUT, validation_files

    config = reference.run.config
    points = stored_point_images(run_dir)  # read once: both the defaults and the parity images leave them out
    (default_eval, eval_from), (default_calibration, calibration_from) = default_images(run_dir, config, points)
    progress = progress or (lambda line: None)
    eval_spec = os.path.abspath(eval_data) if eval_data else default_eval  # reports name absolute paths
    calibration_spec = os.path.abspath(calibration) if calibration else default_calibration
    if not eval_spec and not calibration_spec and "int8" in formats:
        raise DnadetError("eval_data and calibration: the run records no such data; pass `eval_data` DATA and "
                          "`calibration` DATA.")
    stored = None if eval_data else points
    if stored is not None and not eval_spec:
        raise DnadetError(_stored_points_message(run_dir, None))
    if eval_from and not eval_data:
        progress(f"parity images (--eval): {_spec_words(default_eval)}, {eval_from}")
    if calibration_from and not calibration and "int8" in formats:
        progress(f"int8 calibration images (--calibration): {_spec_words(default_calibration)}, "
                 f"{calibration_from}")
    files = None
    if eval_spec == HELD_OUT:  # the run's validation images: the share fit held out of its data
        files = validation_files(HELD_OUT, config, reference.class_names, reference.preprocess)
    if stored:
        files = _without_stored_points(run_dir, eval_spec, files or _read(eval_spec, "val", "eval_data"), stored,
                                       progress)
    eval_paths, eval_labels = evaluation_files(eval_spec, reference.class_names, reference.preprocess, max_eval, warn,
                                               files)
    threshold = threshold_images(run_dir, reference) if any(fmt in REFITTED_FORMATS for fmt in formats) else ()
    if "int8" not in formats:
        return ExportImages(eval_spec, eval_paths, eval_labels, calibration_spec, [], *threshold)
    calibration_paths = calibration_files(calibration_spec, reference.preprocess, calibration_images, warn)
    return ExportImages(eval_spec, eval_paths, eval_labels, calibration_spec, calibration_paths, *threshold)


def threshold_images(run_dir, reference):
    """(spec, paths, left_out) of the open-set threshold of the files of int8 weights (REFITTED_FORMATS): (None, [],
    False) for a run with no open set; (calibration.json's `val`, [], True) for a threshold fitted with its images
    left out (`left_out_open_set`: never refitted on them, so never on the points of the class statistics that a
    left-out fit's images can be, `stored_point_images`); else the images to refit it on (`threshold_files`,
    `refitted_open_set`) and False."""
    from dnadet_tf.calibrate import calibrated_left_out

    if reference.open_set is None:
        return None, [], False
    spec = calibrated_left_out(run_dir)
    if spec is not None:
        return spec, [], True
    return (*threshold_files(reference.run.config, reference.class_names, reference.preprocess, run_dir), False)


def _common_metadata(run_dir, name, version, reference):
    """The metadata the SavedModel's asset and every sidecar carry (and report.json, but `created_by`)."""
    import tensorflow as tf

    return {
        "created_by": "dnadet-tf export", "name": name, "version": version, "class_names": list(reference.class_names),
        "preprocess": reference.preprocess.to_dict(), "source_run": os.path.abspath(run_dir),
        "tensorflow": tf.__version__, "open_set": reference.open_set,
    }


def _staging_folder(base, warn):
    """A new hidden staging folder `base`/.export-tmp-PID-*, after removing those of stopped exports."""
    os.makedirs(base, exist_ok=True)
    _remove_abandoned_staging(base, warn)
    return tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=base)


def _write_savedmodel(job, tmp):
    """Writes the SavedModel into tmp/VERSION; returns its parity candidate ("savedmodel", predictor, size_bytes)."""
    from dnadet_tf.exports.predictors import SavedModelPredictor
    from dnadet_tf.exports.savedmodel import signature_summary, write_savedmodel

    reference, folder = job.reference, os.path.join(tmp, str(job.version))
    job.progress(f"writing SavedModel version {job.version} ...")
    metadata = {**job.common, "signatures": signature_summary(reference.preprocess.resize2, reference.open_set)}
    write_savedmodel(reference.model, reference.class_names, reference.preprocess, folder, metadata)
    return "savedmodel", SavedModelPredictor(folder), _folder_size(folder)


def _write_tflite_files(job, tmp):
    """Writes tmp/tflite/NAME-<format>.tflite and its sidecar for each TFLite format of the job; returns their
    parity candidates [(format, TFLitePredictor, size_bytes)] in canonical order ([] when there are none)."""
    from dnadet_tf.exports.predictors import TFLitePredictor

    tflite_formats = [fmt for fmt in job.formats if fmt in TFLITE_FORMATS]
    if not tflite_formats:
        return []
    os.makedirs(os.path.join(tmp, TFLITE_DIR))
    pixels_model, int8_source, equalization = _converter_sources(job, tmp, "int8" in tflite_formats and job.equalize)
    _warn_kept_thresholds(job, [fmt for fmt in tflite_formats if fmt in REFITTED_FORMATS])
    candidates = []
    for fmt in tflite_formats:
        path = os.path.join(tmp, _output_path(job.name, job.version, fmt))
        size = _write_int8_file(job, int8_source, equalization, path) if fmt == "int8" else \
            _write_float_file(job, pixels_model, fmt, path)
        candidates.append((fmt, TFLitePredictor(path, num_threads=job.num_threads), size))
    shutil.rmtree(pixels_model)
    if int8_source != pixels_model:
        shutil.rmtree(int8_source)
    return candidates


def _converter_sources(job, tmp, equalize):
    """(pixels SavedModel, the int8 file's SavedModel, equalization summary or None): folders in `tmp` of the
    fixed-shape pixels [1, S, S, 3] -> probabilities function the converter reads; with `equalize` the int8 one
    is that of an equalized copy (exports/equalize.py, fitted on the calibration images), else the first one."""
    from dnadet_tf.exports.equalize import equalized_copy
    from dnadet_tf.exports.tflite import save_pixels_savedmodel
    from dnadet_tf.pipeline import inference_dataset

    model, preprocess, paths = job.reference.model, job.reference.preprocess, job.images.calibration_paths
    pixels_model = save_pixels_savedmodel(model, preprocess.resize2, os.path.join(tmp, "pixels-savedmodel"))
    if not equalize:
        return pixels_model, pixels_model, None
    job.progress(f"equalising channel ranges on {len(paths)} calibration images ...")
    equalized, equalization = equalized_copy(model, inference_dataset(paths, preprocess, 8))
    equalized_model = os.path.join(tmp, "pixels-savedmodel-equalized")
    return pixels_model, save_pixels_savedmodel(equalized, preprocess.resize2, equalized_model), equalization


def _write_float_file(job, source, fmt, path):
    """Converts the SavedModel `source` to TFLite format `fmt` (float32, float16 or dynamic) and writes it at `path`
    with its sidecar, the open-set threshold of the `dynamic` file (int8 weights) refitted on its own scores
    (`_refitted_sidecar_open_set`); returns its size in bytes."""
    from dnadet_tf.exports.tflite import convert, write_sidecar, write_tflite

    job.progress(f"converting {os.path.basename(path)} ...")
    content = convert(source, fmt)  # int8_io applies to the int8 file only
    write_tflite(content, path, fmt, job.common, job.reference.preprocess, None, open_set=job.reference.open_set)
    open_set = _refitted_sidecar_open_set(job, path, fmt) if fmt in REFITTED_FORMATS else None
    if open_set is not None:
        write_sidecar(content, path, fmt, job.common, job.reference.preprocess, None, open_set=open_set)
    return len(content)


def _write_int8_file(job, source, equalization, path):
    """Converts the SavedModel `source` to the int8 TFLite file at `path`, calibrated on the calibration images, and
    writes its sidecar with the int8 open-set entry (`_refitted_sidecar_open_set`); returns its size in bytes."""
    from dnadet_tf.exports.tflite import convert, write_sidecar, write_tflite

    images, preprocess = job.images, job.reference.preprocess
    job.progress(f"converting {os.path.basename(path)} ...")
    content = convert(source, "int8", _representative_dataset(images.calibration_paths, preprocess), job.int8_io)
    extra = {"calibration": {"data": images.calibration_spec, "images": len(images.calibration_paths)},
             "equalization": equalization}
    write_tflite(content, path, "int8", job.common, preprocess, extra, open_set=job.reference.open_set)
    open_set = _refitted_sidecar_open_set(job, path, "int8")
    if open_set is not None:
        write_sidecar(content, path, "int8", job.common, preprocess, extra, open_set=open_set)
    return len(content)


def _representative_dataset(paths, preprocess):
    """The converter's representative dataset: a callable yielding [pixels float32 (1, S, S, 3)] per image."""
    from dnadet_tf.pipeline import inference_dataset

    def representative():
        for batch in inference_dataset(paths, preprocess, 1):
            yield [batch.numpy()]

    return representative


def _files_words(formats):
    """("the int8 file" / "the dynamic and int8 files", "keeps" / "keep") for a message."""
    names = " and ".join(formats)
    return (f"the {names} file", "keeps") if len(formats) == 1 else (f"the {names} files", "keep")


def _warn_kept_thresholds(job, formats):
    """One warning for the files of int8 weights `formats` (REFITTED_FORMATS among the job's) that keep the float
    model's open-set threshold: for a left-out fit (`left_out_open_set`), or a calibrated run with no images to
    refit on."""
    images, run_dir = job.images, job.run_dir
    if not formats or job.reference.open_set is None:
        return
    files, keep = _files_words(formats)
    if images.left_out:
        job.warn(f"{run_dir}: its open-set threshold was fitted with each validation image left out of the class "
                 f"statistics, which {'an int8 file' if formats == ['int8'] else 'a TFLite file'} cannot do; "
                 f"{files} {keep} the float threshold.")
    elif not images.threshold_paths:
        job.warn(f"{run_dir}: no validation images recorded; {files} {keep} the float model's open-set threshold, "
                 f"which scores of int8 weights can exceed on known images.")


def _refitted_sidecar_open_set(job, path, fmt):
    """The open-set entry that replaces the float model's in the sidecar of the file of format `fmt` (int8 weights,
    REFITTED_FORMATS) at `path`: the float threshold kept for a left-out fit (`left_out_open_set`), else the
    threshold refitted on the file's own scores (`refitted_open_set`); None when there are no images to refit on
    (`_warn_kept_thresholds` says so)."""
    from dnadet_tf.calibrate import calibrated_known_rate
    from dnadet_tf.exports.predictors import TFLitePredictor

    images, open_set, run_dir = job.images, job.reference.open_set, job.run_dir
    if open_set is None:
        return None
    if images.left_out:
        return left_out_open_set(open_set, images.threshold_spec)
    if images.threshold_paths:
        job.progress(f"refitting the {fmt} open-set threshold on {len(images.threshold_paths)} images of "
                     f"{_spec_words(images.threshold_spec)} ...")
        return refitted_open_set(TFLitePredictor(path, num_threads=job.num_threads), open_set,
                                 images.threshold_spec, images.threshold_paths, job.reference.preprocess,
                                 calibrated_known_rate(run_dir), fmt)
    return None


def _write_web_app(job, tmp):
    """Writes the web app into tmp/web/, running the staged TFLite file of format `web_model`; returns its
    summary for the report (`web.write_site`)."""
    from PIL import Image

    job.progress(f"writing the web app ({job.web_model} model) ...")
    return web.write_site(os.path.join(tmp, web.WEB_DIR), os.path.join(tmp, _output_path(job.name, job.version,
                          job.web_model)), job.runtime, Image.MAX_IMAGE_PIXELS,
                          {"name": job.name, "version": job.version, "format": job.web_model})


def _parity_rows(job, candidates):
    """The parity rows (`parity.parity_rows`: keras first, then `candidates` [(format, predictor, size_bytes)])
    on the evaluation images, each with the `path` of its file (relative to DIR/NAME; the Keras model's absolute)."""
    from dnadet_tf.exports.parity import parity_rows
    from dnadet_tf.pipeline import inference_dataset

    images, reference = job.images, job.reference
    job.progress(f"parity on {len(images.eval_paths)} images of {_spec_words(images.eval_spec)} ...")
    rows = parity_rows(reference, candidates,
                       inference_dataset(images.eval_paths, reference.preprocess, 16).as_numpy_iterator(),
                       images.eval_labels, reference_size=os.path.getsize(reference.model_path))
    for row in rows:
        row["path"] = _output_path(job.name, job.version, row["format"]) or os.path.abspath(reference.model_path)
    return rows


def _report(job, rows, web_summary, earlier):
    """The report.json dict of the job: its settings, evaluation and calibration images, parity `rows`, the web
    app's `web_summary` (or None) and the `earlier` reports kept."""
    images = job.images
    report = {
        **{k: job.common[k] for k in ("name", "version", "class_names", "preprocess", "source_run", "tensorflow",
                                      "open_set")},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "formats": list(job.formats), "int8_io": bool(job.int8_io),
        "eval": {"data": images.eval_spec, "images": len(images.eval_paths),
                 "labelled": images.eval_labels is not None},
        "calibration": {"data": images.calibration_spec, "images": len(images.calibration_paths)}
        if "int8" in job.formats else None,
        "tflite_metadata": METADATA_NOTE,
        "latency": {"batch": 1, "warmup": 3, "runs": 20, "litert_num_threads": job.num_threads or os.cpu_count(),
                    "litert_delegate": "XNNPACK (LiteRT default)", "savedmodel_signature": "predict_pixels"},
        "rows": rows,
    }
    if web_summary:
        report["web"] = web_summary
    if earlier:
        report["earlier"] = earlier
    return report


def _install(tmp, base, outputs, overwrite):
    """Renames the staged `outputs` (paths relative to `tmp` and `base`) into place, then report.json, all of them
    before a Ctrl-C or SIGTERM takes effect; the files they replace go to `tmp` (deleted by the caller)."""
    if not overwrite:
        _refuse_existing(base, outputs, "appeared during the export")
    replaced = os.path.join(tmp, "replaced")
    os.makedirs(replaced)
    with interrupts_deferred():  # Ctrl-C between a file's two renames would lose the file it replaces
        for i, rel in enumerate(outputs):
            target = os.path.join(base, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.lexists(target):
                os.rename(target, os.path.join(replaced, str(i)))
            os.rename(os.path.join(tmp, rel), target)
        os.replace(os.path.join(tmp, REPORT_FILE), os.path.join(base, REPORT_FILE))

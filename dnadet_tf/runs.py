"""The run dir and its one owner, `RunDir`: what a training run leaves behind, and how to load it.

    RUN/config.json      resolved TrainConfig
    RUN/labels.txt       class names, one per line, in label order
    RUN/checkpoints/     tf.train.CheckpointManager (for resume)
    RUN/best.keras       the `model.Classifier` (class names and preprocessing inside), best on validation
    RUN/validated/       every validated model, with `keep_validated`
    RUN/metrics.jsonl    one JSON object per log line and per validation
    RUN/tensorboard/     TensorBoard scalars
"""
import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import zipfile

from dnadet_tf.config import TrainConfig
from dnadet_tf.data import (SWAP_CONTENT_RECORD, annotation_lists_in, hold_out, is_benchmark_dir, is_zoo_dir,
                            read_dataset)
from dnadet_tf.errors import DataError, DnadetError, RunDirError, first_line

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.txt"
BEST_MODEL = "best.keras"
CHECKPOINTS = "checkpoints"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD = "tensorboard"
VALIDATED = "validated"
ADAPTATION_FILE = "adaptation.json"  # written by `dnadet-tf adapt` into the run it makes
IMPORT_FILE = "import.json"  # written by `dnadet-tf import-torch` into the run it makes


def is_exported_model(path):
    """Whether `path` is what `dnadet-tf export` writes for a predictor: a .tflite file or a SavedModel version
    folder (holding saved_model.pb)."""
    path = os.fspath(path)
    return ((os.path.isfile(path) and path.endswith(".tflite"))
            or (os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb"))))


def nearest_existing(path):
    """The absolute `path` if it exists, else its nearest existing ancestor: where the folders an output needs would
    be made from (a file there means they cannot be)."""
    found = os.path.abspath(path)
    while not os.path.exists(found):
        found = os.path.dirname(found)
    return found


def describe_path(path):
    """What `path` is, for an error that received it: "no such file or folder", "a SavedModel folder", "a
    benchmark folder", "a .keras file (its run dir: DIR)", ..."""
    if os.path.isfile(path):
        if path.endswith(".keras"):
            return f"a .keras file (its run dir: {os.path.dirname(path) or '.'})"
        return "a file"
    if not os.path.isdir(path):
        return "no such file or folder"
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return "a SavedModel folder"
    versions = sorted(name for name in os.listdir(path) if name.isdigit()
                      and os.path.isfile(os.path.join(path, name, "saved_model.pb")))
    if versions:
        return f"a folder of SavedModel versions (one of them: {os.path.join(path, versions[-1])})"
    if os.path.isfile(os.path.join(path, "classes.txt")) and os.path.isfile(os.path.join(path, "train.txt")):
        return "a benchmark folder (images and split lists, no trained model)"
    if os.path.isfile(os.path.join(path, CONFIG_FILE)):
        return "a run dir"
    if is_zoo_dir(path):
        return ("a zoo whose build has not finished (no split lists yet; 'dnadet-tf zoo build --out "
                f"{path}' with its first settings finishes it)")
    if os.path.isfile(os.path.join(path, "site.json")) and os.path.isfile(os.path.join(path, "index.html")):
        return ("the web app of an export (its models: the SavedModel version folders and the .tflite files beside "
                "it)")
    if os.path.isfile(os.path.join(path, SWAP_CONTENT_RECORD)):
        lists = ", ".join(annotation_lists_in(path))
        return f"the splits of 'dnadet-tf zoo swap-content' (its annotation lists: {lists})"
    if any(os.path.isdir(os.path.join(path, name)) for name in os.listdir(path)):
        return "a folder of subfolders, neither a run dir nor a benchmark folder (a folder tree of classes?)"
    return "a folder that is neither a run dir nor a benchmark folder"


def read_json(path):
    """The JSON value in the file at `path`, or None when it cannot be read or holds no JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def numbered_name(name, number):
    """`name` for 1, else NAME-number.EXT (report-2.html, explain-2.json)."""
    stem, ext = os.path.splitext(name)
    return name if number == 1 else f"{stem}-{number}{ext}"


def free_path(folder, name, replaceable):
    """The path of `name` in `folder`, or of NAME-2.EXT, NAME-3.EXT, ...: the first that is absent or a file that
    `replaceable` (path -> bool) says an earlier run of the command wrote (a file of the user's is kept)."""
    number = 1
    while True:
        path = os.path.join(folder, numbered_name(name, number))
        if not os.path.lexists(path) or (os.path.isfile(path) and replaceable(path)):
            return path
        number += 1


def earlier_pngs(listing, key):
    """The PNG files an earlier run's JSON `listing` (a list of rows) names under `key` that still exist in the
    listing's own folder ([] without a readable listing): what a new run into that folder replaces. A relative
    name is read in the listing's folder, so that a run started from another working folder finds them too."""
    rows = read_json(listing)
    if not isinstance(rows, list):
        return []
    folder = os.path.dirname(os.path.abspath(listing))
    found = []
    for row in rows:
        name = row.get(key) if isinstance(row, dict) else None
        if not isinstance(name, str) or not name.endswith(".png"):
            continue
        path = name if os.path.isabs(name) else os.path.join(folder, os.path.basename(name))
        if os.path.isfile(path) and os.path.dirname(os.path.abspath(path)) == folder:
            found.append(path)
    return found


def remove_unlisted(earlier, written):
    """Removes the files of `earlier` (paths) that are not among `written`: an earlier run's outputs that the
    new listing no longer names."""
    kept = {os.path.realpath(path) for path in written}
    for path in earlier:
        if os.path.realpath(path) not in kept:
            os.remove(path)


def place_in(path, folder):
    """Where `path` lies relative to `folder`, compared by real path (a symbolic link, a relative spelling, a trailing
    separator or `..` name the place they lead to): "itself" when it is that folder, "inside" when it lies under it,
    None otherwise."""
    real, top = os.path.realpath(path), os.path.realpath(folder)
    if real == top:
        return "itself"
    return "inside" if real.startswith(top.rstrip(os.sep) + os.sep) else None


def read_by_tree(path, tree):
    """How data `tree` read as a folder tree (ROOT/<class>/...) would read the folder `path` (a run dir), in the
    words of an error that received it: "the folder itself", "one inside it, where it would be read as a class",
    "one inside it, where its image files would be read as images of class 'real'"; None when it would not read it:
    `tree` None, not a folder, a benchmark folder (its lists name the images) or a zoo (refused as data), or `path`
    outside it by real path (`place_in`), or under a hidden folder of it (not read: `images.find_images`,
    `data.read_folder_tree`). The rule of `training.require_out_outside_trees` (fit's `out`) and of
    `calibrate.require_run_outside_data`."""
    if not tree or not os.path.isdir(tree) or is_benchmark_dir(tree) or is_zoo_dir(tree):
        return None
    place = place_in(path, tree)
    if place is None:
        return None
    if place == "itself":
        return "the folder itself"
    parts = os.path.relpath(os.path.realpath(path), os.path.realpath(tree)).split(os.sep)
    if any(part.startswith(".") for part in parts):
        return None
    if len(parts) == 1:
        return "one inside it, where it would be read as a class"
    return f"one inside it, where its image files would be read as images of class {parts[0]!r}"


def _first_listed_inside(paths, folder):
    """The first of `paths` (the files a dataset spec names) that lies inside `folder` by real path, or None. The
    real path of each file's folder is worked out once (a list names thousands of files in a few folders)."""
    top = os.path.realpath(folder).rstrip(os.sep) + os.sep
    folders = {}
    for path in paths:
        path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(path))
        if parent not in folders:
            folders[parent] = os.path.realpath(parent) + os.sep
        real = (os.path.realpath(path) if os.path.islink(path)
                else folders[parent] + os.path.basename(path))
        if real.startswith(top):
            return path
    return None


def process_alive(pid):
    """Whether a process with this id runs on this machine (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_text_atomic(path, text):
    """`text` in `path`, written whole or not at all (a temporary file beside it, then rename; the temporary
    file is removed if either step fails)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with _removed_on_failure(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)


@contextlib.contextmanager
def _removed_on_failure(tmp):
    """Removes the temporary file `tmp` if the block raises (it was not renamed into place), then re-raises."""
    try:
        yield
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path, value, indent=2, sort_keys=True):
    """`value` as JSON in `path`, written whole or not at all (a temporary file beside it, then rename)."""
    write_text_atomic(path, json.dumps(value, indent=indent, sort_keys=sort_keys) + "\n")


@contextlib.contextmanager
def interrupts_deferred():
    """Ctrl-C (SIGINT) and SIGTERM received while the block runs take effect when it ends, as their handlers would
    have made them then (KeyboardInterrupt, the CLI's Terminated, or the default action): for a few renames that
    must all happen or none. Only the main thread can hold signals; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {number: signal.signal(number, lambda got, frame: received.append((got, frame)))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if received:
            number, frame = received[0]
            handler = previous[number]
            if callable(handler):
                handler(number, frame)
            elif handler != signal.SIG_IGN:
                signal.raise_signal(number)


# The temporary names of the atomic writes above: NAME.tmp-PID and NAME.tmp-PID.keras
TEMPORARY_NAME = re.compile(r"\.tmp-(\d+)(\.keras)?$")


def remove_stale_temporaries(folder):
    """Removes the temporary files of atomic writes in `folder` (not its subfolders) left by a process that no longer
    runs (killed with SIGKILL between its write and its rename); returns their names."""
    removed = []
    for name in sorted(os.listdir(folder)):
        match = TEMPORARY_NAME.search(name)
        path = os.path.join(folder, name)
        if match and os.path.isfile(path) and not process_alive(int(match.group(1))):
            os.remove(path)
            removed.append(name)
    return removed


def save_model_atomic(model, path):
    """`model.save` to a temporary `.keras` file beside `path`, then rename."""
    tmp = f"{path[:-len('.keras')]}.tmp-{os.getpid()}.keras"
    with _removed_on_failure(tmp):
        model.save(tmp)
        os.replace(tmp, path)


class RunDir:
    """The one owner of a run dir: creates, resumes or overwrites it, and reads and writes its
    config, labels, metrics log, checkpoints and models.

    `RunDir(path)` touches nothing; `check` says early whether the folder may be used,
    `start` creates or wipes it and writes config.json and labels.txt.
    """

    def __init__(self, path):
        self.path = os.fspath(path)

    def __repr__(self):
        return f"RunDir({self.path!r})"

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def best_model_path(self):
        return self.file(BEST_MODEL)

    @property
    def holds_run(self):
        """Whether the folder is a run dir: it holds config.json or best.keras."""
        return os.path.isfile(self.file(CONFIG_FILE)) or os.path.isfile(self.best_model_path)

    @property
    def metrics_path(self):
        return self.file(METRICS_FILE)

    # ------------------------------------------------------------ lifecycle
    def check(self, overwrite=False, resume=False, resumable=True):
        """Raises RunDirError unless the folder may be used: an existing non-empty folder needs
        `overwrite` or `resume` (then it must hold a run). A symbolic link is refused with `overwrite` when the
        folder it leads to holds files (`start` would empty that folder, perhaps the very run a command reads from;
        the folder itself can be given), and when it leads nowhere. Touches nothing. `resumable`: whether the
        caller can continue a run (fit, pretrain); the error mentions `resume` only then."""
        if resume and overwrite:
            raise RunDirError("resume and overwrite: expected at most one of them, received both.")
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise RunDirError(f"out {self.path}: exists and is not a folder.")
        if os.path.islink(self.path) and not os.path.exists(self.path):
            raise RunDirError(f"out {self.path}: a symbolic link to {os.readlink(self.path)}, which does not exist; "
                              f"expected a folder, or a new name.")
        if overwrite and not resume and os.path.islink(self.path) and os.listdir(self.path):
            # `start` would empty the folder the link leads to, which may be another run (the one read from, say)
            raise RunDirError(f"out {self.path}: a symbolic link to {os.path.realpath(self.path)}; overwrite=True "
                              f"replaces a run dir's files but not through a link: pass the folder itself.")
        if resume:
            if not os.path.isfile(self.file(CONFIG_FILE)):
                raise RunDirError(f"resume: {self.path} holds no run to resume (no {CONFIG_FILE}).")
            made_by = [command for command, marker in (("adapt", ADAPTATION_FILE), ("import-torch", IMPORT_FILE))
                       if os.path.isfile(self.file(marker))]
            if made_by and self.latest_checkpoint_step() is None:
                raise RunDirError(f"resume: {self.path} holds a {BEST_MODEL} but no checkpoint to continue from (made "
                                  f"by 'dnadet-tf {made_by[0]}'); resuming would train from step 0 and replace it. "
                                  f"Train into a new folder (with --init {self.path} to start from its weights).")
        elif os.path.isdir(self.path) and os.listdir(self.path) and not overwrite:
            raise RunDirError(
                f"out {self.path}: the folder already holds files; pass overwrite=True to replace them"
                + (" or resume=True to continue that run." if resumable else ".")
            )
        elif overwrite and os.path.isdir(self.path) and os.listdir(self.path) and not self.holds_run:
            # overwrite=True empties the folder: only ever a run dir, never a folder of the user's other files
            raise RunDirError(f"out {self.path}: expected a run dir to replace (with {CONFIG_FILE} or "
                              f"{BEST_MODEL}), received a folder of other files; pass a new or empty folder.")
        return self

    def will_empty(self, overwrite=False, resume=False):
        """Whether `start` with these settings empties the folder: `overwrite` (not `resume`) and an existing folder
        that holds files."""
        return bool(overwrite and not resume and os.path.isdir(self.path) and os.listdir(self.path))

    def require_inputs_outside(self, inputs, overwrite=False, resume=False, subject="it", remedy=None):
        """Raises RunDirError when `overwrite` (without `resume`) would empty this folder, an existing one holding
        files, and one of the command's `inputs` is that folder or lies inside it: read and then deleted, or deleted
        before it is read (`fit --init RUN --out RUN --overwrite` loaded RUN's weights, then wiped RUN). Touches
        nothing; call it before any slow work.

        `inputs`: (name, path, what) or (name, path, what, files) tuples; `name` the parameter (`init`, `data`, ...;
        the CLI shows it as its flag), `path` as given (None or a path that does not exist is skipped), `what` what
        was expected in words ("a run", "training data"), `files` the files the input names (an annotation list's
        images), each checked too. Paths are compared by real path (`place_in`), so that a symbolic link or another
        spelling is caught. `subject`: the input in the message ("which overwrite=True empties before it is read");
        `remedy`: the advice that ends the message (default: move the input, or give another `out`)."""
        if not self.will_empty(overwrite, resume):
            return self
        for name, path, what, *files in inputs:
            if path is None or not os.path.lexists(path):
                continue
            path = os.fspath(path)
            place = place_in(path, self.path)
            listed = None if place else _first_listed_inside(files[0] if files else (), self.path)
            if place is None and listed is None:
                continue
            if place == "itself":
                real = os.path.realpath(path)
                via = "" if os.path.abspath(path) == os.path.abspath(self.path) else f" ({real})"
                received, advice = f"`out` itself{via}", "give another `out`"
            elif place == "inside":
                received, advice = "one inside it", "move it out of the folder first, or give another `out`"
            else:
                received = f"one that names a file inside it ({listed})"
                advice = "move those files out of the folder first, or give another `out`"
            raise RunDirError(f"{name} {path}: expected {what} outside `out` {self.path}, which overwrite=True "
                              f"empties before {subject} is read, received {received}; {remedy or advice}.")
        return self

    def require_classes(self, class_names):
        """Raises DataError unless `class_names` are the run's (labels.txt), in order."""
        if self.class_names != list(class_names):
            raise DataError(f"resume: the data's classes {class_names} differ from the run's "
                            f"{self.class_names}.")

    def start(self, config, class_names, overwrite=False, resume=False, resumable=True):
        """Makes the folder ready to train in. A new run: creates it (wiping it first with
        `overwrite`) and writes config.json and labels.txt. `resume`: checks that `class_names`
        are the run's and keeps everything. `resumable`: as `check`'s."""
        self.check(overwrite, resume, resumable)
        if resume:
            self.require_classes(class_names)
            remove_stale_temporaries(self.path)
            return self
        if os.path.isdir(self.path) and os.listdir(self.path):
            shutil.rmtree(self.path)
        os.makedirs(self.path, exist_ok=True)
        write_json_atomic(self.file(CONFIG_FILE), config.to_dict())
        write_text_atomic(self.file(LABELS_FILE), "".join(f"{name}\n" for name in class_names))
        return self

    def update_config(self, config):
        """Rewrites config.json with `config` when it differs (a resumed run's new steps or validation interval)."""
        if config.to_dict() != self.config.to_dict():
            write_json_atomic(self.file(CONFIG_FILE), config.to_dict())

    # ------------------------------------------------------------- contents
    @property
    def has_checkpoint(self):
        """Whether RUN/checkpoints holds a checkpoint to resume from."""
        import tensorflow as tf

        return tf.train.latest_checkpoint(os.path.join(self.path, CHECKPOINTS)) is not None

    @property
    def config(self):
        """The run's TrainConfig (config.json)."""
        path = self.file(CONFIG_FILE)
        if not os.path.isfile(path):
            raise RunDirError(f"{self.path}: expected a run dir written by 'dnadet-tf fit' (with {CONFIG_FILE}), "
                              f"received {describe_path(self.path)}.")
        return TrainConfig.load(path)

    def trained_files(self):
        """The LabeledFiles (read, not decoded) the run was trained on: config.json's `data`, less the share
        `val_split` held out of it as validation images (`data.hold_out`); None when they are not known (no
        config.json or no `data`, one that cannot be read, data gone or no longer read: nothing is said then)."""
        try:
            config = self.config
            if not config.data or not os.path.exists(config.data):
                return None
            files = read_dataset(config.data, "train", warn=lambda line: None)  # its problems are fit's to tell
            return hold_out(files, config.val_split)[0] if config.val_split else files
        except (DnadetError, ValueError, OSError, KeyError, TypeError):
            return None

    @property
    def class_names(self):
        """The class names of labels.txt, in label order."""
        path = self.file(LABELS_FILE)
        if not os.path.isfile(path):
            raise RunDirError(f"{self.path}: no {LABELS_FILE}; expected a run dir written by 'dnadet-tf fit'.")
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()]

    def load_model(self, model_file=None):
        """The `model.Classifier` of best.keras (or of `model_file`, e.g. one of RUN/validated/).

        A best.keras written before the model held its class names and preprocessing
        gets them from labels.txt and config.json.
        """
        from dnadet_tf.model import load_classifier

        if not self.holds_run:
            raise RunDirError(f"model {self.path}: expected a run dir written by 'dnadet-tf fit', "
                              f"received {describe_path(self.path)}.")
        path = model_file or self.best_model_path
        if not os.path.isfile(path):
            raise RunDirError(f"{self.path}: no {os.path.basename(path)} yet; the run has not validated once.")
        if not zipfile.is_zipfile(path):
            raise RunDirError(f"{path}: expected a Keras model file (a zip archive), received a file that is not one "
                              f"(truncated or overwritten?).")
        try:
            return load_classifier(path, *self.legacy_model_info())
        except (ValueError, KeyError, OSError, zipfile.BadZipFile) as error:
            raise RunDirError(f"{path}: expected a Keras model file written by 'dnadet-tf fit', which could not be "
                              f"read: {first_line(error)}") from error

    def legacy_model_info(self):
        """(class names, PreprocessConfig) from labels.txt and config.json, for a best.keras written
        before the model classes held them; (None, None) when absent."""
        if not os.path.isfile(self.file(LABELS_FILE)) or not os.path.isfile(self.file(CONFIG_FILE)):
            return None, None
        return self.class_names, self.config.preprocess

    def save_best(self, model):
        save_model_atomic(model, self.best_model_path)

    def validated_model_path(self, step):
        """RUN/validated/step-NNNNNN.keras: the model at validation `step`, kept with `keep_validated`
        so that the selection rules can be compared on one run."""
        return os.path.join(self.path, VALIDATED, f"step-{step:06d}.keras")

    def save_validated(self, model, step):
        os.makedirs(self.file(VALIDATED), exist_ok=True)
        save_model_atomic(model, self.validated_model_path(step))

    # ------------------------------------------------------------ training
    def log(self, record):
        """Appends one JSON record to metrics.jsonl."""
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def validation_records(self):
        """The `kind == "val"` records of metrics.jsonl, in the order they were logged."""
        with open(self.metrics_path, encoding="utf-8") as f:
            return [record for record in map(json.loads, f) if record.get("kind") == "val"]

    def truncate_log(self, step):
        """Drops the records of metrics.jsonl logged after `step` (a resumed run redoes
        those steps), rewriting the file atomically. Returns how many were dropped.

        A line that is not JSON (e.g. cut short by a kill) is dropped too.
        """
        if not os.path.isfile(self.metrics_path):
            return 0
        kept, dropped = [], 0
        with open(self.metrics_path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
                    kept.append(line if line.endswith("\n") else line + "\n")
                else:
                    dropped += 1
        if dropped:
            write_text_atomic(self.metrics_path, "".join(kept))
        return dropped

    def latest_checkpoint_step(self):
        """The step of the newest checkpoint the run's checkpoint state file names (`ckpt-STEP`), or None
        when there is none; read without TensorFlow, before any slow work."""
        try:
            with open(os.path.join(self.file(CHECKPOINTS), "checkpoint"), encoding="utf-8") as handle:
                found = re.search(r'^model_checkpoint_path: "(?:.*[/\\])?ckpt-(\d+)"', handle.read(), re.M)
        except (OSError, UnicodeDecodeError):
            return None
        return int(found.group(1)) if found else None

    def checkpoint_manager(self, checkpoint, chief=True, max_to_keep=3):
        """A tf.train.CheckpointManager of `checkpoint` in RUN/checkpoints (a worker that is not the
        chief writes to a temporary folder of its own)."""
        import tensorflow as tf

        folder = self.file(CHECKPOINTS) if chief else tempfile.mkdtemp(prefix="dnadet-worker-ckpt-")
        return tf.train.CheckpointManager(checkpoint, folder, max_to_keep=max_to_keep)

    def tensorboard_writer(self):
        import tensorflow as tf

        return tf.summary.create_file_writer(self.file(TENSORBOARD))

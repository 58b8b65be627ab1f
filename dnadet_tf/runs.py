"""The run dir: what a training run leaves behind, and how to load it.

    RUN/config.json      resolved TrainConfig
    RUN/labels.txt       class names, one per line, in label order
    RUN/checkpoints/     tf.train.CheckpointManager (for --resume)
    RUN/best.keras       encoder + classification head, best on validation
    RUN/metrics.jsonl    one JSON object per log line and per validation
    RUN/tensorboard/     TensorBoard scalars
"""
import json
import os
import shutil

from dnadet_tf.config import TrainConfig
from dnadet_tf.errors import RunDirError
from dnadet_tf.preprocess import PreprocessConfig

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.txt"
BEST_MODEL = "best.keras"
CHECKPOINTS = "checkpoints"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD = "tensorboard"


def check_run_dir(path, overwrite=False, resume=False):
    """Raises RunDirError unless `path` may be used: an existing non-empty dir needs
    `overwrite` or `resume` (then it must hold a run). Touches nothing."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirError(f"--out {path}: exists and is not a folder.")
    if resume:
        if not os.path.isfile(os.path.join(path, CONFIG_FILE)):
            raise RunDirError(f"--resume: {path} holds no run to resume (no {CONFIG_FILE}).")
    elif os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise RunDirError(
            f"--out {path}: the folder already holds files; pass --overwrite to replace them "
            f"or --resume to continue that run."
        )


def prepare_run_dir(path, overwrite=False, resume=False):
    """Checks the run dir (`check_run_dir`), then creates it, wiping it first with `overwrite`."""
    check_run_dir(path, overwrite, resume)
    if not resume:
        if os.path.isdir(path) and os.listdir(path):
            shutil.rmtree(path)
        os.makedirs(path, exist_ok=True)
    return path


def write_labels(run_dir, class_names):
    write_text_atomic(os.path.join(run_dir, LABELS_FILE), "".join(f"{name}\n" for name in class_names))


def read_labels(run_dir):
    path = os.path.join(run_dir, LABELS_FILE)
    if not os.path.isfile(path):
        raise RunDirError(f"{run_dir}: no {LABELS_FILE}; expected a run dir written by 'dnadet-tf fit'.")
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def read_config(run_dir):
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise RunDirError(f"{run_dir}: no {CONFIG_FILE}; expected a run dir written by 'dnadet-tf fit'.")
    return TrainConfig.load(path)


def write_text_atomic(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json_atomic(path, value):
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def save_model_atomic(model, path):
    """`model.save` to a temporary `.keras` file beside `path`, then rename."""
    tmp = f"{path[:-len('.keras')]}.tmp-{os.getpid()}.keras"
    model.save(tmp)
    os.replace(tmp, path)


def append_jsonl(path, record):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def truncate_metrics(run_dir, step):
    """Drops the records of `metrics.jsonl` logged after `step` (a resumed run redoes
    those steps), rewriting the file atomically. Returns how many were dropped.

    A line that is not JSON (e.g. cut short by a kill) is dropped too.
    """
    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.isfile(path):
        return 0
    kept, dropped = [], 0
    with open(path, encoding="utf-8") as f:
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
        write_text_atomic(path, "".join(kept))
    return dropped


def legacy_model_info(run_dir):
    """(class names, PreprocessConfig) from labels.txt and config.json, for a best.keras written
    before the model classes held them (`model.load_classifier`); (None, None) when absent."""
    if not os.path.isfile(os.path.join(run_dir, LABELS_FILE)) or not os.path.isfile(os.path.join(run_dir, CONFIG_FILE)):
        return None, None
    return read_labels(run_dir), PreprocessConfig.of_run(read_config(run_dir))


class TrainedRun:
    """A finished (or in-progress) run dir, loaded for inference: its config and its best.keras,
    which holds the class names and the preprocessing."""

    def __init__(self, run_dir):
        if not os.path.isdir(run_dir):
            raise RunDirError(f"--model {run_dir}: no such folder; expected a run dir written by 'dnadet-tf fit'.")
        self.path = run_dir
        self.config = read_config(run_dir)
        self.model_path = os.path.join(run_dir, BEST_MODEL)
        if not os.path.isfile(self.model_path):
            raise RunDirError(f"{run_dir}: no {BEST_MODEL} yet; the run has not validated once.")
        self._model = None

    @property
    def class_names(self):
        return self.model.class_names

    @property
    def preprocess(self):
        """The model's PreprocessConfig; `min_side` is the run's patch size."""
        return self.model.preprocessing

    @property
    def model(self):
        """The `model.Classifier` (logits) loaded from best.keras."""
        if self._model is None:
            from dnadet_tf.model import load_classifier

            self._model = load_classifier(self.model_path, *legacy_model_info(self.path))
        return self._model


VALIDATED = "validated"


def validated_model_path(run_dir, step):
    """RUN/validated/step-NNNNNN.keras: the model at validation `step`, kept with `keep_validated`
    so that the selection rules can be compared on one run."""
    folder = os.path.join(run_dir, VALIDATED)
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"step-{step:06d}.keras")

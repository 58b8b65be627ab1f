"""Where `evaluate` and `robustness` write their results: a folder per evaluated data beside the model,
which never receives another data's results, and checks of an output file given on the command line."""
import os
import re


RECORD_FILE = "evaluated.json"  # in an evaluation folder: the absolute paths of what it evaluated


def default_output_dir(model, data, perturb=None, seed=0, folder="evaluations", precision=None):
    """Where `evaluate` writes without --json: a folder named after what it evaluated, inside a run dir
    (MODEL/evaluations/NAME) or beside an export (MODEL-evaluations/NAME); never the run's evaluation/
    folder, which holds the figures fit and ablate measured (ablate resumes from them). `folder`: the
    parent's name (`robustness` uses "robustness"); `precision` (evaluate --precision), when given, ends NAME.
    Returns the path; `output_folder` picks NAME-2, ... when it holds the results of other data.

    >>> default_output_dir("runs/a", ["zoo/", "extra/cross_content.txt"], "jpeg,blur", 1)
    'runs/a/evaluations/zoo+cross_content-perturb-jpeg-blur-seed1'
    >>> default_output_dir("runs/a", ["zoo"], precision="mixed_bfloat16")
    'runs/a/evaluations/zoo-mixed_bfloat16'
    """
    # the absolute path's name: `.` and `..` are named after the folders they are
    names = [os.path.splitext(os.path.basename(os.path.abspath(spec)))[0] for spec in data]
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", "+".join(names))[:100] or "data"
    if perturb:
        name += f"-perturb-{re.sub(r'[^A-Za-z0-9]+', '-', perturb)}-seed{seed}"
    if precision:
        name += f"-{precision}"
    from dnadet_tf.runs import is_exported_model

    if is_exported_model(model):
        return os.path.join(f"{os.path.normpath(model)}-{folder}", name)
    return os.path.join(model, folder, name)


def data_record(data, unknown=()):
    """{"data": [...], "unknown": [...]}: the absolute paths of the evaluated DATA and --unknown
    arguments, which tell the results of one data from those of another in an output folder."""
    return {"data": [os.path.abspath(spec) for spec in data], "unknown": [os.path.abspath(spec) for spec in unknown]}


def output_folder(folder, record_file, record):
    """Returns `folder` when it may receive these results: it does not exist, is empty, or its
    `record_file` (JSON) holds every key of `record` with the same value (the same data evaluated
    again replaces its own results). Otherwise the first of `folder`-2, `folder`-3, ... that may."""
    candidate, number = folder, 1
    while not _holds_same_data(candidate, record_file, record):
        number += 1
        candidate = f"{folder}-{number}"
    return candidate


def _holds_same_data(folder, record_file, record):
    if not os.path.exists(folder):
        return True
    if not os.path.isdir(folder):
        return False
    if not os.listdir(folder):
        return True
    from dnadet_tf.runs import read_json

    recorded = read_json(os.path.join(folder, record_file))
    return isinstance(recorded, dict) and all(recorded.get(key) == value for key, value in record.items())


def check_output_folder(flag, path):
    """Raises UsageError unless a folder can be made at `path` (the value of `flag`): an existing folder, or a
    missing one whose nearest existing ancestor is a folder, not a file (missing folders are created later, so
    this is checked before any work). Returns None."""
    from dnadet_tf.cli.common import UsageError
    from dnadet_tf.runs import nearest_existing

    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag} {path}: exists and is not a folder.")
    parent = nearest_existing(os.path.dirname(os.path.abspath(path)))
    if not os.path.isdir(parent):
        raise UsageError(f"{flag} {path}: expected a folder path, but {parent} is a file.")


def check_output_file(flag, path, earlier=None, what="an earlier result of this command"):
    """Raises UsageError unless a file can be written at `path` (the value of `flag`): not an existing
    folder, not ending in a separator, and under a folder (missing folders are created later, but the
    nearest existing one must be a folder). With `earlier` (path -> bool), an existing file is replaced only
    when `earlier` says it is `what` (a run's best.keras or config.json given by mistake is kept). Returns None."""
    from dnadet_tf.cli.common import UsageError
    from dnadet_tf.runs import nearest_existing

    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        raise UsageError(f"{flag} {path}: expected a file path, received a folder.")
    if earlier is not None and os.path.isfile(path) and not earlier(path):
        raise UsageError(f"{flag} {path}: expected a new file or {what} to replace, received an existing file that "
                         f"is not one (it is kept; name another file).")
    parent = nearest_existing(os.path.dirname(os.path.abspath(path)))
    if not os.path.isdir(parent):
        raise UsageError(f"{flag} {path}: expected a file path under a folder, but {parent} is a file.")


def is_evaluation_json(path):
    """Whether the file at `path` is an evaluation JSON `evaluate` writes: a non-empty list of rows with a name
    (`[]`, which it never writes, is a file of the user's)."""
    from dnadet_tf.runs import read_json

    rows = read_json(path)
    return isinstance(rows, list) and bool(rows) and all(isinstance(row, dict) and "name" in row for row in rows)


def is_robustness_json(path):
    """Whether the file at `path` is a robustness JSON `robustness` writes: an object with its rows and attacks."""
    from dnadet_tf.runs import read_json

    document = read_json(path)
    return isinstance(document, dict) and {"rows", "attacks"} <= set(document)


def is_markdown_table(path):
    """Whether the file at `path` starts as the Markdown tables this package writes do (a `### ` title)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(4) == "### "
    except OSError:
        return False

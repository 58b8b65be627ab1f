"""`dnadet-tf evaluate`: whole-image metrics of a trained model on datasets."""
import json
import os
import re

from dnadet_tf.cli.main import AUGMENT_NAMES_HELP, HelpFormatter


def register(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="accuracy, macro-F1, recall and confusion matrices on one or more datasets",
        description=(
            "Whole-image inference with a run's best.keras. One row per DATA (a benchmark folder expands to "
            "closed-set, cross-seed, cross-loss, cross-finetune and cross-dataset): accuracy, macro-F1, "
            "macro recall, per-class recall, expected calibration error; a table on the terminal, JSON, and a "
            "confusion-matrix PNG per DATA. With --unknown (or a benchmark's open_set.txt) and a calibrated "
            "model, also the open-set figures."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", required=True,
                        help="a run dir written by 'dnadet-tf fit', an exported SavedModel version folder, or a "
                             ".tflite file")
    parser.add_argument("--data", required=True, nargs="+", metavar="DATA",
                        help="folder trees, annotation lists or benchmark folders")
    parser.add_argument("--unknown", nargs="+", metavar="DATA", default=[],
                        help="images of architectures the model was not trained on (folders, lists of "
                             "path<TAB>name, or benchmark folders' open_set.txt): AUROC, FPR at 95 %% TPR and "
                             "open-set accuracy against the closed-set images; a benchmark folder in --data adds "
                             "its open_set.txt by itself (needs a calibrated model)")
    parser.add_argument("--json", metavar="FILE",
                        help="write the rows as JSON here (confusion PNGs beside it; missing folders are "
                             "created); default: evaluation.json in RUN/evaluations/<DATA names>/ (a run dir; "
                             "MODEL-evaluations/... beside an export), never the evaluation/ folder that fit and "
                             "ablate write. The folder's evaluated.json records the absolute paths of --data and "
                             "--unknown: the same data again replaces that folder, other data whose names are the "
                             "same goes to <DATA names>-2, -3, ...")
    parser.add_argument("--batch-size", type=int, default=16, help="images per inference batch")
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"),
                        help="compute a run dir's encoder in this precision (default: as trained; "
                             "mixed_bfloat16 is faster on CPUs with AVX-512 BF16)")
    parser.add_argument("--perturb", help=f"perturb test images first: {AUGMENT_NAMES_HELP}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbations")
    parser.add_argument("--report", metavar="DIR",
                        help="also write DIR/report.html: a self-contained HTML report (metrics, confusion "
                             "matrices, t-SNE of the pooled features, Grad-CAM examples, configuration)")
    parser.set_defaults(func=run)


RECORD_FILE = "evaluated.json"  # in an evaluation folder: the absolute paths of what it evaluated


def default_output_dir(model, data, perturb=None, seed=0, folder="evaluations"):
    """Where `evaluate` writes without --json: a folder named after what it evaluated, inside a run dir
    (MODEL/evaluations/NAME) or beside an export (MODEL-evaluations/NAME); never the run's evaluation/
    folder, which holds the figures fit and ablate measured (ablate resumes from them). `folder`: the
    parent's name (`robustness` uses "robustness"). Returns the path; `output_folder` picks NAME-2, ...
    when it holds the results of other data.

    >>> default_output_dir("runs/a", ["zoo/", "extra/cross_content.txt"], "jpeg,blur", 1)
    'runs/a/evaluations/zoo+cross_content-perturb-jpeg-blur-seed1'
    """
    names = [os.path.splitext(os.path.basename(os.path.normpath(spec)))[0] for spec in data]
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", "+".join(names))[:100] or "data"
    if perturb:
        name += f"-perturb-{re.sub(r'[^A-Za-z0-9]+', '-', perturb)}-seed{seed}"
    if os.path.isfile(model) or os.path.isfile(os.path.join(model, "saved_model.pb")):
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
    try:
        with open(os.path.join(folder, record_file), encoding="utf-8") as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(recorded, dict) and all(recorded.get(key) == value for key, value in record.items())


def check_output_file(flag, path):
    """Raises UsageError unless a file can be written at `path` (the value of `flag`): not an existing
    folder, not ending in a separator, and under a folder (missing folders are created later, but the
    nearest existing one must be a folder). Returns None."""
    from dnadet_tf.cli.main import UsageError

    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        raise UsageError(f"{flag} {path}: expected a file path, received a folder.")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"{flag} {path}: expected a file path under a folder, but {parent} is a file.")


def run(args):
    from dnadet_tf.evaluation import evaluate, format_table, write_confusion_pngs
    from dnadet_tf.api import load as load_predictor
    from dnadet_tf.runs import write_json_atomic

    if args.json:
        check_output_file("--json", args.json)
    if args.report and os.path.exists(args.report) and not os.path.isdir(args.report):
        from dnadet_tf.cli.main import UsageError

        raise UsageError(f"--report {args.report}: exists and is not a folder.")
    perturb_fn = None
    if args.perturb:
        from dnadet_tf.attacks import attack_fn
        from dnadet_tf.cli.main import parse_attack_flag

        perturb_fn = attack_fn(parse_attack_flag("--perturb", args.perturb))
    predictor = load_predictor(args.model, precision=args.precision)
    # Every DATA and --unknown is checked before any inference; nothing is written until the rows exist.
    rows = evaluate(predictor, args.data, batch_size=args.batch_size, perturb_fn=perturb_fn, seed=args.seed,
                    unknown_specs=args.unknown)
    print(format_table(rows, predictor.class_names))
    if args.json:
        json_path = args.json
        out_dir = os.path.dirname(os.path.abspath(json_path))
    else:
        record = data_record(args.data, args.unknown)
        preferred = default_output_dir(args.model, args.data, args.perturb, args.seed)
        out_dir = output_folder(preferred, RECORD_FILE, record)
        if out_dir != preferred:
            print(f"{preferred} holds the evaluation of other data (see its {RECORD_FILE}); writing to {out_dir}")
        os.makedirs(out_dir, exist_ok=True)
        write_json_atomic(os.path.join(out_dir, RECORD_FILE), record)
        json_path = os.path.join(out_dir, "evaluation.json")
    write_confusion_pngs(rows, predictor.class_names, out_dir)
    write_json_atomic(json_path, rows)
    print(f"wrote {json_path} and confusion-matrix PNGs in {out_dir}")
    if args.report:
        from dnadet_tf.report import write_report

        settings = {"evaluation data": list(args.data), "perturbation": args.perturb or "none",
                    "perturbation seed": args.seed}
        path = write_report(predictor, rows, args.report, settings=settings, seed=args.seed,
                            batch_size=args.batch_size)
        print(f"wrote {path}")
    return 0

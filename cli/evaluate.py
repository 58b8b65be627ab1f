"""`dnadet-tf evaluate`: whole-image metrics of a trained model on datasets."""
import os

from dnadet_tf.cli.common import AUGMENT_NAMES_HELP, HelpFormatter
from dnadet_tf.cli.output_paths import (RECORD_FILE, check_output_file, check_output_folder, data_record,
                                        default_output_dir, is_evaluation_json, output_folder)


def register(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="accuracy, macro-F1, recall and confusion matrices on one or more datasets",
        description=(
            "Whole-image inference with a run's best.keras (or an exported SavedModel or .tflite file). One row per DATA (a benchmark folder expands to "
            "closed-set, cross-seed, cross-loss, cross-finetune and cross-dataset): accuracy, macro-F1, "
            "macro recall, per-class recall, expected calibration error; a table on the terminal, JSON, and a "
            "confusion-matrix PNG per DATA. With --unknown (or a benchmark's open_set.txt) and a calibrated "
            "model, also the open-set figures. A DATA whose images are, by their bytes, training images of the run "
            "(its config.json's data, less the share val_split held out) gets a warning line, and its row's "
            "metrics count them in training_images (absent when none is; exports record no training data)."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", required=True,
                        help="a run dir written by 'dnadet-tf fit', an exported SavedModel version folder, or a "
                             ".tflite file")
    parser.add_argument("--data", required=True, nargs="+", metavar="DATA",
                        help="folder trees, annotation lists or benchmark folders")
    parser.add_argument("--unknown", nargs="+", metavar="DATA", default=[],
                        help="images of architectures the model was not trained on (folders, image files, lists of "
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
                        help="also write DIR/report.html: a self-contained HTML report (metrics with ECE, confusion "
                             "matrices, the open-set figures when there are some, t-SNE of the pooled features, "
                             "Grad-CAM examples, configuration); an earlier report's report.html and tsne.png in DIR "
                             "are replaced, a file of yours of that name is kept and the report takes the next free "
                             "name (report-2.html, tsne-2.png)")
    parser.set_defaults(func=run)


def run(args):
    from dnadet_tf.evaluation import evaluate, format_table, write_confusion_pngs
    from dnadet_tf.api import load as load_predictor
    from dnadet_tf.runs import earlier_pngs, remove_unlisted, write_json_atomic

    if args.json:
        check_output_file("--json", args.json, is_evaluation_json, "an earlier evaluation JSON")
    if args.report:
        check_output_folder("--report", args.report)
    perturb_fn = None
    if args.perturb:
        from dnadet_tf.attacks import attack_fn
        from dnadet_tf.cli.common import parse_attack_flag

        perturb_fn = attack_fn(parse_attack_flag("--perturb", args.perturb))
    predictor = load_predictor(args.model, precision=args.precision)
    # Every DATA and --unknown is checked before any inference; nothing is written until the rows exist.
    rows = evaluate(predictor, args.data, batch_size=args.batch_size, perturb_fn=perturb_fn, seed=args.seed,
                    unknown_specs=args.unknown)
    print(format_table(rows, predictor.class_names))
    if args.json:
        json_path = os.path.abspath(args.json)
        out_dir = os.path.dirname(json_path)
    else:
        record = data_record(args.data, args.unknown)
        preferred = os.path.abspath(default_output_dir(args.model, args.data, args.perturb, args.seed,
                                                       precision=args.precision))
        out_dir = output_folder(preferred, RECORD_FILE, record)
        if out_dir != preferred:
            print(f"{preferred} holds the evaluation of other data (see its {RECORD_FILE}); writing to {out_dir}")
        os.makedirs(out_dir, exist_ok=True)
        write_json_atomic(os.path.join(out_dir, RECORD_FILE), record)
        json_path = os.path.join(out_dir, "evaluation.json")
    # Only the PNGs of the JSON being replaced are written over: another evaluation's in this folder (a shared
    # --json folder) or a file of the user's keeps its name, and the PNG takes the next free one.
    earlier = earlier_pngs(json_path, "confusion_png")
    write_confusion_pngs(rows, predictor.class_names, out_dir, replaceable=earlier)
    write_json_atomic(json_path, rows)
    remove_unlisted(earlier, [row["confusion_png"] for row in rows if "confusion_png" in row])
    skipped = sum(row.get("metrics", {}).get("skipped_files", 0) for row in rows)
    print(f"wrote {json_path} and confusion-matrix PNGs in {out_dir}"
          + (f"; {skipped} file(s) skipped (the warnings above name them)" if skipped else ""))
    if args.report:
        from dnadet_tf.report import write_report

        settings = {"evaluation data": list(args.data), "perturbation": args.perturb or "none",
                    "perturbation seed": args.seed}
        path = write_report(predictor, rows, args.report, settings=settings, seed=args.seed,
                            batch_size=args.batch_size)
        print(f"wrote {path}")
    return 0

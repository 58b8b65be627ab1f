"""`dnadet-tf predict`: the most likely generator architecture of each image."""
import json
import math

from dnadet_tf.cli.common import HelpFormatter


def register(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="top class and probabilities for image files",
        description=(
            "One line (or one JSON object with --json) per image: top class, its probability, the top-k. With a "
            "calibrated model (fit calibrates when it has validation data; 'dnadet-tf calibrate' refits), an image "
            "whose open-set score passes the threshold is answered 'unknown' with the nearest known architecture "
            "and the score; --json then adds 'unknown', 'ood_score' and 'ood_threshold' (its 'class' stays the nearest "
            "known architecture, the answer 'unknown' is the 'unknown' flag). Lines are printed a batch at a time, "
            "after every file is checked; a file that cannot be read or is too small is named in a warning line on "
            "stderr and counted at the end (with --json also in an object {'path', 'skipped': the reason} after the "
            "answers), and the exit status stays 0 while any image was answered. In the text "
            "lines a tab, newline or backslash in a path is written \\t, \\n, \\\\ (--json keeps the path as it "
            "is; a number JSON has no word for, NaN from a broken model, is null)."),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", required=True,
                        help="a run dir, an exported SavedModel version folder, or a .tflite file")
    parser.add_argument("inputs", nargs="+", metavar="FILES_OR_DIRS", help="image files or folders (read recursively)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    parser.add_argument("--top-k", type=int, default=3, help="how many classes to list per image")
    parser.add_argument("--batch-size", type=int, default=16, help="images per inference batch")
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"),
                        help="compute a run dir's encoder in this precision (default: as trained; "
                             "mixed_bfloat16 is faster on CPUs with AVX-512 BF16)")
    parser.set_defaults(func=run)


def run(args):
    import sys

    import numpy as np

    from dnadet_tf.cli.common import UsageError
    from dnadet_tf.api import load as load_predictor
    from dnadet_tf.data import collect_image_paths, readable_images
    from dnadet_tf.predictor import attribute_batches

    if args.top_k < 1:
        raise UsageError(f"--top-k: expected a positive integer, received {args.top_k}.")
    predictor = load_predictor(args.model, precision=args.precision)
    if predictor.open_set is None:
        how = (f"dnadet-tf calibrate {args.model} fits one" if predictor.kind == "keras"
               else "calibrate the run ('dnadet-tf calibrate RUN') and export it again")
        print(f"note: {args.model} stores no open-set score, so every image is attributed to a known "
              f"architecture ({how}).", file=sys.stderr)
    paths = collect_image_paths(args.inputs, warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    usable, skipped = readable_images(paths, predictor.preprocess)
    names = predictor.class_names
    k = min(args.top_k, len(names))
    for batch, outputs in attribute_batches(predictor, usable, args.batch_size):  # printed as each batch is done
        for i, (path, row) in enumerate(zip(batch, outputs["probabilities"])):
            order = np.argsort(-row)[:k]
            top = [{"class": names[j], "probability": json_number(row[j])} for j in order]
            unknown = bool(outputs["unknown"][i]) if "unknown" in outputs else None
            if args.json:
                record = {"path": path, "class": top[0]["class"], "probability": top[0]["probability"],
                          "top_k": top}
                if unknown is not None:
                    record.update(unknown=unknown, ood_score=json_number(outputs["ood_score"][i]),
                                  ood_threshold=json_number(predictor.open_set["threshold"]))
                print(json.dumps(record, allow_nan=False))
                continue
            shown = path.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
            first = float(row[order[0]])
            if unknown:
                print(f"{shown}\tunknown\t-\t[nearest known {names[order[0]]} {first:.3f}; "
                      f"open-set score {float(outputs['ood_score'][i]):.4g} > threshold "
                      f"{predictor.open_set['threshold']:.4g}]")
            else:
                rest = ", ".join(f"{names[j]} {float(row[j]):.3f}" for j in order)
                print(f"{shown}\t{names[order[0]]}\t{first:.4f}\t[{rest}]")
    if args.json:  # a program reading the records learns of every file it gave, not only of those answered
        for path, reason in skipped:
            reason = reason[len(path) + 2:] if reason.startswith(f"{path}: ") else reason
            print(json.dumps({"path": path, "skipped": reason}))
    if skipped:
        print(f"{len(skipped)} file(s) skipped", file=sys.stderr)
    return 0


def json_number(value):
    """A float for JSON, rounded to 6 places; None (null) for NaN or infinity, which JSON has no number for (a
    model with non-finite weights answers NaN)."""
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None

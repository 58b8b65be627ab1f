"""`dnadet-tf predict`: the most likely generator architecture of each image."""
import json

from dnadet_tf.cli.main import HelpFormatter


def register(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="top class and probabilities for image files",
        description=(
            "One line (or one JSON object with --json) per image: top class, its probability, the top-k. With a "
            "calibrated model (fit calibrates when it has validation data; 'dnadet-tf calibrate' refits), an image "
            "whose open-set score passes the threshold is answered 'unknown' with the nearest known architecture "
            "and the score; --json then adds 'unknown', 'ood_score' and 'ood_threshold' (its 'class' stays the nearest "
            "known architecture, the answer 'unknown' is the 'unknown' flag)."),
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

    from dnadet_tf.cli.main import UsageError
    from dnadet_tf.data import collect_image_paths
    from dnadet_tf.api import load as load_predictor
    from dnadet_tf.predictor import attribute_images

    if args.top_k < 1:
        raise UsageError(f"--top-k: expected a positive integer, received {args.top_k}.")
    predictor = load_predictor(args.model, precision=args.precision)
    if predictor.open_set is None:
        how = (f"dnadet-tf calibrate {args.model} fits one" if predictor.kind == "keras"
               else "calibrate the run ('dnadet-tf calibrate RUN') and export it again")
        print(f"note: {args.model} stores no open-set score, so every image is attributed to a known "
              f"architecture ({how}).", file=sys.stderr)
    paths = collect_image_paths(args.inputs, warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    usable, outputs, skipped = attribute_images(predictor, paths, args.batch_size)
    names = predictor.class_names
    k = min(args.top_k, len(names))
    for i, (path, row) in enumerate(zip(usable, outputs["probabilities"])):
        order = np.argsort(-row)[:k]
        top = [{"class": names[j], "probability": round(float(row[j]), 6)} for j in order]
        unknown = bool(outputs["unknown"][i]) if "unknown" in outputs else None
        if args.json:
            record = {"path": path, "class": top[0]["class"], "probability": top[0]["probability"], "top_k": top}
            if unknown is not None:
                record.update(unknown=unknown, ood_score=round(float(outputs["ood_score"][i]), 6),
                              ood_threshold=round(float(predictor.open_set["threshold"]), 6))
            print(json.dumps(record))
        else:
            rest = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in top)
            if unknown:
                print(f"{path}\tunknown\t-\t[nearest known {top[0]['class']} {top[0]['probability']:.3f}; "
                      f"open-set score {float(outputs['ood_score'][i]):.4g} > threshold "
                      f"{predictor.open_set['threshold']:.4g}]")
            else:
                print(f"{path}\t{top[0]['class']}\t{top[0]['probability']:.4f}\t[{rest}]")
    if skipped:
        print(f"{skipped} file(s) skipped", file=sys.stderr)
    return 0

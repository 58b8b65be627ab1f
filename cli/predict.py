"""`dnadet-tf predict`: the most likely generator architecture of each image."""
import json

from dnadet_tf.cli.main import HelpFormatter


def register(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="top class and probabilities for image files",
        description="One line (or one JSON object with --json) per image: top class, its probability, the top-k.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", required=True,
                        help="a run dir, an exported SavedModel version folder, or a .tflite file")
    parser.add_argument("inputs", nargs="+", metavar="FILES_OR_DIRS", help="image files or folders (read recursively)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    parser.add_argument("--top-k", type=int, default=3, help="how many classes to list per image")
    parser.add_argument("--batch-size", type=int, default=16, help="images per inference batch")
    parser.set_defaults(func=run)


def run(args):
    import sys

    import numpy as np

    from dnadet_tf.cli.main import UsageError
    from dnadet_tf.data import collect_image_paths
    from dnadet_tf.api import load as load_predictor
    from dnadet_tf.predictor import predict_images

    if args.top_k < 1:
        raise UsageError(f"--top-k: expected a positive integer, received {args.top_k}.")
    predictor = load_predictor(args.model)
    usable, probabilities, skipped = predict_images(predictor, collect_image_paths(args.inputs), args.batch_size)
    names = predictor.class_names
    k = min(args.top_k, len(names))
    for path, row in zip(usable, probabilities):
        order = np.argsort(-row)[:k]
        top = [{"class": names[i], "probability": round(float(row[i]), 6)} for i in order]
        if args.json:
            print(json.dumps({"path": path, "class": top[0]["class"], "probability": top[0]["probability"],
                              "top_k": top}))
        else:
            rest = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in top)
            print(f"{path}\t{top[0]['class']}\t{top[0]['probability']:.4f}\t[{rest}]")
    if skipped:
        print(f"{skipped} file(s) skipped", file=sys.stderr)
    return 0

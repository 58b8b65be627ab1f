"""`dnadet-tf explain`: Grad-CAM heatmaps of a run's predictions."""
from dnadet_tf.cli.common import HelpFormatter


def register(subparsers):
    from dnadet_tf.model import DEFAULT_GRADCAM_LAYER

    parser = subparsers.add_parser(
        "explain",
        help="Grad-CAM / Grad-CAM++ heatmaps for image files",
        description=(
            "For each image, a PNG with the preprocessed image, the Grad-CAM map of the predicted class "
            "laid over it, the predicted class and its probability (for a calibrated run, 'unknown' with the "
            "open-set score where it passes the threshold, as predict answers; the map is then of the nearest known "
            "class); and explain.json listing them. "
            "The map is computed at --layer and upsampled to the preprocessed input size."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", required=True,
                        help="run dir written by 'dnadet-tf fit' (or by adapt or import-torch); not an export")
    parser.add_argument("inputs", nargs="+", metavar="IMAGES", help="image files or folders (read recursively)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs and explain.json")
    parser.add_argument("--layer", default=DEFAULT_GRADCAM_LAYER,
                        help="target layer (a conv or activation layer of the model)")
    parser.add_argument("--method", choices=("gradcam", "gradcam++"), default="gradcam", help="CAM method")
    parser.add_argument("--batch-size", type=int, default=16, help="images per Grad-CAM pass")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --out that holds files: the PNGs of an earlier explain that its "
                             "explain.json lists and this one does not write are removed, other files are kept")
    parser.set_defaults(func=run)


def run(args):
    import os

    from dnadet_tf.cli.common import UsageError
    from dnadet_tf.cli.output_paths import check_output_folder
    from dnadet_tf.runs import earlier_pngs, remove_unlisted
    from dnadet_tf.data import collect_image_paths, readable_images
    from dnadet_tf.explain import check_layer, check_method, explain_files
    from dnadet_tf.runs import RunDir, write_json_atomic

    check_output_folder("--out", args.out)
    if os.path.isdir(args.out) and os.listdir(args.out) and not args.overwrite:
        raise UsageError(f"--out {args.out}: the folder already holds files; pass --overwrite to write into it "
                         f"(an earlier explain's PNGs are replaced) or give another folder.")
    check_method(args.method)
    model = RunDir(args.model).load_model()
    check_layer(model, args.layer)
    usable, skipped = readable_images(collect_image_paths(args.inputs), model.preprocessing)
    listing = os.path.join(args.out, "explain.json")
    earlier = earlier_pngs(listing, "png")  # an earlier explain's, which may be replaced; other files are kept
    results = explain_files(model, model.class_names, model.preprocessing, usable, args.out,
                            layer=args.layer, method=args.method, batch_size=args.batch_size, replaceable=earlier)
    for row in results:
        verdict = (f"\tunknown (open-set score {row['ood_score']:.4g} > threshold {row['ood_threshold']:.4g}; the map "
                   f"is of the nearest known class)" if row.get("unknown") else "")
        print(f"{row['path']}\t{row['class']}\t{row['probability']:.4f}\t{row['png']}{verdict}")
    remove_unlisted(earlier, [row["png"] for row in results])
    write_json_atomic(listing, results)
    print(f"wrote {len(results)} PNG(s) and explain.json in {args.out}"
          + (f"; {len(skipped)} file(s) skipped" if skipped else ""))
    return 0 if results else 1

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
            "class); and explain.json listing them (each image and PNG by its absolute path). "
            "The map is computed at --layer and upsampled to the preprocessed input size."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", required=True,
                        help="run dir written by 'dnadet-tf fit' (or by adapt or import-torch); not an export")
    parser.add_argument("inputs", nargs="+", metavar="IMAGES",
                        help="image files or folders (read recursively); in a folder, the PNGs an earlier explain "
                             "wrote (those an explain listing beside them lists: explain.json, or explain-2.json, "
                             "... where an explain.json of yours holds the name; a JSON file of yours under those "
                             "names hides nothing) are not read, so an --out inside a "
                             "folder of IMAGES, or that folder itself, is not explained again on a rerun; an "
                             "image file named itself is always read (and never written over)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for the PNGs and explain.json (explain-2.json, ... where an explain.json that "
                             "is not an explain listing, a file of yours, holds the name: it is kept)")
    parser.add_argument("--layer", default=DEFAULT_GRADCAM_LAYER,
                        help="target layer (a conv or activation layer of the model)")
    parser.add_argument("--method", choices=("gradcam", "gradcam++"), default="gradcam",
                        help="CAM method (gradcam++: the published alphas, 0 where their denominator is <= 0)")
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
    from dnadet_tf.data import readable_images
    from dnadet_tf.explain import LISTING, check_layer, check_method, explain_files, listing_path
    from dnadet_tf.runs import RunDir, write_json_atomic

    check_output_folder("--out", args.out)
    if os.path.isdir(args.out) and os.listdir(args.out) and not args.overwrite:
        raise UsageError(f"--out {args.out}: the folder already holds files; pass --overwrite to write into it "
                         f"(an earlier explain's PNGs are replaced) or give another folder.")
    check_method(args.method)
    model = RunDir(args.model).load_model()
    check_layer(model, args.layer)
    listing = listing_path(args.out)  # explain.json, or the next free name beside a file of the user's
    if os.path.basename(listing) != LISTING:
        print(f"{os.path.join(args.out, LISTING)} is not an explain listing (a file of yours): kept; writing the "
              f"listing to {listing}")
    earlier = earlier_pngs(listing, "png")  # an earlier explain's, which may be replaced; other files are kept
    # an image file named on the command line is read, and so neither written over nor removed, even one that an
    # earlier explain wrote; in a folder, an earlier explain's PNG is an output, not an input (`input_images`)
    named = {os.path.realpath(item) for item in args.inputs if os.path.isfile(item)}
    earlier = [path for path in earlier if os.path.realpath(path) not in named]
    usable, skipped = readable_images(input_images(args.inputs), model.preprocessing)
    results = explain_files(model, model.class_names, model.preprocessing, usable, args.out,
                            layer=args.layer, method=args.method, batch_size=args.batch_size, replaceable=earlier)
    for path, row in zip(usable, results):  # the paths as given; explain.json names them absolute
        verdict = (f"\tunknown (open-set score {row['ood_score']:.4g} > threshold {row['ood_threshold']:.4g}; the map "
                   f"is of the nearest known class)" if row.get("unknown") else "")
        png = os.path.join(args.out, os.path.basename(row["png"]))
        print(f"{path}\t{row['class']}\t{row['probability']:.4f}\t{png}{verdict}")
    remove_unlisted(earlier, [row["png"] for row in results])
    write_json_atomic(listing, results)
    print(f"wrote {len(results)} PNG(s) and {os.path.basename(listing)} in {args.out}"
          + (f"; {len(skipped)} file(s) skipped" if skipped else ""))
    return 0 if results else 1


REPORT_LISTING = "gradcam.json"  # the listing of evaluate --report's gradcam/ (`report.GRADCAM_LISTING`)


def input_images(inputs):
    """The image files of `inputs` (`data.collect_image_paths`: files and folders, read recursively) but, of those
    found in a folder, the PNGs an earlier explain wrote: those a listing beside them lists (explain.json or
    explain-N.json, or a report's gradcam/gradcam.json), a file that `explain.is_listing` says an explain or a report
    wrote; a JSON file of the user's under those names hides no image. A rerun into an --out inside a folder of
    IMAGES, or into that folder itself, explained its own earlier PNGs as images. A file named in `inputs` is kept.
    Raises DataError when no image is left."""
    import os

    from dnadet_tf.data import collect_image_paths
    from dnadet_tf.errors import DataError
    from dnadet_tf.explain import LISTING_NAME, is_listing
    from dnadet_tf.runs import earlier_pngs

    found = collect_image_paths(inputs)
    named = {os.path.realpath(item) for item in inputs if os.path.isfile(item)}
    outputs = set()
    for folder in {os.path.dirname(os.path.abspath(path)) for path in found}:
        for name in sorted(os.listdir(folder)):
            listing = os.path.join(folder, name)
            if (LISTING_NAME.fullmatch(name) or name == REPORT_LISTING) and is_listing(listing):
                outputs.update(os.path.realpath(path) for path in earlier_pngs(listing, "png"))
    paths = [path for path in found if os.path.realpath(path) in named or os.path.realpath(path) not in outputs]
    if not paths:
        raise DataError(f"{' '.join(inputs)}: expected image files, found none but {len(found)} PNG(s) an earlier "
                        f"explain wrote (listed by the explain listing beside them), which are not read as images "
                        f"(name one as a file to explain it).")
    return paths

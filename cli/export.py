"""`dnadet-tf export`: a run dir -> TF Serving SavedModel + TFLite attributors + parity report."""
from dnadet_tf.cli.common import HelpFormatter


def register(subparsers):
    parser = subparsers.add_parser(
        "export",
        help="SavedModel for TF Serving and float32/float16/dynamic/int8 TFLite files, with a parity report",
        description=(
            "Exports a run's best.keras: DIR/NAME/VERSION/ is a SavedModel in TF Serving's layout (serving_default "
            "takes encoded image bytes, predict_pixels preprocessed pixels); DIR/NAME/tflite/ holds NAME-<format>"
            ".tflite files with a NAME-<format>.json sidecar each (labels, preprocessing, quantization, and for a "
            "calibrated run the open-set threshold: the dynamic and int8 files' refitted on their own scores of the validation "
            "images the run's calibration.json records); "
            "DIR/NAME/report.json compares every format with the Keras model (agreement, probability differences, "
            "accuracy, size, latency); it describes this export, and keeps in its 'earlier' list the reports of "
            "earlier ones, each with the rows of its files still there. An export adds files: it stops before any "
            "work if a file it would write exists (unless --overwrite), and never removes the files of formats "
            "not in --formats. Format web writes DIR/NAME/web/, a static site that runs the int8 (or "
            "--web-model) TFLite file in the browser, offline after the first visit (needs LiteRT.js: "
            "'npm ci --prefix web' once in the repository)."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", required=True,
                        help="run dir written by 'dnadet-tf fit' (or by adapt or import-torch)")
    parser.add_argument("--out", required=True, help="export folder DIR; the model goes to DIR/NAME")
    parser.add_argument("--name", default="dnadet", help="model name (TF Serving's MODEL_NAME, TFLite file prefix)")
    parser.add_argument("--version", type=int,
                        help="SavedModel version number (default: the next free one, 1 at first)")
    parser.add_argument("--formats", default="savedmodel,float32,float16,dynamic,int8",
                        help="comma list of savedmodel, float32, float16, dynamic, int8, web")
    parser.add_argument("--calibration",
                        help="int8 calibration images: DATA as for fit, or a folder of images without class "
                        "subfolders (default: the run's training data; for a run of 'adapt', the training images "
                        "its calibration.json records, else the images it was adapted to)")
    parser.add_argument("--calibration-images", type=int, default=200,
                        help="how many calibration images, balanced over classes")
    parser.add_argument("--eval", help="images for the parity report (default: the run's validation data, else "
                        "the validation images its calibration.json records, else its training data; for a run of "
                        "'adapt', the validation images its calibration.json records, else the images it was "
                        "adapted to); a benchmark folder means its val.txt; a folder of images without class "
                        "subfolders is compared without labels (no accuracy)")
    parser.add_argument("--max-eval", type=int, default=1000, help="at most this many parity images (0: all)")
    parser.add_argument("--no-equalize", dest="equalize", action="store_false",
                        help="convert the int8 model from the weights as trained (default: from a copy whose "
                        "channels span equal ranges, the same function in float, fewer int8 disagreements)")
    parser.add_argument("--int8-io", action="store_true",
                        help="int8 model takes int8 input and gives int8 probabilities; the open-set score stays "
                             "float32 (default float32 I/O)")
    parser.add_argument("--threads", type=int, help="LiteRT interpreter threads for the parity run (default: all CPUs)")
    parser.add_argument("--web-model", default="int8", choices=("int8", "float32"),
                        help="the TFLite file the web app runs (exported too when not in --formats)")
    parser.add_argument("--web-runtime", metavar="NODE_MODULES",
                        help="node_modules folder holding @litertjs/core 2.5.x for the web app (default: "
                        "$DNADET_TF_WEB_RUNTIME, else the repository's web/node_modules)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --version, and this export's files already in DIR/NAME (the "
                        "TFLite files of --formats, their JSON, web/); the files of other formats are kept, so a "
                        "file of another format that records that --version stops the export before any work (it "
                        "would claim a version it is not of)")
    parser.set_defaults(func=run)


def run(args):
    import sys

    from dnadet_tf.calibrate import spec_text
    from dnadet_tf.cli.common import UsageError
    from dnadet_tf.exports.export import export_run, parse_formats
    from dnadet_tf.exports.parity import format_parity_table

    if args.version is not None and args.version < 1:
        raise UsageError(f"--version: expected a positive integer, received {args.version}.")
    if args.calibration_images < 1:
        raise UsageError(f"--calibration-images: expected a positive integer, received {args.calibration_images}.")
    if args.max_eval < 0:
        raise UsageError(f"--max-eval: expected 0 (all) or a positive integer, received {args.max_eval}.")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads: expected a positive integer, received {args.threads}.")
    report = export_run(
        args.model, args.out, name=args.name, version=args.version, formats=parse_formats(args.formats),
        calibration=args.calibration, calibration_images=args.calibration_images, eval_data=args.eval,
        max_eval=args.max_eval, int8_io=args.int8_io, overwrite=args.overwrite, num_threads=args.threads,
        web_model=args.web_model, web_runtime=args.web_runtime, equalize=args.equalize,
        warn=lambda message: print(f"warning: {message}", file=sys.stderr),
    )
    print(f"exported {report['name']} version {report['version']} to {report['out']}")
    print(f"parity on {report['eval']['images']} images of {spec_text(report['eval']['data'])} (latency: batch 1, "
          f"median):")
    print(format_parity_table(report["rows"]))
    if report.get("web"):
        web = report["web"]
        site = f"{report['out']}/{web['path']}"
        print(f"web app: {site}/ ({web['format']} model, {web['runtime']}, {web['size_bytes'] / 1e6:.1f} MB); "
              f"serve it, e.g. python -m http.server -d {site}")
    return 0

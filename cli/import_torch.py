"""`dnadet-tf import-torch`: a checkpoint of the authors' PyTorch release -> a run dir."""
from dnadet_tf.cli.common import HelpFormatter


def register(subparsers):
    from dnadet_tf.torch_import import RELEASE_SETTINGS

    parser = subparsers.add_parser(
        "import-torch",
        help="turn a checkpoint of the authors' PyTorch release (model.pth) into a run dir",
        description=(
            "Reads a torch.save file of the release's network (ICTMCG/DNA-Det, models/models.py: Simple_CNN, "
            "or SupConNet) without PyTorch, maps every tensor onto the Keras classifier, and writes a run dir "
            "(best.keras, labels.txt, config.json, import.json) that predict, evaluate, explain and export use as "
            "any other. Its preprocessing is mode 'release' (Pillow's 8-bit bicubic and torchvision's crop offset, "
            "as the release's data loader). A checkpoint that does not fit the network stops with one line naming "
            "the first missing, misshapen or unexpected tensor."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="the release's model.pth (torch.save file)")
    parser.add_argument("--out", required=True, help="run dir to write")
    parser.add_argument("--classes", help="comma list of class names in label order (default: the --setting's)")
    parser.add_argument("--setting", choices=sorted(RELEASE_SETTINGS),
                        help="the release configuration the checkpoint was trained with: class names (celeba, lsun: "
                             "real,progan,mmdgan,sngan,infomaxgan; in_the_wild: 11 classes; pretrain: the 170 "
                             "transformations) and resize chain (celeba, lsun, pretrain: 128 crop -> 512; "
                             "in_the_wild: 128 crop -> 128 -> 512). Without it: 128 -> 128 -> 512")
    parser.add_argument("--crop-size", type=int, help="override the centre crop of non-square images")
    parser.add_argument("--resize1", type=int, help="override the first resize")
    parser.add_argument("--resize2", type=int, help="override the second resize (the network's input size), a "
                        "multiple of 16")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run dir (not one that holds "
                        "CHECKPOINT: it would be deleted before it is read)")
    parser.set_defaults(func=run)


def run(args):
    from dnadet_tf.cli.common import UsageError
    from dnadet_tf.torch_import import import_torch

    classes = None
    if args.classes is not None:
        classes = [name.strip() for name in args.classes.split(",")]
        if not all(classes):
            raise UsageError(f"--classes: expected a comma list of non-empty names, received {args.classes!r}.")
    elif args.setting is None:
        raise UsageError("--classes: expected the class names in label order, e.g. real,progan,mmdgan,sngan,"
                         "infomaxgan (or --setting celeba|lsun|in_the_wild|pretrain), received none.")
    summary = import_torch(args.checkpoint, args.out, class_names=classes, setting=args.setting,
                           crop_size=args.crop_size, resize1=args.resize1, resize2=args.resize2,
                           overwrite=args.overwrite)
    p = summary["preprocess"]
    print(f"imported {summary['tensors_mapped']} tensors of {args.checkpoint} (nf {summary['nf']}, width "
          f"{summary['width']:g}; {summary['conv_biases_folded_into_moving_mean']} conv biases folded into BatchNorm"
          f"{'; projection head kept in ' + summary['projection_head'] if summary['projection_head'] else ''})")
    print(f"classes: {', '.join(summary['class_names'])}")
    print(f"preprocessing: release mode, crop {p['crop_size']} -> {p['resize1']} -> {p['resize2']} px")
    print(f"run dir: {args.out} (dnadet-tf predict --model {args.out} IMAGES...)")
    return 0

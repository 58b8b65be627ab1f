"""`dnadet-tf zoo build`: train the generator zoo and write it as a benchmark folder; `zoo cross-content`:
its class generators run on the cross-dataset photos."""
import sys

from dnadet_tf.cli.main import HelpFormatter, UsageError

SIZE_HELP = (
    "how big a zoo: 'tiny' (a smoke test, under a minute: a few training steps, 8 images per class and split), "
    "'demo' (about 5 minutes on a 2-core CPU: 16 models, 240 train / 40 val / 80 test images per class "
    "and 80 per class in each cross split; the default), or 'full' (hours: wider models trained longer, "
    "thousands of images per class; resumable)"
)
PHOTOS_HELP = (
    "folder of photos to train the generators on and to take real images from (default: the 60 "
    "freely licensed photos shipped with the package). Content domains: subfolders a/, b/, c/ if present; "
    "otherwise, of three or more subfolders in sorted order, the first is domain A (train/val/test), the "
    "second B (cross-dataset), all the others C (fine-tuning); a folder without subfolders is dealt "
    "out A, B, A, C, ... by file name. Photos need a shorter side of at least 128 px"
)


def register(subparsers):
    zoo = subparsers.add_parser(
        "zoo",
        help="build the generator zoo: an offline benchmark with real architecture traces",
        description=(
            "The generator zoo: small generators of distinct architectures (ProGAN-, MMDGAN-, SNGAN-, "
            "InfoMaxGAN-like; DCGAN-, StyleGAN-, CycleGAN-like with --wild) trained on real photos, and "
            "the images they generate, written as a benchmark folder with the splits of the DNA-Det "
            "paper's Table 1 (train, val, test, cross_seed, cross_loss, cross_finetune, cross_dataset)."
        ),
        formatter_class=HelpFormatter,
    )
    actions = zoo.add_subparsers(dest="zoo_command", metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="train the zoo's generators and write the benchmark folder (resumable)",
        description=(
            "Train the zoo's generators and write the benchmark folder: classes.txt, one list per split "
            "(path<TAB>label), 128x128 PNG images, zoo.json describing every model, and a contact sheet "
            "per split. Re-running the same command resumes an interrupted build: finished models and "
            "images already written are kept. The same --seed gives the same weights and image bytes."
        ),
        formatter_class=HelpFormatter,
    )
    build.add_argument("--out", required=True, metavar="DIR",
                       help="folder to write the zoo into (created if missing; an interrupted build there "
                            "is resumed; one built with other settings is refused)")
    build.add_argument("--size", choices=("tiny", "demo", "full"), default="demo", help=SIZE_HELP)
    build.add_argument("--photos", metavar="DIR", default=None, help=PHOTOS_HELP)
    build.add_argument("--seed", type=int, default=0, metavar="N",
                       help="build seed: model initialisation, training batches, noise and crops all "
                            "derive from it (default: 0)")
    build.add_argument("--wild", action="store_true",
                       help="also train DCGAN-, StyleGAN- and CycleGAN-like families (classes dcgan, "
                            "stylegan, cyclegan after the four paper families), for an in-the-wild style set")
    build.set_defaults(func=run)
    cross_content = actions.add_parser(
        "cross-content",
        help="the zoo's class generators run on the cross-dataset photos: the same weights, other content",
        description=(
            "Write a zoo's cross-content split into a folder of its own (the zoo is not changed): every "
            "class's base model (seed 0, its own losses, trained on domain A: the generator of the "
            "train/val/test images) turns each real image of the cross_dataset split (domain B) into a "
            "fake, as a released image-to-image model is run on photos of another kind; those real "
            "images are the real class. Where cross_dataset changes both the content and the weights "
            "(each family retrained on B), this split changes only the content. Evaluate it with "
            "'dnadet-tf evaluate --model RUN --data DIR/cross_content.txt'."
        ),
        formatter_class=HelpFormatter,
    )
    cross_content.add_argument("--zoo", required=True, metavar="ZOO", help="a complete zoo folder")
    cross_content.add_argument("--out", required=True, metavar="DIR",
                               help="folder to write classes.txt, cross_content.txt, cross_content.json and "
                                    "images/ into (created if missing; an earlier split there is replaced)")
    cross_content.set_defaults(func=run_cross_content)
    zoo.set_defaults(func=lambda args: _missing_action(zoo))


def _missing_action(parser):
    parser.print_help(sys.stderr)
    return 2


def run(args):
    if args.seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, received {args.seed}")
    from dnadet_tf.zoo.build import build_zoo

    build_zoo(args.out, size=args.size, photos=args.photos, seed=args.seed, wild=args.wild,
              progress=lambda line: print(line, flush=True))
    return 0


def run_cross_content(args):
    from dnadet_tf.zoo.cross_content import write_cross_content

    write_cross_content(args.zoo, args.out, progress=lambda line: print(line, flush=True))
    return 0

"""`dnadet-tf zoo build`: train the generator zoo and write it as a benchmark folder; `zoo swap-content`:
each set of its generators run on the other set's photos."""
import sys

from dnadet_tf.cli.common import HelpFormatter, UsageError

SIZE_HELP = (
    "how big a zoo: 'tiny' (a smoke test, under a minute: a few training steps, 8 images per class and split), "
    "'demo' (6-11 minutes on a 2-core CPU: 19 models, 240 train / 40 val / 80 test images per class "
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
        help="build the generator zoo, an offline benchmark with real architecture traces, or swap its content",
        description=(
            "The generator zoo: small generators of distinct architectures (ProGAN-, MMDGAN-, SNGAN-, "
            "InfoMaxGAN-like; DCGAN-, StyleGAN-, CycleGAN-like with --wild) trained on real photos, and "
            "the images they generate, written as a benchmark folder with the splits of the DNA-Det "
            "paper's Table 1 (train, val, test, cross_seed, cross_loss, cross_finetune, cross_dataset): 'zoo build'. "
            "'zoo swap-content' writes two more splits of a zoo, each changing only the content or only the "
            "weights."
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
    swap = actions.add_parser(
        "swap-content",
        help="run the zoo's training generators on the cross-dataset photos and the cross-dataset generators "
             "on the test split's photos: content and weights, one at a time",
        description=(
            "A zoo's cross_dataset split changes the photos' content and the generators' weights at once "
            "(every family trained anew on domain B). This writes two splits that change one each, into a "
            "folder of its own (the zoo is not changed): cross_content, the generators of the training images "
            "(trained on domain A) run on the cross_dataset real crops, as a released image-to-image model is "
            "run on photos of another kind; cross_weights, the cross_dataset generators (trained on B) run on "
            "the test split's real crops. Each split's real class is the crops its fakes were made from. "
            "Evaluate them with 'dnadet-tf evaluate --model RUN --data DIR/cross_content.txt "
            "DIR/cross_weights.txt'."
        ),
        formatter_class=HelpFormatter,
    )
    swap.add_argument("--zoo", required=True, metavar="ZOO", help="a complete zoo folder")
    swap.add_argument("--out", required=True, metavar="DIR",
                      help="folder to write classes.txt, cross_content.txt, cross_weights.txt, swap_content.json "
                           "and images/ into (created if missing; earlier splits written there are replaced)")
    swap.set_defaults(func=run_swap_content)
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


def run_swap_content(args):
    from dnadet_tf.cli.output_paths import check_output_folder
    from dnadet_tf.zoo.swap_content import write_swapped_splits

    check_output_folder("--out", args.out)
    write_swapped_splits(args.zoo, args.out, progress=lambda line: print(line, flush=True))
    return 0

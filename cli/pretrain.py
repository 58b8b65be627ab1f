"""`dnadet-tf pretrain`: step 1 of DNA-Det, 170 image transformations."""
import argparse

from dnadet_tf.cli.common import HelpFormatter, add_training_runtime_flags

from dnadet_tf.config import PRESETS


def register(subparsers):
    parser = subparsers.add_parser(
        "pretrain",
        help="pre-train the encoder on 170 image transformations (the paper's step 1)",
        description=(
            "Pre-train the encoder to tell 170 classic image transformations apart (JPEG, double JPEG, "
            "Gaussian and median blur, resampling, Gaussian noise) on random 128 px crops of photos, with "
            "the same loop, losses, checkpoints and progress as fit. Use the run with 'fit --init RUN'."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--photos", required=True, help="folder of natural photos (read recursively; "
                        "photos smaller than 128 px are skipped with a warning)")
    parser.add_argument("--out", required=True, help="run dir to write")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="hyper-parameters (default: cpu; with --resume the run's own, another is refused)")
    parser.add_argument("--steps", type=int, help="train until this step (total, also when resuming)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint, with its own settings and --photos "
                        "(only --steps, --val-every, --strategy and --jit may change)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run dir")
    add_training_runtime_flags(parser)
    parser.add_argument("--lr", type=float, help="learning rate (overrides the preset)")
    parser.add_argument("--lr-decay-every", type=int,
                        help="multiply the learning rate by --lr-decay every N steps (overrides the preset's "
                             "pretrain_lr_decay_every)")
    parser.add_argument("--lr-decay", type=float, help="learning-rate decay factor (default 0.9)")
    parser.add_argument("--width", type=float, help="width multiplier of the encoder (overrides the preset)")
    parser.add_argument("--zero-mean-stem", action=argparse.BooleanOptionalAction, default=None,
                        help="train the encoder's first convolution as high-pass filters (every kernel kept at zero "
                        "spatial mean; docs/results.md, \"A high-pass first layer\") (default: off; fit --zero-mean-stem for step 2)")
    parser.add_argument("--batch-size", type=int, help="images per step (overrides the preset's pretrain_batch_size)")
    parser.add_argument("--patch-size", type=int,
                        help="side of the training crops in px, a multiple of 16 up to the second resize (default: "
                        "the preset's, 64 in cpu; validation always sees whole images)")
    parser.add_argument("--patches-per-image", type=int,
                        help="training crops per image (default: the preset's, 8 in cpu); 128 px x 2 costs about "
                             "what 64 px x 8 does")
    parser.add_argument("--resize2", type=int,
                        help="second bicubic resize of the transformed 128 px crop, the network's input size in px, "
                        "a multiple of 16 (default: the preset's, 512; tiny 64); fit --resize2 sets step 2's")
    parser.add_argument("--crop-grid", type=int, metavar="N",
                        help="put the training crops' corners on multiples of N px of the network's input (default "
                        "1: anywhere); with --resize2 128 (no magnification) 8 keeps the JPEG blocks of the "
                        "transformed crop in the same place in every crop (docs/results.md, \"Pre-training\")")
    parser.add_argument("--images-per-transformation", type=int,
                        help="photos per drawn transformation in a step; 1 = the release's sampling, every "
                        "image's transformation drawn independently; must divide --batch-size (default 4)")
    parser.add_argument("--patience", type=int,
                        help="stop early after this many validations without improvement (overrides the preset)")
    parser.add_argument("--val-every", type=int,
                        help="validate on held-out photos every N steps (overrides the preset's pretrain_val_every)")
    parser.add_argument("--seed", type=int, help="seed of photo order, crops, transformations and initialisation")
    parser.set_defaults(func=run)


def run(args):
    from dnadet_tf.pretraining import pretrain

    pretrain(args.photos, args.out, preset=args.preset, resume=args.resume, overwrite=args.overwrite,
             steps=args.steps, strategy=args.strategy, precision=args.precision, jit=args.jit, seed=args.seed,
             input_niceness=args.input_niceness,
             learning_rate=args.lr, patience=args.patience, lr_decay_every=args.lr_decay_every, val_every=args.val_every,
             lr_decay=args.lr_decay, width=args.width, zero_mean_stem=args.zero_mean_stem,
             pretrain_batch_size=args.batch_size,
             pretrain_images_per_class=args.images_per_transformation, patch_size=args.patch_size,
             patches_per_image=args.patches_per_image, resize2=args.resize2, crop_grid=args.crop_grid)
    return 0

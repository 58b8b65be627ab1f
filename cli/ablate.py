"""`dnadet-tf ablate`: the paper's Table 2 ablations on one benchmark."""
import argparse

from dnadet_tf.cli.common import AUGMENT_NAMES_HELP, HelpFormatter
from dnadet_tf.ablation import VARIANTS
from dnadet_tf.config import CE_INPUTS, PRECISION_CHOICES, PRESETS
from dnadet_tf.selection import SELECTION_RULES


def register(subparsers):
    parser = subparsers.add_parser(
        "ablate",
        help="train and evaluate Base, Base+PT, Base+PCL and DNA-Det on one benchmark",
        description=(
            "Run the paper's ablations on a benchmark folder (e.g. a generator zoo): Base (whole images, "
            "cross-entropy), Base+PT (from a pre-trained encoder), Base+PCL (patches + contrastive loss) and "
            "Base+PT+PCL (DNA-Det), same data and preset, each with several training seeds; writes mean ± std "
            "of every split per variant as Markdown and JSON in --out (the JSON keeps each seed's numbers and the "
            "benchmark's SHA-256, zoo_sha256) and "
            "prints it. An interrupted ablation resumes: runs already trained in --out, and its own step 1, are "
            "reused (one trained with other settings, other validation or from another step 1, or a step 1 "
            "pre-trained on other --photos, --pretrain-steps or --width, is refused before any training, but "
            "for the selection rule), a run or step 1 stopped in training continues from its checkpoint. A rerun "
            "with fewer --seeds or --variants keeps the earlier table's results of the others where it would "
            "reuse them as they are, and names in one warning line those it leaves out."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--zoo", required=True, help="benchmark folder (classes.txt, train.txt, val.txt, test.txt, cross_*.txt)")
    parser.add_argument("--out", required=True, help="folder for the runs and the tables")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="hyper-parameters of every variant")
    parser.add_argument("--pretrained", help="a 'dnadet-tf pretrain' run dir, or 'packaged', for Base+PT and "
                        "DNA-Det; omitted: the step 1 shipped for the preset when there is one and neither --photos "
                        "nor --pretrain-steps is given, else pre-train first (seed 0); the same encoder serves "
                        "every training seed")
    parser.add_argument("--photos", help="photos for pre-training when --pretrained is omitted "
                        "(default: the demo photos shipped with the package)")
    parser.add_argument("--steps", type=int, help="training steps of every variant (default: the preset's)")
    parser.add_argument("--pretrain-steps", type=int, help="steps of the pre-training (default: the preset's)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="train every variant with training seeds first-seed .. first-seed+N-1 and report "
                        "mean ± std; the JSON keeps each seed's numbers")
    parser.add_argument("--first-seed", type=int, default=0, help="the first training seed")
    parser.add_argument("--variants", default=",".join(folder for folder, _, _ in VARIANTS),
                        help="comma list of the variants to run: base (Base), base_pt (Base+PT), "
                        "base_pcl (Base+PCL), dnadet (DNA-Det = Base+PT+PCL)")
    parser.add_argument("--compare-select", action="store_true",
                        help="train every run to its step budget, keep its validated models and also report the "
                        "cross-tests of the model each selection rule (first, last, nll, final, average) keeps")
    parser.add_argument("--select", choices=SELECTION_RULES, help="selection rule of best.keras in every run")
    parser.add_argument("--average-last", type=int, help="models averaged by rule average in every run (fit --average-last)")
    parser.add_argument("--ce-input", choices=CE_INPUTS, help="what the cross-entropy reads in every run")
    parser.add_argument("--lr", type=float, help="learning rate of every run (fit --lr; default: the preset's)")
    parser.add_argument("--lr-decay-every", type=int, help="learning-rate decay interval of every run")
    parser.add_argument("--frozen-stages", type=int,
                        help="encoder stages kept as step 1 left them in Base+PT and DNA-Det runs (fit --frozen-stages)")
    parser.add_argument("--zero-mean-stem", action=argparse.BooleanOptionalAction, default=None,
                        help="high-pass first convolution in every run (fit --zero-mean-stem)")
    parser.add_argument("--statistics-shift", type=float, metavar="S",
                        help="random BatchNorm statistics shift in every run's training (fit --statistics-shift; "
                        "default: the preset's, cpu 0.15 for DNA-Det and 0 for the other three variants)")
    parser.add_argument("--augment",
                        help=f"robustness augmentation of every run (fit --augment): {AUGMENT_NAMES_HELP}")
    parser.add_argument("--precision", choices=PRECISION_CHOICES,
                        help="Keras dtype policy of every run (default: the preset's; cpu: auto)")
    parser.add_argument("--width", type=float,
                        help="width multiplier of every run's encoder (fit --width; default: the preset's); Base+PT "
                        "and DNA-Det need a step 1 of that width: --pretrained RUN, or pre-trained first when omitted")
    parser.add_argument("--crop-size", type=int, help="center crop of every run (fit --crop-size)")
    parser.add_argument("--crop-square", action=argparse.BooleanOptionalAction, default=None,
                        help="crop or squash large square images in every run (fit --crop-square)")
    parser.add_argument("--resize1", type=int, help="first resize of every run (fit --resize1)")
    parser.add_argument("--resize2", type=int, help="second resize, the network's input, of every run (fit --resize2)")
    parser.add_argument("--crop-grid", type=int, metavar="N",
                        help="training patches' corners on multiples of N px in every run (fit --crop-grid)")
    parser.add_argument("--images-per-class", type=int, metavar="K",
                        help="images of every class per step in every run (fit --images-per-class; cpu preset: 8)")
    parser.add_argument("--patch-size", type=int,
                        help="side of the training patches of every DNA-Det and Base+PCL run (fit --patch-size)")
    parser.add_argument("--patches-per-image", type=int,
                        help="training patches per image of every DNA-Det and Base+PCL run (fit --patches-per-image)")
    parser.add_argument("--extra-real", metavar="auto|packaged|none|DIR",
                        help="crops of other real photos in the real class of every run (fit --extra-real; preset: cpu auto)")
    parser.add_argument("--extra-real-process", metavar="jpeg:Q|upsample:S|auto|none",
                        help="the processing of the --extra-real crops in every run (fit --extra-real-process; preset: cpu auto)")
    parser.add_argument("--transplant", type=float, metavar="P",
                        help="fakes moved onto the --extra-real photos with probability P in every run (fit --transplant)")
    parser.add_argument("--content-align", type=float, metavar="W",
                        help="weight of the content-alignment loss in every run (fit --content-align; preset: 0, off)")
    parser.add_argument("--no-validation", dest="validation", action="store_false",
                        help="train every run on the zoo's train.txt alone, without its val.txt, as fit trains a "
                             "folder tree without --val (no early stopping, no calibration; best.keras by --select "
                             "average, which needs no validation figure, else the last step's model)")
    parser.add_argument("--val-split", type=float, metavar="F",
                        help="hold out the share F of each class of the zoo's train.txt as the validation images of "
                             "every run, in place of its val.txt (fit --val-split)")
    parser.set_defaults(func=run)


def run(args):
    from dnadet_tf.ablation import ablate
    from dnadet_tf.cli.common import UsageError, augment_from

    if args.compare_select and not args.validation:
        raise UsageError("--no-validation: expected without --compare-select, which compares the selection rules on "
                         "the validation images, received both.")
    if args.val_split is not None and not args.validation:
        raise UsageError(f"--val-split: expected without --no-validation (it holds out validation images), received "
                         f"--val-split {args.val_split} and --no-validation.")
    if args.seeds < 1:
        raise UsageError(f"--seeds: expected a positive number of seeds, received {args.seeds}.")
    if args.first_seed < 0:
        raise UsageError(f"--first-seed: expected 0 or a positive integer, received {args.first_seed}.")
    overrides = {k: v for k, v in dict(select=args.select, average_last=args.average_last, ce_input=args.ce_input,
                                       learning_rate=args.lr, lr_decay_every=args.lr_decay_every,
                                       frozen_stages=args.frozen_stages, width=args.width,
                                       zero_mean_stem=args.zero_mean_stem,
                                       statistics_shift=args.statistics_shift,
                                       augment=augment_from(args),
                                       precision=args.precision, crop_size=args.crop_size,
                                       crop_square=args.crop_square,
                                       resize1=args.resize1, resize2=args.resize2,
                                       crop_grid=args.crop_grid, images_per_class=args.images_per_class,
                                       patch_size=args.patch_size,
                                       patches_per_image=args.patches_per_image, extra_real=args.extra_real,
                                       extra_real_process=args.extra_real_process,
                                       transplant=args.transplant, content_align=args.content_align,
                                       val_split=args.val_split).items()
                 if v is not None}
    ablate(args.zoo, args.out, preset=args.preset, pretrained=args.pretrained, photos=args.photos,
           steps=args.steps, pretrain_steps=args.pretrain_steps,
           seeds=range(args.first_seed, args.first_seed + args.seeds),
           variants=args.variants,  # a comma list, checked by ablate (ablation.checked_variants) before any work
           compare_select=args.compare_select, fit_overrides=overrides, validation=args.validation)
    return 0

"""`dnadet-tf ablate`: the paper's Table 2 ablations on one benchmark."""
import argparse

from dnadet_tf.config import PRESETS


def register(subparsers):
    parser = subparsers.add_parser(
        "ablate",
        help="train and evaluate Base, Base+PT, Base+PCL and DNA-Det on one benchmark",
        description=(
            "Run the paper's ablations on a benchmark folder (e.g. a generator zoo): Base (whole images, "
            "cross-entropy), Base+PT (from a pre-trained encoder), Base+PCL (patches + contrastive loss) and "
            "Base+PT+PCL (DNA-Det), same data, preset and seed; writes the accuracy per split per variant as "
            "Markdown and JSON in --out and prints it. Variants already evaluated in --out are reused."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--zoo", required=True, help="benchmark folder (classes.txt, train.txt, val.txt, test.txt, cross_*.txt)")
    parser.add_argument("--out", required=True, help="folder for the four runs and the table")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="hyper-parameters of every variant")
    parser.add_argument("--pretrained", help="a 'dnadet-tf pretrain' run dir; omitted: pre-train first")
    parser.add_argument("--photos", help="photos for pre-training when --pretrained is omitted "
                        "(default: the demo photos shipped with the package)")
    parser.add_argument("--steps", type=int, help="training steps of every variant (default: the preset's)")
    parser.add_argument("--pretrain-steps", type=int, help="steps of the pre-training (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="seed shared by every variant")
    parser.set_defaults(func=run)


def run(args):
    from dnadet_tf.ablation import ablate

    ablate(args.zoo, args.out, preset=args.preset, pretrained=args.pretrained, photos=args.photos,
           steps=args.steps, pretrain_steps=args.pretrain_steps, seed=args.seed)
    return 0

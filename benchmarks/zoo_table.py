"""The paper's Table 2 on the demo generator zoo: Base and Base+PCL, `cpu` preset, several seeds.

Builds (or reuses from the cache) the demo zoo, trains Base (whole images,
cross-entropy only) and Base+PCL (patches + contrastive loss, from random
initialisation: what `dnadet-tf fit` trains without --init) with the same preset
for every training seed, evaluates them on closed-set, cross-seed, cross-loss,
cross-finetune and cross-dataset, and prints mean ± std (%) over the seeds. With
--compare-select, each run also reports the model every selection rule keeps.
The tables and each seed's numbers go to --out/ablation.{md,json}; finished runs
are reused, so an interrupted benchmark resumes. Pre-training variants: use
`dnadet-tf ablate`.

Usage: python benchmarks/zoo_table.py [--out runs/zoo-table] [--zoo DIR] [--seeds 3] [--steps N]
       [--compare-select] [--ce-input probabilities] [--select RULE] [--lr-decay-every N]
       [--precision float32|mixed_bfloat16|auto]
"""
import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dnadet_tf.ablation import ablate, checked_seeds, checked_variants  # noqa: E402
from dnadet_tf.config import CE_INPUTS, PRECISION_CHOICES  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.errors import DnadetError  # noqa: E402
from dnadet_tf.selection import SELECTION_RULES  # noqa: E402
from dnadet_tf.zoo import ensure_zoo  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("runs", "zoo-table"))
    parser.add_argument("--zoo", help="benchmark folder (default: the cached demo zoo, built if missing)")
    parser.add_argument("--steps", type=int, help="training steps (default: the cpu preset's)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0 .. N-1 (N: 1 or more)")
    parser.add_argument("--variants", default="base,base_pcl",
                        help="comma list of base, base_pt, base_pcl, dnadet (ablate's folders; default: %(default)s)")
    parser.add_argument("--compare-select", action="store_true")
    parser.add_argument("--select", choices=SELECTION_RULES)
    parser.add_argument("--ce-input", choices=CE_INPUTS)
    parser.add_argument("--lr-decay-every", type=int)
    parser.add_argument("--precision", choices=PRECISION_CHOICES)
    args = parser.parse_args(argv)
    from dnadet_tf.cli.main import in_flag_words

    try:  # ablate's own checks, before the demo zoo is built: one line naming the flag, exit status 2
        variants, seeds = checked_variants(args.variants), checked_seeds(range(args.seeds))
    except DnadetError as error:
        parser.error(in_flag_words(str(error), parser))
    configure_runtime()  # before the zoo build's first op, as the CLI does: runs repeat exactly
    began = time.time()
    zoo = args.zoo or ensure_zoo("demo")
    overrides = {k: v for k, v in dict(select=args.select, ce_input=args.ce_input,
                                       lr_decay_every=args.lr_decay_every,
                                       precision=args.precision).items() if v is not None}
    ablate(zoo, args.out, preset="cpu", steps=args.steps, seeds=seeds,
           variants=[folder for folder, _, _ in variants], compare_select=args.compare_select,
           fit_overrides=overrides)
    print(f"\nzoo: {zoo}; cpu preset; total {time.time() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

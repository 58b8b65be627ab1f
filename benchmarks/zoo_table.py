"""The paper's Table 2 on the demo generator zoo: DNA-Det and Base, `cpu` preset.

Builds (or reuses from the cache) the demo zoo, trains DNA-Det (patches +
contrastive loss) and Base (`--base`: whole images, cross-entropy only) with the
same preset and seed, evaluates both on closed-set, cross-seed, cross-loss,
cross-finetune and cross-dataset, and prints a Markdown table of accuracies (%).
Runs already finished in --out are reused. About 15 minutes on 2 cores when the
zoo is cached.

Usage: python benchmarks/zoo_table.py [--out runs/zoo-table] [--zoo DIR] [--steps N]
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dnadet_tf.evaluation import evaluate  # noqa: E402
from dnadet_tf.predictor import KerasPredictor  # noqa: E402
from dnadet_tf.runs import write_json_atomic  # noqa: E402
from dnadet_tf.training import fit  # noqa: E402
from dnadet_tf.zoo import ensure_zoo  # noqa: E402

METHODS = (("Base", "base"), ("DNA-Det", "dnadet"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("runs", "zoo-table"))
    parser.add_argument("--zoo", help="benchmark folder (default: the cached demo zoo, built if missing)")
    parser.add_argument("--steps", type=int, help="training steps (default: the cpu preset's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    began = time.time()
    zoo = args.zoo or ensure_zoo("demo")
    rows = {}
    for name, mode in METHODS:
        run_dir = os.path.join(args.out, mode)
        result = os.path.join(run_dir, "evaluation", "evaluation.json")
        if not os.path.isfile(result):
            started = time.time()
            fit(zoo, run_dir, preset="cpu", mode=mode, steps=args.steps, seed=args.seed, overwrite=True)
            print(f"{name}: trained in {time.time() - started:.0f} s", flush=True)
            write_json_atomic(result, evaluate(KerasPredictor(run_dir), [zoo],
                                               out_dir=os.path.dirname(result)))
        with open(result, encoding="utf-8") as f:
            rows[name] = {row["name"]: row["metrics"]["accuracy"] for row in json.load(f)}
    splits = list(next(iter(rows.values())))
    print(f"\nzoo: {zoo}; cpu preset; seed {args.seed}; accuracy (%)")
    print("| method | " + " | ".join(splits) + " |")
    print("|---|" + "---:|" * len(splits))
    for name, accuracy in rows.items():
        print(f"| {name} | " + " | ".join(f"{100 * accuracy[s]:.2f}" for s in splits) + " |")
    print(f"\ntotal {time.time() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

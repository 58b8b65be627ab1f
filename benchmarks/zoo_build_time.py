"""Times a zoo build against its budget and reports where the time goes.

    python benchmarks/zoo_build_time.py [--size demo] [--out DIR] [--seed N]

Builds the zoo from scratch (a temporary folder unless --out is given; an existing
--out is refused so that nothing is resumed), then prints the wall time, the
budget of the size (tiny: 60 s, demo: 600 s), the seconds spent training models
and the images per split and class. Exits 1 when the build exceeds its budget.
Timings on shared 2-core machines can be inflated by up to 2x by other work.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

BUDGET_S = {"tiny": 60.0, "demo": 600.0}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="demo", choices=("tiny", "demo", "full"))
    parser.add_argument("--out", default=None, help="folder to build into (must not exist); default a temp dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.out and os.path.exists(args.out):
        parser.error(f"--out {args.out} exists; the benchmark times a build from scratch")
    out = args.out or os.path.join(tempfile.mkdtemp(prefix="zoo-bench-"), "zoo")

    started = time.monotonic()
    from dnadet_tf.zoo import build_zoo  # the import (TensorFlow) counts, as it does for the CLI

    build_zoo(out, size=args.size, seed=args.seed, progress=lambda line: print(line, flush=True))
    wall = time.monotonic() - started

    with open(os.path.join(out, "zoo.json"), encoding="utf-8") as handle:
        zoo = json.load(handle)
    training = sum(m["seconds"] for m in zoo["models"])
    print(f"\nsize={args.size}: {wall:.1f} s wall (TF import included), {training:.1f} s training "
          f"{len(zoo['models'])} models")
    for split, summary in zoo["splits"].items():
        per_class = ", ".join(f"{c} {n}" for c, n in summary["per_class"].items())
        print(f"  {split}: {summary['images']} images ({per_class})")
    budget = BUDGET_S.get(args.size)
    if budget is not None:
        print(f"budget {budget:.0f} s: {'ok' if wall <= budget else 'EXCEEDED'} ({wall / budget:.0%} of it)")
    if not args.out:
        shutil.rmtree(os.path.dirname(out), ignore_errors=True)
    return 0 if budget is None or wall <= budget else 1


if __name__ == "__main__":
    sys.exit(main())

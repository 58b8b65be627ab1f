"""python -m dnadet_tf.pretrained RUN --command CMD --commit SHA: ship step-1 run RUN with the package
(dnadet_tf/pretrained/step1-<preset>/best.keras and provenance.json)."""
import argparse
import json
import sys

from dnadet_tf.pretrained import ship


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished 'dnadet-tf pretrain' run dir")
    parser.add_argument("--command", required=True, help="the command that made the run")
    parser.add_argument("--commit", required=True, help="the commit of the code that made the run")
    args = parser.parse_args(argv)
    print(json.dumps(ship(args.run, args.command, args.commit), indent=1, sort_keys=True)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())

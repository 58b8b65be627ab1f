"""The `dnadet-tf` command: parses flags and calls the library.

Each subcommand lives in its own module of this package and exposes
`register(subparsers)`, which adds its parser and sets `func` to a function
taking the parsed arguments and returning an exit code.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported anywhere

import argparse  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402

COMMAND_MODULES = ("fit", "evaluate", "predict", "pretrain", "ablate", "export", "explain", "robustness", "zoo")


class UsageError(Exception):
    """A wrong flag or argument value; printed as one line, exit code 2."""


def parse_attack_flag(flag, text):
    """The attack names of a flag like --augment; a bad name is a UsageError naming the flag."""
    from dnadet_tf.attacks import parse_attacks

    try:
        return parse_attacks(text)
    except ValueError as error:
        raise UsageError(f"{flag}: {error}") from None


def build_parser():
    parser = argparse.ArgumentParser(
        prog="dnadet-tf",
        description=(
            "Attribute fake images to the architecture of the generator that made them "
            "(DNA-Det, Yang et al., AAAI 2022)."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"dnadet_tf.cli.{name}").register(subparsers)
    return parser


def main(argv=None):
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines show up at once, also in logs
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv:
        argv = ["fit"]
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from dnadet_tf.errors import DnadetError

    try:
        return int(args.func(args) or 0)
    except (UsageError, DnadetError) as error:
        print(f"dnadet-tf {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dnadet-tf {args.command}: interrupted; checkpoints already written are kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

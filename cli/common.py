"""What every `dnadet-tf` command module shares: the error for a wrong flag, the help formatter and the parsing
of attack-name flags. `main` and the command modules import these from here (not from `main`, which imports the
command modules: run as `python -m dnadet_tf.cli.main`, a second copy of `main` would define a second
`UsageError` that its own handler does not catch)."""
import argparse


class UsageError(Exception):
    """A wrong flag or argument value; printed as one line, exit code 2."""


def check_batch_size(args):
    """Raises a UsageError unless the command's --batch-size, when it has one and it is given, is 1 or more:
    one check for every command (`main` calls it before the command runs)."""
    value = getattr(args, "batch_size", None)
    if value is not None and value < 1:
        raise UsageError(f"--batch-size: expected a positive integer, received {value}.")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to a flag's help only when X is a real value: not None,
    False or SUPPRESS, not the value a flag that takes no argument (store_true,
    store_false, store_const) holds when absent, and not when the help already states
    its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS or "default" in text.lower()
                or (action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction))):
            return text
        return super()._get_help_string(action)


# The names `--augment` takes (dnadet_tf.attacks.ATTACK_NAMES), for the help of every command that has the flag.
AUGMENT_NAMES_HELP = ("a comma list of crop,blur,jpeg,noise,relight, or combo (the paper's attacks), channels "
                      "(the colour channels in a random order), detail (the high-frequency residual times a "
                      "gain from 1/4 to 4) and filter (a random 3 x 3 filter near the identity that mixes the colour "
                      "channels in the fine detail)")


def augment_from(args):
    """The attack names of `--augment`, or None when it is absent or empty (no augmentation)."""
    return parse_attack_flag("--augment", args.augment) if args.augment else None


def parse_attack_flag(flag, text):
    """The attack names of a flag like --augment; a bad name is a UsageError naming the flag."""
    from dnadet_tf.attacks import parse_attacks

    try:
        return parse_attacks(text)
    except ValueError as error:
        raise UsageError(f"{flag}: {error}") from None


def add_training_runtime_flags(parser):
    """Adds the flags of how a training runs, not what it learns (`fit`, `pretrain`): --strategy, --precision,
    --jit and --input-niceness."""
    from dnadet_tf.config import PRECISION_CHOICES, STRATEGIES

    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="tf.distribute strategy: auto = MirroredStrategy over visible GPUs, else default; "
                        "multiworker reads TF_CONFIG (default auto)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES,
                        help="Keras dtype policy; auto (the cpu preset's default) means mixed_bfloat16 on a CPU that "
                             "computes bfloat16 natively (AVX-512 BF16, AMX) and has no GPU, else float32; "
                             "paper and tiny default to float32")
    parser.add_argument("--jit", action="store_true", default=None, help="XLA-compile the training step (GPUs)")
    parser.add_argument("--input-niceness", type=int, metavar="N",
                        help="OS nice value (0-19) of the threads that read and prepare the training batches: "
                             "the default 19 gives the training step every core it can use and the input the "
                             "rest; 0 leaves them at the step's priority (Linux; elsewhere nothing changes)")

"""The `dnadet-tf` command: parses flags and calls the library.

Each subcommand lives in its own module of this package and exposes
`register(subparsers)`, which adds its parser (with `formatter_class=HelpFormatter`)
and sets `func` to a function taking the parsed arguments and returning an
exit code. With no command, the usage is printed and the exit code is 2.

TensorFlow's start-up lines (absl, oneDNN, CPU features) are silenced unless
`--verbose` is given: `quiet_tensorflow` runs before anything imports it.

Library errors name parameters (`out`, `learning_rate`, `overwrite=True`); `in_flag_words`
turns them into the command's flags (`--out`, `--lr`, `--overwrite`).
"""
import argparse
import contextlib
import importlib
import os
import re
import signal
import sys
import threading

from dnadet_tf.cli.common import HelpFormatter, UsageError, check_batch_size

COMMAND_MODULES = ("fit", "evaluate", "predict", "calibrate", "adapt", "pretrain", "ablate", "export", "explain",
                   "robustness", "zoo", "import_torch")
VERBOSE_FLAG = "--verbose"
TRAINING_COMMANDS = ("fit", "pretrain", "ablate")


# Library parameters whose flag is not `--` + the name with dashes.
FLAG_OF_PARAMETER = {"learning_rate": "--lr", "pretrain_batch_size": "--batch-size",
                     "pretrain_images_per_class": "--images-per-transformation", "out_dir": "--out",
                     "eval_data": "--eval", "run_dir": "--model"}


def in_flag_words(message, parser, given=None):
    """A library error in the words of `parser`'s command: a leading parameter name (or two, joined by
    "and"), every `name=True` and every name in backquotes become that command's flags; names without a
    flag stay. `given`: the parsed arguments
    ({dest: value}); a leading word that is a value the user gave (a path: `dnadet-tf calibrate val`,
    `dnadet-tf predict --model RUN json`) is that value, not a parameter name, and stays too."""
    options = {option for action in parser._actions for option in action.option_strings}
    typed = values_given(given)

    def flag(name):
        candidate = FLAG_OF_PARAMETER.get(name, "--" + name.replace("_", "-"))
        return candidate if candidate in options else name

    def leading(name):
        return name if name in typed else flag(name)

    message = re.sub(r"^(\w+) and (\w+):", lambda m: f"{leading(m.group(1))} and {leading(m.group(2))}:", message)
    message = re.sub(r"^(\w+)(?=[: ])", lambda m: leading(m.group(1)), message)
    message = re.sub(r"`(\w+)`", lambda m: flag(m.group(1)) if flag(m.group(1)) != m.group(1) else m.group(0),
                     message)
    return re.sub(r"\b(\w+)=True\b", lambda m: flag(m.group(1)) if flag(m.group(1)) != m.group(1) else m.group(0),
                  message)


def values_given(given):
    """The str values, and the str items of list values, of the parsed arguments `given` ({dest: value}, or None)
    but the command's name: what the user typed (and the defaults), paths among them."""
    values = set()
    for dest, value in (given or {}).items():
        if dest == "command":  # the command's own name, not typed as a value
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str):
                values.add(item)
    return values


def quiet_tensorflow():
    """Imports TensorFlow with its C++ start-up lines silenced, and keeps its later logs to errors.

    The absl lines printed while TensorFlow's libraries load ("All log messages before
    absl::InitializeLog()", oneDNN, CPU features) ignore TF_CPP_MIN_LOG_LEVEL, so file
    descriptor 2 points to /dev/null during the import; Python's own stderr is untouched.
    """
    if "tensorflow" in sys.modules:
        return
    from dnadet_tf.native_logs import stderr_fd_hidden

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with stderr_fd_hidden():
        import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)


def version_line():
    """"dnadet-tf X (TensorFlow Y, Keras Z, Python W)", read from the installed distributions' metadata, so that
    neither TensorFlow nor Keras is imported; a library that is not installed reads "not installed"."""
    from importlib import metadata

    from dnadet_tf import __version__

    def installed(*names):
        for name in names:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        return "not installed"

    python = ".".join(str(part) for part in sys.version_info[:3])
    return (f"dnadet-tf {__version__} (TensorFlow {installed('tensorflow-cpu', 'tensorflow')}, "
            f"Keras {installed('keras')}, Python {python})")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="dnadet-tf",
        description=(
            "Attribute fake images to the architecture of the generator that made them "
            "(DNA-Det, Yang et al., AAAI 2022). The main job: 'dnadet-tf fit' (builds the demo zoo, "
            "trains, evaluates); 'dnadet-tf COMMAND --help' explains each command."
        ),
        formatter_class=HelpFormatter,
    )
    verbose_help = "show TensorFlow's start-up and runtime log lines (hidden by default)"
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=verbose_help)
    parser.add_argument("--version", action="version", version=version_line(),
                        help="print the versions of dnadet-tf, TensorFlow, Keras and Python, and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"dnadet_tf.cli.{name}").register(subparsers)
    for subparser in subparsers.choices.values():
        # SUPPRESS keeps a subcommand from resetting a --verbose given before it.
        subparser.add_argument(VERBOSE_FLAG, action="store_true", default=argparse.SUPPRESS, help=verbose_help)
        subparser.set_defaults(command_parser=subparser)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be so that the same cleanup runs."""


def _interrupt(signum, frame):
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While the block runs, `kill` (SIGTERM) stops it as Ctrl-C does, so that its cleanup runs (temporary
    files and staging folders removed, what was already written kept; the exit status is 143 rather than 130);
    the earlier handler comes back after."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def main(argv=None):
    """`dnadet-tf ARGV` (default: sys.argv[1:]); returns the exit code."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines show up at once, also in logs
    argv = sys.argv[1:] if argv is None else list(argv)
    try:  # the seconds of start-up (TensorFlow's import, every command's parser) before any work
        if VERBOSE_FLAG not in argv:
            quiet_tensorflow()
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)  # an exit status of 2 is an error: its text goes where errors go
            return 2
        from dnadet_tf.distribute import configure_runtime

        if args.command in TRAINING_COMMANDS:
            # Before any TF op (a zoo build runs some before training): makes training runs repeat exactly.
            configure_runtime(getattr(args, "strategy", None) or "auto")
    except KeyboardInterrupt:
        print("dnadet-tf: interrupted while starting; nothing was written.", file=sys.stderr)
        return 128 + signal.SIGINT
    from dnadet_tf.errors import DnadetError, first_line

    command = " ".join(filter(None, [args.command, getattr(args, "zoo_command", None)]))  # as argparse's errors say
    try:
        check_batch_size(args)
        with sigterm_as_interrupt():
            return int(args.func(args) or 0)
    except UsageError as error:
        print(f"dnadet-tf {command}: error: {error}", file=sys.stderr)
        return 2
    except DnadetError as error:
        print(f"dnadet-tf {command}: error: {in_flag_words(str(error), args.command_parser, vars(args))}",
              file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`dnadet-tf predict ... | head`): as a shell command ends on SIGPIPE, quietly;
        # standard output is pointed at /dev/null so that Python's final flush does not complain again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt as stop:
        kept = "checkpoints" if args.command in TRAINING_COMMANDS else "files"
        how = "terminated" if isinstance(stop, Terminated) else "interrupted"
        print(f"dnadet-tf {command}: {how}; {kept} already written are kept.", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)  # as a shell reports them
    except Exception as error:
        if not _is_file_system_error(error) or getattr(args, "verbose", False):
            raise
        # A read-only folder or a full disk: one line; what was already written stays (atomic writes).
        text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", first_line(error))  # TF's op wrapper, no help
        print(f"dnadet-tf {command}: error: {text} (--verbose shows where)", file=sys.stderr)
        return 1


def _is_file_system_error(error):
    """Whether `error` is the file system refusing a read or write: Python's, or TensorFlow's own file I/O (a
    checkpoint, a SavedModel), which reports a full disk as ResourceExhaustedError."""
    tf = sys.modules.get("tensorflow")
    if isinstance(error, OSError):
        return True
    return tf is not None and (isinstance(error, tf.errors.PermissionDeniedError) or (
        isinstance(error, tf.errors.ResourceExhaustedError) and "No space left on device" in str(error)))


if __name__ == "__main__":
    sys.exit(main())

"""Errors a person can act on: the message is one line naming what was expected and what was received."""


def first_line(error):
    """The first line of an exception's message (its type's name when the message is empty): the "what went
    wrong" that a one-line error quotes from a library's longer one."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class DnadetError(Exception):
    """Base class of errors that the CLI prints as one line and exits 2."""


class DataError(DnadetError):
    """Bad input data: a missing path, an empty class, an unparsable list line, too few images."""


class RunDirError(DnadetError):
    """A run dir that exists without --overwrite, or one that lacks what a command needs."""


class CheckpointError(DnadetError):
    """A PyTorch checkpoint that cannot be read safely, or whose tensors do not fit the release's network."""

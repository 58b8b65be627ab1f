"""File descriptor 2 silenced for a block: what native (C++) code prints there, which Python's `sys.stderr`
neither sees nor filters (TensorFlow's start-up lines, LiteRT's delegate and quantizer lines)."""
import contextlib
import os
import sys


@contextlib.contextmanager
def stderr_fd_hidden():
    """Inside the block, file descriptor 2 points to /dev/null (Python's pending stderr output is flushed
    first); it is restored afterwards, also when the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)

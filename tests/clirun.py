"""Running the `dnadet-tf` command in-process, for tests."""
import contextlib
import io

from dnadet_tf.cli.main import main


def run_cli(argv):
    """`dnadet-tf ARGV` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()

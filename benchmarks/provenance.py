"""What a multi-run result JSON records to be reproduced: the command that wrote it, the commit and the machine.

`provenance(__file__, argv)` -> {"command": "python benchmarks/NAME.py ARGS", "commit": the short hash of the
checkout's HEAD (None outside a git checkout), "machine": `dnadet_tf.machine.describe_machine()`}. The two kinds
of CPU this project measured on train the same seed to different weights, so a figure without its machine cannot
be compared (README, "Same command, same numbers").
"""
import os
import shlex
import subprocess
import sys

from dnadet_tf.machine import describe_machine


def provenance(script, argv=None):
    """{"command", "commit", "machine"} of the benchmark script at path `script` run with `argv` (default
    sys.argv[1:])."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    folder = os.path.dirname(os.path.abspath(script))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=folder,
                                check=False).stdout.strip() or None
    except OSError:
        commit = None
    command = " ".join(["python", f"benchmarks/{os.path.basename(script)}", *map(shlex.quote, arguments)])
    return {"command": command, "commit": commit, "machine": describe_machine()}

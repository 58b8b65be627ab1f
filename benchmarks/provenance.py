"""What a multi-run result JSON records to be reproduced: the command that wrote it, the commit and the machine;
and whether a JSON file is a result a given script wrote (`written_by`, `is_result_of`), so that a script
replaces only its own earlier results.

`provenance(__file__, argv)` -> {"command": "python benchmarks/NAME.py ARGS", "commit": the short hash of the
checkout's HEAD (None outside a git checkout), "machine": `dnadet_tf.machine.describe_machine()`}. The two kinds
of CPU this project measured on train the same seed to different weights, so a figure without its machine cannot
be compared (README, "Same command, same numbers").
"""
import json
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


def written_by(document, script, legacy):
    """Whether the JSON `document` is a result `script` (its name without .py) wrote: its "script" field, else the
    script its "command" ran (`provenance`), else, for a file written before either was recorded,
    `legacy(document)` (a dict)."""
    if not isinstance(document, dict):
        return False
    if "script" in document:
        return document["script"] == script
    if "command" in document:
        words = str(document["command"]).split()
        return len(words) > 1 and os.path.splitext(os.path.basename(words[1]))[0] == script
    return bool(legacy(document))


def is_result_of(path, script, legacy):
    """Whether the file at `path` holds JSON that `script` wrote (`written_by`); False when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return written_by(document, script, legacy)

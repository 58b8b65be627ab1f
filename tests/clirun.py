"""Running the `dnadet-tf` command and the benchmark scripts in-process, for tests."""
import contextlib
import importlib.util
import io
import os

from dnadet_tf.cli.main import main

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def benchmark_module(name):
    """benchmarks/NAME.py loaded as a module (a fresh one each call), as its tests drive it."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(argv):
    """`dnadet-tf ARGV` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def export_rows(model, out, eval_data, formats="savedmodel,float32,int8", max_eval=8):
    """`dnadet-tf export --model MODEL --out OUT --formats FORMATS --eval EVAL_DATA`: {format: its parity row of
    OUT/dnadet/report.json}; the command must succeed."""
    import json
    import os

    code, _, stderr = run_cli(["export", "--model", str(model), "--out", str(out), "--formats", formats,
                               "--eval", str(eval_data), "--max-eval", str(max_eval)])
    assert code == 0, stderr
    with open(os.path.join(str(out), "dnadet", "report.json"), encoding="utf-8") as f:
        return {row["format"]: row for row in json.load(f)["rows"]}


def run_and_namesake_data(run, data, tmp_path):
    """(a copy of run dir `run` in tmp_path/run, a copy of `data` in tmp_path/other/test): another benchmark's
    data with the base name of a zoo's test split, for the output folders named after the data."""
    import shutil

    copy, other = str(tmp_path / "run"), str(tmp_path / "other" / "test")
    shutil.copytree(run, copy)
    shutil.copytree(data, other)
    return copy, other


def files_under(folder):
    """{path relative to `folder`: bytes} of every file under it: what a command left there, to compare."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def error_line(stderr):
    """The one error line of a refused command's `stderr`, past any warning line."""
    lines = stderr.splitlines()
    assert lines and all(line.startswith("warning: ") for line in lines[:-1]), stderr
    return lines[-1]

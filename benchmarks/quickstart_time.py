"""Times the README's first command, `dnadet-tf fit` with no arguments, as a new user runs it.

    python benchmarks/quickstart_time.py [--warm-runs 1] [--no-cold] [--cache DIR] [--json FILE]

Runs the installed `dnadet-tf fit` in a fresh working folder: first on an empty cache (`DNADET_TF_CACHE` a new
temporary folder), which builds the demo zoo and then trains, then `--warm-runs` times again with that zoo cached,
each in a folder of its own. `--no-cold` skips the first run and needs `--cache`, a cache that already holds the
demo zoo. For every run it records the wall time, the seconds until the zoo was ready, training's own seconds (the
`done:` line), the median throughput of the logged windows (patches/s; the first window, which traces the step,
left out), the peak resident memory of the process (its rusage) and the evaluation table (`evaluation.json`), and
whether every warm run's table equals the first run's to the digit. The JSON also records the commit and the machine
(`dnadet_tf.machine`: CPU, features, load average before and after). A load average near 0 before the runs is what
makes the times a speed: run it on an otherwise idle machine.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from dnadet_tf.machine import describe_machine

ZOO_READY = re.compile(r"^zoo ready at .* \((\d+) s\)$")
# The figures of the printed table, kept in the JSON for a glance; `metrics` keeps evaluation.json's whole metrics
# (the run-dependent paths of its PNGs and data left out), which the runs must repeat to the digit.
TABLE_KEYS = ("num_images", "accuracy", "macro_f1", "auroc")
TRAINING_DONE = re.compile(r"^done: step (\d+), .*, ([0-9.]+) s; run dir")


def commit():
    """HEAD's hash, with `+changes` when tracked files differ from it; None outside a git checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


def median_window_rate(run_dir):
    """Median patches/s of a run's logged training windows, the first (tracing the step) left out."""
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    rates = [r["patches_per_s"] for r in records if "patches_per_s" in r and "loss" in r]
    return float(np.median(rates[1:] if len(rates) > 2 else rates)) if rates else None


def timed_fit(workdir, cache, log_path):
    """Runs `dnadet-tf fit` in `workdir` with `cache` as DNADET_TF_CACHE; its output goes to `log_path` and, line
    by line, to this process's stdout. Returns the run's figures (a dict)."""
    os.makedirs(workdir)
    env = {**os.environ, "DNADET_TF_CACHE": cache}
    command = shutil.which("dnadet-tf")
    if command is None:
        raise SystemExit("quickstart_time: expected the dnadet-tf command on PATH (pip install -e .), found none.")
    zoo_seconds = training = steps = None
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen([command, "fit"], cwd=workdir, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in process.stdout:
            log.write(line)
            print("  " + line, end="", flush=True)
            stripped = line.strip()
            if (match := ZOO_READY.match(stripped)):
                zoo_seconds = int(match.group(1))
            elif (match := TRAINING_DONE.match(stripped)):
                steps, training = int(match.group(1)), float(match.group(2))
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"quickstart_time: dnadet-tf fit exited with {os.waitstatus_to_exitcode(status)}; "
                         f"its output is in {log_path}.")
    run_dir = os.path.join(workdir, "runs", "demo")
    with open(os.path.join(run_dir, "evaluation", "evaluation.json"), encoding="utf-8") as f:
        rows = json.load(f)
    return {
        "wall_s": round(wall, 1),
        "zoo_ready_s": zoo_seconds,
        "training_s": training,
        "steps": steps,
        "median_patches_per_s": median_window_rate(run_dir),
        "peak_rss_gib": round(usage.ru_maxrss / 2 ** 20, 2),  # Linux: kilobytes
        "table": {row["name"]: {key: row["metrics"][key] for key in TABLE_KEYS if key in row["metrics"]} for row in rows},
        "metrics": {row["name"]: row["metrics"] for row in rows},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-runs", type=int, default=1, help="runs with the zoo cached after the first")
    parser.add_argument("--no-cold", action="store_true", help="skip the run on an empty cache (needs --cache)")
    parser.add_argument("--cache", help="a DNADET_TF_CACHE that holds the demo zoo (with --no-cold)")
    parser.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                       "quickstart-time.json"))
    args = parser.parse_args(argv)
    if args.no_cold and not args.cache:
        parser.error("--no-cold: expected --cache, a cache that holds the demo zoo, received none.")
    if args.warm_runs < 0 or (args.no_cold and args.warm_runs < 1):
        parser.error(f"--warm-runs: expected at least {1 if args.no_cold else 0}, received {args.warm_runs}.")

    scratch = tempfile.mkdtemp(prefix="quickstart-time-")
    cache = os.path.abspath(args.cache) if args.cache else os.path.join(scratch, "cache")
    result = {"command": "dnadet-tf fit", "commit": commit(), "machine_before": describe_machine(), "runs": []}
    try:
        kinds = ([] if args.no_cold else ["cold"]) + ["warm"] * args.warm_runs
        for number, kind in enumerate(kinds):
            print(f"run {number + 1}/{len(kinds)} ({kind}: zoo {'built' if kind == 'cold' else 'cached'})",
                  flush=True)
            code = commit()  # per run: the working tree may change while the benchmark runs
            figures = timed_fit(os.path.join(scratch, f"run{number}"), cache,
                                os.path.join(scratch, f"run{number}.log"))
            result["runs"].append({"kind": kind, "commit": code, **figures})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["machine_after"] = describe_machine()
    first = result["runs"][0]["metrics"]
    result["same_table"] = all(run["metrics"] == first for run in result["runs"][1:])
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    for run in result["runs"]:
        print(f"{run['kind']}: {run['wall_s']:.0f} s wall, zoo ready at {run['zoo_ready_s']} s, "
              f"{run['training_s']} s training ({run['steps']} steps, median {run['median_patches_per_s']:.0f} "
              f"patches/s), peak {run['peak_rss_gib']} GiB")
    print(f"same table in every run: {result['same_table']}; load average before "
          f"{result['machine_before']['load_average_1min']}, after {result['machine_after']['load_average_1min']}; "
          f"{args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

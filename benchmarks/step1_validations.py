"""A step-1 run's learning curve as one JSON file: every validation with its elapsed seconds.

Reads RUN/metrics.jsonl (the "val" lines: 170-way accuracy, family accuracy, macro-F1 and
cross-entropy on the held-out samples), RUN/config.json and the wall times of RUN/tensorboard.
Seconds are training seconds from the run's first logged step; a run continued with `--resume`
writes one event file per session, and the pause between sessions is not counted.
`render_results.py` renders the file as the mean of each 1000 steps' validations.

Usage: python benchmarks/step1_validations.py RUN --command "dnadet-tf pretrain ..." --json OUT
       [--photos TEXT] [--note TEXT]
"""
import argparse
import glob
import json
import os
import subprocess
import sys

from dnadet_tf import runs

FIGURES = ("accuracy", "family_accuracy", "macro_f1", "nll")
RULES = {  # how each selection rule (dnadet_tf.selection) picks, for a reader of the JSON
    "first": "the first best validation {metric}",
    "last": "the last best validation {metric} (rounded to 4 decimals)",
    "nll": "best validation {metric}, ties by the lower validation cross-entropy",
    "final": "the last validation's model",
    "average": "the mean of the last {average_last} validated models",
}


def selected_by(loop):
    """One line saying which rule picked best.keras, from the run's `loop` config."""
    return f"rule {loop['select']}: " + RULES.get(loop["select"], "").format(**loop)


def session_times(tensorboard_dir):
    """{step: training seconds} of every scalar event, the sessions (event files) laid end to end."""
    import tensorflow as tf

    times, offset = {}, 0.0
    for path in sorted(glob.glob(os.path.join(tensorboard_dir, "events.out.tfevents.*"))):
        stamps = [(event.step, event.wall_time) for event in tf.compat.v1.train.summary_iterator(path)
                  if event.HasField("summary")]
        if not stamps:
            continue
        first = min(wall for _, wall in stamps)
        for step, wall in stamps:
            times[step] = max(times.get(step, 0.0), offset + wall - first)
        offset += max(wall for _, wall in stamps) - first
    return times


def validations(run_dir):
    """The run's validation lines, figures only, with seconds where the event files give them."""
    times = session_times(os.path.join(run_dir, "tensorboard"))
    rows = []
    for record in runs.RunDir(run_dir).validation_records():
        row = {"step": record["step"]}
        if record["step"] in times:
            row["seconds"] = round(times[record["step"]])
        row.update({key: record[key] for key in FIGURES if key in record})
        rows.append(row)
    if not rows:
        raise SystemExit(f"RUN: expected a run dir whose {runs.METRICS_FILE} has validation lines, received {run_dir!r} "
                         "with none.")
    return rows


def document(run_dir, command, photos=None, note=None):
    with open(os.path.join(run_dir, runs.CONFIG_FILE), encoding="utf-8") as f:
        config = json.load(f)
    rows = validations(run_dir)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    return {"command": command, "commit": commit or None, "config": config, "photos": photos or config["data"],
            "precision": config["runtime"]["precision"], "seed": config["runtime"]["seed"],
            "selected_by": selected_by(config["loop"]),
            "note": note or "", "last_step": rows[-1]["step"], "validation": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", metavar="RUN", help="a pretrain run dir")
    parser.add_argument("--command", required=True, help="the command that made the run, as a reader would type it")
    parser.add_argument("--json", required=True, metavar="OUT", help="where to write the JSON")
    parser.add_argument("--photos", help="how to name the photos (default: the run's data path)")
    parser.add_argument("--note", help="the machine, what shared it, anything a reader needs")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.run, runs.CONFIG_FILE)):
        parser.error(f"RUN: expected a run dir with config.json, received {args.run!r}")
    result = document(args.run, args.command, args.photos, args.note)
    runs.write_json_atomic(args.json, result, indent=1, sort_keys=False)
    last = result["validation"][-1]
    print(f"{len(result['validation'])} validations up to step {last['step']}"
          + (f" ({last['seconds']} s)" if "seconds" in last else "") + f"; wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())

"""Export parity and unknown architectures over several runs: what each exported format keeps of its run.

For every run, `dnadet-tf export --model RUN --out OUT/<run's folder name> --formats FORMATS --eval
ZOO/test.txt` (the int8 file's open-set threshold refitted on its own scores of the run's validation
images, as `export` does) gives the parity report: per format its size, top-1 agreement with the run
(float32), accuracy, latency at batch 1, and agreement of the open-set flag on the known test images.
A run whose folder name OUT already holds for another run (two ablate folders' seed0) is exported to
OUT/<name>-<8 hex digits of the SHA-256 of its real path>. An export already there is reused when its
report.json is this run's, holds every requested format, was measured on this zoo's test.txt and is
newer than the run's best.keras, calibration.json and the test.txt; otherwise the run is exported
again into that folder (its files replaced). Delete OUT to measure again.

Then the run and every TFLite file are evaluated as `dnadet-tf evaluate --model FILE --data ZOO/test.txt
--unknown ZOO/open_set.txt` would: the zoo's closed-set test images are the known ones, its open_set.txt
(architectures that are not classes) the unknown ones; per model the AUROC of its stored score and the
shares of unknown and of known images it flags, each at its own threshold (a file's from its sidecar).

Prints each run's figures and two tables of mean ± std over the runs (population std, as
`ablation.mean_std`); `--json FILE` writes {"script", "zoo", "zoo_sha256", "formats", "runs", "summary",
"command", "commit", "machine"} (paths absolute); an existing FILE is replaced only when it is an earlier
result of this script. A run given twice (by its real path) is refused, as are a run dir, zoo or --json
that cannot be used: one line, exit status 2.
Latency is the machine's at that moment: run it alone.

Usage: python benchmarks/export_seeds.py --zoo ZOO --runs RUN [RUN ...] --out DIR
       [--formats savedmodel float32 float16 dynamic int8] [--json FILE]
"""
import argparse
import datetime
import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from dnadet_tf.ablation import mean_std_figures, mean_std_cell  # noqa: E402
from dnadet_tf.data import OPEN_SET_SPLIT, benchmark_digest, benchmark_split  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.errors import DnadetError  # noqa: E402
from dnadet_tf.evaluation import OPEN_SET_ROW, evaluate  # noqa: E402
from dnadet_tf.runs import BEST_MODEL, RunDir, describe_path, read_json, write_json_atomic  # noqa: E402
from arguments import refuse_given_twice  # noqa: E402
from provenance import is_result_of, provenance  # noqa: E402

SCRIPT = "export_seeds"
# The keys every --json document of this script holds (those written before "script" was recorded too).
DOCUMENT_KEYS = ("zoo", "zoo_sha256", "formats", "runs", "summary")
CALIBRATION_FILE = "calibration.json"

RUN_MODEL = "keras"  # the run itself, float32: the export report's first row
FORMATS = ("savedmodel", "float32", "float16", "dynamic", "int8")
PARITY = {"size_mb": "size MB", "top1_agreement": "top-1 agree %", "accuracy": "accuracy %",
          "latency_ms": "latency ms", "unknown_agreement": "flag agree %"}
OPEN_SET = {"auroc": "AUROC %", "unknown_flagged": "unknown flagged %", "known_flagged": "known flagged %"}
NOT_PERCENT = ("size_mb", "latency_ms")


def export_report(run, out, formats, zoo, progress=print):
    """The report.json of `run` exported under `out`: an earlier one when `stale_because` finds nothing against it,
    else exported now (the earlier files replaced)."""
    from dnadet_tf.exports.export import export_run

    path = os.path.join(out, "dnadet", "report.json")
    eval_data = os.path.abspath(benchmark_split(zoo, "test"))
    earlier = _read_report(path)
    if earlier is not None:
        why = stale_because(earlier, run, formats, eval_data)
        if why is None:
            return earlier
        progress(f"{out}: exporting {run} again, the earlier export cannot be reused: {why}")
    export_run(run, out, formats=list(formats), eval_data=eval_data, max_eval=0, overwrite=True, progress=progress)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _read_report(path):
    """The report.json dict at `path`, or None (none there, or not a report)."""
    report = read_json(path)
    return report if isinstance(report, dict) else None


def stale_because(report, run, formats, eval_data):
    """Why an earlier export `report` is not one of `run` in `formats` measured on `eval_data` (a phrase), or None
    when it is: it names this run (real paths), holds every format, its parity images are `eval_data` (real paths)
    and it was written after the run's best.keras and calibration.json and after `eval_data` last changed."""
    source = report.get("source_run")
    if not source or os.path.realpath(source) != os.path.realpath(run):
        return f"it is an export of {source}"
    missing = [name for name in formats if name not in (report.get("formats") or ())]
    if missing:
        return f"it holds no {', '.join(missing)} (formats {', '.join(report.get('formats') or ())})"
    data = (report.get("eval") or {}).get("data")
    if not isinstance(data, str) or os.path.realpath(data) != os.path.realpath(eval_data):
        return f"its parity images are {data}, not {eval_data}"
    try:
        created = datetime.datetime.fromisoformat(report["created"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return "its report.json records no creation time"
    for changed in (os.path.join(run, BEST_MODEL), os.path.join(run, CALIBRATION_FILE), eval_data):
        # "created" is in whole seconds, taken after the run and the images were read.
        if os.path.isfile(changed) and os.path.getmtime(changed) > created + 1:
            return f"{changed} changed after it was made ({report['created']})"
    return None


def export_folder(out, run):
    """OUT/<the run's folder name>, unless that folder holds an export of another run (its report.json's
    source_run, by real path): then OUT/<name>-<8 hex digits of the SHA-256 of the run's real path>. Stable
    across reruns, so a finished export is found again."""
    real = os.path.realpath(run)
    name = os.path.basename(os.path.abspath(run))
    plain = os.path.join(os.path.abspath(out), name)
    source = (_read_report(os.path.join(plain, "dnadet", "report.json")) or {}).get("source_run")
    if not source or os.path.realpath(source) == real:
        return plain
    return f"{plain}-{hashlib.sha256(real.encode()).hexdigest()[:8]}"


def open_set_figures(predictor, zoo):
    """{auroc, unknown_flagged, known_flagged, threshold} of one predictor: the zoo's test images
    (known) against its open_set.txt (unknown)."""
    rows = evaluate(predictor, [benchmark_split(zoo, "test")], progress=lambda message: None,
                    unknown_specs=[benchmark_split(zoo, OPEN_SET_SPLIT)])
    metrics = next(row["metrics"] for row in rows if row.get("kind") == OPEN_SET_ROW)
    return {key: metrics[key] for key in ("auroc", "unknown_flagged", "known_flagged", "threshold")}


def run_figures(zoo, run, out, formats):
    """{"run", "parity": {format: figures}, "open_set": {model: figures}} of one run."""
    from dnadet_tf.api import load

    folder = export_folder(out, run)
    report = export_report(run, folder, formats, zoo)
    parity, models = {}, {RUN_MODEL: load(run, precision="float32")}
    for row in report["rows"]:
        if row["format"] not in (RUN_MODEL, *formats):  # an earlier export's other formats
            continue
        parity[row["format"]] = {"size_mb": row["size_bytes"] / 1e6, "top1_agreement": row["top1_agreement"],
                                 "accuracy": row["accuracy"], "latency_ms": row["latency_ms"],
                                 "unknown_agreement": row.get("unknown_agreement")}
        if row["path"].endswith(".tflite"):
            models[row["format"]] = load(os.path.join(folder, "dnadet", row["path"]))
    open_set = {name: open_set_figures(predictor, zoo) for name, predictor in models.items()}
    for name, figures in parity.items():
        print(f"{run} {name}: " + ", ".join(f"{PARITY[key]} {_shown(key, value)}" for key, value in figures.items())
              + ("" if name not in open_set else ", " + ", ".join(
                  f"{OPEN_SET[key]} {_shown(key, open_set[name][key])}" for key in OPEN_SET)), flush=True)
    return {"run": os.path.abspath(run), "export": os.path.join(folder, "dnadet"), "eval_images": report["eval"]["images"],
            "parity": parity, "open_set": open_set}


def _shown(key, value):
    if value is None:
        return "-"
    return f"{value:.2f}" if key in NOT_PERCENT else f"{100 * value:.1f}"


def across_runs(runs):
    """{"parity|open_set/model/figure": {"values", "mean", "std"}} over the runs."""
    summary = {}
    for table in ("parity", "open_set"):
        for name, figures in runs[0][table].items():
            for key in figures:
                if key == "threshold":
                    continue
                values = [run[table][name][key] for run in runs]
                summary[f"{table}/{name}/{key}"] = mean_std_figures(values)
    return summary


def _cell(entry, key):
    if key in NOT_PERCENT:
        return mean_std_cell(entry, scale=1.0, digits=2)
    return mean_std_cell(entry)


def format_table(document):
    """The two Markdown tables (mean ± std over the runs) of a --json document."""
    summary, runs = document["summary"], len(document["runs"])
    names = [RUN_MODEL] + list(document["formats"])
    lines = [f"parity on the {document['runs'][0]['eval_images']} known test images, "
             f"mean ± std over {runs} runs (each format against its run in float32; flags at each file's own "
             "threshold)", "", "| format | " + " | ".join(PARITY.values()) + " |", "|---|" + "---:|" * len(PARITY)]
    for name in names:
        if f"parity/{name}/top1_agreement" in summary:
            lines.append(f"| {name} | " + " | ".join(_cell(summary[f"parity/{name}/{key}"], key) for key in PARITY)
                         + " |")
    lines += ["", f"unknown architectures (open_set.txt) against the known test images, mean ± std over {runs} runs",
              "", "| model | " + " | ".join(OPEN_SET.values()) + " |", "|---|" + "---:|" * len(OPEN_SET)]
    for name in names:
        if f"open_set/{name}/auroc" in summary:
            title = "the run (float32)" if name == RUN_MODEL else f"{name} TFLite"
            lines.append(f"| {title} | " + " | ".join(_cell(summary[f"open_set/{name}/{key}"], key)
                                                     for key in OPEN_SET) + " |")
    return "\n".join(lines)


def checked_arguments(parser, args):
    """Refuses (one line, exit status 2) a run dir that is none or is given twice (real paths), a zoo without
    test.txt or open_set.txt, and a --json that exists but is not an earlier result of this script."""
    for run in args.runs:
        if not RunDir(run).holds_run or not os.path.isfile(os.path.join(run, BEST_MODEL)):
            parser.error(f"--runs: {run}: expected a run dir written by 'dnadet-tf fit' (with {BEST_MODEL}), "
                         f"received {describe_path(run)}.")
    refuse_given_twice(parser, args.runs, lambda run, earlier, real: (
        f"--runs: {run} is {earlier} again (real path {real}); give each run once."))
    for split in ("test", OPEN_SET_SPLIT):
        if not os.path.isfile(benchmark_split(args.zoo, split)):
            parser.error(f"--zoo: {args.zoo}: expected a benchmark folder with {split}.txt, received "
                         f"{describe_path(args.zoo)}.")
    if args.json and os.path.lexists(args.json) and not is_earlier_result(args.json):
        parser.error(f"--json: {args.json} exists and is not an earlier result of {SCRIPT}.py; it is kept "
                     f"(name another file).")


def is_earlier_result(path):
    """Whether the file at `path` is a --json document this script wrote (`provenance.is_result_of`: its "script",
    or before that was recorded, every key of DOCUMENT_KEYS)."""
    return is_result_of(path, SCRIPT, lambda document: all(key in document for key in DOCUMENT_KEYS))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", required=True, help="the benchmark folder the runs were trained on (with open_set.txt)")
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="calibrated step-2 run dirs")
    parser.add_argument("--out", required=True,
                        help="folder for the exports (a run's export is reused when it is this run's, of these "
                             "formats, on this zoo's test.txt and newer than the run)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS,
                        help="formats to export and compare with the run (default: all but web)")
    parser.add_argument("--json", help="write the figures here (an existing file only when an earlier result)")
    args = parser.parse_args(argv)
    checked_arguments(parser, args)
    configure_runtime()
    try:
        runs = [run_figures(args.zoo, run, args.out, args.formats) for run in args.runs]
        document = {"script": SCRIPT, "zoo": os.path.abspath(args.zoo), "zoo_sha256": benchmark_digest(args.zoo),
                    "formats": list(args.formats), "runs": runs, "summary": across_runs(runs),
                    **provenance(__file__, sys.argv[1:] if argv is None else argv)}
    except DnadetError as error:
        parser.error(str(error))
    print(format_table(document))
    if args.json:
        write_json_atomic(args.json, document, indent=1, sort_keys=False)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

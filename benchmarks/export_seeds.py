"""Export parity and unknown architectures over several runs: what each exported format keeps of its run.

For every run, `dnadet-tf export --model RUN --out OUT/<run's folder name> --formats FORMATS --eval
ZOO/test.txt` (the int8 file's open-set threshold refitted on its own scores of the run's validation
images, as `export` does) gives the parity report: per format its size, top-1 agreement with the run
(float32), accuracy, latency at batch 1, and agreement of the open-set flag on the known test images.
Files already under OUT are reused (delete OUT to measure again).

Then the run and every TFLite file are evaluated as `dnadet-tf evaluate --model FILE --data ZOO/test.txt
--unknown ZOO/open_set.txt` would: the zoo's closed-set test images are the known ones, its open_set.txt
(architectures that are not classes) the unknown ones; per model the AUROC of its stored score and the
shares of unknown and of known images it flags, each at its own threshold (a file's from its sidecar).

Prints each run's figures and two tables of mean ± std over the runs (population std, as
`ablation.mean_std`); `--json FILE` writes {"zoo", "zoo_sha256", "formats", "runs", "summary"}.
Latency is the machine's at that moment: run it alone.

Usage: python benchmarks/export_seeds.py --zoo ZOO --runs RUN [RUN ...] --out DIR
       [--formats savedmodel float32 float16 dynamic int8] [--json FILE]
"""
import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dnadet_tf.ablation import mean_std_figures, mean_std_cell  # noqa: E402
from dnadet_tf.data import OPEN_SET_SPLIT, benchmark_digest, benchmark_split  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.evaluation import OPEN_SET_ROW, evaluate  # noqa: E402
from dnadet_tf.runs import write_json_atomic  # noqa: E402

RUN_MODEL = "keras"  # the run itself, float32: the export report's first row
FORMATS = ("savedmodel", "float32", "float16", "dynamic", "int8")
PARITY = {"size_mb": "size MB", "top1_agreement": "top-1 agree %", "accuracy": "accuracy %",
          "latency_ms": "latency ms", "unknown_agreement": "flag agree %"}
OPEN_SET = {"auroc": "AUROC %", "unknown_flagged": "unknown flagged %", "known_flagged": "known flagged %"}
NOT_PERCENT = ("size_mb", "latency_ms")


def export_report(run, out, formats, zoo, progress=print):
    """The report.json of `run` exported under `out` (exported now unless its report is there)."""
    from dnadet_tf.exports.export import export_run

    path = os.path.join(out, "dnadet", "report.json")
    if not os.path.isfile(path):
        export_run(run, out, formats=list(formats), eval_data=benchmark_split(zoo, "test"), max_eval=0,
                   overwrite=True, progress=progress)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


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

    folder = os.path.join(out, os.path.basename(os.path.normpath(run)))
    report = export_report(run, folder, formats, zoo)
    parity, models = {}, {RUN_MODEL: load(run, precision="float32")}
    for row in report["rows"]:
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
    return {"run": run, "export": os.path.join(folder, "dnadet"), "eval_images": report["eval"]["images"],
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", required=True, help="the benchmark folder the runs were trained on (with open_set.txt)")
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="calibrated step-2 run dirs")
    parser.add_argument("--out", required=True, help="folder for the exports (a run's export is reused when present)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS,
                        help="formats to export and compare with the run (default: all but web)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    configure_runtime()
    runs = [run_figures(args.zoo, run, args.out, args.formats) for run in args.runs]
    document = {"zoo": os.path.abspath(args.zoo), "zoo_sha256": benchmark_digest(args.zoo),
                "formats": list(args.formats), "runs": runs, "summary": across_runs(runs)}
    print(format_table(document))
    if args.json:
        write_json_atomic(args.json, document, indent=1, sort_keys=False)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

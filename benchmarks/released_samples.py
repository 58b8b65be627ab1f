"""Images no zoo holds: samples of generators released by others and the real photos beside them.

A run is trained on its benchmark's generators; the images a user meets come from other sources. This script
reads a manifest of such images (a CSV with columns `path` (relative to the CSV's folder), `real_or_fake` and
any others, e.g. `../shared/data/gan-samples/manifest.csv`), groups them by source (the first folder of `path`)
and by `real_or_fake`, and reports per run and group:

- `answered_real`: the share whose top class is `real`;
- `flagged_unknown`: the share the run's open-set threshold flags (calibrated runs; None otherwise);
- `real_and_known`: the share answered real and not flagged, i.e. what an application that trusts the open-set
  flag would pass as a real photo.

and the same over all reals and all fakes of the manifest (image-weighted), with the mean ± std over each
variant's runs (population std, as `ablation.mean_std`). `--crop PREFIX=LEFT,TOP,RIGHT,BOTTOM` crops every image
whose manifest path starts with PREFIX to that box first (e.g. the 50 px frame of CNNDetection's page images).
Images are read with `dnadet_tf.images.load_rgb` and preprocessed as `evaluate` does (the run's own chain).

`--json FILE` writes {"manifest", "manifest_sha256", "crops", "variants": {label: {"runs": [...], "summary"}}};
when FILE exists (of the same manifest and crops), the runs already in it are kept and only missing runs measured.

Usage: python benchmarks/released_samples.py --manifest CSV --variant LABEL RUN [RUN ...] [--variant ...]
           [--crop PREFIX=L,T,R,B ...] [--json FILE]
"""
import argparse
import csv
import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from dnadet_tf.ablation import mean_std_figures, mean_std_cell  # noqa: E402
from dnadet_tf.data import REAL_CLASS  # noqa: E402
from dnadet_tf.runs import write_json_atomic  # noqa: E402

FIGURES = ("answered_real", "flagged_unknown", "real_and_known")
KINDS = ("real", "fake")
BATCH = 16


def read_manifest(path):
    """{source: {"real": [paths], "fake": [paths]}} of a manifest CSV, sources and paths sorted; paths absolute."""
    folder = os.path.dirname(os.path.abspath(path))
    groups = {}
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for number, row in enumerate(rows, start=2):
        kind = row.get("real_or_fake")
        if kind not in KINDS or not row.get("path"):
            raise SystemExit(f"{path}:{number}: expected a path and real_or_fake 'real' or 'fake', received "
                             f"{row.get('path')!r}, {kind!r}.")
        source = row["path"].replace("\\", "/").split("/")[0]
        groups.setdefault(source, {k: [] for k in KINDS})[kind].append(os.path.join(folder, row["path"]))
    return {source: {k: sorted(v) for k, v in kinds.items()} for source, kinds in sorted(groups.items())}


def parse_crop(text):
    """'PREFIX=L,T,R,B' -> (PREFIX, (L, T, R, B))."""
    prefix, _, box = text.partition("=")
    try:
        left, top, right, bottom = (int(v) for v in box.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PREFIX=LEFT,TOP,RIGHT,BOTTOM (four integers), received {text!r}")
    if not prefix or right <= left or bottom <= top:
        raise argparse.ArgumentTypeError(f"expected a prefix and a box with RIGHT > LEFT and BOTTOM > TOP, "
                                         f"received {text!r}")
    return prefix, (left, top, right, bottom)


def crop_for(path, manifest_dir, crops):
    """The box of the first --crop whose prefix starts the path relative to the manifest's folder, or None."""
    relative = os.path.relpath(path, manifest_dir).replace(os.sep, "/")
    for prefix, box in crops:
        if relative.startswith(prefix):
            return box
    return None


def group_figures(answers, unknown, real):
    """answers (N,) top classes, unknown (N,) bool or None, real the real class -> {figure: share}."""
    answered_real = answers == real
    return {"images": int(len(answers)),
            "answered_real": float(np.mean(answered_real)),
            "flagged_unknown": None if unknown is None else float(np.mean(unknown)),
            "real_and_known": None if unknown is None else float(np.mean(answered_real & ~unknown))}


def _answers(predictor, paths, manifest_dir, crops):
    """Top classes (N,) and open-set flags (N,) (None for an uncalibrated run) of image files."""
    import tensorflow as tf

    from dnadet_tf.images import load_rgb
    from dnadet_tf.preprocess import preprocess_image

    answers, flags = [], []
    for start in range(0, len(paths), BATCH):
        images = []
        for path in paths[start:start + BATCH]:
            image = load_rgb(path)
            box = crop_for(path, manifest_dir, crops)
            if box is not None:
                image = image[box[1]:box[3], box[0]:box[2]]
            images.append(preprocess_image(image, predictor.preprocess))
        result = predictor.attribute_pixels(tf.stack(images))
        answers.append(result["probabilities"].argmax(-1))
        flags.append(result.get("unknown"))
    calibrated = all(f is not None for f in flags)
    return np.concatenate(answers), (np.concatenate(flags).astype(bool) if calibrated else None)


def run_figures(run, groups, manifest_dir, crops):
    """{"run", "groups": {"SOURCE/KIND": figures}, "all": {KIND: figures}} of one run dir."""
    from dnadet_tf.predictor import KerasPredictor

    predictor = KerasPredictor(run)
    real = predictor.class_names.index(REAL_CLASS)
    figures, pooled = {}, {k: ([], []) for k in KINDS}
    for source, kinds in groups.items():
        for kind in KINDS:
            if not kinds[kind]:
                continue
            answers, unknown = _answers(predictor, kinds[kind], manifest_dir, crops)
            figures[f"{source}/{kind}"] = group_figures(answers, unknown, real)
            pooled[kind][0].append(answers)
            pooled[kind][1].append(unknown)
    every = {}
    for kind, (answers, flags) in pooled.items():
        if answers:
            flags = None if any(f is None for f in flags) else np.concatenate(flags)
            every[kind] = group_figures(np.concatenate(answers), flags, real)
    return {"run": os.path.abspath(run), "groups": figures, "all": every}


def summarize(runs):
    """{"all/KIND" | "SOURCE/KIND": {figure: {"mean", "std", "values"} or None}} over the runs."""
    keys = [f"all/{k}" for k in KINDS if k in runs[0]["all"]] + list(runs[0]["groups"])
    summary = {}
    for key in keys:
        source, kind = key.rsplit("/", 1)
        rows = [r["all"][kind] if source == "all" else r["groups"][key] for r in runs]
        summary[key] = {"images": rows[0]["images"]}
        for figure in FIGURES:
            values = [row[figure] for row in rows]
            if any(v is None for v in values):
                summary[key][figure] = None
                continue
            summary[key][figure] = mean_std_figures(values)
    return summary


def _cell(stats):
    return "-" if stats is None else mean_std_cell(stats)


def format_table(document):
    """Markdown: per variant, all reals and all fakes, then every source's fakes and reals; mean ± std (%)."""
    lines = ["| method | images | runs | answered real | flagged unknown | answered real, not flagged |",
             "|---|---|---:|---:|---:|---:|"]
    for label, entry in document["variants"].items():
        summary = entry["summary"]
        for key, stats in summary.items():
            source, kind = key.rsplit("/", 1)
            name = f"all {kind}s" if source == "all" else f"{source} {kind}s"
            lines.append(f"| {label} | {name} ({stats['images']}) | {len(entry['runs'])} | "
                         + " | ".join(_cell(stats[figure]) for figure in FIGURES) + " |")
    return "\n".join(lines)


def file_digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def measure(manifest, variants, crops, previous=None, progress=print):
    """The document for {label: [run dirs]} (module docstring); `previous` an earlier one whose runs are kept."""
    groups = read_manifest(manifest)
    manifest_dir = os.path.dirname(os.path.abspath(manifest))
    digest = file_digest(manifest)
    crop_record = [[prefix, list(box)] for prefix, box in crops]
    kept = {}
    if previous and previous.get("manifest_sha256") == digest and previous.get("crops") == crop_record:
        kept = {r["run"]: r for entry in previous["variants"].values() for r in entry["runs"]}
    document = {"manifest": os.path.abspath(manifest), "manifest_sha256": digest, "crops": crop_record,
                "variants": {}}
    for label, runs in variants.items():
        measured = []
        for run in runs:
            figures = kept.get(os.path.abspath(run))
            if figures is None:
                figures = run_figures(run, groups, manifest_dir, crops)
                progress(f"{label} {run}: " + ", ".join(
                    f"{kind}s answered real {100 * figures['all'][kind]['answered_real']:.1f} %"
                    for kind in KINDS if kind in figures["all"]))
            measured.append(figures)
        document["variants"][label] = {"runs": measured, "summary": summarize(measured)}
    return document


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True, help="CSV with columns path and real_or_fake (others ignored)")
    parser.add_argument("--variant", nargs="+", action="append", required=True, metavar=("LABEL", "RUN"),
                        help="a label and its run dirs (repeat for each method)")
    parser.add_argument("--crop", type=parse_crop, action="append", default=[], metavar="PREFIX=L,T,R,B",
                        help="crop images whose manifest path starts with PREFIX to this box first")
    parser.add_argument("--json", help="write (and resume from) this JSON file")
    args = parser.parse_args(argv)
    variants = {}
    for entry in args.variant:
        if len(entry) < 2:
            parser.error(f"--variant: expected a label and at least one run dir, received {entry!r}")
        variants[entry[0]] = entry[1:]
    previous = None
    if args.json and os.path.isfile(args.json):
        with open(args.json, encoding="utf-8") as f:
            previous = json.load(f)
    document = measure(args.manifest, variants, args.crop, previous, progress=lambda line: print(line, flush=True))
    print(format_table(document))
    if args.json:
        write_json_atomic(args.json, document)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

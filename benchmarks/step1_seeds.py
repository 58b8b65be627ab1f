"""One method's cross-tests over several step-1 runs: how much the step-1 seed matters.

Each FILE is the `ablation.json` of a `dnadet-tf ablate --pretrained RUN --seeds N`
run, one per step-1 run (for example step 1 with seeds 0, 1, 2). For the
`--variant` (default DNA-Det) and each split this gives
  - per step-1 run: mean ± std over its step-2 seeds (as `ablate` reports it);
  - pooled: mean ± std over every step-2 run of every step-1 run;
  - between step-1 runs: the std of the per-run means (the step-1 seed's own spread).
std is the population std, as `ablate` computes it. `--select RULE` takes the model that
selection rule keeps (from runs made with `--compare-select`) instead of each run's
best.keras. `--json OUT` writes all of it, with the files' absolute paths (`sources`), the
settings they share (`settings`: zoo, zoo_sha256, preset, steps, validation, fit_overrides,
seeds) and the command, commit and machine; `render_results.py` renders that file as the
table in docs/results.md.

The files must be one experiment: two that record a setting of SETTINGS differently (another
zoo digest, preset, step budget, validation, fit overrides or step-2 seeds) are refused in one
line, as is a file given twice; a setting a file does not record (older ablate) is not compared.

Usage: python benchmarks/step1_seeds.py FILE [FILE ...] [--variant DNA-Det] [--select RULE] [--label NAME ...]
       [--json OUT]
"""
import argparse
import json
import os
import sys

import numpy as np

from dnadet_tf.ablation import mean_std_cell
from dnadet_tf.evaluation import EVALUATION_SPLITS, SPLIT_TITLES
from dnadet_tf.runs import write_json_atomic

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # provenance.py beside this script, also when it is loaded by path (render_results, tests)
    sys.path.insert(0, HERE)
from arguments import refuse_given_twice  # noqa: E402
from provenance import provenance  # noqa: E402

SPLITS = tuple(SPLIT_TITLES[split] for split in EVALUATION_SPLITS)  # as ablation.json names them
# The settings of ablation.json that the pooled files must share (compared where both files record them); the zoo
# by its digest, or by its path where a file records no digest.
SETTINGS = ("zoo_sha256", "zoo", "preset", "steps", "validation", "fit_overrides", "seeds")


def setting_difference(first, other):
    """(setting, first's value, other's value) of the first setting of SETTINGS the two ablation.json documents
    record differently, or None. The zoo's path is compared only when either lacks its digest."""
    for key in SETTINGS:
        if key == "zoo" and "zoo_sha256" in first and "zoo_sha256" in other:
            continue
        if key in first and key in other and first[key] != other[key]:
            return key, first[key], other[key]
    return None


def shared_settings(documents):
    """{setting: value} of SETTINGS as the files record them (the first file that records each)."""
    settings = {}
    for document in documents:
        for key in SETTINGS:
            if key in document and key not in settings:
                settings[key] = document[key]
    return settings


def variant_summary(document, variant, select=None):
    """The variant's per-split accuracy values (one per step-2 seed) of one ablation.json: of
    best.keras, or of the model rule `select` keeps."""
    for entry in document["variants"]:
        if entry["variant"] == variant:
            if select is None:
                table = entry["summary"]
            elif select in entry.get("select", {}):
                table = entry["select"][select]
            else:
                raise SystemExit(f"--select: expected a rule the runs compared "
                                 f"({', '.join(entry.get('select', {})) or 'none: run ablate --compare-select'}), "
                                 f"received {select!r}.")
            return {split: table[split]["accuracy"]["values"] for split in SPLITS}
    found = ", ".join(entry["variant"] for entry in document["variants"])
    raise SystemExit(f"--variant: expected one of {found}, received {variant!r}.")


def combine(documents, labels, variant, select=None):
    runs, pooled, means = [], {s: [] for s in SPLITS}, {s: [] for s in SPLITS}
    for label, document in zip(labels, documents):
        values = variant_summary(document, variant, select)
        runs.append({"label": label, "pretrained": document.get("pretrained"), "seeds": document["seeds"],
                     "splits": {s: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v}
                                for s, v in values.items()}})
        for split, v in values.items():
            pooled[split].extend(v)
            means[split].append(float(np.mean(v)))
    return {
        "variant": variant, "select": select or "best.keras", "figure": "accuracy", "runs": runs,
        "pooled": {s: {"mean": float(np.mean(v)), "std": float(np.std(v)), "count": len(v)} for s, v in pooled.items()},
        "between_step1": {s: {"mean": float(np.mean(v)), "std": float(np.std(v)), "count": len(v)}
                          for s, v in means.items()},
    }


def format_table(combined):
    """Markdown: one row per step-1 run, then pooled and between-runs rows (accuracy, %)."""
    rule = combined.get("select", "best.keras")
    title = combined["variant"] + (f" (rule `{rule}`)" if rule != "best.keras" else "")
    lines = [f"| {title}, step 1 | " + " | ".join(SPLITS) + " |", "|---|" + "---:|" * len(SPLITS)]
    for run in combined["runs"]:
        lines.append(f"| {run['label']} ({len(run['seeds'])} step-2 seeds) | "
                     + " | ".join(mean_std_cell(run["splits"][s]) for s in SPLITS) + " |")
    count = combined["pooled"][SPLITS[0]]["count"]
    lines.append(f"| pooled ({count} runs) | "
                 + " | ".join(mean_std_cell(combined["pooled"][s]) for s in SPLITS) + " |")
    lines.append(f"| between step-1 runs ({len(combined['runs'])} means) | "
                 + " | ".join(mean_std_cell(combined["between_step1"][s]) for s in SPLITS) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="ablation.json files, one per step-1 run")
    parser.add_argument("--variant", default="DNA-Det", help="the method to compare (a variant name in the files)")
    parser.add_argument("--select", help="the model this selection rule keeps (default: each run's best.keras)")
    parser.add_argument("--label", nargs="*", help="a name per file (default: the file names)")
    parser.add_argument("--json", help="write the combined figures here")
    args = parser.parse_args(argv)
    labels = args.label or [os.path.basename(path) for path in args.files]
    if len(labels) != len(args.files):
        parser.error(f"--label: expected one name per file ({len(args.files)}), received {len(labels)}.")
    refuse_given_twice(parser, args.files, lambda path, earlier, real: (
        f"{path}: given twice (as {earlier} and {path}); expected each step-1 run's file once."))
    documents = []
    for path in args.files:
        try:
            with open(path, encoding="utf-8") as f:
                document = json.load(f)
        except (OSError, ValueError) as error:
            parser.error(f"{path}: expected an ablation.json, {type(error).__name__}: {error}")
        if not isinstance(document, dict) or not isinstance(document.get("variants"), list) \
                or "seeds" not in document:
            parser.error(f"{path}: expected an ablation.json (with variants and seeds), found another document.")
        documents.append(document)
    for path, document in zip(args.files[1:], documents[1:]):
        difference = setting_difference(documents[0], document)
        if difference:
            key, first, other = difference
            parser.error(f"{path}: expected the settings of {args.files[0]}, its {key} differs: {other!r}, "
                         f"not {first!r} (the files must be one experiment).")
    try:
        combined = combine(documents, labels, args.variant, args.select)
    except (KeyError, TypeError) as error:
        parser.error(f"expected ablation.json files with every split's accuracy values, one lacks {error}.")
    for run, path in zip(combined["runs"], args.files):
        run["file"] = os.path.abspath(path)
    combined.update(sources=[os.path.abspath(path) for path in args.files], settings=shared_settings(documents),
                    **provenance(__file__, argv))
    print(format_table(combined))
    if args.json:
        write_json_atomic(args.json, combined, indent=1, sort_keys=False)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

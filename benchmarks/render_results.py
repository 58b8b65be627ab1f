"""Prints the result tables of docs/results.md from the JSON files in benchmarks/results/.

Each `ablation-*.json` there is the `ablation.json` of a `dnadet-tf ablate` or
`benchmarks/zoo_table.py` run (copied with `--save NAME` or by hand); this
script renders every one as the Markdown docs/results.md shows (mean ± std over the
training seeds, then the selection rules when they were compared), with the
training time per run. Each `open-set-*.json` (written by
`benchmarks/open_set_table.py`) renders as its open-set and calibration tables;
each `train-throughput-*.json` (`benchmarks/train_throughput.py --json`) as the speed tables;
each `transform-families*.json` (`benchmarks/transform_throughput.py --families --json`) as a row of
step 1's transformation costs; each `pretrain-families-*.json` (`benchmarks/pretrain_families.py
--json`) as a step-1 run's family recall; each `step1-seeds-*.json` (`benchmarks/step1_seeds.py --json`)
as one method's cross-tests per step-1 run, pooled and between step-1 runs; each
`validation-trajectory-*.json` (`benchmarks/validation_trajectory.py --json`) as every validated
model's cross-tests and those of their averages; each `pretrain-demo-photos*.json` and
`pretrain-shared-photos*.json` (a step-1 run's validation lines and its command) as its learning
curve, the mean accuracy of the validations in each 1000 steps; each `content-shift-probes-*.json`
(`benchmarks/content_shift_probes.py --json`) as its accuracy and real-share tables; each
`content-adaptation-*.json` (`benchmarks/content_adaptation.py --json`) as its table before and after adapting;
each `adaptation-images-*.json` (`benchmarks/adaptation_images.py --json`) as its accuracy per number of images
adapted to;
each `transplant-adaptation-*.json` (`benchmarks/transplant_adaptation.py --json`) as its accuracy after adapting to
real photos of the other content and fakes made of them (`adapt --photos`) and the mixes tried next to it;
each `export-seeds-*.json` (`benchmarks/export_seeds.py --json`) as its export parity and unknown-architecture tables;
each `swap-content-*.json` (`benchmarks/swap_content.py --json`) as its table of the training and the retrained
generators on the training and the other photos; each `released-samples-*.json`
(`benchmarks/released_samples.py --json`) as its table of reals and fakes of sources no zoo holds; each
`labeled-adaptation-*.json` (`benchmarks/labeled_adaptation.py --json`) as its figures after `adapt --labeled`; each
`feature-clusters-*.json` (`benchmarks/feature_clusters.py --json`) as its cluster purity against the head's accuracy;
each `robustness-*.json` (`benchmarks/robustness_seeds.py --json`) as its accuracy under every attack; each
`open-set-points-*.json`, `labeled-open-set-*.json` and `unlabeled-open-set-*.json` (`benchmarks/open_set_points.py`,
`labeled_open_set.py`, `unlabeled_open_set.py`, `--json`) as their open-set tables. The other files (timings,
decoder fuzzing, single evaluations) hold figures docs/results.md quotes beside their commands: they have no table.
A file is rendered once, by the longest prefix its name starts with (`open-set-points-*.json` as open-set points,
not as an `open-set-*.json` table). A file that is missing, unreadable, no JSON or JSON of another shape than its
name says is named in one line on stderr with what was wrong, and the others are still rendered; the exit status is
then 2, as for a file with no table.
Usage: python benchmarks/render_results.py [FILE ...]
"""
import argparse
import functools
import glob
import importlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def render(path):
    from dnadet_tf.ablation import format_ablation, mean_std_cell

    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    overrides = ", ".join(f"{k}={v}" for k, v in sorted(document.get("fit_overrides", {}).items())) or "preset defaults"
    steps = f"{document['steps']} steps" if document.get("steps") else "the preset's steps"
    zoo = f", zoo SHA-256 {document['zoo_sha256'][:16]}" if document.get("zoo_sha256") else ""
    lines = [f"### {os.path.basename(path)}", "",
             f"preset `{document['preset']}`, {steps}, seeds {document['seeds']}, {overrides}{zoo}", "",
             format_ablation(document), ""]
    for entry in document["variants"]:
        seconds = [r["seconds"] for r in entry["seeds"] if r.get("seconds")]
        real = entry["summary"].get("cross-dataset", {}).get("real_recall", {})
        if seconds:
            lines.append(f"- {entry['variant']}: training {np.mean(seconds):.0f} s per run (mean of {len(seconds)})"
                         + (f"; cross-dataset real-class recall {mean_std_cell(real)} %"
                            if real.get("mean") is not None else ""))
    return "\n".join(lines) + "\n"


def render_open_set(path):
    sys.path.insert(0, HERE)
    from open_set_table import markdown

    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    return f"### {os.path.basename(path)}\n\n{markdown(document)}\n"


def _percent(fraction):
    """A fraction as a whole percentage, or '-' for a figure an older run did not measure."""
    return "-" if fraction is None else f"{100 * fraction:.0f} %"


def render_speed(path):
    """The speed tables of docs/results.md from a `train_throughput.py --json` file."""
    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    ceiling = document["ceiling"]
    machine = document["machine"]
    lines = [f"### {os.path.basename(path)}", "",
             f"{machine['cpu_count']} cores ({machine['cpu_model']}), TensorFlow {machine['tensorflow']}. Ceiling "
             f"(a lone 3x3 convolution, best of the encoder's shapes at {ceiling['batch']} patches): "
             f"{ceiling['float32_gflops']:.0f} GFLOP/s float32, {ceiling['bfloat16_gflops']:.0f} GFLOP/s bfloat16.", "",
             "| preset | precision | patches per step | training step, patches/s | of the float32 ceiling "
             "| of its precision's ceiling | input pipeline alone | realized in `fit` | realized / step "
             "| realized / median step | realized / median step before and after | fed / alone "
             "| inference, images/s (side) | of the float32 ceiling |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = [(preset, row) for preset, by in document["presets"].items() for row in by.values()]
    rows += [("pretrain (step 1, cpu)", row) for row in document.get("pretrain", {}).values()]
    for name, row in rows:
        inference = (f"{row['inference_images_per_s']:.1f} ({row['inference_side']} px) | "
                     f"{100 * row['inference_ceiling_fraction']:.0f} %" if "inference_images_per_s" in row else "- | -")
        own = ceiling["bfloat16_gflops"] if "bfloat16" in row["precision"] else ceiling["float32_gflops"]
        lines.append(f"| {name} | {row['precision']} | {row['patches_per_step']} | {row['step_patches_per_s']:.0f} | "
                     f"{100 * row['ceiling_fraction']:.0f} % | {100 * row['step_gflops'] / own:.0f} % | "
                     f"{row['pipeline_patches_per_s']:.0f} | "
                     f"{row['realized_patches_per_s']:.0f} | {100 * row['realized_over_step']:.0f} % | "
                     f"{_percent(row.get('realized_over_median_step'))} | "
                     f"{_percent(row.get('realized_over_median_step_around'))} | {_percent(row.get('fed_over_alone'))} | "
                     f"{inference} |")
    reference = document.get("torch_release_feeding")
    if reference:
        paper = document["presets"].get("paper", {}).get("float32")
        lines += ["", f"The same network in plain PyTorch {reference['torch']} ({reference['threads']} threads), fed the "
                      f"release's way (16 passes of 20 patches): {reference['step_patches_per_s']:.0f} patches/s"
                  + (f"; the `paper` float32 step is {paper['step_patches_per_s'] / reference['step_patches_per_s']:.2f}x "
                     f"that." if paper else ".")]
    positions = [(name, row) for name, row in rows if "per_position_patches_per_s" in row]
    if positions:
        lines += ["", "Fed the release's way (one forward/backward per crop position, cross-entropy only), the same "
                      "Keras network trains at " + ", ".join(
                          f"{row['per_position_patches_per_s']:.0f} patches/s ({name} {row['precision']}; all crops "
                          f"in one batch: {row['step_patches_per_s'] / row['per_position_patches_per_s']:.2f}x)"
                          for name, row in positions) + "."]
    lines += ["", f"Peak resident memory {document['peak_resident_gib']:.2f} GiB; the run took "
                  f"{document['seconds'] / 60:.0f} min."]
    return "\n".join(lines) + "\n"


def render_transform_costs(path):
    """A row of CPU ms per 128 px crop for each transformation family, from `transform_throughput.py --families`."""
    with open(path, encoding="utf-8") as f:
        costs = json.load(f)["transformations"]
    families = costs["cpu_ms_per_image"]
    return "\n".join([f"### {os.path.basename(path)}", "", "| " + " | ".join(families) + " | mean over the 170 |",
                      "|" + "---:|" * (len(families) + 1),
                      "| " + " | ".join(f"{v:.2f}" for v in families.values()) + f" | {costs['mean_over_classes_cpu_ms']:.2f} |",
                      ""])


def render_pretrain_families(path):
    """170-way and family accuracy and each family's recall (%), from `pretrain_families.py --json`: one row,
    or with several runs a row per run and their mean ± std."""
    with open(path, encoding="utf-8") as f:
        figures = json.load(f)
    runs = figures.get("runs", [figures])
    families = list(runs[0]["family_recall"])

    def row(name, run):
        # runs measured before the most probable family was: "-"
        cells = [run["accuracy"], run["family_accuracy"], run.get("family_accuracy_summed")]
        cells += [run["family_recall"][family] for family in families]
        return f"| {name} | " + " | ".join("-" if v is None else f"{100 * v:.1f}" for v in cells) + " |"

    lines = [f"### {os.path.basename(path)}", "",
             " + ".join(str(run["samples"]) for run in runs) + " held-out samples", "",
             "| run | 170-way | family | most probable family | " + " | ".join(families) + " |",
             "|---|" + "---:|" * (len(families) + 3)]
    lines += [row(os.path.basename(os.path.normpath(run["run"])), run) for run in runs]
    if "summary" in figures:  # its figures in the columns' order (`pretrain_families.across_runs`)
        from dnadet_tf.ablation import mean_std_cell

        lines.append(f"| mean ± std of {len(runs)} | "
                     + " | ".join(mean_std_cell(stats) for stats in figures["summary"].values()) + " |")
    return "\n".join(lines + [""])


def render_pretrain_validations(path):
    """A step-1 run's learning curve, from a `pretrain-*-photos*.json` (a run's validation lines with its
    command): the mean 170-way and family accuracy (%) of the validations in each 1000 steps (the last
    window ends at the last validation)."""
    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    validations = document["validation"]
    last = max(v["step"] for v in validations)
    # each 1000 steps; the last window ends at the last validation (a run that stopped early)
    windows = [(start, min(start + 999, last), [v for v in validations if start <= v["step"] < start + 1000])
               for start in range(1, last + 1, 1000)]
    windows = [(start, end, rows) for start, end, rows in windows if rows]

    def row(name, key):
        cells = [f"{100 * np.mean([v[key] for v in rows]):.1f}" if all(key in v for v in rows) else "-"
                 for _, _, rows in windows]
        return f"| {name} | " + " | ".join(cells) + " |"

    return "\n".join([f"### {os.path.basename(path)}", "", f"`{document['command']}`; best.keras by "
                      f"{document.get('selected_by', 'its rule')}", "",
                      "| mean of the validations in steps | " + " | ".join(f"{start}-{end}" for start, end, _ in windows)
                      + " |", "|---|" + "---:|" * len(windows),
                      row("170-way accuracy %", "accuracy"), row("family accuracy %", "family_accuracy"), ""])


def render_step1_seeds(path):
    """One method's cross-tests per step-1 run, from `step1_seeds.py --json`."""
    sys.path.insert(0, HERE)
    from step1_seeds import format_table

    with open(path, encoding="utf-8") as f:
        combined = json.load(f)
    return "\n".join([f"### {os.path.basename(path)}", "", "accuracy (%), mean ± std", "", format_table(combined), ""])


def _rendered_by(script, function, path):
    """`### FILE` and the tables that `function` of the script `script` (beside this one) makes of the JSON at `path`."""
    sys.path.insert(0, HERE)
    tables = getattr(importlib.import_module(script), function)
    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    return "\n".join([f"### {os.path.basename(path)}", "", tables(document), ""])


def render_robustness(path):
    """Accuracy under each attack, mean ± std over the runs, from `robustness_seeds.py --json`, in the script's
    column order (no attack, then the file's `attacks`; its keys are sorted on disk)."""
    sys.path.insert(0, HERE)
    from robustness_seeds import NO_ATTACK, markdown

    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    order = [NO_ATTACK, *document["attacks"]]
    table = [dict(row, columns={c: row["columns"][c] for c in order if c in row["columns"]})
             for row in document["table"]]
    return "\n".join([f"### {os.path.basename(path)}", "", markdown(table), ""])


# Files whose tables a benchmark script's own function makes: prefix -> (script beside this one, function).
RENDERED_BY = {"open-set-points": ("open_set_points", "format_table"),
               "labeled-open-set": ("labeled_open_set", "format_table"),
               "unlabeled-open-set": ("unlabeled_open_set", "format_table"),
               "validation-trajectory": ("validation_trajectory", "format_tables"),
               "content-shift-probes": ("content_shift_probes", "format_tables"),
               "content-adaptation": ("content_adaptation", "format_table"),
               "export-seeds": ("export_seeds", "format_table"), "swap-content": ("swap_content", "format_table"),
               "released-samples": ("released_samples", "format_table"),
               "seed-ensemble": ("seed_ensemble", "format_table"),
               "adaptation-images": ("adaptation_images", "format_table"),
               "transplant-adaptation": ("transplant_adaptation", "format_table"),
               "labeled-adaptation": ("labeled_adaptation", "format_table"),
               "feature-clusters": ("feature_clusters", "format_table")}
# A file is rendered by the longest prefix its name starts with (`renderer_of`): open-set-points-*.json by
# RENDERED_BY's, not render_open_set.
RENDERERS = {**{prefix: functools.partial(_rendered_by, *by) for prefix, by in RENDERED_BY.items()},
             "robustness": render_robustness, "open-set": render_open_set, "train-throughput": render_speed,
             "transform-families": render_transform_costs, "pretrain-families": render_pretrain_families,
             "step1-seeds": render_step1_seeds, "ablation": render,
             "pretrain-demo-photos": render_pretrain_validations, "pretrain-shared-photos": render_pretrain_validations}


def prefix_of(path):
    """The longest prefix of RENDERERS that the name of `path` starts with (the most specific), or None."""
    name = os.path.basename(path)
    return max((prefix for prefix in RENDERERS if name.startswith(prefix)), key=len, default=None)


def render_file(path):
    """The tables of the result file at `path`, by the renderer of its name's longest prefix; None when it has
    none."""
    prefix = prefix_of(path)
    return None if prefix is None else RENDERERS[prefix](path)


def default_files():
    """Every file of benchmarks/results/ with a table (a name starting with a prefix of RENDERERS), each once, sorted
    by path."""
    return sorted(path for path in glob.glob(os.path.join(HERE, "results", "*.json")) if prefix_of(path))


# What a result file that cannot be rendered raised: unreadable (OSError), no JSON or not UTF-8 (ValueError), or
# JSON of another shape than its renderer reads (a key or item missing, a value of another type).
BAD_FILE_ERRORS = (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError)


def what_was_wrong(path, error):
    """One line's words for the `error` that rendering the result file at `path` raised (BAD_FILE_ERRORS)."""
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "a folder, not a result file"
    if isinstance(error, OSError):
        return f"unreadable ({error.strerror or error})"
    expected = f"expected the JSON that {prefix_of(path)}*.json files hold"
    if isinstance(error, json.JSONDecodeError):
        return f"not JSON ({error.msg}: line {error.lineno} column {error.colno}); {expected}"
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 text ({error.reason} at byte {error.start}); {expected}"
    if isinstance(error, KeyError):
        return f"JSON without the key {error.args[0]!r}; {expected}"
    return f"JSON of another shape ({type(error).__name__}: {error}); {expected}"


def main(argv=None):
    from dnadet_tf.cli.main import quiet_tensorflow

    quiet_tensorflow()  # the renderers import dnadet_tf, which imports TensorFlow: no start-up lines
    parser = argparse.ArgumentParser(
        prog="render_results", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0],
        epilog=f"Files are rendered by the start of their name: {', '.join(RENDERERS)}.")
    parser.add_argument("files", nargs="*", metavar="JSON",
                        help="result files to render (default: every file of benchmarks/results/ with a table)")
    paths = parser.parse_args(sys.argv[1:] if argv is None else argv).files or default_files()
    status = 0
    for path in paths:  # a bad file is said in one line, and the other files still rendered
        try:
            if not os.path.exists(path):
                raise FileNotFoundError(path)
            tables = render_file(path)
        except BAD_FILE_ERRORS as error:
            print(f"render_results: {path}: {what_was_wrong(path, error)}.", file=sys.stderr)
            status = 2
            continue
        if tables is None:
            print(f"render_results: {path}: no table for it (its figures are quoted in docs/results.md beside the "
                  f"command that wrote it); expected a file name starting with one of {', '.join(RENDERERS)}.",
                  file=sys.stderr)
            status = 2
            continue
        print(tables)
    return status


if __name__ == "__main__":
    sys.exit(main())

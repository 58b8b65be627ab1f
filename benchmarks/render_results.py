"""Prints the README's result tables from the JSON files in benchmarks/results/.

Each `ablation-*.json` there is the `ablation.json` of a `dnadet-tf ablate` or
`benchmarks/zoo_table.py` run (copied with `--save NAME` or by hand); this
script renders every one as the Markdown the README shows (mean ± std over the
training seeds, then the selection rules when they were compared), with the
training time per run. Each `open-set-*.json` (written by
`benchmarks/open_set_table.py`) renders as its open-set and calibration tables.
Usage: python benchmarks/render_results.py [FILE ...]
"""
import glob
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def render(path):
    from dnadet_tf.ablation import format_ablation

    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    overrides = ", ".join(f"{k}={v}" for k, v in sorted(document.get("fit_overrides", {}).items())) or "preset defaults"
    lines = [f"### {os.path.basename(path)}", "",
             f"preset `{document['preset']}`, seeds {document['seeds']}, {overrides}", "",
             format_ablation(document), ""]
    for entry in document["variants"]:
        seconds = [r["seconds"] for r in entry["seeds"] if r.get("seconds")]
        real = entry["summary"].get("cross-dataset", {}).get("real_recall", {})
        if seconds:
            lines.append(f"- {entry['variant']}: training {np.mean(seconds):.0f} s per run (mean of {len(seconds)})"
                         + (f"; cross-dataset real-class recall {100 * real['mean']:.1f} ± {100 * real['std']:.1f} %"
                            if real.get("mean") is not None else ""))
    return "\n".join(lines) + "\n"


def render_open_set(path):
    sys.path.insert(0, HERE)
    from open_set_table import markdown

    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    return f"### {os.path.basename(path)}\n\n{markdown(document)}\n"


def main(argv=None):
    paths = (argv or sys.argv[1:]) or sorted(glob.glob(os.path.join(HERE, "results", "ablation-*.json"))
                                             + glob.glob(os.path.join(HERE, "results", "open-set-*.json")))
    for path in paths:
        print(render_open_set(path) if os.path.basename(path).startswith("open-set") else render(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())

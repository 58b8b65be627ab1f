"""Robustness over training seeds: the accuracy under each test-time attack, mean ± std over runs.

The paper's Table 5 for several run dirs of one training configuration (for example the seeds
of a `dnadet-tf ablate` folder), and for several configurations side by side: each `--runs
NAME RUN [RUN ...]` is one configuration. Every run is scored by `dnadet_tf.robustness` (the
`dnadet-tf robustness` command) on the same data, with the same attack seeds, and its rows are
cached as RUN/robustness-seeds.json (same data, attacks and seed: reused), so an interrupted
table resumes. Prints a Markdown table (mean ± population std of accuracy %, one row per
configuration and data list); `--json OUT` keeps every run's numbers.

Usage: python benchmarks/robustness_seeds.py --data LIST [LIST ...] --runs NAME RUN [RUN ...]
           [--runs NAME RUN ...] [--attacks crop,blur,jpeg,noise,relight,combo] [--json OUT]
"""
import argparse
import json
import os
import sys

from dnadet_tf.ablation import mean_std_figures, mean_std_cell
from dnadet_tf.robustness import COLUMN_TITLES, DEFAULT_ATTACKS, NO_ATTACK, robustness
from dnadet_tf.runs import write_json_atomic

CACHE_NAME = "robustness-seeds.json"


def run_rows(run_dir, data, attacks, seed, output):
    """`robustness` rows of one run dir, from its cache when data, attacks and seed match."""
    from dnadet_tf.api import load

    cache = os.path.join(run_dir, CACHE_NAME)
    key = {"data": list(data), "attacks": list(attacks), "seed": seed}
    if os.path.exists(cache):
        with open(cache, encoding="utf-8") as f:
            cached = json.load(f)
        if cached.get("key") == key:
            return cached["rows"]
    rows = robustness(load(run_dir), list(data), attacks=attacks, seed=seed,
                      progress=lambda line: print(f"[{run_dir}] {line}", file=output, flush=True))
    write_json_atomic(cache, {"key": key, "rows": rows})
    return rows


def summarize(configurations, attacks):
    """{name: [rows of each run]} -> [{configuration, data, columns: {column: {mean, std, values}}}], the
    columns in the order no attack, then `attacks` (cached rows come back with their keys sorted)."""
    table = []
    for name, runs in configurations.items():
        for index, row in enumerate(runs[0]):
            columns = {}
            for column in [c for c in (NO_ATTACK, *attacks) if c in row["accuracy"]]:
                values = [rows[index]["accuracy"][column] for rows in runs]
                columns[column] = mean_std_figures(values)
            table.append({"configuration": name, "data": row["name"], "num_images": row["num_images"],
                          "columns": columns})
    return table


def markdown(table):
    columns = list(table[0]["columns"])
    lines = ["| training | data | " + " | ".join(COLUMN_TITLES.get(c, c) for c in columns) + " |",
             "|---|---|" + "---:|" * len(columns)]
    for row in table:
        cells = [mean_std_cell(row['columns'][c]) for c in columns]
        lines.append(f"| {row['configuration']} | {row['data']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="annotation lists, folder trees or benchmark folders")
    parser.add_argument("--runs", nargs="+", action="append", required=True, metavar="NAME RUN",
                        help="a configuration's name, then its run dirs (repeat for each configuration)")
    parser.add_argument("--attacks", default=",".join(DEFAULT_ATTACKS), help="comma list of attack columns")
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbations")
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args(argv)
    attacks = tuple(a for a in args.attacks.split(",") if a)
    configurations = {}
    for group in args.runs:
        if len(group) < 2:
            parser.error(f"--runs: expected a name and at least one run dir, received {group!r}.")
        name, run_dirs = group[0], group[1:]
        configurations[name] = [run_rows(run, args.data, attacks, args.seed, sys.stderr) for run in run_dirs]
    table = summarize(configurations, attacks)
    print(markdown(table))
    if args.json:
        write_json_atomic(args.json, {"data": args.data, "attacks": list(attacks), "seed": args.seed,
                                      "runs": {group[0]: group[1:] for group in args.runs},
                                      "per_run": configurations, "table": table})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

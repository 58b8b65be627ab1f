"""Robustness over training seeds: the accuracy under each test-time attack, mean ± std over runs.

The paper's Table 5 for several run dirs of one training configuration (for example the seeds
of a `dnadet-tf ablate` folder), and for several configurations side by side: each `--runs
NAME RUN [RUN ...]` is one configuration. Every run is scored by `dnadet_tf.robustness` (the
`dnadet-tf robustness` command) on the same data, with the same attack seeds, and its rows are
cached as RUN/robustness-seeds.json, reused when the data (real paths and contents: a benchmark's
`benchmark_digest`, a list's bytes, a folder's image names, sizes and times), attacks, seed and the
run's best.keras (size and modification time) are the same, so an interrupted table resumes. Prints a
Markdown table (mean ± population std of accuracy %, one row per configuration and data list);
`--json OUT` keeps every run's numbers, with absolute paths, the data's digests and the command,
commit and machine; an existing OUT is replaced only when it is an earlier result of this script. A
run dir given twice in one configuration or in two (a run is trained in one configuration: under two names
its figures would fill two rows that read as two trainings), a data path given twice (real paths), a
configuration name given twice, a run dir, data path or attack that cannot be used, are refused in one line
(exit status 2).

Usage: python benchmarks/robustness_seeds.py --data LIST [LIST ...] --runs NAME RUN [RUN ...]
           [--runs NAME RUN ...] [--attacks crop,blur,jpeg,noise,relight,combo] [--json OUT]
"""
import argparse
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from dnadet_tf.ablation import mean_std_figures, mean_std_cell  # noqa: E402
from dnadet_tf.attacks import parse_attacks  # noqa: E402
from dnadet_tf.data import benchmark_digest, find_images, is_benchmark_dir  # noqa: E402
from dnadet_tf.errors import DnadetError  # noqa: E402
from dnadet_tf.robustness import COLUMN_TITLES, DEFAULT_ATTACKS, NO_ATTACK, robustness  # noqa: E402
from dnadet_tf.runs import BEST_MODEL, RunDir, describe_path, is_exported_model, write_json_atomic  # noqa: E402
from arguments import refuse_given_twice  # noqa: E402
from provenance import is_result_of, provenance  # noqa: E402

CACHE_NAME = "robustness-seeds.json"
SCRIPT = "robustness_seeds"
# The keys every --json document of this script holds (those written before "script" was recorded too).
DOCUMENT_KEYS = ("data", "attacks", "seed", "runs", "per_run", "table")


def data_digest(path):
    """SHA-256 (hex) of a data path's contents: `benchmark_digest` of a benchmark folder, the bytes of a list, the
    sorted relative names, sizes and modification times of a folder tree's images."""
    if is_benchmark_dir(path):
        return benchmark_digest(path)
    digest = hashlib.sha256()
    if os.path.isfile(path):
        with open(path, "rb") as f:
            digest.update(f.read())
        return digest.hexdigest()
    for image in sorted(os.path.relpath(p, path) for p in find_images(path)):
        status = os.stat(os.path.join(path, image))
        digest.update(f"{image}\0{status.st_size}\0{status.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def model_identity(run_dir):
    """{"file", "size", "mtime_ns"} of the run's best.keras (a retrained run has another), of a .tflite file or of a
    SavedModel folder's saved_model.pb; None when there is none."""
    path = os.path.join(run_dir, BEST_MODEL)
    if os.path.isfile(run_dir):
        path = run_dir
    elif not os.path.isfile(path):
        path = os.path.join(run_dir, "saved_model.pb")
    if not os.path.isfile(path):
        return None
    status = os.stat(path)
    return {"file": os.path.realpath(path), "size": status.st_size, "mtime_ns": status.st_mtime_ns}


def run_rows(run_dir, data, attacks, seed, output, digests=None):
    """`robustness` rows of one run dir, from its cache when data (real paths and `digests`, by default
    `data_digest` of each), attacks, seed and the run's best.keras (`model_identity`) match."""
    from dnadet_tf.api import load

    cache = os.path.join(run_dir, CACHE_NAME)
    data = [os.path.abspath(path) for path in data]
    key = {"data": [os.path.realpath(path) for path in data],
           "data_sha256": list(digests) if digests is not None else [data_digest(path) for path in data],
           "attacks": list(attacks), "seed": seed, "model": model_identity(run_dir)}
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


def checked_arguments(parser, args):
    """(attacks, {name: run dirs}) of the arguments; refuses in one line (exit status 2) an unknown attack, a data
    path that is none or is given twice, a configuration name given twice, a run dir that is none or is given
    twice in one configuration or in two (real paths), and a --json that exists but is not an earlier result of this
    script."""
    try:
        attacks = parse_attacks([a for a in args.attacks.split(",") if a.strip().lower() != NO_ATTACK])
    except ValueError as error:
        parser.error(f"--attacks: {error}")
    for path in args.data:
        if not os.path.exists(path):
            parser.error(f"--data: {path}: expected an annotation list, a folder tree or a benchmark folder, "
                         f"received {describe_path(path)}.")
    refuse_given_twice(parser, args.data, lambda path, earlier, real: (
        f"--data: {path} is {earlier} again (real path {real}); give each data path once."))
    configurations, configuration_of = {}, {}  # configuration_of: {real path of a run: (its name, run as given)}
    for group in args.runs:
        if len(group) < 2:
            parser.error(f"--runs: expected a name and at least one run dir, received {group!r}.")
        name, run_dirs = group[0], group[1:]
        if name in configurations:
            parser.error(f"--runs: the configuration name {name!r} is given twice; give each its own name.")
        for run in run_dirs:
            if not (RunDir(run).holds_run or is_exported_model(run)):
                parser.error(f"--runs {name}: {run}: expected a run dir written by 'dnadet-tf fit', received "
                             f"{describe_path(run)}.")
        seen = refuse_given_twice(parser, run_dirs, lambda run, earlier, real: (
            f"--runs {name}: {run} is {earlier} again (real path {real}); give each run once."))
        for real, run in seen.items():  # one run under two names: two rows read as two trainings, sharing figures
            if real in configuration_of:
                other, earlier = configuration_of[real]
                parser.error(f"--runs {name}: {run} is {earlier} of configuration {other!r} again (real path "
                             f"{real}); a run belongs to one configuration.")
            configuration_of[real] = (name, run)
        configurations[name] = run_dirs
    if args.json and os.path.lexists(args.json) and not is_earlier_result(args.json):
        parser.error(f"--json: {args.json} exists and is not an earlier result of {SCRIPT}.py; it is kept "
                     f"(name another file).")
    return attacks, configurations


def is_earlier_result(path):
    """Whether the file at `path` is a --json document this script wrote (`provenance.is_result_of`: its "script",
    or before that was recorded, every key of DOCUMENT_KEYS)."""
    return is_result_of(path, SCRIPT, lambda document: all(key in document for key in DOCUMENT_KEYS))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="annotation lists, folder trees or benchmark folders")
    parser.add_argument("--runs", nargs="+", action="append", required=True, metavar="NAME RUN",
                        help="a configuration's name, then its run dirs (repeat for each configuration)")
    parser.add_argument("--attacks", default=",".join(DEFAULT_ATTACKS), help="comma list of attack columns")
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbations")
    parser.add_argument("--json", help="write every figure here (an existing file only when an earlier result)")
    args = parser.parse_args(argv)
    attacks, run_dirs = checked_arguments(parser, args)
    data = [os.path.abspath(path) for path in args.data]
    configurations = {}
    try:
        digests = [data_digest(path) for path in data]
        for name, runs in run_dirs.items():
            configurations[name] = [run_rows(run, data, attacks, args.seed, sys.stderr, digests) for run in runs]
    except (DnadetError, OSError) as error:
        parser.error(str(error))
    table = summarize(configurations, attacks)
    print(markdown(table))
    if args.json:
        write_json_atomic(args.json, {"script": SCRIPT, "data": data, "data_sha256": digests,
                                      "attacks": list(attacks), "seed": args.seed,
                                      "runs": {name: [os.path.abspath(run) for run in runs]
                                               for name, runs in run_dirs.items()},
                                      "per_run": configurations, "table": table,
                                      **provenance(__file__, sys.argv[1:] if argv is None else argv)})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Open-set attribution and calibration on the demo generator zoo, over several training seeds.

Trains (or reuses) one variant per seed with `dnadet.ablation.ablate` (default Base+PCL,
the `cpu` preset: what `dnadet-tf fit` trains), fits each run's temperature and open-set
score (`dnadet_tf.calibrate`, unless the run already has them), and evaluates it on every
split of the zoo with its open_set.txt (dcgan, stylegan and cyclegan: architectures that
are not classes) as unknowns. Reports mean ± std over the seeds of AUROC, FPR at 95 % TPR
and open-set accuracy for every score, and of the expected calibration error (15 bins)
before and after temperature scaling, per split. Writes --json (default
benchmarks/results/open-set-demo.json) and prints the Markdown tables.

Runs are trained as `dnadet-tf fit` trains them (the `cpu` preset's precision and selection rule)
unless --precision or --select say otherwise; the older table in docs/results.md used `--precision float32
--select nll`.

`--known-rate Q` calibrates the runs with `dnadet-tf calibrate --known-rate Q` (again, where a run was
calibrated with another share): the threshold then keeps Q of the validation images as known. The share of
images flagged unknown is reported for every split, so the cost of a lower Q on known architectures under a
shift (cross-seed, -loss, -finetune, -dataset) stands next to what it gains on unknown ones. `--radii`
(calibrate --radii) likewise calibrates the runs whose stored score has other radii, and `--means`
(calibrate --means) those whose score measures to other points (class means, every training image, or K k-means
centres per class).

Usage: python benchmarks/open_set_table.py [--out runs/zoo-table] [--zoo DIR] [--seeds 3]
       [--variant base_pcl] [--pretrained RUN] [--precision P] [--select RULE] [--recalibrate]
       [--known-rate Q] [--radii per-class|shared] [--means class|image|K] [--json FILE]
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dnadet_tf.ablation import VARIANT_NAMES, VARIANTS, ablate, mean_std_cell, mean_std_figures  # noqa: E402
from dnadet_tf.calibrate import (CALIBRATION_FILE, calibrate_run, calibrated_known_rate, calibrated_means,  # noqa: E402
                                 calibrated_radii)
from dnadet_tf.config import PRECISION_CHOICES  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.evaluation import EVALUATION_SPLITS, OPEN_SET_ROW, SPLIT_TITLES, evaluate  # noqa: E402
from dnadet_tf.openset import DEFAULT_MEANS, DEFAULT_RADII, DEFAULT_SCORE, KNOWN_RATE, RADII, SCORES, parse_means  # noqa: E402
from dnadet_tf.predictor import KerasPredictor  # noqa: E402
from dnadet_tf.runs import RunDir, write_json_atomic  # noqa: E402
from dnadet_tf.selection import SELECTION_RULES  # noqa: E402
from dnadet_tf.zoo import ensure_zoo  # noqa: E402

DEFAULT_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "open-set-demo.json")


def seed_figures(run_dir, zoo, recalibrate, known_rate=KNOWN_RATE, radii=DEFAULT_RADII, means=DEFAULT_MEANS):
    """One run's figures: calibration report, per-split ECE before/after and share flagged unknown, open-set
    metrics."""
    if (recalibrate or calibrated_known_rate(run_dir, default=None) != known_rate
            or calibrated_radii(run_dir) != radii or calibrated_means(run_dir) != means):
        calibrate_run(run_dir, DEFAULT_SCORE, known_rate=known_rate, radii=radii, means=means)
    with open(os.path.join(run_dir, CALIBRATION_FILE), encoding="utf-8") as f:
        calibration = json.load(f)
    rows = evaluate(KerasPredictor(run_dir), [zoo], progress=lambda m: print(m, flush=True))
    write_json_atomic(os.path.join(run_dir, "evaluation", "open_set.json"), rows)
    known = {row["name"]: row["metrics"] for row in rows if row.get("kind") != OPEN_SET_ROW}
    open_set = next(row["metrics"] for row in rows if row.get("kind") == OPEN_SET_ROW)
    return {
        "run": run_dir,
        "calibration": calibration,
        "ece": {name: {"before": m["ece_uncalibrated"], "after": m["ece"], "accuracy": m["accuracy"]}
                for name, m in known.items()},
        "flagged_unknown": {name: m["flagged_unknown"] for name, m in known.items()},
        "open_set": open_set,
    }


def trained_with(run_dir):
    """{"precision", "select"} of a run, as its config.json records them."""
    config = RunDir(run_dir).config
    return {"precision": config.runtime.precision, "select": config.loop.select}


def aggregate(per_seed):
    splits = list(per_seed[0]["ece"])
    return {
        "ece": {split: {key: mean_std_figures([s["ece"][split][key] for s in per_seed]) for key in ("before", "after")}
                for split in splits},
        "open_set": {
            "stored_score": per_seed[0]["open_set"]["score"],
            "open_set_accuracy": mean_std_figures([s["open_set"]["open_set_accuracy"] for s in per_seed]),
            "unknown_flagged": mean_std_figures([s["open_set"]["unknown_flagged"] for s in per_seed]),
            "known_flagged": mean_std_figures([s["open_set"]["known_flagged"] for s in per_seed]),
            "by_score": {score: {key: mean_std_figures([s["open_set"]["by_score"][score][key] for s in per_seed])
                                 for key in ("auroc", "fpr_at_95_tpr")} for score in SCORES},
            "auroc_by_group": {group: mean_std_figures([s["open_set"]["auroc_by_group"][group] for s in per_seed])
                               for group in per_seed[0]["open_set"]["auroc_by_group"]},
        },
        "temperature": mean_std_figures([s["calibration"]["temperature"] for s in per_seed]),
        "known_rate": per_seed[0]["calibration"]["known_rate"],
        "radii": per_seed[0]["calibration"].get("radii") or "shared",
        "means": per_seed[0]["calibration"].get("means") or DEFAULT_MEANS,
        "flagged_unknown": {split: mean_std_figures([s["flagged_unknown"][split] for s in per_seed]) for split in splits
                            if all(s.get("flagged_unknown", {}).get(split) is not None for s in per_seed)},
    }


SPLIT_ORDER = [SPLIT_TITLES[split] for split in EVALUATION_SPLITS]  # as evaluate names its rows


def in_order(splits):
    """Split names in the paper's order, any others after them."""
    return sorted(splits, key=lambda name: SPLIT_ORDER.index(name) if name in SPLIT_ORDER else len(SPLIT_ORDER))


def markdown(document):
    summary = document["summary"]
    trained = f", {document['precision']}, rule {document['select']}" if "select" in document else ""
    lines = [f"Open set ({document['method']}, {document['preset']} preset{trained}, {len(document['seeds'])} seeds; "
             f"unknowns: {', '.join(summary['open_set']['auroc_by_group'])}; known: closed-set test)", "",
             "| score | AUROC % | FPR at 95 % TPR % |", "|---|---|---|"]
    for score in SCORES:
        figures = summary["open_set"]["by_score"][score]
        stored = " (stored)" if score == summary["open_set"]["stored_score"] else ""
        lines.append(f"| {score}{stored} | {mean_std_cell(figures['auroc'])} "
                     f"| {mean_std_cell(figures['fpr_at_95_tpr'])} |")
    o = summary["open_set"]
    flagged = summary.get("flagged_unknown", {})
    if flagged:
        known_rate = summary.get("known_rate", KNOWN_RATE)
        shown = in_order(flagged)
        radii = (", per-class radii" if summary.get("radii") == "per-class" else "") + (
            ", distances to the nearest training image" if summary.get("means") == "image" else
            f", distances to the nearest of {summary['means']} k-means centres" if isinstance(summary.get("means"), int)
            else "")
        lines += ["", f"Share flagged unknown at the stored threshold (known rate {known_rate:g}{radii}), %:", "",
                  "| unknown architectures | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|",
                  f"| {mean_std_cell(o['unknown_flagged'])} | "
                  + " | ".join(mean_std_cell(flagged[name]) for name in shown) + " |"]
    lines += ["", f"Open-set accuracy {mean_std_cell(o['open_set_accuracy'])} %; unknown images flagged "
                  f"{mean_std_cell(o['unknown_flagged'])} %, known flagged {mean_std_cell(o['known_flagged'])} %; "
                  "AUROC per unknown family: "
                  + ", ".join(f"{g} {mean_std_cell(v)}" for g, v in o["auroc_by_group"].items()) + ".", "",
              f"Calibration (temperature {mean_std_cell(summary['temperature'], 1.0, 2)}): ECE %, 15 bins", "",
              "| split | before | after |", "|---|---|---|"]
    for split in in_order(summary["ece"]):
        figures = summary["ece"][split]
        lines.append(f"| {split} | {mean_std_cell(figures['before'])} | {mean_std_cell(figures['after'])} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("runs", "zoo-table"))
    parser.add_argument("--zoo", help="benchmark folder with open_set.txt (default: the cached demo zoo)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variant", default="base_pcl", choices=sorted(VARIANT_NAMES))
    parser.add_argument("--pretrained", help="step-1 run dir (or 'packaged') for the +PT variants (default: "
                        "ablate's: the step 1 shipped for the preset)")
    parser.add_argument("--recalibrate", action="store_true", help="refit runs that are already calibrated")
    parser.add_argument("--known-rate", type=float, default=KNOWN_RATE, metavar="Q",
                        help="share of validation images the threshold keeps as known (calibrate --known-rate)")
    parser.add_argument("--radii", choices=RADII, default=DEFAULT_RADII,
                        help="scale of the stored distance score (calibrate --radii); runs calibrated otherwise "
                             "are calibrated again")
    parser.add_argument("--means", type=parse_means, default=DEFAULT_MEANS,
                        help="what the stored distance score measures to (calibrate --means); runs calibrated "
                             "otherwise are calibrated again")
    parser.add_argument("--json", default=DEFAULT_JSON)
    parser.add_argument("--precision", choices=PRECISION_CHOICES,
                        help="precision of the runs it trains (default: the cpu preset's, as fit trains them)")
    parser.add_argument("--select", choices=SELECTION_RULES,
                        help="rule that picks each run's best.keras (default: the cpu preset's, as fit)")
    args = parser.parse_args(argv)
    configure_runtime()
    began = time.time()
    zoo = args.zoo or ensure_zoo("demo")
    trained = ablate(zoo, args.out, preset="cpu", pretrained=args.pretrained, seeds=range(args.seeds),
                     variants=[args.variant], fit_overrides={"precision": args.precision, "select": args.select})
    per_seed = [seed_figures(os.path.join(args.out, args.variant, f"seed{seed}"), zoo, args.recalibrate,
                             args.known_rate, args.radii, args.means) for seed in range(args.seeds)]
    uses_pt = {folder: pt for folder, _, pt in VARIANTS}[args.variant]
    document = {"zoo": os.path.abspath(zoo), "method": VARIANT_NAMES[args.variant], "preset": "cpu",
                "pretrained": trained["pretrained"] if uses_pt else None, "seeds": list(range(args.seeds)),
                **trained_with(os.path.join(args.out, args.variant, "seed0")),
                "command": "python benchmarks/open_set_table.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                "per_seed": per_seed, "summary": aggregate(per_seed), "seconds": round(time.time() - began)}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    write_json_atomic(args.json, document)
    print(markdown(document))
    print(f"\nwrote {args.json}; total {document['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

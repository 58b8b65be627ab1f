"""The paper's ablations (Table 2) on one benchmark: Base, Base+PT, Base+PCL
and Base+PT+PCL (DNA-Det), trained with the same data, preset and seed."""
import json
import os
import sys

from dnadet_tf import runs
from dnadet_tf.evaluation import evaluate
from dnadet_tf.predictor import KerasPredictor
from dnadet_tf.pretraining import pretrain
from dnadet_tf.training import fit

VARIANTS = (
    # (name, folder, mode, uses pre-training)
    ("Base", "base", "base", False),
    ("Base+PT", "base_pt", "base", True),
    ("Base+PCL", "base_pcl", "dnadet", False),
    ("Base+PT+PCL (DNA-Det)", "dnadet", "dnadet", True),
)


def default_photos():
    """The demo photo set shipped with the package (dnadet_tf/zoo/demo_photos)."""
    from dnadet_tf.zoo.photos import PACKAGED_PHOTOS

    return PACKAGED_PHOTOS


def ablate(zoo, out, preset="cpu", pretrained=None, photos=None, steps=None, pretrain_steps=None,
           seed=0, output=None):
    """Runs the four variants on benchmark `zoo` into `out/<variant>/`; a variant
    whose evaluation is already written is reused, so an interrupted ablation
    resumes. Writes `out/ablation.md` and `out/ablation.json`; returns the rows."""
    output = output or sys.stdout
    os.makedirs(out, exist_ok=True)
    if pretrained is None:
        pretrained = os.path.join(out, "pretrain")
        if not os.path.isfile(os.path.join(pretrained, runs.BEST_MODEL)):
            print(f"no --pretrained run given: pre-training into {pretrained}", file=output, flush=True)
            pretrain(photos or default_photos(), pretrained, preset=preset, overwrite=True,
                     steps=pretrain_steps, seed=seed, output=output)
    rows = []
    for name, folder, mode, uses_pt in VARIANTS:
        run_dir = os.path.join(out, folder)
        result_path = os.path.join(run_dir, "evaluation", "evaluation.json")
        if os.path.isfile(result_path):
            print(f"{name}: reusing {result_path}", file=output, flush=True)
            with open(result_path, encoding="utf-8") as f:
                evaluation = json.load(f)
        else:
            print(f"== {name}: training into {run_dir}", file=output, flush=True)
            fit(zoo, run_dir, preset=preset, overwrite=True, steps=steps, mode=mode, seed=seed,
                init=pretrained if uses_pt else None, output=output)
            evaluation = evaluate(KerasPredictor(run_dir), [zoo], out_dir=os.path.join(run_dir, "evaluation"),
                                  progress=lambda m: print(m, file=output, flush=True))
            runs.write_json_atomic(result_path, evaluation)
        rows.append({"variant": name, "run_dir": run_dir,
                     "accuracy": {row["name"]: row["metrics"]["accuracy"] for row in evaluation},
                     "macro_f1": {row["name"]: row["metrics"]["macro_f1"] for row in evaluation}})
    runs.write_json_atomic(os.path.join(out, "ablation.json"),
                           {"zoo": os.path.abspath(zoo), "preset": preset, "pretrained": pretrained, "rows": rows})
    table = format_ablation(rows)
    runs.write_text_atomic(os.path.join(out, "ablation.md"), table + "\n")
    print(table, file=output, flush=True)
    return rows


def format_ablation(rows):
    """Markdown table: accuracy (%) per split per variant."""
    splits = list(rows[0]["accuracy"]) if rows else []
    lines = ["| method | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    for row in rows:
        lines.append(f"| {row['variant']} | " + " | ".join(f"{100 * row['accuracy'][s]:.2f}" for s in splits) + " |")
    return "\n".join(lines)

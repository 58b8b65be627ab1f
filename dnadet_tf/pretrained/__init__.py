"""Step-1 weights shipped with the package, so that `fit` can train the full method (DNA-Det) with
no pre-training run of its own.

`--init` (config `init`) takes a run dir, `packaged` (the step-1 run shipped here for the preset, in
`dnadet_tf/pretrained/step1-<preset>/`: its best.keras and `provenance.json`, which names the command
that made it from the photos shipped with the package, `dnadet_tf/zoo/demo_photos`), or `none`
(random initialisation: the paper's Base+PCL, or Base with `--base`).
"""
import json
import os

from dnadet_tf.errors import DnadetError

PACKAGED = "packaged"
NO_INIT = "none"
FOLDER = os.path.dirname(os.path.abspath(__file__))
PROVENANCE_FILE = "provenance.json"


def packaged_run(preset):
    """The folder of the step-1 run shipped for `preset` (a run dir with best.keras), or None."""
    path = os.path.join(FOLDER, f"step1-{preset}")
    return path if os.path.isfile(os.path.join(path, "best.keras")) else None


def provenance(preset):
    """{"command", "commit", ...} of the shipped step-1 run of `preset`, or None."""
    path = packaged_run(preset)
    return read_provenance(path) if path is not None else None


def read_provenance(folder):
    """The provenance.json in `folder` (a shipped step-1 run) as a dict, or None when it has none."""
    path = os.path.join(folder, PROVENANCE_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def resolve_init(init, preset):
    """The run dir that `init` names: "" for none, the shipped run for `packaged`, else `init` itself.

    Raises DnadetError when `packaged` is asked for a preset that ships none.
    """
    if not init or init == NO_INIT:
        return ""
    if init != PACKAGED:
        return init
    path = packaged_run(preset)
    if path is None:
        shipped = sorted(name[len("step1-"):] for name in os.listdir(FOLDER)
                         if name.startswith("step1-") and packaged_run(name[len("step1-"):]))
        raise DnadetError(
            f"init: expected a run dir or 'none' for preset {preset!r}, received {PACKAGED!r}: step-1 weights are "
            f"shipped for preset(s) {', '.join(shipped) or 'none'} only; pre-train with 'dnadet-tf pretrain' "
            f"and pass --init RUN, or --init none.")
    return path


def ship(run_dir, command, commit, folder=None):
    """Copies step-1 run `run_dir`'s best.keras into the package as its preset's shipped step 1 and
    writes provenance.json beside it: `command` and `commit` that made the run, its config, the kept
    validation (170-way and family accuracy on held-out photos) and the file's SHA-256.

    Returns the provenance dict.
    """
    import hashlib
    import shutil

    from dnadet_tf.runs import RunDir, write_json_atomic
    from dnadet_tf.selection import pick

    run = RunDir(run_dir)
    config = run.config
    records = run.validation_records()
    kept = pick(records, config.loop.select, config.loop.metric)
    target = os.path.join(folder or FOLDER, f"step1-{config.preset}")
    os.makedirs(target, exist_ok=True)
    shutil.copyfile(run.best_model_path, os.path.join(target, "best.keras"))
    with open(os.path.join(target, "best.keras"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    document = {
        "command": command, "commit": commit, "preset": config.preset, "seed": config.runtime.seed,
        "kept_step": kept, "last_step": records[-1]["step"] if records else None,
        "kept_validation": next(r for r in records if r["step"] == kept),
        "best_keras_sha256": digest, "config": config.to_dict(),
    }
    write_json_atomic(os.path.join(target, PROVENANCE_FILE), document)
    return document

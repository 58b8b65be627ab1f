"""The paper's ablations (Table 2) on one benchmark, over several training seeds.

Base, Base+PT, Base+PCL and Base+PT+PCL (DNA-Det) are trained with the same
data and preset, once per training seed; every split is reported as mean and
standard deviation over the seeds, and the JSON keeps each seed's numbers
(one run is an anecdote) and the benchmark's SHA-256 (`zoo_sha256`,
`data.benchmark_digest`), which tells whether two results share a benchmark.
With `compare_select`, every run keeps its validated models and the cross-tests
are also reported for the model each selection rule (`selection.py`) would have
kept, so the rules are compared on the same runs.

Layout of `out`:
    out/pretrain/                     step 1 (when no `pretrained` run is given)
    out/<variant>/seed<N>/            one run dir per variant and seed
    out/<variant>/seed<N>/evaluation/evaluation.json      best.keras on every split
    out/<variant>/seed<N>/evaluation/step-NNNNNN.json     a validated model (compare_select), with the zoo digest
    out/ablation.json, out/ablation.md
"""
import hashlib
import json
import os
import sys
import time

import numpy as np

from dnadet_tf import runs
from dnadet_tf.config import make_config, paper_name
from dnadet_tf.data import benchmark_digest, file_sha256, find_images, is_benchmark_dir
from dnadet_tf.errors import DnadetError
from dnadet_tf.evaluation import EVALUATION_SPLITS, SPLIT_TITLES, evaluate
from dnadet_tf.machine import describe_machine
from dnadet_tf.predictor import KerasPredictor
from dnadet_tf.pretrained import NO_INIT, PACKAGED, packaged_run, provenance
from dnadet_tf.pretraining import pretrain
from dnadet_tf.selection import SELECTION_RULES, average_weights, averaged_steps, pick
from dnadet_tf.training import fit, same_path

# (folder, mode, uses pre-training); the paper's name follows from mode and pre-training.
VARIANTS = (
    ("base", "base", False),
    ("base_pt", "base", True),
    ("base_pcl", "dnadet", False),
    ("dnadet", "dnadet", True),
)
VARIANT_NAMES = {folder: paper_name(mode, pt) for folder, mode, pt in VARIANTS}
# With compare_select, training runs to its step budget so that every rule sees every validation.
NO_EARLY_STOP = 10**6
PRETRAINED_FILE = "pretrained.json"  # in ablate's own step 1 (OUT/pretrain): its summary, written once it finished


def default_photos():
    """The demo photo set shipped with the package (dnadet_tf/zoo/demo_photos)."""
    from dnadet_tf.zoo.photos import PACKAGED_PHOTOS

    return PACKAGED_PHOTOS


def checked_variants(variants):
    """The entries of VARIANTS that `variants` names (None: all four), in VARIANTS' order: `variants` is an iterable
    of their folder names or a comma list of them (the command's `--variants`). Raises DnadetError naming the choices
    for an unknown name or none."""
    given = variants
    if isinstance(variants, str):
        variants = variants.split(",")
    known = [folder for folder, _, _ in VARIANTS]
    names = None if variants is None else [str(name).strip() for name in variants if str(name).strip()]
    if names is not None and (not names or any(name not in known for name in names)):
        raise DnadetError(f"variants: expected a comma list of {', '.join(known)} (one or more), received {given!r}.")
    return [v for v in VARIANTS if names is None or v[0] in names]


def checked_seeds(seeds):
    """`seeds` as a list: one or more distinct training seeds, integers of 0 or above. Raises DnadetError naming what
    was received otherwise (no seed, a negative one or one that is no integer, one twice: its run would count
    twice)."""
    iterable = hasattr(seeds, "__iter__") and not isinstance(seeds, (str, bytes))
    received = list(seeds) if iterable else seeds
    if not iterable or not received or any(
            isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0 for seed in received
    ) or len(set(received)) != len(received):
        said = "none" if received == [] else repr(received)
        raise DnadetError(f"seeds: expected one or more distinct training seeds (integers of 0 or above), "
                          f"received {said}.")
    return [int(seed) for seed in received]


def photo_set_digest(folder):
    """SHA-256 of the photos in `folder`: every image file's path relative to it and its bytes, whatever the folder's
    own path; None when it is no folder. Tells the packaged photos from others wherever the package is installed."""
    if not os.path.isdir(folder):
        return None
    digest = hashlib.sha256()
    for name, path in sorted((os.path.relpath(path, folder).replace(os.sep, "/"), path)
                             for path in find_images(folder)):
        digest.update(name.encode() + b"\0" + file_sha256(path))
    return digest.hexdigest()


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _split_figures(evaluation):
    """{split: {"accuracy": a, "macro_f1": f, "real_recall": r or None}} of an evaluation's rows."""
    return {
        row["name"]: {
            "accuracy": row["metrics"]["accuracy"],
            "macro_f1": row["metrics"]["macro_f1"],
            "real_recall": row["metrics"]["per_class_recall"].get("real"),
        }
        for row in evaluation if row.get("kind") != "open_set"
    }


def _evaluate_model(run_dir, zoo, result_path, model_file=None, output=None, zoo_sha256=None):
    """Evaluation rows of one model of a run on every split of `zoo`, cached in `result_path`.

    Without `zoo_sha256` the cache is the rows alone, reused whatever zoo asks (best.keras's evaluation.json: `ablate`
    checks first that the run was trained on `zoo`). With it the cache is {"zoo", "zoo_sha256", "rows"}, reused only
    for a zoo of that digest (`data.benchmark_digest`): a cache of another zoo, or one written before it recorded its
    zoo (rows alone), is measured again and replaced (`evaluate_validated`: any zoo may ask for a validated model)."""
    cached = _read_json(result_path) if os.path.isfile(result_path) else None
    if cached is not None and zoo_sha256 is None:
        return cached
    if isinstance(cached, dict) and cached.get("zoo_sha256") == zoo_sha256 and isinstance(cached.get("rows"), list):
        return cached["rows"]
    out_dir = os.path.dirname(result_path) if model_file is None else None
    rows = evaluate(KerasPredictor(run_dir, model_file=model_file), [zoo], out_dir=out_dir,
                    progress=lambda m: print(m, file=output, flush=True))
    os.makedirs(os.path.dirname(result_path), exist_ok=True)
    runs.write_json_atomic(result_path, rows if zoo_sha256 is None else
                           {"zoo": os.path.abspath(zoo), "zoo_sha256": zoo_sha256, "rows": rows})
    return rows


# Settings a finished run may differ in from an ablation that reuses it: which validated models are kept and
# which one is best.keras (every rule's figures are measured from the kept models, `--compare-select`).
SELECTION_SETTINGS = ("select", "average_last", "keep_validated", "patience")


def _stopped_in_training(run_dir):
    """Whether `run_dir` holds a run with a checkpoint, which `fit` or `pretrain` can continue (`resume`)."""
    run = runs.RunDir(run_dir)
    return run.holds_run and run.has_checkpoint


def _finished(run_dir):
    """Whether `run_dir` holds a run this ablation finished training (its training.json or evaluation.json)."""
    return any(os.path.isfile(os.path.join(run_dir, "evaluation", name))
               for name in ("training.json", "evaluation.json"))


def _training_data(zoo, validation):
    """What `fit` trains on: the benchmark `zoo` (its train.txt, validated on its val.txt or a held-out share), or
    without `validation` its train.txt alone (a list, not a benchmark: no val.txt)."""
    return zoo if validation else os.path.join(zoo, "train.txt")


def _fit_settings(mode, pretrained, seed, steps, compare_select, fit_overrides):
    """The settings `fit` trains one run with: `fit_overrides` (but `frozen_stages` without a step 1: a variant
    without one trains every layer), with `compare_select` every validated model kept and no early stop, and the
    run's `steps`, `mode`, `seed` and `init` (`pretrained`, else random weights)."""
    settings = dict(fit_overrides or {})
    if not pretrained:
        settings.pop("frozen_stages", None)
    if compare_select:
        settings.update(keep_validated=True, patience=NO_EARLY_STOP)
    return dict(settings, steps=steps, mode=mode, seed=seed, init=pretrained or NO_INIT)


def _validation_words(val_split, validated):
    """How a run is validated, in the words of ablate's flags: a held-out share, the zoo's val.txt, or none."""
    if val_split:
        return f"`val_split` {val_split}"
    if validated:
        return "the zoo's val.txt as validation images (no `val_split`)"
    return "no validation images (validation=False, --no-validation)"


def _validation_difference(config, val_split, validation):
    """(how run `config` was validated, how this ablation validates) when they differ, else None."""
    existing = _validation_words(config.val_split, bool(config.val))
    asked = _validation_words(val_split, validation)
    return None if existing == asked else (f"trained with {existing}", f"trains with {asked}")


def _data_difference(config, data):
    """(the data run `config` was trained on, `data`) when they differ, else None."""
    if config.data and config.data != os.path.abspath(data):
        return f"trained on {config.data}", f"trains on {os.path.abspath(data)}"
    return None


def _kept_models_difference(config, compare_select):
    """The difference when `compare_select` needs the validated models that run `config` did not keep, else None."""
    if compare_select and not config.loop.keep_validated:
        return ("trained without `compare_select` (no validated models kept to compare the selection rules on)",
                "asks for it")
    return None


def _init_difference(config, init):
    """(the step 1 run `config` started from, `init`: this ablation's, NO_INIT for random weights) when they
    differ, else None; two spellings of one folder are the same step 1."""
    asked = "" if init == NO_INIT else init  # as config.json holds random weights
    if config.init == asked or (config.init and asked and same_path(config.init, asked)):
        return None
    return (f"trained from step 1 {config.init!r}",
            f"trains from {asked!r} (chosen by `pretrained`, else by `photos`, `pretrain_steps` and `width`)")


# Settings of a run's config.json compared apart (`_validation_difference`, `_data_difference`, `_init_difference`,
# the preset first) or that a reused run may differ in (SELECTION_SETTINGS).
COMPARED_APART = SELECTION_SETTINGS + ("preset", "val_split", "val", "data", "init")
NO_EXTRA_REAL = ("", "none")  # two spellings of `extra_real` off
EXTRA_REAL_WORDS = NO_EXTRA_REAL + ("auto", "packaged")  # the values of `extra_real` that name no folder


def _same_setting(key, stored, asked):
    """Whether flat parameter `key` holds one setting as `stored` (a run's config.json) and as `asked` (this
    ablation's config): equal values (config.json's lists and numbers read back as `make_config` makes them), or
    two spellings of `extra_real` off or of one `extra_real` folder."""
    if stored == asked:
        return True
    if key != "extra_real":
        return False
    if stored in NO_EXTRA_REAL and asked in NO_EXTRA_REAL:
        return True
    return stored not in EXTRA_REAL_WORDS and asked not in EXTRA_REAL_WORDS and same_path(stored, asked)


def _settings_difference(config, preset, settings):
    """(the first setting of run `config` with another value than this ablation trains, this ablation's value) in
    words, or None. This ablation's values are those of the config `fit` makes of `preset` and `settings`
    (`_fit_settings`; `make_config`): omitted ones at the preset's, precision `auto` as this machine resolves it
    (the run's config.json holds it resolved). The preset is compared first; the selection settings may differ, and
    `val_split`, the data and `init` are compared apart (`_validation_difference`, `_data_difference`,
    `_init_difference`)."""
    kept, intended = config.flat(), make_config(preset, **settings).flat()
    differences = [("preset", config.preset, preset)] if config.preset != preset else []
    differences += [(key, kept[key], intended[key]) for key in sorted(kept)
                    if key not in COMPARED_APART and not _same_setting(key, kept[key], intended[key])]
    if differences:
        key, stored, value = differences[0]
        return f"trained with {key} {stored!r}", f"trains {value!r}"
    return None


def _refuse_first(folder, differences, again):
    """Raises DnadetError with the first (what `folder` holds, what this ablation asks) of `differences` (None
    items: no difference), one line that says to pass another `out` or to remove `folder` to `again`."""
    for difference in differences:
        if difference:
            existing, asked = difference
            raise DnadetError(f"{folder}: {existing}, where this ablation {asked}; pass another `out`, or remove "
                              f"{folder} to {again}.")


def _require_trained_as(run_dir, preset, settings, zoo, validation, compare_select, finished=True):
    """Raises DnadetError when the run in `run_dir` was validated otherwise (`validation`, the val_split of
    `settings`) or trained on another zoo than this ablation's `zoo`; a `finished` one also when `compare_select`
    needs validated models it did not keep, or when it was trained from another step 1, with another preset or
    with another value of any training setting than `fit` would train with `settings` now (`_fit_settings`, those
    omitted at the preset's: `_settings_difference`; the selection settings may differ). A run stopped in training
    is continued by `fit`, whose resume refuses other values given for its settings (omitted ones keep the run's)."""
    _refuse_first(run_dir, _run_differences(run_dir, preset, settings, zoo, validation, compare_select, finished),
                  "train it again")


def _run_differences(run_dir, preset, settings, zoo, validation, compare_select, finished=True):
    """The (what the run in `run_dir` was trained with, what this ablation asks) that `_require_trained_as` checks,
    None for each that does not differ."""
    config = runs.RunDir(run_dir).config
    differences = [_validation_difference(config, settings.get("val_split"), validation),
                   _data_difference(config, _training_data(zoo, validation))]
    if finished:
        differences += [_kept_models_difference(config, compare_select), _init_difference(config, settings["init"]),
                        _settings_difference(config, preset, settings)]
    return differences


def _require_reusable_runs(zoo, out, variants, seeds, pretrained, preset, steps, compare_select, fit_overrides,
                           validation):
    """`_require_trained_as` for every run of this ablation already in `out` (finished, or stopped in training
    with its config.json): called before any training, so that a refusal comes before a step 1 is pre-trained and
    ablation.json rewritten."""
    for folder, mode, uses_pt in variants:
        for seed in seeds:
            run_dir = os.path.join(out, folder, f"seed{seed}")
            finished = _finished(run_dir)
            stopped = os.path.isfile(os.path.join(run_dir, runs.CONFIG_FILE)) and _stopped_in_training(run_dir)
            if finished or stopped:
                settings = _fit_settings(mode, pretrained if uses_pt else None, seed, steps, compare_select,
                                         fit_overrides)
                _require_trained_as(run_dir, preset, settings, zoo, validation, compare_select, finished)


def run_one(zoo, run_dir, mode, pretrained, seed, preset, steps, compare_select, fit_overrides, output,
            validation=True, zoo_sha256=None):
    """Trains (unless already trained: `ablate` checked such a run's settings first, `_require_reusable_runs`)
    and evaluates one variant for one seed; without `validation`, on the zoo's train.txt alone (no val.txt: what
    `fit` does with a folder tree and no --val).

    Returns {"seed", "seconds", "splits", "select": {rule: {"step", "splits"}}}.
    """
    result_path = os.path.join(run_dir, "evaluation", "evaluation.json")
    summary_path = os.path.join(run_dir, "evaluation", "training.json")
    if not _finished(run_dir):
        began = time.time()
        resume = _stopped_in_training(run_dir)  # it continues from its checkpoint: the same weights as in one go
        summary = fit(_training_data(zoo, validation), run_dir, preset=preset, overwrite=not resume, resume=resume,
                      output=output, **_fit_settings(mode, pretrained, seed, steps, compare_select, fit_overrides))
        summary["train_seconds"] = round(time.time() - began, 1)
        os.makedirs(os.path.dirname(summary_path), exist_ok=True)
        runs.write_json_atomic(summary_path, summary)
    if not os.path.isfile(result_path):
        _evaluate_model(run_dir, zoo, result_path, output=output)
    summary = _read_json(summary_path) if os.path.isfile(summary_path) else {}
    run = runs.RunDir(run_dir)
    config = run.config
    # the rule that picked best.keras, whose figures "splits" are: config.json's loop.select, but for a run without
    # validation data under a rule that needs it, `final` (the last step's model, as fit said)
    validated = bool(run.validation_records()) or config.loop.select == "average"
    result = {"seed": seed, "run_dir": run_dir, "seconds": summary.get("train_seconds"),
              "best_keras_rule": config.loop.select if validated else "final",
              "splits": _split_figures(_read_json(result_path))}
    if compare_select:
        records = run.validation_records()
        result["select"] = {}
        for rule in SELECTION_RULES:
            average = rule == "average"
            steps = (averaged_steps(records, config.loop.average_last) if average
                     else [pick(records, rule, config.loop.metric)])
            rows = evaluate_validated(run_dir, zoo, steps, average=average, output=output, zoo_sha256=zoo_sha256)
            result["select"][rule] = {"step": steps[-1], "splits": _split_figures(rows)}
            if average:
                result["select"][rule]["steps"] = steps
    return result


def evaluate_validated(run_dir, zoo, steps, average=False, output=None, zoo_sha256=None):
    """Evaluation rows of a kept validated model on every split of `zoo`, cached in RUN/evaluation/.

    `steps`: [step] for the validated model of that step (step-NNNNNN.json), or with `average`
    the steps whose models rule `average` averages (average-FIRST-LAST-COUNT.json, next to the
    averaged model's .keras file). The cache records the zoo's digest (`zoo_sha256`, computed when not given) and
    answers only that zoo: another zoo's, or a cache without a digest (written before it had one), is measured again.
    """
    if zoo_sha256 is None:
        zoo_sha256 = benchmark_digest(zoo)
    evaluation = os.path.join(run_dir, "evaluation")
    if average:
        name = f"average-{steps[0]:06d}-{steps[-1]:06d}-{len(steps)}"
        model_file = averaged_model_file(run_dir, steps, os.path.join(evaluation, name + ".keras"))
    else:
        (step,) = steps
        name = f"step-{step:06d}"
        model_file = runs.RunDir(run_dir).validated_model_path(step)
    return _evaluate_model(run_dir, zoo, os.path.join(evaluation, name + ".json"), model_file=model_file,
                           output=output, zoo_sha256=zoo_sha256)


def averaged_model_file(run_dir, steps, path):
    """Writes (unless it exists) and returns `path`: the mean of the run's validated models at `steps`,
    the model rule `average` keeps (`selection.average_weights`)."""
    if not os.path.isfile(path):
        run = runs.RunDir(run_dir)
        models = [run.load_model(run.validated_model_path(step)) for step in steps]
        models[-1].set_weights(average_weights([model.get_weights() for model in models]))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        runs.save_model_atomic(models[-1], path)
    return path


def mean_std(values):
    """(mean, population std) of a list of numbers; std is 0 for one value."""
    values = np.asarray([v for v in values if v is not None], np.float64)
    if not len(values):
        return None, None
    return float(values.mean()), float(values.std())


def mean_std_figures(values):
    """{"mean", "std", "values"} of a list of numbers (`mean_std`, the values kept): the summary entry of the
    result JSON files, which `mean_std_cell` reads."""
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "values": values}


def aggregate(seed_results, key="splits"):
    """{split: {figure: {"mean", "std", "values"}}} over the seeds' figures: those of best.keras
    (`key="splits"`) or those of the model a selection rule kept (`key` = the rule)."""
    per_seed = [r["splits"] if key == "splits" else r["select"][key]["splits"] for r in seed_results]
    table = {}
    for split, figures in per_seed[0].items():
        table[split] = {}
        for figure in figures:
            values = [splits[split][figure] for splits in per_seed]
            table[split][figure] = mean_std_figures(values)
    return table


def _step1_of(out, preset, pretrained, photos, pretrain_steps, width, variants):
    """The step 1 the +PT variants among `variants` start from: `pretrained` when given (or when no variant uses
    one); else the step 1 shipped for the preset when there is one, neither `photos` nor `pretrain_steps` is given
    and `width` is None or its width (it is what the pre-training would make: its provenance.json names the
    command); else the ablation's own, `out`/pretrain."""
    if pretrained is not None or not any(uses_pt for _, _, uses_pt in variants):
        return pretrained
    if (photos is None and pretrain_steps is None and packaged_run(preset)
            and width in (None, provenance(preset)["config"]["model"]["width"])):
        return PACKAGED
    return os.path.join(out, "pretrain")


def _packaged_photos(step1, folder):
    """Whether the ablation's own step 1 in `step1`, pre-trained on the photos in `folder`, was pre-trained on the
    photo set the package ships now (`photo_set_digest`), wherever the package was installed then: by the digest its
    PRETRAINED_FILE records (`photos_sha256`), else (a step 1 of before the record) that of `folder` if it is
    still there."""
    try:
        recorded = _read_json(os.path.join(step1, PRETRAINED_FILE)).get("photos_sha256")
    except (OSError, ValueError, AttributeError):
        recorded = None
    recorded = recorded or photo_set_digest(folder)
    return recorded is not None and recorded == photo_set_digest(default_photos())


def _require_pretrained_as(step1, preset, photos, steps, width):
    """Raises DnadetError when the ablation's own finished step 1 in `step1` was pre-trained with another preset, on
    other `photos`, for other `steps` or at another `width` (None: the packaged photos, the preset's) than this
    ablation pre-trains. The packaged photos stay the same photos when the package moves (reinstalled from another
    folder): their path differs, their photo set does not (`_packaged_photos`). One stopped in training is continued
    by `pretrain`, whose resume refuses other photos or another width; one without config.json has no settings to
    compare."""
    if not all(os.path.isfile(os.path.join(step1, name)) for name in (PRETRAINED_FILE, runs.CONFIG_FILE)):
        return
    config = runs.RunDir(step1).config
    asked = make_config(preset, width=width)
    stored_photos = config.data
    if photos is None and stored_photos != os.path.abspath(default_photos()) and _packaged_photos(step1, stored_photos):
        stored_photos = os.path.abspath(default_photos())  # pre-trained on them where the package was then
    differences = [("preset", config.preset, preset),
                   ("photos", stored_photos, os.path.abspath(photos or default_photos())),
                   ("pretrain_steps", config.loop.steps, asked.pretrain.steps if steps is None else steps),
                   ("width", config.model.width, asked.model.width)]
    _refuse_first(step1, [(f"pre-trained with `{key}` {stored!r}", f"pre-trains with {value!r}")
                          for key, stored, value in differences if stored != value], "pre-train it again")


def _pretrain_own(step1, preset, photos, steps, width, output):
    """Pre-trains the ablation's own step 1 into `step1` (seed 0) unless it finished (its PRETRAINED_FILE, the
    summary, written last); one stopped part-way continues from its checkpoint (its best.keras is not the
    finished one's)."""
    finished = os.path.join(step1, PRETRAINED_FILE)
    if os.path.isfile(finished):
        return
    resume = _stopped_in_training(step1)
    print(f"no pre-trained run given: pre-training into {step1}" + (" (continuing the stopped one)" if resume else ""),
          file=output, flush=True)
    digest = photo_set_digest(photos or default_photos())  # the photo set it pre-trains on, recorded with the summary
    summary = pretrain(photos or default_photos(), step1, preset=preset, overwrite=not resume, resume=resume,
                       steps=steps, seed=0, output=output, width=width)
    runs.write_json_atomic(finished, {**(summary or {}), "photos_sha256": digest})


FOLDER_OF_NAME = {name: folder for folder, name in VARIANT_NAMES.items()}


def _variant_rank(folder):
    """The place of variant `folder` in VARIANTS (others after them)."""
    order = [name for name, _, _ in VARIANTS]
    return order.index(folder) if folder in order else len(order)


def _variant_entry(folder, seed_results, compare_select):
    """A variant's entry of ablation.json: its seeds' results and their mean ± std (`aggregate`)."""
    entry = {"variant": VARIANT_NAMES[folder], "folder": folder, "seeds": seed_results,
             "summary": aggregate(seed_results)}
    if compare_select:
        entry["select"] = {rule: aggregate(seed_results, rule) for rule in SELECTION_RULES}
    return entry


def _earlier_results(zoo, out, zoo_sha256, variants, seeds, step1, own_step1, preset, photos, pretrain_steps, steps,
                     compare_select, fit_overrides, validation):
    """({folder: [seed result]}, [(folder, seed, why)]): the seed results of `out`/ablation.json (an earlier ablation
    into `out`) that this one does not rerun (a variant or seed not among `variants` and `seeds`) and would reuse as
    they are had it been asked for them, and those it would not reuse (why, in words). Reused: measured on this
    `zoo` (`zoo_sha256`), its run dir still a finished run trained as this ablation would train it
    (`_run_differences`: the selection settings aside), for a +PT variant from `step1` (the step 1 this ablation's +PT
    variants start from; `own_step1` when pre-trained in `out`: finished before this ablation and pre-trained as it
    would pre-train it), with `compare_select` the figures of every selection rule measured. Called before any
    training or pre-training."""
    path = os.path.join(out, "ablation.json")
    if not os.path.isfile(path):
        return {}, []
    try:
        earlier = _read_json(path)
        candidates = [(entry.get("folder") or FOLDER_OF_NAME[entry["variant"]], int(result["seed"]), result)
                      for entry in earlier["variants"] for result in entry["seeds"]]
        measured_on = earlier.get("zoo_sha256")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:  # not a table ablate wrote
        return {}, [(None, None, f"unreadable ({type(error).__name__}: {error})")]
    step1_why = None
    if own_step1:
        if not os.path.isfile(os.path.join(own_step1, PRETRAINED_FILE)):
            step1_why = f"its step 1 {own_step1} not finished"
        else:
            try:
                _require_pretrained_as(own_step1, preset, photos, pretrain_steps, (fit_overrides or {}).get("width"))
            except DnadetError:
                step1_why = f"its step 1 {own_step1} pre-trained otherwise"
    modes = {folder: (mode, uses_pt) for folder, mode, uses_pt in VARIANTS}
    seen = {(folder, seed) for folder, _, _ in variants for seed in seeds}  # rerun now
    kept, dropped = {}, []
    for folder, seed, result in candidates:
        if (folder, seed) in seen:
            continue
        seen.add((folder, seed))
        run_dir = os.path.join(out, folder, f"seed{seed}")
        why = None
        if folder not in modes:
            why = "not a variant ablate trains"
        elif measured_on and measured_on != zoo_sha256:
            why = f"measured on zoo_sha256 {str(measured_on)[:16]}, not {zoo_sha256[:16]}"
        elif not (_finished(run_dir) and os.path.isfile(os.path.join(run_dir, "evaluation", "evaluation.json"))):
            why = f"no finished run in {run_dir}"
        elif compare_select and not all(rule in result.get("select", {}) for rule in SELECTION_RULES):
            why = "measured without `compare_select`"
        elif result.get("splits") != _evaluated_splits(run_dir):
            why = f"its figures are not those of {os.path.join(run_dir, 'evaluation', 'evaluation.json')}"
        elif modes[folder][1] and step1_why:
            why = step1_why
        else:
            mode, uses_pt = modes[folder]
            settings = _fit_settings(mode, step1 if uses_pt else None, seed, steps, compare_select, fit_overrides)
            try:
                difference = next((d for d in _run_differences(run_dir, preset, settings, zoo, validation,
                                                               compare_select) if d), None)
            except DnadetError as error:  # no readable config.json
                difference = (str(error).rstrip("."), None)
            if difference:
                why = difference[0] + (f", where this ablation {difference[1]}" if difference[1] else "")
        if why:
            dropped.append((folder, seed, why))
        else:
            kept.setdefault(folder, []).append(
                result if compare_select else {key: value for key, value in result.items() if key != "select"})
    return kept, dropped


def _evaluated_splits(run_dir):
    """The figures of best.keras of a finished run on every split, as `run_one` reads them (None if unreadable)."""
    try:
        return _split_figures(_read_json(os.path.join(run_dir, "evaluation", "evaluation.json")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _seed_words(pairs):
    """"Base seeds 1, 2; DNA-Det seed 0" for [(folder, seed)] (in VARIANTS order)."""
    by_variant = {}
    for folder, seed in pairs:
        by_variant.setdefault(folder, []).append(seed)
    return "; ".join(f"{VARIANT_NAMES.get(folder, folder)} seed{'s' if len(found) > 1 else ''} "
                     + ", ".join(str(seed) for seed in sorted(found))
                     for folder, found in sorted(by_variant.items(), key=lambda item: _variant_rank(item[0])))


def ablate(zoo, out, preset="cpu", pretrained=None, photos=None, steps=None, pretrain_steps=None,
           seeds=(0,), variants=None, compare_select=False, fit_overrides=None, output=None, validation=True):
    """Runs the variants on benchmark `zoo` for every training seed into `out`.

    Args:
      zoo: benchmark folder (train/val and the cross-test lists).
      out: folder for the runs and the tables.
      preset: preset of every run.
      pretrained: a `pretrain` run dir (or `packaged`) for the +PT variants; None takes the
        step 1 shipped for the preset (`dnadet_tf.pretrained`) when there is one, neither
        `photos` nor `pretrain_steps` is given and `fit_overrides` name no width but its own,
        else pre-trains once (seed 0, at that width) into out/pretrain. The same encoder
        serves every seed.
      seeds: training seeds of step 2: one or more distinct integers of 0 or above (`checked_seeds`).
      variants: folders of VARIANTS to run, or a comma list of them (default: all four); an unknown name or none
        is refused (`checked_variants`), as are bad `seeds`, before any work.
      compare_select: keep validated models and report every selection rule.
      fit_overrides: further TrainConfig values for every run (e.g. ce_input).
      validation: False trains every run on the zoo's train.txt alone, without its validation images
        (no early stopping, no calibration; best.keras by a rule that needs no validation figure, else the
        last step's model).

    A run whose evaluation is already written is reused, so an interrupted
    ablation resumes; one validated, trained or started otherwise (the selection
    settings aside), or an own step 1 pre-trained otherwise, is refused before
    any training. Writes out/ablation.json and out/ablation.md; returns the
    JSON document. A rerun with fewer `seeds` or `variants` keeps the earlier
    ablation.json's results of the others where it would reuse them as they are
    (`_earlier_results`) and names those it leaves out in one warning line.
    """
    output = output or sys.stdout
    variants, seeds = checked_variants(variants), checked_seeds(seeds)  # before any work
    if not (is_benchmark_dir(zoo) and os.path.isfile(os.path.join(zoo, "train.txt"))):  # before any step 1
        raise DnadetError(f"zoo {zoo}: expected a benchmark folder (classes.txt, train.txt and the cross-test lists, "
                          f"as 'dnadet-tf zoo build' writes), received {runs.describe_path(zoo)}.")
    if compare_select and not validation:
        raise DnadetError("compare_select: expected validation images to compare the selection rules on, received "
                          "validation=False (--no-validation).")
    for _, mode, _ in variants:  # the settings every run takes, checked before any step 1 (frozen stages need its
        # init, which is not there yet)
        make_config(preset, **{**{k: v for k, v in (fit_overrides or {}).items() if k != "frozen_stages"},
                               "steps": steps, "mode": mode})
    os.makedirs(out, exist_ok=True)
    width = (fit_overrides or {}).get("width")  # None: the preset's
    step1 = _step1_of(out, preset, pretrained, photos, pretrain_steps, width, variants)
    own_step1 = step1 if pretrained is None and step1 not in (None, PACKAGED) else None  # pre-trained here
    if own_step1:
        _require_pretrained_as(own_step1, preset, photos, pretrain_steps, width)
    _require_reusable_runs(zoo, out, variants, seeds, step1, preset, steps, compare_select, fit_overrides, validation)
    zoo_sha256 = benchmark_digest(zoo)
    # The earlier table's results of variants and seeds not rerun now stay in the new one when this ablation would
    # reuse them as they are (an ablation rerun with fewer `seeds` or `variants` replaced the whole table with a
    # smaller one); those it would not reuse are named in one line. Checked before any training or step 1.
    step1_all = _step1_of(out, preset, pretrained, photos, pretrain_steps, width, VARIANTS)
    own_all = step1_all if pretrained is None and step1_all not in (None, PACKAGED) else None
    kept, dropped = _earlier_results(zoo, out, zoo_sha256, variants, seeds, step1_all, own_all, preset, photos,
                                     pretrain_steps, steps, compare_select, fit_overrides, validation)
    table_path = os.path.join(out, "ablation.json")
    if kept:
        print(f"{table_path}: its results of " + _seed_words((f, r["seed"]) for f, results in kept.items()
                                                            for r in results)
              + " stay in the new table (not rerun; their runs are reused as they are)", file=output, flush=True)
    if dropped and dropped[0][0] is None:
        print(f"warning: {table_path}: {dropped[0][2]}; the new table holds this ablation's results alone",
              file=output, flush=True)
    elif dropped:
        print(f"warning: {table_path}: the new table leaves out its results of "
              + "; ".join(f"{VARIANT_NAMES.get(folder, folder)} seed {seed} ({why})" for folder, seed, why in dropped)
              + " (this ablation would not reuse them as they are; their run dirs are kept)", file=output, flush=True)
    if own_step1:
        _pretrain_own(own_step1, preset, photos, pretrain_steps, width, output)
    asked = [folder for folder, _, _ in variants]
    planned = sorted(set(asked) | set(kept), key=_variant_rank)
    uses_step1 = any(uses_pt for folder, _, uses_pt in VARIANTS if folder in planned)
    pretrained = step1 if step1 is not None or not uses_step1 else step1_all
    document = {"zoo": os.path.abspath(zoo), "zoo_sha256": zoo_sha256, "preset": preset, "steps": steps,
                "pretrained": pretrained,
                "seeds": sorted(set(seeds) | {r["seed"] for results in kept.values() for r in results}),
                "fit_overrides": dict(fit_overrides or {}), "compare_select": compare_select,
                "validation": validation, "variants": [], "complete": False,
                "planned": [VARIANT_NAMES[folder] for folder in planned],
                # which machine kind, and whether other work shared its cores when this ablation (re)started
                "machine": describe_machine()}
    entries = {folder: _variant_entry(folder, results, compare_select) for folder, results in kept.items()
               if folder not in asked}
    for folder, mode, uses_pt in variants:
        name = VARIANT_NAMES[folder]
        seed_results = []
        for seed in seeds:
            run_dir = os.path.join(out, folder, f"seed{seed}")
            print(f"== {name}, seed {seed}: {run_dir}", file=output, flush=True)
            seed_results.append(run_one(zoo, run_dir, mode, step1 if uses_pt else None, seed, preset,
                                        steps, compare_select, fit_overrides, output, validation, zoo_sha256))
        if kept.get(folder):  # the earlier table's results of other seeds, all in the order of their seeds
            seed_results = sorted(seed_results + kept[folder], key=lambda result: result["seed"])
        entries[folder] = _variant_entry(folder, seed_results, compare_select)
        document["variants"] = [entries[done] for done in planned if done in entries]
        document["complete"] = len(document["variants"]) == len(planned)
        # partial results survive, said so in both files
        runs.write_json_atomic(table_path, document)
        runs.write_text_atomic(os.path.join(out, "ablation.md"), format_ablation(document) + "\n")
    table = format_ablation(document)
    print(table, file=output, flush=True)
    return document


def mean_std_cell(stats, scale=100.0, digits=1):
    """A table cell for a `mean_std` dict: "97.5 ± 2.7" (fractions shown as %), "-" when its mean is None. Every
    table of mean ± std (ablate's, benchmarks/render_results.py's) is made here. The binary value is rounded (a
    std of 13.75 computed as 13.7499... shows 13.7): the figures quoted in README and docs/results.md are these."""
    if stats["mean"] is None:
        return "-"
    return f"{scale * stats['mean']:.{digits}f} ± {scale * stats['std']:.{digits}f}"


def _in_order(names, order):
    """`names` sorted as they come in `order`, any others after them alphabetically."""
    order = list(order)
    return sorted(names, key=lambda name: (order.index(name) if name in order else len(order), name))


def format_ablation(document, figure="accuracy"):
    """Markdown tables: mean ± std (%) over the seeds per split per variant, then,
    with compare_select, one row per variant and selection rule."""
    variants = document["variants"]
    if not variants:
        return ""
    # The paper's split order and the rules' order, also after a JSON round trip (written with sorted keys).
    splits = _in_order(variants[0]["summary"], [SPLIT_TITLES[s] for s in EVALUATION_SPLITS])
    seeds = len(document["seeds"])
    # a variant over fewer seeds (an earlier table's results kept for others: `_earlier_results`) says which
    fewer = ", ".join(f"{entry['variant']}: seed{'s' if len(entry['seeds']) > 1 else ''} "
                      + ", ".join(str(seed["seed"]) for seed in entry["seeds"])
                      for entry in variants if len(entry["seeds"]) != seeds)
    fewer = f" ({fewer})" if fewer else ""
    lines = [f"{figure} (%), mean ± std (population) over {seeds} training seed(s){fewer}", "",
             "| method | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    for entry in variants:
        lines.append(f"| {entry['variant']} | "
                     + " | ".join(mean_std_cell(entry["summary"][s][figure]) for s in splits) + " |")
    rules = {entry["variant"]: sorted({seed["best_keras_rule"] for seed in entry["seeds"] if "best_keras_rule" in seed})
             for entry in variants}
    if any(rules.values()):  # files written before the rule was recorded name none
        lines += ["", "best.keras by rule " + ", ".join(f"{' / '.join(rule)} ({name})" for name, rule in rules.items()
                                                        if rule)]
    if document.get("complete") is False:
        lines += ["", f"partial: {len(variants)} of the {len(document.get('planned', []))} variants finished (the "
                      f"ablation stopped, or runs still)"]
    if document.get("compare_select"):
        lines += ["", f"{figure} (%) of the model each selection rule keeps, mean ± std (population) over "
                      f"{seeds} seed(s){fewer}", "",
                  "| method | rule | " + " | ".join(splits) + " |", "|---|---|" + "---:|" * len(splits)]
        for entry in variants:
            for rule in _in_order(entry["select"], SELECTION_RULES):
                table = entry["select"][rule]
                lines.append(f"| {entry['variant']} | {rule} | "
                             + " | ".join(mean_std_cell(table[s][figure]) for s in splits) + " |")
    return "\n".join(lines)

"""Training recipes over one training function: `fit` (architecture classification, the
paper's step 2) and, in `pretraining`, `pretrain` (step 1). Both read and check their data,
start a `RunDir`, and call `train`."""
import os
import sys

from dnadet_tf.attacks import attack_fn
from dnadet_tf.config import (ALIGN_FIRST_STAGE, ENCODER_STAGES, SHIFT_FIRST_STAGE, TrainConfig, as_stored,
                              make_config, paper_name, path_parameter)
from dnadet_tf.data import (benchmark_split, file_identity, hold_out, is_benchmark_dir, read_dataset,
                            real_class_candidates, remap_to, repeated_files, require_several_classes, same_files,
                            usable_files)
from dnadet_tf.distribute import check_strategy, make_strategy
from dnadet_tf.errors import DataError, DnadetError, RunDirError
from dnadet_tf.extra_real import AUTO as AUTO_PHOTOS
from dnadet_tf.extra_real import NONE as NO_PHOTOS
from dnadet_tf.extra_real import PACKAGED as PACKAGED_PHOTOS
from dnadet_tf.extra_real import add_extra_real, added_crops, source_photos
from dnadet_tf.model import (LOGITS_LAYER, Backbone, Classifier, encoder_mismatch, encoder_weight_names,
                             transfer_matching_weights)
from dnadet_tf.pipeline import inference_dataset, training_dataset
from dnadet_tf.pretrained import NO_INIT, PACKAGED, read_provenance, resolve_init
from dnadet_tf.runs import CONFIG_FILE, METRICS_FILE, RunDir, read_by_tree
from dnadet_tf.trainer import Trainer
from dnadet_tf.transplant import training_transplant

# What a resumed run may change; everything else is the run's config.json.
RESUMABLE_OVERRIDES = ("steps", "val_every", "checkpoint_every", "log_every", "strategy", "jit")
# Settings that name a folder, with the values of each that name none: config.json records the folder as an absolute
# path (`settle_config`), and a resumed run takes it under any spelling (`same_folder_setting`).
FOLDER_SETTINGS = {"init": ("", NO_INIT, PACKAGED), "extra_real": ("", NO_PHOTOS, AUTO_PHOTOS, PACKAGED_PHOTOS)}
# What `fit` does with its validation images, and what to pass in place of a `val` of training images
# (`require_val_unlearned`).
FIT_ON_VAL = "the choice of best.keras, the temperature and the open-set threshold"
FIT_VAL_ADVICE = ("pass other labeled images as `val`, or `val_split` F in place of `val` to hold out a share of "
                  "`data`")


def load_init_weights(init_run, config, num_classes, partial=False, output=None, class_names=None):
    """A function that copies the matching weights of run `init_run`'s best.keras
    into a classifier and prints what it loaded and what it re-initialised.

    `init_run`: a run dir, or `packaged` for the step-1 run shipped for the config's preset
    (`dnadet_tf.pretrained`).

    Checks now, before any run dir is touched, that the encoder of `init_run`
    matches the one `config` builds (a head of another class count is expected
    and re-initialised); raises RunDirError naming the first mismatching weight
    unless `partial` (`--init-partial`) allows loading only what matches.
    With `class_names` (the new run's), the head follows the classes by name: loaded as it is for the
    same names in the same order, with its rows put in this run's order for the same names in
    another order, re-initialised for other names (a head of the same shape would otherwise answer
    the init run's classes under this run's names).
    """
    name = init_run
    if init_run == PACKAGED:
        init_run = resolve_init(init_run, config.preset)
        name = f"{PACKAGED} (the step 1 shipped for the {config.preset} preset, {init_run})"
    source_run = RunDir(init_run)
    if not os.path.isdir(init_run):
        found = ("a file: give the run dir that holds it" if os.path.isfile(init_run) else "no such folder")
        raise RunDirError(f"init {init_run}: expected a finished run dir (a folder with a best.keras), received "
                          f"{found}.")
    if not os.path.isfile(source_run.best_model_path):
        raise RunDirError(f"init {init_run}: no {os.path.basename(source_run.best_model_path)}; "
                          f"expected a finished run dir.")
    source = source_run.load_model()
    trained_at = init_magnification(init_run)
    if trained_at is not None and trained_at != config.preprocessing.resize2:
        size = config.preprocessing.resize2
        print(f"warning: --init {name}: it was trained on images resized to {trained_at} px, this run resizes "
              f"them to {size} px (--resize2); a step 2 at another magnification than its step 1 lost 5-50 points "
              f"on cross-tests (docs/results.md, \"The second resize, and a step 1 made at it\"): pre-train one at {size} px "
              f"('dnadet-tf pretrain ... --resize2 {size}') or train at {trained_at} px.", file=sys.stderr, flush=True)
    init_stem = source.backbone.zero_mean_stem
    if init_stem != config.model.zero_mean_stem:
        print(f"warning: --init {name}: its first convolution was trained {'with' if init_stem else 'without'} "
              f"--zero-mean-stem, this run trains it {'without' if init_stem else 'with'}; step 1 and step 2 were "
              f"measured with the same setting only (docs/results.md, \"A high-pass first layer\"): pass "
              f"{'--zero-mean-stem' if init_stem else '--no-zero-mean-stem'} to match it.", file=sys.stderr, flush=True)
    mismatch = encoder_mismatch(source, Classifier(Backbone(config.model.width), num_classes, config.model.dropout))
    if mismatch and not partial:
        weight, expected, received = mismatch
        remedy = ("pass --init none to train from random initialisation (Base+PCL, or Base), or --init RUN with a "
                  "step-1 run of this width" if name != init_run
                  else "pass init_partial=True to load only the weights that match")
        raise RunDirError(
            f"init {name}: its encoder does not fit this run's (width {config.model.width}): weight {weight} "
            f"expected shape {expected}, received " + (str(received) if received else "no such weight")
            + f"; {remedy}."
        )

    order = head_order(list(source.class_names), class_names)

    def apply(classifier):
        loaded, skipped = transfer_matching_weights(source, classifier, skip_layers=() if order is None else
                                                    (LOGITS_LAYER,))
        note = ""
        if order is not None and _same_head_shapes(source, classifier):
            if order:  # the same classes in another order: the head's columns follow them
                kernel, bias = source.get_layer(LOGITS_LAYER).get_weights()
                classifier.get_layer(LOGITS_LAYER).set_weights([kernel[:, order], bias[order]])
                head = [key for key in skipped if key.startswith(f"{LOGITS_LAYER}/")]
                loaded, skipped = loaded + head, [key for key in skipped if key not in head]
                note = (f"; the head's classes put in this run's order (the init run's: "
                        f"{', '.join(source.class_names)})")
            else:
                note = f" (the init run's classes are {', '.join(source.class_names)}, not this run's)"
        print(f"--init {name}: loaded {len(loaded)} weights; re-initialised {len(skipped)}: "
              + (", ".join(skipped) if skipped else "none") + note, file=output or sys.stdout, flush=True)
        if not set(loaded) & encoder_weight_names(classifier):
            print(f"warning: --init {name}: no encoder weight matched (--init-partial): this run trains from random "
                  f"weights, as --init none would (Base+PCL or Base, not DNA-Det).", file=sys.stderr, flush=True)

    return apply


def _same_head_shapes(source, target):
    """Whether classifiers `source` and `target` both have a LOGITS_LAYER, with weights of the same shapes."""
    try:
        shapes = [[tuple(w.shape) for w in model.get_layer(LOGITS_LAYER).weights] for model in (source, target)]
    except ValueError:
        return False
    return shapes[0] == shapes[1]


def head_order(init_names, names):
    """How a head trained on classes `init_names` serves classes `names`: None when it serves them as it is (the
    same names in the same order, or `names` None: not known), the index into `init_names` of each of `names`
    when they are the same names in another order, [] when the names differ (the head is re-initialised)."""
    if names is None or list(names) == list(init_names):
        return None
    if sorted(names) == sorted(init_names):
        return [list(init_names).index(name) for name in names]
    return []


def init_magnification(init_run):
    """The second resize (px) that run dir `init_run` trained at: from its config.json, or from the
    provenance.json of a shipped step 1 (`dnadet_tf.pretrained`); None when it has neither."""
    run = RunDir(init_run)
    if os.path.isfile(run.file(CONFIG_FILE)):
        return run.config.preprocessing.resize2
    document = read_provenance(init_run)
    if document is None or "config" not in document:
        return None
    return TrainConfig.from_dict(document["config"]).preprocessing.resize2


def resolve_config(run, resume, preset, overrides):
    """The run's configuration: its config.json when resuming (only RESUMABLE_OVERRIDES may
    change; another `preset` or any other override that differs from the run's is a DnadetError, `preset`
    None meaning the run's, and a folder setting, `init` or `extra_real`, given as another spelling of the run's
    folder being no change: `same_folder_setting`), else the preset with the overrides."""
    if resume:
        stored = run.config
        if preset is not None and preset != stored.preset:
            raise DnadetError(f"preset: expected the resumed run's own ({stored.preset}) or none, received {preset}.")
        kept = stored.flat()
        for key, value in overrides.items():
            if value is None or key in RESUMABLE_OVERRIDES:
                continue
            if key in kept and as_stored(stored, key, value) != kept[key] and not same_folder_setting(
                    key, value, kept[key]):
                raise DnadetError(f"{key}: expected no change on resume (the run's config.json holds it; only "
                                  f"{', '.join(RESUMABLE_OVERRIDES)} may change), received {value!r}.")
        config = stored.replace(**{key: overrides.get(key) for key in RESUMABLE_OVERRIDES})
        saved = run.latest_checkpoint_step()
        if saved is not None and saved > config.loop.steps:  # said before the data are read (`train` checks again)
            raise DnadetError(f"steps: expected at least the resumed run's step ({saved}), received "
                              f"{config.loop.steps}.")
        return config
    return make_config(preset or "cpu", **overrides)


def same_path(a, b):
    """Whether two spellings of a path (relative, absolute, with a trailing separator, through a link) name one
    file or folder."""
    return os.path.realpath(a) == os.path.realpath(b)


def same_folder_setting(key, given, stored):
    """Whether folder setting `key` (FOLDER_SETTINGS) `given` on resume names the folder the run's config.json holds
    (`stored`) under another spelling (relative, absolute, through a link: `same_path`). A run's config.json holds
    the folder as an absolute path (`settle_config`); that of a run made before it did holds the folder as typed,
    relative perhaps, and that is read against the working folder as before, by this comparison as by the training."""
    words = FOLDER_SETTINGS.get(key)
    if words is None or not isinstance(given, (str, os.PathLike)) or not isinstance(stored, str):
        return False
    given = os.fspath(given)
    return given not in words and stored not in words and same_path(given, stored)


def require_resumed_data(name, given, stored):
    """Raises DnadetError unless `given` (the data `name` of a resumed run, None when omitted) is the run's own
    `stored` path (config.json); an empty `stored` takes none."""
    if given is None:
        return
    if not stored or not same_path(given, stored):
        raise DnadetError(f"{name}: expected the resumed run's own ({stored or 'none'}), received {given}.")


def train(run, config, class_names, train_dataset, val_dataset=None, resume=False, init_weights=None,
          val_extras=None, banner=None, output=None, strategy=None):
    """The one training function of `fit` and `pretrain`: builds the strategy (unless given) and the Trainer,
    restores the latest checkpoint when resuming (saying from where, and dropping metrics.jsonl
    records of steps to be redone), trains, and returns the Trainer's summary.

    Args:
      run: a started `RunDir`.
      train_dataset, val_dataset, init_weights, val_extras: as for `Trainer`.
      banner: function (number of replicas) -> the line printed before training.
      strategy: the tf.distribute strategy, built by the caller before it started `run` (so that a strategy
        that cannot be built, a bad TF_CONFIG, stops before the run dir is touched); None builds
        `config.runtime.strategy`'s here.
    """
    output = output or sys.stdout
    if strategy is None:
        strategy = make_strategy(config.runtime.strategy)
    if banner is not None:
        print(banner(strategy.num_replicas_in_sync), file=output, flush=True)
    trainer = Trainer(config, class_names, run, strategy, train_dataset=train_dataset, val_dataset=val_dataset,
                      init_weights=init_weights, output=output, val_extras=val_extras)
    if resume:
        path = trainer.restore_latest()
        if trainer.step > config.loop.steps:
            raise DnadetError(f"steps: expected at least the resumed run's step ({trainer.step}), received "
                              f"{config.loop.steps}.")
        run.update_config(config)  # a new --steps, --val-every, ... is the run's from now on
        # Records of steps after the checkpoint would appear twice once those steps are redone.
        dropped = run.truncate_log(trainer.step) if trainer.chief else 0
        print(f"resumed from {path or 'no checkpoint (starting at step 0)'} at step {trainer.step}"
              + (f"; dropped {dropped} {METRICS_FILE} record(s) of later steps" if dropped else ""),
              file=output, flush=True)
    return trainer.fit()


def fit(data, out, val=None, preset=None, resume=False, overwrite=False, output=None, init_partial=False,
        **overrides):
    """Trains DNA-Det (or Base with mode='base') on `data` into run dir `out`.

    Args:
      data: folder tree, annotation list, or benchmark folder (its train.txt).
      out: run dir.
      val: validation data; defaults to a benchmark's val.txt when `data` is one (and `val_split` is 0).
      preset: `paper`, `cpu` or `tiny`; None: `cpu` for a new run, the run's own when resuming (another one is
        refused then, as is any other change but those of RESUMABLE_OVERRIDES).
      resume: continue the run in `out` from its latest checkpoint.
      overwrite: replace an existing run dir; refused when an input (`data`, `val`, the images a list names, `init`,
        `extra_real`) lies inside it (`fit_inputs`, `RunDir.require_inputs_outside`).
      `out` inside a folder-tree `data` or `val` is refused, new or resumed (`require_out_outside_trees`); so are
      photos of `extra_real` that are validation images or training images of a fake class
      (`require_extra_real_apart`), and a new run's `val` whose every image is a training image by its bytes (a
      copy, a list naming them; some of them: a warning line, `require_val_unlearned`). A new run's training images
      that are by their bytes an image of another class (a copy in two class folders) get a warning line
      (`warn_relabeled_copies`).
      init_partial: with `init`, allow an encoder that only partly matches.
      **overrides: TrainConfig fields (None = keep the preset's); `val_split=F` holds out the share F of each
        class of `data` as validation images in place of `val` (`data.hold_out`).

    Returns the training summary dict. Parameters are checked before `out` is created.
    """
    data_path = "one path: a folder tree, an annotation list or a benchmark folder"
    data, out = path_parameter("data", data, data_path), path_parameter("out", out, "the run dir to train into")
    val = None if val is None else path_parameter("val", val, data_path)
    output = output or sys.stdout
    run = RunDir(out)
    if resume and overwrite:
        raise RunDirError("resume and overwrite: expected at most one of them, received both.")
    require_out_outside_trees(out, [("data", data), ("val", val)], resume)  # before they are read
    require_val_apart(data, val, resume)
    train_files = read_training_files(data)
    run.check(overwrite=overwrite, resume=resume)  # fail before any slow work
    given_val = val is not None
    config, val = settle_config(run, resume, preset, overrides, data, val, train_files.class_names)
    require_out_outside_trees(out, [("val", val)], resume)  # a resumed run's own, from its config.json
    check_strategy(config.runtime.strategy)  # a bad TF_CONFIG stops here, before the slow work and any write
    val_files = read_validation_files(val, train_files.class_names)
    if val_files is not None and not resume:  # a resumed run keeps its own `val`
        require_val_unlearned(train_files, val_files, val, given=given_val)
    if not resume:  # a resumed run said so when it started
        warn_relabeled_copies(train_files, data)
    # before the slow work: an input inside the `out` that overwrite=True empties would be deleted
    run.require_inputs_outside(fit_inputs(data, val, overrides.get("init"), config, train_files, val_files),
                               overwrite=overwrite, resume=resume)
    user_train_files, val_files = usable_training_files(train_files, val_files, config, output)
    val_files = usable_validation_files(val_files, config)  # before the extra inputs, which take time to prepare
    # the open-set statistics are fitted on the user's images alone (`calibrate_at_end`), as `dnadet-tf calibrate
    # RUN` fits them later from the run's own data
    train_files, transplant = add_extra_inputs(user_train_files, config, output, val_files)
    skipped = len(train_files.skipped) + (len(val_files.skipped) if val_files else 0)
    init_weights = resolve_init_weights(run, config, resume, train_files.class_names, init_partial, output)
    strategy = make_strategy(config.runtime.strategy)  # one that cannot be built leaves the run dir as it was
    run.start(config, train_files.class_names, overwrite=overwrite, resume=resume)
    summary = run_training(run, config, train_files, val_files, transplant, resume, init_weights, out, output,
                           strategy)
    summary.update(skipped_files=skipped, run_dir=out)
    print(done_line(summary, config, val_files is not None, skipped, out), file=output, flush=True)
    calibration = calibrate_at_end(run, out, config, user_train_files, val_files, output, resume)
    if calibration is not None:
        summary["calibration"] = calibration
    return summary


def require_out_outside_trees(out, trees, resume=False):
    """Raises RunDirError when run dir `out` is, or lies inside, one of the folder trees of `trees` ((name, path):
    `data`, `val`; a path None, a list file or a benchmark folder, which name their images, and a zoo still being
    built, which `data.read_dataset` refuses, are skipped),
    compared by real path (`runs.place_in`): the first run would work (the data are read before `out` is made),
    and every later read of the tree (`resume`, `dnadet-tf calibrate RUN`) would find the run dir as a class (or
    its images, such as a report's PNG files, as images of a class). A folder under a hidden one is not read
    (`images.find_images`, `data.read_folder_tree` skip them) and is accepted. `resume`: the message says to move
    the run out, where it resumes on the same data (config.json holds them as absolute paths)."""
    for name, tree in trees:
        received = read_by_tree(out, tree)
        if received is None:
            continue
        advice = f"move the run dir out of {tree} and resume it there" if resume else "write the run elsewhere"
        raise RunDirError(f"out {out}: expected a folder outside the `{name}` folder tree {tree}, received "
                          f"{received}; {advice}.")


def require_val_apart(data, val, resume=False):
    """Raises DataError, before anything is read, when a new run's `val` names the very images of `data`: the same
    real path (a folder tree or an annotation list), a benchmark folder's train.txt counting as what that folder
    trains on (`data` BENCH and `val` BENCH/train.txt) and its val.txt as what it validates on (a benchmark folder
    as both is its train.txt and val.txt: other images): best.keras would be picked, and the temperature and
    open-set threshold fitted, on the very images the model learned. A resumed run keeps its own `val`
    (config.json)."""
    if resume or not val or not data or not os.path.exists(data) or not os.path.exists(val):
        return
    trained = benchmark_split(data, "train") if is_benchmark_dir(data) else data
    validated = benchmark_split(val, "val") if is_benchmark_dir(val) else val
    if not same_path(validated, trained):
        return
    what = "folder" if os.path.isdir(trained) else "file"
    raise DataError(f"`val`: expected validation images apart from the training images, received `val` {val} and "
                    f"`data` {data}, the same {what} (best.keras would be picked and the open-set threshold fitted on "
                    f"the images the model learned); pass other labeled images as `val`, or `val_split` F in place "
                    f"of `val` to hold out a share of `data`.")


def require_val_unlearned(train_files, val_files, val, fitted=FIT_ON_VAL, advice=FIT_VAL_ADVICE, given=True):
    """Raises DataError, one line naming `val`, when every image of `val_files` (read from `val`, not decoded) is one
    of the training images `train_files` by its bytes (`data.same_files`: a copy of the training folder, a list
    naming its files, links to them), which `require_val_apart` cannot tell by the path; warns (one line, stderr) and
    goes on when some are. `fitted`: what rests on the validation images, `advice`: what to do (`calibrate` says
    its own). `given` False: `val` is the benchmark folder `data` itself, read as its val.txt because no `val` was
    given (`default_val`), and the line names `data`."""
    shared = same_files(val_files.paths, train_files.paths)
    if not shared:
        return
    flag, what = ("val", f"`val` {val}") if given else ("data", f"`data` {val}, the val.txt read when no `val` is given")
    if not given:
        advice = ("give the benchmark's val.txt other images, pass other labeled images as `val`, or `val_split` F "
                  "to hold out a share of `data`")
    example = f"e.g. {shared[0][0]}, the same bytes as the training image {shared[0][1]}"
    if len(shared) == len(val_files):
        raise DataError(f"`{flag}`: expected validation images apart from the training images, received {what}, "
                        f"whose {len(shared)} images are all training images ({example}: {fitted} would rest on "
                        f"images the model learned); {advice}.")
    print(f"warning: --{flag} {val}{'' if given else ' (its val.txt)'}: {len(shared)} of its {len(val_files)} "
          f"validation images are training images ({example}): {fitted} rest partly on images the model learned",
          file=sys.stderr, flush=True)


def warn_relabeled_copies(train_files, data):
    """Warns (one line, stderr) when training images of `train_files` (read from `data`, not decoded) are, by their
    bytes, an image of another class (`data.repeated_files`: a copy in two class folders, or a list naming two
    copies with two labels; one file in two classes, through a link too, is refused where it is read): the same
    picture is trained as two classes. Says how many images (every one of those bytes, in any of their classes),
    and one example with both classes. Repeats within one class say nothing."""
    groups = {}  # the index of the first of some bytes -> the indices of every image of them
    for index, first in repeated_files(train_files.paths).items():
        groups.setdefault(first, [first]).append(index)
    labels, names, paths = train_files.labels, train_files.class_names, train_files.paths
    mixed = sorted(members for members in groups.values() if len({int(labels[i]) for i in members}) > 1)
    if not mixed:
        return
    first = mixed[0][0]
    other = next(i for i in mixed[0] if labels[i] != labels[first])
    count = sum(len(members) for members in mixed)
    print(f"warning: --data {data}: {count} training images are, by their bytes, an image of another class "
          f"({len(mixed)} picture{'s' if len(mixed) > 1 else ''} under two classes or more; e.g. {paths[other]} "
          f"in class {names[labels[other]]}, the same bytes as {paths[first]} in class {names[labels[first]]}): the "
          f"model is trained to answer two classes for one picture; keep each picture in one class",
          file=sys.stderr, flush=True)


def fit_inputs(data, val, init, config, train_files, val_files):
    """The paths `fit` reads, for `RunDir.require_inputs_outside`: `data` and `val` as given, with the images they
    name (`train_files`, `val_files`: their LabeledFiles, None without), the `init` run as given (not `packaged` or
    `none`), and the folder of photos of `extra_real` (not `auto`, `packaged` or `none`)."""
    inputs = [("data", data, "training data", train_files.paths)]
    if val:
        inputs.append(("val", val, "validation data", val_files.paths if val_files is not None else ()))
    if config.init and config.init != PACKAGED and init is not None:
        inputs.append(("init", os.fspath(init), "a run"))
    if config.sampling.extra_real not in FOLDER_SETTINGS["extra_real"]:
        inputs.append(("extra_real", config.sampling.extra_real, "a folder of photos"))
    return inputs


def read_training_files(data):
    """The LabeledFiles of `data` (its train.txt for a benchmark folder), read but not yet decoded; raises unless
    they hold at least two classes."""
    train_files = read_dataset(data, "train")
    require_several_classes(train_files)
    return train_files


def settle_config(run, resume, preset, overrides, data, val, class_names):
    """(config, val) of a `fit`: the config from `preset` and `overrides` (`resolve_config`) with the data paths, the
    `init` run and the `extra_real` folder recorded as absolute paths (`absolute_folder_setting`: a run resumed from
    another working folder reads the same ones), and the validation data to read (None when there is none).

    Resuming, the run's own data only (another data would train the same steps on other images), in the run's
    classes (`class_names`: the training data's), and `val` defaults to the run's; else `val` defaults to the
    benchmark's val.txt when `data` is a benchmark (`default_val`)."""
    config = resolve_config(run, resume, preset, overrides)
    if resume:
        require_resumed_data("data", data, config.data)
        require_resumed_data("val", val, config.val)
        run.require_classes(class_names)
        return config, val or config.val or None
    val = default_val(data, val, config.val_split)
    folders = {key: absolute_folder_setting(key, config.flat()[key]) for key in FOLDER_SETTINGS}
    return config.replace(data=os.path.abspath(data), val=os.path.abspath(val) if val else "", **folders), val


def absolute_folder_setting(key, value):
    """Folder setting `key`'s `value` (FOLDER_SETTINGS) as a new run's config.json records it: a folder as an
    absolute path, so that the run resumes from any working folder on the same one; a word naming none as it is."""
    return value if value in FOLDER_SETTINGS[key] else os.path.abspath(value)


def default_val(data, val, val_split):
    """`val`, or when it is None and no `val_split` holds images out, `data` itself when it is a benchmark folder
    with a val.txt (read as its val split)."""
    if (val is None and not val_split and is_benchmark_dir(data)
            and os.path.isfile(os.path.join(data, "val.txt"))):
        return data
    return val


def read_validation_files(val, class_names):
    """The LabeledFiles of `val` (its val.txt for a benchmark folder) labeled in the training data's
    `class_names`, or None without `val`; warns (stderr) of the classes it holds no image of."""
    if not val:
        return None
    val_files = remap_to(read_dataset(val, "val"), class_names, "--val", "the training data's classes")
    unchecked = [name for name, count in zip(val_files.class_names, val_files.class_counts()) if count == 0]
    if unchecked:
        print(f"warning: --val {val}: no validation images of {', '.join(unchecked)}; validation cannot tell "
              f"how well the run attributes {'it' if len(unchecked) == 1 else 'them'}", file=sys.stderr, flush=True)
    return val_files


def usable_training_files(train_files, val_files, config, output):
    """(training files, validation files): the training images that decode (every class must keep some), and,
    with `val_split`, the share of them held out as the validation images (`val_files` otherwise unchanged)."""
    print(f"checking {len(train_files)} training images from {train_files.source} ...", file=output, flush=True)
    train_files = usable_files(train_files, config.preprocess, require_every_class=True)
    if config.val_split:
        train_files, val_files = hold_out(train_files, config.val_split)
        print(f"val_split {config.val_split}: {len(val_files)} of the {len(val_files) + len(train_files)} "
              f"training images held out as validation images ({val_files.counts_text()})", file=output, flush=True)
    return train_files, val_files


def add_extra_inputs(user_train_files, config, output, val_files=None):
    """(training files, transplant): the user's training images with the extra real images added
    (`sampling.extra_real`), and the content transplant the training pipeline applies (None when off); with
    `content_align`, checks that there are added crops to align the real class with. Photos of `extra_real` that
    are validation images (`val_files`, the held-out share of `val_split` too) or training images of a fake class
    are refused before any crop is cut (`require_extra_real_apart`)."""
    require_extra_real_apart(config.sampling.extra_real, user_train_files, val_files, bool(config.val_split))
    train_files = add_extra_real(user_train_files, config.sampling.extra_real, output,
                                 config.sampling.extra_real_process)
    transplant = training_transplant(config, train_files)
    if config.optimizer.content_align:
        added_crops(train_files, f"--content-align {config.optimizer.content_align:g}", "to align the real class with",
                    config.sampling.extra_real)
    return train_files, transplant


def require_extra_real_apart(source, train_files, val_files, held_out=False):
    """Raises DataError, one line naming `extra_real`, for the first of its photos (source `source`: a folder, or the
    packaged photos) that is by its bytes (`data.same_files`: the same file, through a symbolic or a hard link too,
    or a copy) a validation image (`val_files`, or with `held_out` the share `val_split` held out of the training
    data: its crops would be trained as real and the same image validated) or a training image of a fake class
    (`train_files`: trained as real and as its fake class at once). Call it before the crops are cut. Nothing is
    checked when `extra_real` adds nothing (none, or `auto` without one real class) or when there is not one real
    class (`add_extra_real` refuses that then). Nothing is decoded, and only files of the same size are read.

    Photos that are training images of the real class are allowed, with one warning line (stderr): their label is
    the one they are trained with anyway, so nothing is trained as what it is not, but their crops add no real photo
    of other content, what `extra_real` is for (README, `fit`), and `content_align` and `transplant` would align the
    real class with, or lay fakes over, the training set's own content."""
    candidates = real_class_candidates(train_files.class_names)
    if source in ("", NO_PHOTOS) or len(candidates) != 1:
        return
    photos = source_photos(PACKAGED_PHOTOS if source == AUTO_PHOTOS else source)
    real = train_files.class_names.index(candidates[0])
    held = " (held out by val_split)" if held_out else ""
    # (paths, their labels, class names, what they are, whether refused): validation first, then fakes, then real
    sides = [] if val_files is None else [(val_files.paths, val_files.labels, val_files.class_names,
                                           f"a validation image{held} of class", True)]
    for role, refused in (("fake", True), ("real", False)):
        rows = [row for row, label in enumerate(train_files.labels) if (label != real) == refused]
        sides.append(([train_files.paths[row] for row in rows], train_files.labels[rows], train_files.class_names,
                      f"a training image of the {role} class", refused))
    found = {}  # photo -> (the image's path, what it is, whether that is refused), on the first side it is on
    for paths, labels, names, what, refused in sides:
        label = {}
        for path, index in zip(paths, labels.tolist()):
            label.setdefault(path, index)
        for photo, path in same_files(photos, paths):
            found.setdefault(photo, (path, f"{what} {names[label[path]]!r}", refused))
    shared = []
    for photo in photos:
        if photo not in found:
            continue
        path, what, refused = found[photo]
        how = "file" if file_identity(photo) == file_identity(path) else "bytes"
        if refused:
            same = "" if os.path.abspath(photo) == os.path.abspath(path) else f" (the same {how} as {path})"
            raise DataError(f"extra_real {source}: expected photos apart from the training images of the fake classes "
                            f"and from the validation images, received {photo}{same}, {what}; give a folder of "
                            f"other photos.")
        shared.append(photo if how == "file" else f"{photo}, the same bytes as {path}")
    if shared:
        print(f"warning: --extra-real {source}: {len(shared)} of its {len(photos)} photos are training images of the "
              f"real class (e.g. {shared[0]}): their crops add no real photo of other content", file=sys.stderr,
              flush=True)


def usable_validation_files(val_files, config):
    """The validation images that decode, or None without validation images; images held out by `val_split`
    were checked with the training images and are returned as they are."""
    if val_files is not None and not config.val_split:
        return usable_files(val_files, config.preprocess)
    return val_files


def resolve_init_weights(run, config, resume, class_names, init_partial, output):
    """`load_init_weights` of `config.init` for a head of `class_names`, or None without one, and when resuming a
    run that has a checkpoint (a resumed run stopped before its first checkpoint starts again from its --init
    weights)."""
    if config.init and not (resume and run.has_checkpoint):
        return load_init_weights(config.init, config, len(class_names), init_partial, output, class_names)
    return None


def run_training(run, config, train_files, val_files, transplant, resume, init_weights, out, output, strategy=None):
    """`train` on the checked files: training batches from `train_files` (augmented and transplanted as the config
    says), whole validation images from `val_files` (None: no validation), under `strategy` (None: `train` builds
    the config's); returns its summary."""
    banner = training_banner(config, train_files, out)
    augment_fn = attack_fn(config.sampling.augment)
    val_dataset = None
    if val_files is not None:
        val_dataset = lambda: inference_dataset(  # noqa: E731
            val_files.paths, config.preprocess, config.loop.eval_batch_size, labels=val_files.labels
        )
    return train(run, config, train_files.class_names,
                 train_dataset=lambda start: training_dataset(train_files, config, start, augment_fn,
                                                              transplant=transplant),
                 val_dataset=val_dataset, resume=resume, init_weights=init_weights, banner=banner, output=output,
                 strategy=strategy)


def training_banner(config, train_files, out):
    """A function (number of replicas) -> the line `train` prints before training: what is trained, on which
    images, with how many per step, into run dir `out`."""
    counts = train_files.counts_text()
    k = config.batch_images_per_class(len(train_files.class_names))
    return lambda replicas: (
        f"training {paper_name(config.model.mode, bool(config.init))} "
        f"({config.preset} preset, width {config.model.width}, {config.runtime.precision}) "
        f"on {counts}; {k} images per class per step"
        + (f" x {config.sampling.patches_per_image} patches of {config.sampling.patch_size} px" if config.model.mode == "dnadet" else "")
        + (f"; content alignment x {config.optimizer.content_align:g} (stages {ALIGN_FIRST_STAGE}-{ENCODER_STAGES})"
           if config.optimizer.content_align else "")
        + (f"; BatchNorm statistics shift {config.model.statistics_shift:g} (stages {SHIFT_FIRST_STAGE}-{ENCODER_STAGES})"
           if config.model.statistics_shift else "")
        + f"; {replicas} replica(s); run dir {out}"
    )


def done_line(summary, config, validated, skipped, out):
    """The line `fit` prints after training: the last step, how best.keras was chosen (`validated`: whether there
    were validation images), the files skipped and the time taken."""
    averaged = summary.get("averaged_steps")
    rule = (f"rule 'average' (mean of the models of steps {', '.join(map(str, averaged))})" if averaged
            else f"rule '{config.loop.select}'")
    if validated:
        kept = f"best.keras by {rule}: validation {config.loop.metric} {summary['best_metric']:.4f}"
    elif averaged:
        kept = f"no validation data, best.keras by {rule}, which needs none"
    else:
        kept = "no validation data, best.keras is the last step's model"
    return (f"done: step {summary['end_step']}, {kept}, {skipped} file(s) skipped, {summary['seconds']} s; "
            f"run dir {out}")


def calibrate_at_end(run, out, config, user_train_files, val_files, output, resume=False):
    """The report of `calibrate_run` on the run just trained (temperature and open-set score fitted on the user's
    training images and `val_files`), or None, said so, when there are no validation images (or no best.keras);
    then an earlier calibration.json (a resumed run calibrated later by `calibrate`) is removed, and that said.
    A resumed run with a calibration.json is calibrated again as it records (`resumed_calibration`)."""
    settings = resumed_calibration(run, config, output) if resume else None
    if settings is not None and os.path.isfile(run.best_model_path):
        from dnadet_tf.calibrate import calibrate_run, validation_spec

        own = settings["data"] == config.data and settings["val"] == validation_spec(config)
        files = (user_train_files, val_files) if own and val_files is not None else None
        return calibrate_run(out, settings["score"], data=None if files else settings["data"],
                             val=None if files else settings["val"], batch_size=config.loop.eval_batch_size,
                             output=output, files=files, known_rate=settings["known_rate"],
                             radii=settings["radii"], means=settings["means"], check_val=False)
    if val_files is not None and os.path.isfile(run.best_model_path):
        from dnadet_tf.calibrate import calibrate_run

        return calibrate_run(out, config.loop.ood_score, batch_size=config.loop.eval_batch_size, output=output,
                             files=(user_train_files, val_files))
    from dnadet_tf.calibrate import CALIBRATION_FILE

    print("no validation data: no temperature or open-set score fitted (dnadet-tf calibrate RUN --val DATA "
          "fits them later)", file=output, flush=True)
    if os.path.isfile(run.file(CALIBRATION_FILE)):  # a resumed run's: it described the best.keras just replaced
        os.remove(run.file(CALIBRATION_FILE))
        print(f"removed {run.file(CALIBRATION_FILE)}: it described the calibration of the best.keras this run "
              f"replaced, which the new one does not hold", file=output, flush=True)
    return None


def resumed_calibration(run, config, output):
    """The settings a resumed run is calibrated with again (`calibrate.recorded_settings`): those its
    calibration.json records (a later `calibrate`'s --score, --known-rate, --radii, --means, --data, --val, or
    `fit`'s own), said in one line, a recorded data spec that is gone replaced by the run's own (said too); None
    when the run has no calibration.json, or no validation images are left to calibrate on."""
    from dnadet_tf.calibrate import HELD_OUT, recorded_settings, settings_text, spec_text, validation_spec

    settings = recorded_settings(run.path)
    if settings is None:
        return None
    own = {"data": config.data or None, "val": validation_spec(config)}
    for name in ("data", "val"):
        spec = settings[name]
        specs = spec if isinstance(spec, list) else [spec]
        if spec is None or not all(item == HELD_OUT or os.path.exists(item) for item in specs):
            if spec is not None:
                print(f"warning: --{name} {spec_text(spec)}, which the run's calibration.json records, is gone; "
                      f"calibrating on the run's own ({own[name] or 'none'})", file=output, flush=True)
            settings[name] = own[name]
    if not settings["data"] or not settings["val"]:
        return None
    print(f"resumed run: calibrating again with the settings its calibration.json records ({settings_text(settings)})",
          file=output, flush=True)
    return settings

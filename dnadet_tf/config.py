"""Training configuration: frozen sections, and the presets.

A `TrainConfig` holds one frozen section per concern:

  model          mode, width, dropout, zero_mean_stem, statistics_shift
  preprocessing  crop_size, resize1, resize2, preprocess_mode
  sampling       patch_size, patches_per_image, images_per_class, augment, crop_grid, extra_real,
                 extra_real_process, transplant
  optimizer      learning_rate, lr_decay, lr_decay_every, loss_weight_learning_rate,
                 temperature, base_temperature, ce_input, frozen_stages, content_align
  loop           steps, val_every, checkpoint_every, log_every, patience, metric, select,
                 average_last, keep_validated, eval_batch_size, ood_score (the open-set score fitted at the end)
  runtime        seed, precision, jit, strategy, input_niceness (the OS nice value of the training
                 input's threads, `input_priority`; 0 leaves them at the step's)
  pretrain       batch_size, val_samples, steps, patience, images_per_class, lr_decay_every,
                 val_every (step 1's own values)

plus `preset`, `init`, `data`, `val` and `val_split` (the share of each class of `data` held out as validation
images when there is no `val`; `data.hold_out`). It is validated on construction and changed only
by copying (`replace`). Parameters are named flat, as `fit` and `make_config` take them
(`width`, `learning_rate`, `pretrain_batch_size`, ...): `PARAMETERS` maps each to its
section. `paper` holds every hyper-parameter of the paper; `cpu` is narrower
with a smaller second resize and fewer crops, so a laptop trains it in minutes; `tiny` is
for tests. The resolved configuration is saved as `config.json` in the run dir, by
section; a flat config.json of an older run is converted on read.
"""
import dataclasses
import math
import numbers
import os

from dnadet_tf.errors import DnadetError
from dnadet_tf.input_priority import DEFAULT_NICENESS
from dnadet_tf.openset import DEFAULT_SCORE, SCORES
from dnadet_tf.photo_processing import AUTO as PROCESS_AUTO
from dnadet_tf.photo_processing import parse_processing
from dnadet_tf.preprocess import PREPROCESS_MODES, PreprocessConfig
from dnadet_tf.pretrained import NO_INIT
from dnadet_tf.selection import SELECTION_RULES

MODES = ("dnadet", "base")
# What the classification cross-entropy reads: the logits (the method), or the softmax
# probabilities (the authors' release, whose numbers the paper reports).
CE_INPUTS = ("logits", "probabilities")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# `auto` is resolved by `make_config` (`auto_precision`), so a run's config.json holds the precision it used.
PRECISION_CHOICES = PRECISIONS + ("auto",)
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
METRICS = ("accuracy", "macro_f1")
ENCODER_STAGES = 4  # model.STAGE_WIDTHS has one width per stage
# `adapt` re-estimates the BatchNorms of this stage and the later ones: stages 3-4 named held-out images of the new
# content better than all 8 layers in 6 of 6 runs (faces <-> scenes) and as well without a shift (docs/results.md,
# "Adapting to other content").
ADAPT_FIRST_STAGE = 3
# `adapt --photos` (a mix made of real photos and the training fakes' residuals, not the generators' fakes) re-estimates
# every stage: at its default blend, from stage 1 the made mix named the new content's images 4.1 points better than
# from stage 3 on the mean of six content shifts (91.7 against 87.6; 22 of 36 runs up, 3 down) and still kept the
# training content after adapting to photos of it (docs/results.md, "Adapting from real photos alone").
PHOTO_FIRST_STAGE = 1
# `adapt --labeled` (a few labeled images of the new content) re-estimates every stage on them before they become the
# head: ahead of stages 3-4 with 1, 2 and 5 images per class on the seven-family zoo (docs/results.md,
# "A few labeled images of the new content").
LABELED_FIRST_STAGE = 1
# `content_align` draws together the statistics of the convolutions' outputs (the BatchNorms' inputs) of this
# stage and the later ones: the stages whose statistics `adapt` re-estimates.
ALIGN_FIRST_STAGE = ADAPT_FIRST_STAGE
# `statistics_shift` moves the BatchNorm outputs of this stage and the later ones: the same stages again.
SHIFT_FIRST_STAGE = ADAPT_FIRST_STAGE


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """`mode`: `dnadet` (patches, cross-entropy plus supervised contrastive loss with learned
    weighting) or `base` (whole images, cross-entropy only: the paper's Base). `zero_mean_stem`:
    the encoder's first convolution is trained as high-pass filters (`model.ZeroMeanKernel`).
    `statistics_shift`: in training, the BatchNorm outputs of encoder stages 3-4 are moved by a random
    per-channel scale and offset of this standard deviation, one draw per batch (`model.BatchNormalization`)."""

    mode: str = "dnadet"
    width: float = 1.0
    dropout: float = 0.2
    zero_mean_stem: bool = False
    statistics_shift: float = 0.0


@dataclasses.dataclass(frozen=True)
class PreprocessingConfig:
    """The preprocessing section of a TrainConfig, what config.json and the flags set; `TrainConfig.preprocess` makes
    of it the `preprocess.PreprocessConfig` that models, predictors and exports carry (with `min_side`, the run's
    patch size, added, and `preprocess_mode` named `mode`: flat parameter names are unique across sections, and
    `mode` is the model's). `preprocess_mode`: `tf` (TensorFlow's bicubic, the default) or `release` (the authors'
    PyTorch release numerically: Pillow's 8-bit bicubic, torchvision's crop offset), see
    `dnadet_tf.preprocess`. Imported release checkpoints (`import-torch`) use `release`.
    `crop_square`: a square image larger than `crop_size` is center-cropped to it in native pixels
    instead of resized (squashed) to `resize1`; False (the release) unless a preset sets it."""

    crop_size: int = 128
    resize1: int = 128
    resize2: int = 512
    preprocess_mode: str = "tf"
    crop_square: bool = False


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """`images_per_class = 0` means the paper's rule: 32 images per class for up to 5 classes, 16 for more.
    `crop_grid`: the training crops' corners are multiples of it, in pixels of the preprocessed image
    (1: anywhere; 8 with no magnification keeps step 1's JPEG blocks in the same place in every crop).
    `extra_real`: "" or "none" (off), "packaged" or a folder: crops of those photos added to the real class
    (`real`, else the one class with "real" as a word of its name); "auto": "packaged" when there is one
    (`extra_real.add_extra_real`).
    `extra_real_process`: the processing those crops get, "none", "jpeg:Q", "upsample:S" or "auto"
    (`photo_processing`), to look like the user's real photos; "auto" (`extra_real.auto_processing`) applies
    the JPEG quality of all-JPEG reals and reports an enlargement of lossless ones without applying it.
    `transplant`: probability that a fake training image is moved onto one of those photos
    (`transplant.ResidualTransplant`); 0: never."""

    patch_size: int = 64
    patches_per_image: int = 16
    images_per_class: int = 0
    augment: tuple = ()
    crop_grid: int = 1
    extra_real: str = ""
    extra_real_process: str = "none"
    transplant: float = 0.0


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """`ce_input`: what the cross-entropy reads (CE_INPUTS). `frozen_stages`: how many encoder
    stages, from the input, keep the weights `init` loaded (not trained; their BatchNorm uses
    the loaded statistics); 0 trains every layer. `content_align`: the weight of the content-alignment
    loss (`losses.content_alignment_loss`: the real training images' activation statistics in encoder
    stages ALIGN_FIRST_STAGE-4 drawn to those of the extra real crops, photos of other content); 0: none."""

    learning_rate: float = 1e-4
    lr_decay: float = 0.9
    lr_decay_every: int = 500
    loss_weight_learning_rate: float = 0.01
    temperature: float = 0.07
    base_temperature: float = 0.07
    ce_input: str = "logits"
    frozen_stages: int = 0
    content_align: float = 0.0


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """`select` names the rule that picks best.keras among the validated models (`selection.py`);
    `average_last` is how many of the last validated models rule `average` averages."""

    steps: int = 20000
    val_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 20
    patience: int = 20
    metric: str = "accuracy"
    select: str = "nll"
    average_last: int = 4
    keep_validated: bool = False
    eval_batch_size: int = 16
    ood_score: str = DEFAULT_SCORE


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    seed: int = 0
    precision: str = "float32"
    jit: bool = False
    strategy: str = "auto"
    input_niceness: int = DEFAULT_NICENESS


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Step 1's own values (`pretraining.pretrain`); its step budget, schedule and validation
    interval replace step 2's in a pre-training run."""

    batch_size: int = 128
    val_samples: int = 1700
    steps: int = 20000
    patience: int = 20
    images_per_class: int = 4
    lr_decay_every: int = 500
    val_every: int = 500


SECTIONS = {
    "model": ModelConfig, "preprocessing": PreprocessingConfig, "sampling": SamplingConfig,
    "optimizer": OptimizerConfig, "loop": LoopConfig, "runtime": RuntimeConfig, "pretrain": PretrainConfig,
}
TOP_LEVEL = ("preset", "init", "data", "val", "val_split")
# Flat parameter name -> (section, field); the pretrain section's fields are prefixed `pretrain_`.
PARAMETERS = {
    (f"pretrain_{f.name}" if section == "pretrain" else f.name): (section, f.name)
    for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every value that shapes a training run, by section (see the module docstring)."""

    preset: str = "paper"
    model: ModelConfig = ModelConfig()
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    sampling: SamplingConfig = SamplingConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    loop: LoopConfig = LoopConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    pretrain: PretrainConfig = PretrainConfig()
    init: str = ""
    data: str = ""
    val: str = ""
    val_split: float = 0.0

    def __post_init__(self):
        validate(self)

    @classmethod
    def from_flat(cls, values):
        """A TrainConfig from flat parameters (`width`, `learning_rate`, ...); absent ones take their defaults."""
        unknown = sorted(set(values) - set(PARAMETERS) - set(TOP_LEVEL))
        if unknown:
            raise DnadetError(f"parameters: unknown names {unknown}; expected a subset of "
                              f"{sorted(set(PARAMETERS) | set(TOP_LEVEL))}.")
        values = {name: _stored(name, value) for name, value in values.items()}
        sections = {section: {} for section in SECTIONS}
        for name, value in values.items():
            if name in PARAMETERS:
                section, field = PARAMETERS[name]
                sections[section][field] = value
        return cls(**{k: values[k] for k in TOP_LEVEL if k in values},
                   **{section: SECTIONS[section](**fields) for section, fields in sections.items()})

    def flat(self):
        """{parameter: value} of every value, flat (`PARAMETERS` names and TOP_LEVEL)."""
        values = {name: getattr(self, name) for name in TOP_LEVEL}
        for name, (section, field) in PARAMETERS.items():
            values[name] = getattr(getattr(self, section), field)
        return values

    def replace(self, **changes):
        """A validated copy with flat parameters changed (None values ignored)."""
        return TrainConfig.from_flat({**self.flat(), **{k: v for k, v in changes.items() if v is not None}})

    @property
    def preprocess(self):
        """The run's PreprocessConfig: its sizes, with the patch size as the smallest side accepted."""
        p = self.preprocessing
        return PreprocessConfig(p.crop_size, p.resize1, p.resize2, min_side=self.sampling.patch_size,
                                mode=p.preprocess_mode, crop_square=p.crop_square)

    def batch_images_per_class(self, num_classes):
        if self.sampling.images_per_class > 0:
            return self.sampling.images_per_class
        return 32 if num_classes <= 5 else 16

    def to_dict(self):
        """config.json's content: top-level values and one object per section."""
        values = {name: getattr(self, name) for name in TOP_LEVEL}
        for section in SECTIONS:
            values[section] = dataclasses.asdict(getattr(self, section))
        values["sampling"]["augment"] = list(self.sampling.augment)
        return values

    @classmethod
    def from_dict(cls, values):
        """From `to_dict`'s form, or from the flat form of an older run's config.json."""
        if any(name in values for name in SECTIONS) or not values:
            unknown = sorted(set(values) - set(SECTIONS) - set(TOP_LEVEL))
            if unknown:
                raise DnadetError(f"config.json: unknown keys {unknown}; expected a subset of "
                                  f"{sorted(set(SECTIONS) | set(TOP_LEVEL))}.")
            flat = {k: values[k] for k in TOP_LEVEL if k in values}
            prefix = {section: ("pretrain_" if section == "pretrain" else "") for section in SECTIONS}
            for section in SECTIONS:
                for field, value in values.get(section, {}).items():
                    flat[prefix[section] + field] = value
            return cls.from_flat(flat)
        return cls.from_flat(values)

    @classmethod
    def load(cls, path):
        import json

        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


PRESETS = {
    "paper": {},
    "cpu": dict(
        width=0.25,
        # Squashing a generator's output to half its resolution cost Base+PCL 11-32 points on every
        # cross-test of the demo zoo; cropping it to native pixels instead kept them (docs/results.md, "Resolution").
        crop_square=True,
        precision="auto",
        # The paper's magnification (128 -> 512), with a step 1 trained at it too: over 3 seeds, demo
        # cross-dataset 98.8 +- 1.4 against 90.1 +- 2.8 at 256, and faces -> scenes 51.9 +- 6.9 against
        # 45.8 +- 6.5 with real recall 94 % against 92 %; 512 in step 2 from a step 1 made at 256 had
        # called 70 % of the real scenes fake (docs/results.md, "The second resize ...").
        resize2=512,
        patches_per_image=8,
        images_per_class=8,
        learning_rate=1e-3,
        lr_decay_every=200,
        steps=600,
        val_every=100,
        checkpoint_every=100,
        log_every=10,
        patience=4,
        # Single validated models of one run swing by tens of points on the cross-tests while the
        # closed-set validation stays at 100 %; the mean of the last 4 lifted DNA-Det over 9 runs
        # from 95.2 (rule nll) to 97.9 on the mean of the cross-tests, cross-seed from 92.9 +- 15.0
        # to 99.9 +- 0.4 (docs/results.md, "Model selection"). Step 1 keeps rule nll (pretraining.pretrain).
        select="average",
        # Step 2 starts from the step 1 shipped with the package (dnadet_tf/pretrained/step1-cpu, made from the
        # 60 packaged photos), so `fit` trains DNA-Det: over 3 seeds, 96.0 on the mean of the demo zoo's
        # cross-tests against Base+PCL's 78.3, and 78.8 against 59.7 across content, faces -> scenes (docs/results.md,
        # "The default: DNA-Det from the step 1 shipped with the package"). `--init none` trains Base+PCL.
        init="packaged",
        # A class named real gets as many crops of the 60 packaged photos as it has training images: on faces ->
        # scenes, over 3 seeds, real photos of other sources called real 99.2 +- 0.6 % against 86.3 +- 11.9
        # (one seed 69.6, the private set's error: real photos of unseen content called fakes), cross-dataset
        # 54.4 +- 4.1 against 49.8 +- 5.9; demo zoo cross-dataset 96.7 +- 3.4 against 98.8 +- 0.8, the other
        # cross-tests 100 (docs/results.md, "Real photos of other content in the real class").
        extra_real="auto",
        # When every real training image is a JPEG file the crops are saved as JPEG at their median quality:
        # faces q75 / scenes q95, over 3 seeds on one machine, cross-dataset 60.0 +- 0.9 against 48.9 +- 6.4 with
        # plain crops, better in every seed (docs/results.md, "Crops processed like the training reals"); PNG reals
        # (every zoo) leave the crops as cut.
        extra_real_process="auto",
        # DNA-Det trains through random shifts of its stage 3-4 BatchNorm statistics (`model.BatchNormalization`),
        # the mismatch another content's images cause: over 6 seeds on each of four content shifts, cross-dataset
        # faces -> scenes 53.7 against 46.7, faces -> lossless photos 48.1 against 42.8, scenes -> faces 84.7
        # against 81.0, lossless photos -> faces 86.6 against 85.9 (19 of 24 seeds up), demo zoo 98.9 +- 0.6 against
        # 95.0 +- 6.0 over 3 (docs/results.md, "Shifting the BatchNorm statistics in training"). DNA-Det only (make_config).
        statistics_shift=0.15,
        eval_batch_size=32,
        pretrain_batch_size=32,
        pretrain_val_samples=340,
        # Step 1 at x0.9 every 700 steps (39-43 min here) made DNA-Det meet every cross-test target
        # over 3 step-2 seeds from one step-1 seed, and all but cross-seed over 3 step-1 seeds, where
        # 4000 steps at x0.9 every 200 did not (docs/results.md, "Pre-training" and "Results").
        pretrain_steps=14000,
        pretrain_lr_decay_every=700,
        pretrain_val_every=100,
    ),
    "tiny": dict(
        width=0.0625,
        crop_size=32,
        resize1=32,
        resize2=64,
        patch_size=32,
        patches_per_image=4,
        images_per_class=4,
        learning_rate=2e-3,
        lr_decay_every=100,
        steps=40,
        val_every=20,
        checkpoint_every=20,
        log_every=10,
        patience=100,
        eval_batch_size=32,
        pretrain_batch_size=12,
        pretrain_val_samples=170,
        pretrain_steps=40,
        pretrain_lr_decay_every=100,
        pretrain_val_every=20,
    ),
}


def paper_name(mode, pretrained):
    """The paper's name of a configuration: Base, Base+PT, Base+PCL or DNA-Det (= Base+PT+PCL)."""
    if mode == "base":
        return "Base+PT" if pretrained else "Base"
    return "DNA-Det" if pretrained else "Base+PCL"


def native_bfloat16_cpu():
    """True when this machine's CPU computes bfloat16 natively (x86 AVX-512 BF16 or AMX-BF16, as Linux's
    /proc/cpuinfo lists them); False when it cannot tell."""
    from dnadet_tf.machine import cpu_flags

    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def auto_precision():
    """What precision `auto` means on this machine: mixed_bfloat16 on a CPU that computes bfloat16 natively
    and has no GPU (measured on the `cpu` preset: 1.3-1.9x the patches/s of float32, accuracy within the
    seed-to-seed spread over 3 seeds; docs/results.md "Training speed"), float32 otherwise (a CPU that emulates
    bfloat16 is slower with it; GPUs keep float32 unless asked)."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU") or not native_bfloat16_cpu():
        return "float32"
    return "mixed_bfloat16"


def _resolved(key, value):
    """A flat parameter's value as a config holds it: `--init none` is "" (random initialisation, also where the
    preset has an init), precision `auto` this machine's choice (`auto_precision`); others unchanged."""
    if key == "init" and value == NO_INIT:
        return ""
    if key == "precision" and value == "auto":
        return auto_precision()
    return value


def as_stored(config, key, value):
    """The value flat parameter `key` would hold in `config` (as config.json holds it) when set to `value`:
    resolved as `make_config` resolves it, then validated by `replace`."""
    return config.replace(**{key: _resolved(key, value)}).flat()[key]


def make_config(preset="paper", **overrides):
    """The preset's configuration with `overrides` (flat parameters; None values ignored) applied;
    `--init none` and precision `auto` are resolved here (`_resolved`)."""
    if preset not in PRESETS:
        raise DnadetError(f"preset: expected one of {sorted(PRESETS)}, received {preset!r}.")
    values = {"preset": preset, **PRESETS[preset]}
    values.update({k: v for k, v in overrides.items() if v is not None})
    values = {key: _resolved(key, value) for key, value in values.items()}
    variant = paper_name(values.get("mode", "dnadet"), bool(values.get("init")))
    if overrides.get("select") is None and values.get("select") == "average" and variant == "Base+PCL":
        # Base+PCL from random weights still moves between the last validations, and the mean of those models can
        # be another, broken one: on faces -> scenes rule average called the real test faces InfoMaxGAN in 2 of 3
        # runs (closed set 71.7 +- 12.8 against 98.2 +- 1.5 by rule nll, cross-dataset 44.8 against 56.8), and
        # nll was level or ahead on the other three zoos (docs/results.md, "Model selection"). From a step 1, average stays.
        values["select"] = "nll"
    if overrides.get("statistics_shift") is None and variant != "DNA-Det":
        # The preset's shift was measured for DNA-Det (patches from a step 1) alone: Base, Base+PT and Base+PCL
        # train as they were measured, without it, unless it is asked for.
        values["statistics_shift"] = 0.0
    return TrainConfig.from_flat(values)


def plain(value):
    """`value` as config.json holds it: an os.PathLike as a str (os.fspath), a number of another type (NumPy's
    scalars: numbers.Integral, numbers.Real; never bool) as an int or a float; anything else unchanged."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def received(value):
    """What an error says it received: `None`, `int 3`, `bytes b'a.png'`, `bytes of length 2048`, `a ndarray`."""
    if value is None:
        return "None"
    shown = repr(value)
    if len(shown) <= 40:
        return f"{type(value).__name__} {shown}"
    if isinstance(value, (bytes, bytearray)):
        return f"{type(value).__name__} of length {len(value)}"
    return f"a {type(value).__name__}"


def path_parameter(name, value, expected):
    """Path parameter `name` as a str (os.fspath); DnadetError naming `name`, what is `expected` and what it received
    unless `value` is a str or an os.PathLike."""
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    raise DnadetError(f"{name}: expected {expected} (str or pathlib.Path), received {received(value)}.")


def _stored(name, value):
    """Flat parameter `name`'s value as a TrainConfig holds it: `plain`, and `augment` as a tuple of attack names
    (`attacks.parse_attacks`: a list or a comma-separated string)."""
    if name != "augment":
        return plain(value)
    from dnadet_tf.attacks import parse_attacks

    try:
        return parse_attacks(value)
    except ValueError as error:
        raise DnadetError(f"augment: {error}") from None
    except TypeError:
        raise DnadetError(f"augment: expected attack names (a list or a comma-separated string), "
                          f"received {received(value)}.") from None


def _choice(name, value, choices):
    if value not in choices:
        raise DnadetError(f"{name}: expected one of {', '.join(choices)}, received {value!r}.")


def _check_types(config):
    """Raises DnadetError naming the first parameter (TOP_LEVEL ones included) whose value is not of its field's type
    (an integer, a number, a string or True/False): `fit(steps="3")` failed deep inside with a TypeError, `fit(init=3)`
    while writing config.json."""
    words = {int: "an integer", float: "a number", str: "a string", bool: "True or False"}
    kinds = {f.name: f.type for f in dataclasses.fields(TrainConfig) if f.name in TOP_LEVEL}
    for name, (section, field) in PARAMETERS.items():
        kinds[name] = next(f.type for f in dataclasses.fields(SECTIONS[section]) if f.name == field)
    values = config.flat()
    for name, kind in kinds.items():
        if name in ("input_niceness", "val_split"):  # their own checks name their ranges too
            continue
        value = values[name]
        fits = {int: isinstance(value, numbers.Integral) and not isinstance(value, bool),
                float: isinstance(value, numbers.Real) and not isinstance(value, bool),
                str: isinstance(value, str), bool: isinstance(value, bool)}.get(kind, True)
        if not fits:
            raise DnadetError(f"{name}: expected {words[kind]}, received {value!r}.")


def validate(config):
    """Raises DnadetError naming the first inconsistent parameter."""
    _check_types(config)
    _choice("mode", config.model.mode, MODES)
    _choice("preprocess_mode", config.preprocessing.preprocess_mode, PREPROCESS_MODES)
    if config.sampling.patch_size > config.preprocessing.resize2:
        raise DnadetError(f"patch_size: expected at most resize2={config.preprocessing.resize2}, "
                          f"received {config.sampling.patch_size}.")
    for name in ("patch_size", "resize2"):  # the encoder's total stride; its "same" padding is the authors' then
        section, field = PARAMETERS[name]
        value = getattr(getattr(config, section), field)
        if value % 16:
            raise DnadetError(f"{name}: expected a multiple of 16 (the encoder's total stride), received {value}.")
    _choice("precision", config.runtime.precision, PRECISIONS)
    _choice("strategy", config.runtime.strategy, STRATEGIES)
    niceness = config.runtime.input_niceness
    if not isinstance(niceness, int) or not 0 <= niceness <= 19:
        raise DnadetError(f"input_niceness: expected an integer from 0 to 19, received {niceness!r}.")
    _choice("select", config.loop.select, SELECTION_RULES)
    _choice("ood_score", config.loop.ood_score, SCORES)
    _choice("ce_input", config.optimizer.ce_input, CE_INPUTS)
    _choice("metric", config.loop.metric, METRICS)
    if not isinstance(config.sampling.extra_real, str):
        raise DnadetError(f"extra_real: expected 'auto', 'packaged', 'none' or a folder, "
                          f"received {config.sampling.extra_real!r}.")
    process = config.sampling.extra_real_process
    if (process != PROCESS_AUTO and parse_processing(process, "extra_real_process")
            and config.sampling.extra_real in ("", "none")):
        raise DnadetError(f"extra_real_process: expected crops to process (extra_real 'auto', 'packaged' or a "
                          f"folder), received extra_real_process {process!r} with "
                          f"extra_real {config.sampling.extra_real or 'none'!r}.")
    if not (isinstance(config.val_split, (int, float)) and 0.0 <= config.val_split < 1.0):
        raise DnadetError(f"val_split: expected a share of the training images from 0 to below 1, "
                          f"received {config.val_split!r}.")
    if config.val_split and config.val:
        raise DnadetError(f"val_split: expected no validation data beside it (the share is held out of the training "
                          f"data), received val_split={config.val_split} and val={config.val!r}.")
    transplant = config.sampling.transplant
    if not 0.0 <= transplant <= 1.0:
        raise DnadetError(f"transplant: expected a probability from 0 to 1, received {transplant}.")
    shift = config.model.statistics_shift
    if not (isinstance(shift, (int, float)) and 0.0 <= shift <= 2.0):
        raise DnadetError(f"statistics_shift: expected a standard deviation from 0 to 2, received {shift!r}.")
    align = config.optimizer.content_align
    if not (isinstance(align, (int, float)) and math.isfinite(align) and align >= 0.0):
        raise DnadetError(f"content_align: expected a finite loss weight of 0 or more, received {align!r}.")
    if align and config.sampling.extra_real in ("", "none"):
        raise DnadetError(f"content_align: expected extra real crops to align the real images with (extra_real "
                          f"'auto', 'packaged' or a folder), received content_align={align} with extra_real "
                          f"{config.sampling.extra_real or 'none'!r}.")
    frozen = config.optimizer.frozen_stages
    if not 0 <= frozen <= ENCODER_STAGES:
        raise DnadetError(f"frozen_stages: expected 0 to {ENCODER_STAGES} (the encoder's stages), received {frozen}.")
    if frozen and not config.init:
        raise DnadetError(f"frozen_stages: expected an init run whose weights the frozen stages keep (--init), "
                          f"received frozen_stages={frozen} without one.")
    # real-valued parameters: (name, whether a value is allowed, what is expected)
    for name, allowed, expected in (
            ("width", lambda v: 0.0 < v <= 16.0, "a width multiplier above 0 and at most 16"),
            ("learning_rate", lambda v: 0.0 < v <= 10.0, "a learning rate above 0 and at most 10"),
            ("loss_weight_learning_rate", lambda v: 0.0 <= v <= 10.0, "a learning rate from 0 to 10"),
            ("lr_decay", lambda v: 0.0 < v <= 1.0, "a decay factor above 0 and at most 1"),
            ("dropout", lambda v: 0.0 <= v < 1.0, "a dropout rate from 0 to below 1"),
            # the contrastive loss divides by both (and scales by their ratio): 0 gave inf, inf or nan gave nan
            ("temperature", lambda v: math.isfinite(v) and v > 0.0, "a finite temperature above 0"),
            ("base_temperature", lambda v: math.isfinite(v) and v > 0.0, "a finite temperature above 0")):
        section, field = PARAMETERS[name]
        value = getattr(getattr(config, section), field)
        if not (isinstance(value, (int, float)) and allowed(value)):
            raise DnadetError(f"{name}: expected {expected}, received {value!r}.")
    seed = config.runtime.seed
    if not (isinstance(seed, int) and 0 <= seed < 2 ** 31):
        raise DnadetError(f"seed: expected an integer from 0 to {2 ** 31 - 1}, received {seed!r}.")
    for name in ("steps", "val_every", "checkpoint_every", "log_every", "patches_per_image", "lr_decay_every",
                 "pretrain_images_per_class", "crop_size", "resize1", "average_last", "crop_grid",
                 "pretrain_batch_size", "eval_batch_size", "pretrain_steps", "pretrain_val_every",
                 "pretrain_val_samples", "pretrain_lr_decay_every", "patience", "pretrain_patience"):
        section, field = PARAMETERS[name]
        value = getattr(getattr(config, section), field)
        if value < 1:
            raise DnadetError(f"{name}: expected a positive integer, received {value}.")
    per, batch = config.pretrain.images_per_class, config.pretrain.batch_size
    if batch % per:  # each step of step 1 draws batch / per transformations, `per` images each
        raise DnadetError(f"pretrain_images_per_class: expected a divisor of pretrain_batch_size={batch} (each step "
                          f"draws pretrain_batch_size / it transformations), received {per}.")
    room = config.preprocessing.resize2 - config.sampling.patch_size
    if config.sampling.crop_grid > max(1, room):
        raise DnadetError(f"crop_grid: expected at most resize2 - patch_size = {room} (the crops' corners are its "
                          f"multiples: a larger one puts every crop at the same corner), received "
                          f"{config.sampling.crop_grid}.")

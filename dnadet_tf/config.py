"""Training configuration and its presets.

`paper` holds every hyper-parameter of the paper (DESIGN §3); `cpu` is
narrower with a smaller second resize and fewer crops, so a laptop trains it
in minutes; `tiny` is for tests. Flags override a preset; the resolved
configuration is saved as `config.json` in the run dir.
"""
import dataclasses
import json

from dnadet_tf.errors import DnadetError
from dnadet_tf.preprocess import PreprocessConfig
from dnadet_tf.selection import SELECTION_RULES

# What the classification cross-entropy reads: the logits (the method), or the softmax
# probabilities (the authors' release, whose numbers the paper reports).
CE_INPUTS = ("logits", "probabilities")


@dataclasses.dataclass
class TrainConfig:
    """Every value that shapes a training run.

    `images_per_class = 0` means the paper's rule: 32 images per class for up
    to 5 classes, 16 for more. `mode` is `dnadet` (patches, cross-entropy plus
    supervised contrastive loss with learned weighting) or `base` (whole
    images, cross-entropy only: the paper's Base). `select` names the rule
    that picks best.keras among the validated models (`selection.py`);
    `ce_input` what the cross-entropy reads (CE_INPUTS).
    """

    preset: str = "paper"
    mode: str = "dnadet"
    width: float = 1.0
    crop_size: int = 128
    resize1: int = 128
    resize2: int = 512
    patch_size: int = 64
    patches_per_image: int = 16
    images_per_class: int = 0
    learning_rate: float = 1e-4
    lr_decay: float = 0.9
    lr_decay_every: int = 500
    loss_weight_learning_rate: float = 0.01
    temperature: float = 0.07
    base_temperature: float = 0.07
    dropout: float = 0.2
    steps: int = 20000
    val_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 20
    patience: int = 20
    metric: str = "accuracy"
    select: str = "nll"
    keep_validated: bool = False
    ce_input: str = "logits"
    eval_batch_size: int = 16
    seed: int = 0
    augment: tuple = ()
    precision: str = "float32"
    jit: bool = False
    strategy: str = "auto"
    init: str = ""
    data: str = ""
    val: str = ""
    pretrain_batch_size: int = 128
    pretrain_val_samples: int = 1700
    pretrain_steps: int = 20000
    pretrain_patience: int = 20
    pretrain_images_per_class: int = 4

    @property
    def preprocess(self):
        """The run's PreprocessConfig: its sizes, with the patch size as the smallest side accepted."""
        return PreprocessConfig.of_run(self)

    def batch_images_per_class(self, num_classes):
        if self.images_per_class > 0:
            return self.images_per_class
        return 32 if num_classes <= 5 else 16

    def to_dict(self):
        values = dataclasses.asdict(self)
        values["augment"] = list(self.augment)
        return values

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DnadetError(f"config.json: unknown keys {unknown}; expected a subset of {sorted(known)}.")
        values = dict(values)
        values["augment"] = tuple(values.get("augment", ()))
        return cls(**values)

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


PRESETS = {
    "paper": {},
    "cpu": dict(
        width=0.25,
        resize2=256,
        patches_per_image=8,
        images_per_class=8,
        learning_rate=1e-3,
        lr_decay_every=200,
        steps=600,
        val_every=100,
        checkpoint_every=100,
        log_every=10,
        patience=4,
        eval_batch_size=32,
        pretrain_batch_size=32,
        pretrain_val_samples=340,
        pretrain_steps=4000,
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
    ),
}


def paper_name(mode, pretrained):
    """The paper's name of a configuration: Base, Base+PT, Base+PCL or DNA-Det (= Base+PT+PCL)."""
    if mode == "base":
        return "Base+PT" if pretrained else "Base"
    return "DNA-Det" if pretrained else "Base+PCL"


def make_config(preset="paper", **overrides):
    """The preset's configuration with `overrides` (None values ignored) applied."""
    if preset not in PRESETS:
        raise DnadetError(f"--preset: expected one of {sorted(PRESETS)}, received {preset!r}.")
    values = {"preset": preset, **PRESETS[preset]}
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = TrainConfig(**values)
    validate(config)
    return config


def validate(config):
    """Raises DnadetError naming the first inconsistent value."""
    if config.mode not in ("dnadet", "base"):
        raise DnadetError(f"mode: expected 'dnadet' or 'base', received {config.mode!r}.")
    if config.patch_size > config.resize2:
        raise DnadetError(
            f"patch_size: expected at most resize2={config.resize2}, received {config.patch_size}."
        )
    if config.precision not in ("float32", "mixed_float16", "mixed_bfloat16"):
        raise DnadetError(
            f"--precision: expected float32, mixed_float16 or mixed_bfloat16, received {config.precision!r}."
        )
    if config.strategy not in ("auto", "default", "mirrored", "multiworker"):
        raise DnadetError(
            f"--strategy: expected auto, default, mirrored or multiworker, received {config.strategy!r}."
        )
    if config.select not in SELECTION_RULES:
        raise DnadetError(f"select: expected one of {', '.join(SELECTION_RULES)}, received {config.select!r}.")
    if config.ce_input not in CE_INPUTS:
        raise DnadetError(f"ce_input: expected one of {', '.join(CE_INPUTS)}, received {config.ce_input!r}.")
    if config.metric not in ("accuracy", "macro_f1"):
        raise DnadetError(f"--metric: expected accuracy or macro_f1, received {config.metric!r}.")
    for name in ("steps", "val_every", "checkpoint_every", "log_every", "patches_per_image", "lr_decay_every",
                 "pretrain_images_per_class"):
        if getattr(config, name) < 1:
            raise DnadetError(f"{name}: expected a positive integer, received {getattr(config, name)}.")

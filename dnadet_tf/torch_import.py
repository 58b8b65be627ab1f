"""The authors' PyTorch checkpoints (ICTMCG/DNA-Det) as dnadet-tf run dirs.

The release's training script saves the state dict of its `Simple_CNN` (encoder and
classification head; `torch.save(netE.state_dict(), "model.pth")`): a flat dict of tensors,
no wrapper, no 'module.' prefix, no projection head. With nf = 64 in the release, C classes,
i = 0..7 and stage widths w = nf, nf, 2nf, 2nf, 4nf, 4nf, 8nf, 8nf (w_-1 = 3):

  main.{i}.main.0.weight            (w_i, w_{i-1}, k, k)  Conv2d, k = 4 stride 2 (even i), 3 stride 1 (odd i)
  main.{i}.main.0.bias              (w_i,)
  main.{i}.main.1.weight, .bias, .running_mean, .running_var   (w_i,)   BatchNorm2d, eps 1e-5
  main.{i}.main.1.num_batches_tracked   ()                              not needed for inference
  classification_head.1.weight      (C, 8 nf)                           after Dropout(0.2)
  classification_head.1.bias        (C,)

Also accepted: a state dict of the release's `SupConNet` (the above under 'backbone.', and the
projection head 'head.0.*' (H, 8 nf), 'head.2.*' (P, H)), a 'module.' prefix (DataParallel),
and a dict holding the state dict under 'state_dict', 'model' or 'model_state_dict'.

Mapping to `model.Classifier` (layer names `stage{s}_{conv,bn}{1,2}`, `logits`): conv kernels
OIHW -> HWIO; our convs have no bias, so each conv bias b is folded into the BatchNorm that
follows it (moving mean = running_mean - b, exact in real arithmetic); BatchNorm weight, bias,
running_mean, running_var -> gamma, beta, moving_mean, moving_variance; the head's weight is
transposed. The run's preprocessing is mode `release` (`dnadet_tf.preprocess`).
"""
import os

import numpy as np

from dnadet_tf.data import file_sha256
from dnadet_tf.errors import CheckpointError, DnadetError
from dnadet_tf.runs import IMPORT_FILE, RunDir
from dnadet_tf.torch_files import read_torch_file

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
NUM_CONVS = 8
HEAD_WEIGHT = "classification_head.1.weight"
HEAD_BIAS = "classification_head.1.bias"
IGNORED_SUFFIX = "num_batches_tracked"
PROJECTION_FILE = "projection_head.keras"

_GANS = ("progan", "mmdgan", "sngan", "infomaxgan")
# The release's configurations (configs/*.py) and the class order of its annotation scripts
# (generate_data_multiple_cross.py, generate_data_in_the_wild.py): label i is class_names[i].
# `resize1` is the release's resize_size, `resize2` its second_resize_size (or resize_size again).
RELEASE_SETTINGS = {
    "celeba": {"class_names": ("real",) + _GANS, "crop_size": 128, "resize1": 512, "resize2": 512},
    "lsun": {"class_names": ("real",) + _GANS, "crop_size": 128, "resize1": 512, "resize2": 512},
    "in_the_wild": {
        "class_names": ("real",) + tuple(f"{gan}_128" for gan in _GANS) + (
            "stackgan2_256", "progan_256", "cyclegan_256", "stylegan2_256", "stylegan_1024", "stylegan2_1024"),
        "crop_size": 128, "resize1": 128, "resize2": 512},
    "pretrain": {"class_names": None, "crop_size": 128, "resize1": 512, "resize2": 512},  # the 170 transformations
}


def setting_class_names(setting):
    """The class names of a release setting, in label order."""
    names = RELEASE_SETTINGS[setting]["class_names"]
    if names is None:
        from dnadet_tf.transforms import TRANSFORM_NAMES

        names = TRANSFORM_NAMES
    return list(names)


def _conv(i):
    return f"main.{i}.main.0"


def _bn(i):
    return f"main.{i}.main.1"


def expected_tensors(nf, num_classes, projection=None):
    """[(name, shape)] of the release network's state dict, in its order.

    `projection`: None, or (hidden, out) sizes of a SupConNet projection head (names 'head.*').
    `num_batches_tracked` is left out (optional, not needed for inference).
    """
    widths = [nf, nf, 2 * nf, 2 * nf, 4 * nf, 4 * nf, 8 * nf, 8 * nf]
    tensors, previous = [], 3
    for i, width in enumerate(widths):
        k = 4 if i % 2 == 0 else 3
        tensors += [(f"{_conv(i)}.weight", (width, previous, k, k)), (f"{_conv(i)}.bias", (width,))]
        tensors += [(f"{_bn(i)}.{name}", (width,)) for name in ("weight", "bias", "running_mean", "running_var")]
        previous = width
    tensors += [(HEAD_WEIGHT, (num_classes, 8 * nf)), (HEAD_BIAS, (num_classes,))]
    if projection:
        hidden, out = projection
        tensors += [("head.0.weight", (hidden, 8 * nf)), ("head.0.bias", (hidden,)),
                    ("head.2.weight", (out, hidden)), ("head.2.bias", (out,))]
    return tensors


def _is_state_dict(value):
    return isinstance(value, dict) and value and all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in value.items())


def state_dict_of(saved, path):
    """{name: array} of the network from what `torch.save` stored: unwraps a dict holding it under
    WRAPPER_KEYS, strips a 'module.' prefix and a SupConNet's 'backbone.' prefix."""
    tensors = saved
    if isinstance(saved, dict) and not _is_state_dict(saved):
        held = [key for key in WRAPPER_KEYS if _is_state_dict(saved.get(key))]
        if not held:
            keys = sorted(str(k) for k in saved)[:8] if isinstance(saved, dict) else []
            raise CheckpointError(
                f"{path}: expected a state dict (tensor names -> tensors), or a dict holding one under "
                f"{' or '.join(repr(k) for k in WRAPPER_KEYS)}; received a dict with keys {keys}.")
        tensors = saved[held[0]]
    if not _is_state_dict(tensors):
        raise CheckpointError(f"{path}: expected a state dict (tensor names -> tensors); received "
                              f"{type(saved).__name__}.")
    names = list(tensors)
    if all(name.startswith("module.") for name in names):
        tensors = {name[len("module."):]: value for name, value in tensors.items()}
    if any(name.startswith("backbone.") for name in tensors):
        tensors = {name[len("backbone."):] if name.startswith("backbone.") else name: value
                   for name, value in tensors.items()}
    return dict(tensors)


def check_release_tensors(tensors, path):
    """(nf, num_classes, projection) of a release state dict, after checking every tensor.

    Raises CheckpointError naming the first missing tensor (in the network's order), then the
    first tensor of another shape (naming both shapes), then the first unexpected tensor, then the first that is
    not floating point or holds a value that is not finite.
    """
    first = f"{_conv(0)}.weight"

    def missing(name):
        example = next(iter(tensors), None)
        return CheckpointError(
            f"{path}: missing tensor {name!r} of the release's Simple_CNN (models/models.py); the file holds "
            f"{len(tensors)} tensors, the first {example!r}.")

    if first not in tensors:
        raise missing(first)
    if tensors[first].ndim != 4:
        raise CheckpointError(f"{path}: tensor {first!r} has shape {tuple(tensors[first].shape)}; expected "
                              f"(nf, 3, 4, 4).")
    nf = int(tensors[first].shape[0])
    if HEAD_WEIGHT not in tensors:
        raise missing(HEAD_WEIGHT)
    classes_in_file = int(tensors[HEAD_WEIGHT].shape[0]) if tensors[HEAD_WEIGHT].ndim == 2 else -1
    projection = None
    if "head.0.weight" in tensors and "head.2.weight" in tensors:
        projection = (int(tensors["head.0.weight"].shape[0]), int(tensors["head.2.weight"].shape[0]))
    expected = expected_tensors(nf, classes_in_file, projection)
    for name, shape in expected:
        if name not in tensors:
            raise missing(name)
        if tuple(tensors[name].shape) != shape:
            raise CheckpointError(f"{path}: tensor {name!r} has shape {tuple(tensors[name].shape)}; expected "
                                  f"{shape} (nf = {nf}, {classes_in_file} classes).")
    known = {name for name, _ in expected}
    for name, value in tensors.items():
        if name not in known and not (name.endswith(IGNORED_SUFFIX) and name[: -len(IGNORED_SUFFIX)].rstrip(".")
                                      in {_bn(i) for i in range(NUM_CONVS)}):
            raise CheckpointError(f"{path}: unexpected tensor {name!r} {tuple(value.shape)}; expected only the "
                                  f"release's Simple_CNN (models/models.py) and optionally its SupConNet head.")
    for name, _ in expected:
        if not np.issubdtype(tensors[name].dtype, np.floating):
            raise CheckpointError(f"{path}: tensor {name!r} is {tensors[name].dtype}; expected floating point.")
        bad = int(np.size(tensors[name]) - np.count_nonzero(np.isfinite(tensors[name])))
        if bad:  # a diverged training's weights: every answer would be NaN
            raise CheckpointError(f"{path}: tensor {name!r} holds {bad} NaN or infinite values; expected finite "
                                  f"weights.")
    return nf, classes_in_file, projection


def release_width(nf, path):
    """The `Backbone` width multiplier whose stage widths are nf, 2nf, 4nf, 8nf."""
    from dnadet_tf.model import STAGE_WIDTHS, stage_widths

    width = nf / STAGE_WIDTHS[0]
    if stage_widths(width) != (nf, 2 * nf, 4 * nf, 8 * nf):
        raise CheckpointError(f"{path}: the release network's nf = {nf} gives stage widths "
                              f"{(nf, 2 * nf, 4 * nf, 8 * nf)}; expected nf >= 4.")
    return width


def _f32(array):
    return np.asarray(array, np.float32)


def assign_release_weights(classifier, tensors):
    """Copies a checked release state dict into a `model.Classifier` of the same width and class count."""
    for i in range(NUM_CONVS):
        stage, index = i // 2 + 1, i % 2 + 1
        conv = classifier.get_layer(f"stage{stage}_conv{index}")
        bn = classifier.get_layer(f"stage{stage}_bn{index}")
        conv.kernel.assign(_f32(np.transpose(tensors[f"{_conv(i)}.weight"], (2, 3, 1, 0))))
        bias = np.asarray(tensors[f"{_conv(i)}.bias"], np.float64)
        bn.gamma.assign(_f32(tensors[f"{_bn(i)}.weight"]))
        bn.beta.assign(_f32(tensors[f"{_bn(i)}.bias"]))
        # BN(conv(x) + b) = BN'(conv(x)) with BN' the same but moving mean running_mean - b.
        bn.moving_mean.assign(_f32(np.asarray(tensors[f"{_bn(i)}.running_mean"], np.float64) - bias))
        bn.moving_variance.assign(_f32(tensors[f"{_bn(i)}.running_var"]))
    logits = classifier.get_layer("logits")
    logits.kernel.assign(_f32(np.transpose(tensors[HEAD_WEIGHT])))
    logits.bias.assign(_f32(tensors[HEAD_BIAS]))
    return classifier


def projection_head_from(tensors, feature_dim, projection):
    """The Keras projection head (`model.build_projection_head`) holding a SupConNet's 'head.*' weights."""
    from dnadet_tf.model import build_projection_head

    hidden, out = projection
    head = build_projection_head(feature_dim, hidden_dim=hidden, out_dim=out)
    for layer, prefix in (("proj_dense1", "head.0"), ("proj_dense2", "head.2")):
        head.get_layer(layer).kernel.assign(_f32(np.transpose(tensors[f"{prefix}.weight"])))
        head.get_layer(layer).bias.assign(_f32(tensors[f"{prefix}.bias"]))
    return head


def require_checkpoint_outside(checkpoint, out, overwrite):
    """Raises RunDirError (a DnadetError) when `overwrite` would empty run dir `out` (an existing folder holding
    files) with the checkpoint to import inside it (`import-torch RUN/model.pth --out RUN --overwrite` deleted the
    very file it was about to read): `RunDir.require_inputs_outside`, which compares real paths, so that a link or
    another spelling is caught too."""
    RunDir(out).require_inputs_outside(
        [("checkpoint", checkpoint, "a file")], overwrite=overwrite, subject="the checkpoint",
        remedy="move the checkpoint out of the folder first, or import into another one")


def import_torch(checkpoint, out, class_names=None, setting=None, crop_size=None, resize1=None, resize2=None,
                 overwrite=False):
    """Writes run dir `out` (best.keras, labels.txt, config.json, import.json) from a release checkpoint.

    Args:
      checkpoint: a `torch.save` file of the release's network (module docstring).
      out: the run dir to create (an existing non-empty one needs `overwrite`).
      class_names: names in label order; default: those of `setting`.
      setting: one of RELEASE_SETTINGS (`celeba`, `lsun`, `in_the_wild`, `pretrain`): the release
        configuration the checkpoint was trained with; gives class names and preprocessing sizes.
      crop_size, resize1, resize2: preprocessing sizes (default: the setting's, else 128, 128, 512).

    Returns a summary dict (also import.json): source, sha256, width, classes, preprocessing, and
    which tensors were mapped, folded and ignored. PyTorch is not needed.
    """
    from dnadet_tf.config import make_config
    from dnadet_tf.model import Backbone, Classifier
    from dnadet_tf.runs import write_json_atomic

    if setting is not None and setting not in RELEASE_SETTINGS:
        raise DnadetError(f"setting: expected one of {', '.join(RELEASE_SETTINGS)}, received {setting!r}.")
    named_by_setting = class_names is None
    if named_by_setting:
        if setting is None:
            raise DnadetError("classes: expected the class names in label order (or a setting that names them), "
                              "received none.")
        class_names = setting_class_names(setting)
    class_names = [str(name) for name in class_names]
    if len(set(class_names)) != len(class_names) or not all(class_names):
        raise DnadetError(f"classes: expected distinct non-empty names, received {class_names}.")
    sizes = dict(RELEASE_SETTINGS[setting]) if setting else {"crop_size": 128, "resize1": 128, "resize2": 512}
    for name, value in (("crop_size", crop_size), ("resize1", resize1), ("resize2", resize2)):
        if value is not None:
            if int(value) < 1:
                raise DnadetError(f"{name}: expected a positive integer, received {value}.")
            sizes[name] = int(value)
    if sizes["resize2"] % 16:  # said here: the patch size derived from it, min(64, resize2), has no parameter
        below = sizes["resize2"] // 16 * 16
        near = f"{below} or {below + 16}" if below else "16"
        raise DnadetError(f"resize2: expected a multiple of 16 (the encoder's total stride), such as {near}, "
                          f"received {sizes['resize2']}.")
    checkpoint = os.fspath(checkpoint)
    run = RunDir(out)
    if os.path.isdir(run.path) and os.listdir(run.path) and not overwrite:
        raise DnadetError(f"out {run.path}: the folder already holds files; pass overwrite=True to replace them.")
    require_checkpoint_outside(checkpoint, run.path, overwrite)
    run.check(overwrite=overwrite, resumable=False)

    tensors = state_dict_of(read_torch_file(checkpoint), checkpoint)
    nf, num_classes, projection = check_release_tensors(tensors, checkpoint)
    if num_classes != len(class_names):
        head = f"the {num_classes}-way head of {checkpoint} ({HEAD_WEIGHT} {tuple(tensors[HEAD_WEIGHT].shape)})"
        if named_by_setting:
            raise DnadetError(f"setting and classes: setting {setting} names {len(class_names)} classes, but {head} "
                              f"has {num_classes}; expected {num_classes} class names or another setting.")
        raise DnadetError(f"classes: expected {num_classes} names for {head}, received {len(class_names)}.")
    width = release_width(nf, checkpoint)

    config = make_config("paper", width=width, crop_size=sizes["crop_size"], resize1=sizes["resize1"],
                         resize2=sizes["resize2"], patch_size=min(64, sizes["resize2"]), preprocess_mode="release")
    classifier = Classifier(Backbone(width=width), num_classes, dropout=0.2, class_names=class_names,
                            preprocessing=config.preprocess)
    assign_release_weights(classifier, tensors)
    ignored = sorted(name for name in tensors if name.endswith(IGNORED_SUFFIX))
    summary = {
        "source": os.path.abspath(checkpoint), "sha256": file_sha256(checkpoint).hex(), "setting": setting,
        "width": width, "nf": nf, "class_names": class_names, "preprocess": config.preprocess.to_dict(),
        "tensors_mapped": len(expected_tensors(nf, num_classes, projection)), "conv_biases_folded_into_moving_mean": NUM_CONVS,
        "tensors_ignored": ignored, "projection_head": PROJECTION_FILE if projection else None,
    }
    run.start(config, class_names, overwrite=overwrite, resumable=False)
    run.save_best(classifier)
    if projection:
        from dnadet_tf.runs import save_model_atomic

        save_model_atomic(projection_head_from(tensors, classifier.backbone.feature_dim, projection),
                          run.file(PROJECTION_FILE))
    write_json_atomic(run.file(IMPORT_FILE), summary)
    return summary

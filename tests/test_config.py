import dataclasses
import json

import pytest

from dnadet_tf.config import PARAMETERS, TrainConfig, make_config
from dnadet_tf.errors import DnadetError

# config.json as runs written before the sectioned configuration hold it (flat).
FLAT_CONFIG = {
    "augment": ["crop"], "average_last": 4, "base_temperature": 0.07, "ce_input": "logits", "checkpoint_every": 20, "crop_size": 32,
    "data": "/data/train", "dropout": 0.2, "eval_batch_size": 32, "images_per_class": 4, "init": "", "jit": False,
    "keep_validated": False, "learning_rate": 0.002, "log_every": 10, "loss_weight_learning_rate": 0.01,
    "lr_decay": 0.9, "lr_decay_every": 100, "metric": "accuracy", "mode": "dnadet", "patch_size": 32,
    "patches_per_image": 4, "patience": 100, "precision": "float32", "preset": "tiny", "pretrain_batch_size": 12,
    "pretrain_images_per_class": 4, "pretrain_patience": 20, "pretrain_steps": 40, "pretrain_val_samples": 170,
    "resize1": 32, "resize2": 64, "seed": 0, "select": "first", "steps": 40, "strategy": "auto",
    "temperature": 0.07, "val": "/data/val", "val_every": 20, "width": 0.0625,
}


def test_a_flat_config_json_of_an_older_run_is_converted(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(FLAT_CONFIG))
    config = TrainConfig.load(str(path))
    # Fields added since take their defaults (ood_score: the open-set score fitted after training; the
    # preprocessing mode; step 1's own schedule and validation interval; crop_square: an older run keeps
    # squashing large square images, as it was trained; frozen_stages: every layer was trained;
    # input_niceness: the input's threads below the step's, which changes the speed only; zero_mean_stem:
    # the first convolution was trained unconstrained; crop_grid: crops at any pixel; extra_real: no real
    # photos were added, so none was processed; transplant: no fake was moved onto them; val_split: nothing
    # was held out; content_align: no alignment loss; statistics_shift: BatchNorm outputs left as they were).
    added = {"ood_score": "mahalanobis", "preprocess_mode": "tf", "pretrain_lr_decay_every": 500,
             "pretrain_val_every": 500, "crop_square": False, "frozen_stages": 0, "input_niceness": 19,
             "zero_mean_stem": False, "crop_grid": 1, "extra_real": "", "extra_real_process": "none",
             "transplant": 0.0, "val_split": 0.0, "content_align": 0.0, "statistics_shift": 0.0}
    assert config.flat() == {**FLAT_CONFIG, "augment": ("crop",), **added}
    assert config == make_config("tiny", augment=("crop",), data="/data/train", val="/data/val", select="first",
                                 pretrain_lr_decay_every=500, pretrain_val_every=500)
    assert config.model.width == 0.0625 and config.sampling.patch_size == 32 and config.pretrain.batch_size == 12


def test_sections_round_trip_through_json():
    config = make_config("cpu", mode="base", augment=("jpeg",), keep_validated=True, pretrain_steps=7)
    document = json.loads(json.dumps(config.to_dict()))
    assert set(document) == {"preset", "init", "data", "val", "val_split", "model", "preprocessing", "sampling", "optimizer",
                             "loop", "runtime", "pretrain"}
    assert TrainConfig.from_dict(document) == config


def test_frozen_and_changed_only_by_a_validated_copy():
    config = make_config("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.loop.steps = 3
    changed = config.replace(steps=3, width=None)
    assert changed.loop.steps == 3 and config.loop.steps == 40 and changed.model.width == config.model.width
    with pytest.raises(DnadetError, match=r"^patch_size: expected at most resize2=64, received 128\.$"):
        config.replace(patch_size=128)


@pytest.mark.parametrize("name, value", [("precision", "float8"), ("strategy", "tpu"), ("metric", "recall"),
                                         ("select", "best"), ("ce_input", "softmax"), ("mode", "gan"),
                                         ("preprocess_mode", "pil")])
def test_errors_name_the_parameter(name, value):
    assert name in PARAMETERS
    with pytest.raises(DnadetError, match=rf"^{name}: expected one of .*received '{value}'\.$"):
        make_config("tiny", **{name: value})
    with pytest.raises(DnadetError, match=r"^preset: expected one of"):
        make_config("huge")
    with pytest.raises(DnadetError, match=r"^parameters: unknown names \['widht'\]"):
        make_config("tiny", widht=2)


def test_step_1_groups_and_the_crop_grid_must_fit_the_batch_and_the_image():
    """A group size that does not divide step 1's batch gave steps of another size than config.json said (100
    images for a batch of 5); a crop grid beyond resize2 - patch_size put every crop at the same corner."""
    make_config("tiny", pretrain_images_per_class=6, crop_grid=32)  # 12 = 2 x 6; 64 - 32 = 32
    with pytest.raises(DnadetError, match=r"^pretrain_images_per_class: expected a divisor of pretrain_batch_size=12 "
                                          r".*received 5\.$"):
        make_config("tiny", pretrain_images_per_class=5)
    with pytest.raises(DnadetError, match=r"^crop_grid: expected at most resize2 - patch_size = 32 .*received 33\.$"):
        make_config("tiny", crop_grid=33)


@pytest.mark.parametrize("value", [-1, 20, 2.5])
def test_input_niceness_must_be_a_nice_value(value):
    with pytest.raises(DnadetError, match=rf"^input_niceness: expected an integer from 0 to 19, received {value}\.$"):
        make_config("tiny", input_niceness=value)


@pytest.mark.parametrize("native, expected", [(True, "mixed_bfloat16"), (False, "float32")])
def test_cpu_preset_precision_auto_follows_native_bfloat16(monkeypatch, native, expected):
    from dnadet_tf import config as config_module

    monkeypatch.setattr(config_module, "native_bfloat16_cpu", lambda: native)
    assert make_config("cpu").runtime.precision == expected  # resolved: config.json holds what ran
    assert make_config("cpu", precision="float32").runtime.precision == "float32"
    assert make_config("tiny").runtime.precision == "float32" and make_config("paper").runtime.precision == "float32"
    assert make_config("tiny", precision="auto").runtime.precision == expected


def test_native_bfloat16_is_read_from_the_cpu_flags(monkeypatch, tmp_path):
    from dnadet_tf import config as config_module

    cpuinfo = tmp_path / "cpuinfo"
    real_open = open

    def fake_open(path, *args, **kwargs):
        return real_open(cpuinfo if path == "/proc/cpuinfo" else path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    assert config_module.native_bfloat16_cpu()
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert not config_module.native_bfloat16_cpu()


@pytest.mark.parametrize("name,value", [("patience", 0), ("patience", -1), ("pretrain_patience", 0)])
def test_a_patience_below_one_is_refused(name, value):
    # --patience 0 trained nothing, wrote no best.keras and exited 0 ("stopped early at step 0")
    with pytest.raises(DnadetError, match=rf"^{name}: expected a positive integer, received {value}\.$"):
        make_config("tiny", **{name: value})

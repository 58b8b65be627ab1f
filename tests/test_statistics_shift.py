"""`fit --statistics-shift`: BatchNorm outputs of encoder stages 3-4 moved by a random per-channel affine map in
training (the layer itself: tests/test_model.py)."""
import os

import keras
import numpy as np
import pytest

from dnadet_tf.cli.main import main
from dnadet_tf.config import make_config
from dnadet_tf.errors import DnadetError
from dnadet_tf.runs import RunDir


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))


def test_the_shift_is_a_standard_deviation_from_0_to_2(upsampling_data, tmp_path, capsys):
    with pytest.raises(DnadetError, match=r"statistics_shift: expected a standard deviation from 0 to 2, received -0.5"):
        make_config("tiny", statistics_shift=-0.5)
    out = str(tmp_path / "run")
    assert main(["fit", "--data", upsampling_data["train"], "--out", out, "--preset", "tiny", "--steps", "2",
                 "--statistics-shift", "3"]) != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert errors == ["dnadet-tf fit: error: --statistics-shift: expected a standard deviation from 0 to 2, received 3.0."]
    assert not os.path.exists(os.path.join(out, "config.json"))


def test_fit_trains_with_the_shift_reproducibly_and_keeps_it_in_the_config_and_the_model(upsampling_data, tmp_path,
                                                                                         capsys):
    runs = []
    for name in ("a", "b", "plain"):
        out = str(tmp_path / name)
        shift = [] if name == "plain" else ["--statistics-shift", "0.5"]
        assert main(["fit", "--data", upsampling_data["train"], "--out", out, "--preset", "tiny", "--steps", "4",
                     "--val-every", "4", "--select", "last"] + shift) == 0
        runs.append(RunDir(out))
    text = capsys.readouterr().out
    assert "BatchNorm statistics shift 0.5 (stages 3-4)" in text
    a, b, plain = (keras.saving.load_model(run.best_model_path, compile=False) for run in runs)
    assert runs[0].config.model.statistics_shift == 0.5 and runs[2].config.model.statistics_shift == 0.0
    assert a.backbone.get_layer("stage3_bn1").statistics_shift == 0.5
    assert a.backbone.get_layer("stage2_bn2").statistics_shift == 0.0
    for x, y in zip(a.get_weights(), b.get_weights()):  # the same seed draws the same shifts
        np.testing.assert_array_equal(x, y)
    # The shifts changed what was learnt (the same seed without them trains other weights).
    assert any(not np.array_equal(x, y) for x, y in zip(a.get_weights(), plain.get_weights()))


def test_the_cpu_preset_shifts_dna_det_alone_and_a_flag_wins():
    assert make_config("cpu").model.statistics_shift == 0.15  # DNA-Det from the packaged step 1
    assert make_config("cpu", init="/runs/step1").model.statistics_shift == 0.15
    # Base+PT, Base and Base+PCL were measured without it, and train so.
    assert make_config("cpu", mode="base").model.statistics_shift == 0.0
    assert make_config("cpu", mode="base", init="none").model.statistics_shift == 0.0
    assert make_config("cpu", init="none").model.statistics_shift == 0.0
    assert make_config("cpu", statistics_shift=0.0).model.statistics_shift == 0.0
    assert make_config("cpu", init="none", statistics_shift=0.3).model.statistics_shift == 0.3
    assert make_config("tiny").model.statistics_shift == 0.0 and make_config("paper").model.statistics_shift == 0.0

"""The public API's arguments as notebooks pass them: paths as pathlib.Path, numbers as NumPy scalars, and the
mistakes (None, a list for one path, bytes) named as the parameter they were given for, before `out` is created."""
import io
import json
import os
import pathlib

import numpy as np
import pytest

import dnadet_tf
from dnadet_tf.config import make_config
from dnadet_tf.errors import DnadetError


class StopBeforeTraining(Exception):
    pass


@pytest.fixture(scope="module")
def run(upsampling_data, tmp_path_factory):
    """A run dir of the `tiny` preset trained for 4 steps, without validation data."""
    path = str(tmp_path_factory.mktemp("arguments") / "run")
    dnadet_tf.fit(upsampling_data["train"], path, preset="tiny", steps=4, output=io.StringIO())
    return path


def fit_until_training(monkeypatch, data, out, **options):
    """config.json of `dnadet_tf.fit(data, out, preset="tiny", **options)` stopped where training would start: every
    parameter checked, `out` started."""
    def stop(*args, **kwargs):
        raise StopBeforeTraining

    monkeypatch.setattr("dnadet_tf.training.run_training", stop)
    with pytest.raises(StopBeforeTraining):
        dnadet_tf.fit(data, out, preset="tiny", output=io.StringIO(), **options)
    with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def test_every_path_parameter_of_fit_takes_a_pathlib_path(run, upsampling_data, tmp_path, monkeypatch):
    from synthetic import make_photos

    photos = pathlib.Path(make_photos(str(tmp_path / "photos"), 2))
    out = tmp_path / "from_run"
    # init=Path crashed writing config.json (leaving `out` empty), extra_real=Path was refused as not a string
    config = fit_until_training(monkeypatch, pathlib.Path(upsampling_data["train"]), out, init=pathlib.Path(run),
                                extra_real=photos, val=pathlib.Path(upsampling_data["val"]))
    assert (config["init"], config["sampling"]["extra_real"]) == (run, str(photos))
    assert config["val"] == upsampling_data["val"]
    assert make_config("tiny", init=pathlib.Path(run), extra_real=photos).flat()["extra_real"] == str(photos)


def test_numpy_scalars_are_numbers_stored_as_plain_ones(upsampling_data, tmp_path, monkeypatch):
    config = make_config("tiny", steps=np.int64(4), width=np.float32(0.0625), seed=np.int64(3),
                         learning_rate=np.float64(1e-3), val_split=np.float32(0.25), input_niceness=np.int32(5))
    values = config.flat()
    for name, kind, value in [("steps", int, 4), ("width", float, 0.0625), ("seed", int, 3),
                              ("learning_rate", float, 1e-3), ("val_split", float, 0.25), ("input_niceness", int, 5)]:
        assert type(values[name]) is kind and values[name] == value, name
    # steps=np.int64 crashed in the JSON encoder, leaving an empty run dir
    stored = fit_until_training(monkeypatch, upsampling_data["train"], str(tmp_path / "run"), steps=np.int64(4),
                                width=np.float32(0.0625), seed=np.int64(3))
    assert (stored["loop"]["steps"], stored["model"]["width"], stored["runtime"]["seed"]) == (4, 0.0625, 3)
    # booleans and non-integral numbers stay refused
    with pytest.raises(DnadetError, match=r"^steps: expected an integer, received True\.$"):
        make_config("tiny", steps=True)
    with pytest.raises(DnadetError, match=r"^seed: expected an integer, received 3\.5\.$"):
        make_config("tiny", seed=np.float64(3.5))


def test_predict_and_evaluate_take_numpy_batch_sizes(run, upsampling_data):
    paths, probabilities = dnadet_tf.predict(run, os.path.join(upsampling_data["val"], "real"),
                                             batch_size=np.int64(4))
    assert probabilities.shape == (12, 3)
    rows = dnadet_tf.evaluate(run, upsampling_data["val"], batch_size=np.int32(8))
    assert rows[0]["metrics"]["num_images"] == 36
    with pytest.raises(DnadetError, match=r"^batch_size: expected a positive integer, received np\.float64\(4\.0\)\.$"):
        dnadet_tf.predict(run, paths, batch_size=np.float64(4.0))


def test_bytes_are_named_as_bytes_not_as_their_first_integer(tmp_path):
    expected = r"^inputs: expected paths of image files or folders \(str or pathlib\.Path\), received "
    with pytest.raises(DnadetError, match=expected + r"bytes b'odd/rgb\.png'\.$"):
        dnadet_tf.predict(str(tmp_path), b"odd/rgb.png")
    with pytest.raises(DnadetError, match=expected + r"bytes of length 2048\.$"):
        dnadet_tf.predict(str(tmp_path), bytes(2048))
    with pytest.raises(DnadetError, match=r"^data: expected labeled data: .* received bytes b'data'\.$"):
        dnadet_tf.evaluate(str(tmp_path), [b"data"])


def test_a_wrong_path_argument_is_one_line_naming_its_parameter(run, upsampling_data, tmp_path):
    train, out = upsampling_data["train"], tmp_path / "out"
    for call, message in [
        (lambda: dnadet_tf.load(None), r"^path: expected a run dir, a SavedModel folder or a \.tflite file "
                                       r"\(str or pathlib\.Path\), received None\.$"),
        (lambda: dnadet_tf.export(run, None), r"^out_dir: expected a folder .* received None\.$"),
        (lambda: dnadet_tf.export(None, str(tmp_path)), r"^run_dir: expected a run dir .* received None\.$"),
        (lambda: dnadet_tf.fit(None, out), r"^data: expected one path: a folder tree, an annotation list or a "
                                           r"benchmark folder \(str or pathlib\.Path\), received None\.$"),
        (lambda: dnadet_tf.fit([train], out), r"^data: expected one path: .* received (a )?list.*\.$"),
        (lambda: dnadet_tf.fit(train, None), r"^out: expected the run dir to train into .* received None\.$"),
        (lambda: dnadet_tf.fit(train, out, val=3), r"^val: expected one path: .* received int 3\.$"),
        (lambda: dnadet_tf.fit(train, out, preset="tiny", init=3), r"^init: expected a string, received 3\.$"),
        (lambda: dnadet_tf.fit(train, out, preset="tiny", augment=["bogus"]), r"^augment: unknown attack 'bogus'"),
        (lambda: dnadet_tf.evaluate(run, train, out_dir=3), r"^out_dir: expected a folder .* received int 3\.$"),
    ]:
        with pytest.raises(DnadetError, match=message):
            call()
        assert not out.exists()  # parameters are checked before the run dir is created


def test_an_empty_list_of_unknown_images_is_none(run, upsampling_data):
    rows = dnadet_tf.evaluate(run, upsampling_data["val"], unknown=[])
    assert [row["name"] for row in rows] == ["val"]
    with pytest.raises(DnadetError, match=r"^inputs: expected paths .*, received none\.$"):
        dnadet_tf.predict(run, [])  # where paths are required, none is still refused

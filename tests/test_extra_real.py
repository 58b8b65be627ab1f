"""`fit --extra-real`: crops of other real photos added to the class named real."""
import os
import sys

import numpy as np
import pytest
from PIL import Image

from dnadet_tf.cli.main import main
from dnadet_tf.data import LabeledFiles, read_dataset
from dnadet_tf.errors import DataError
from dnadet_tf.extra_real import add_extra_real
from dnadet_tf.runs import RunDir
from synthetic import make_photos


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))


def _files(labels, class_names=("real", "a", "b")):
    return LabeledFiles([f"x{i}.png" for i in range(len(labels))], np.asarray(labels), list(class_names), "X")


def test_as_many_crops_as_the_real_class_has_labelled_real_and_the_same_every_time(tmp_path):
    photos = make_photos(str(tmp_path / "photos"), 3, size=(200, 150))
    files = _files([0, 1, 0, 2, 0])
    added = add_extra_real(files, photos)
    assert added.paths[:5] == files.paths and len(added) == 8
    assert added.labels.tolist() == [0, 1, 0, 2, 0, 0, 0, 0]
    crops = [np.asarray(Image.open(path)) for path in added.paths[5:]]
    assert all(crop.shape == (128, 128, 3) for crop in crops)
    assert not np.array_equal(crops[0], crops[1])
    again = add_extra_real(files, photos)  # read back from the cache folder
    assert again.paths == added.paths
    # the cache is only a cache: cut again, the crops are the same pixels
    for path in added.paths[5:]:
        os.remove(path)
    recut = add_extra_real(files, photos)
    for path, crop in zip(recut.paths[5:], crops):
        np.testing.assert_array_equal(np.asarray(Image.open(path)), crop)


def test_the_packaged_photos_are_a_source_none_changes_nothing_and_auto_needs_a_real_class(capsys):
    files = _files([0, 0, 1])
    assert add_extra_real(files, "none") is files and add_extra_real(files, "") is files
    added = add_extra_real(files, "packaged")
    assert len(added) == 5 and all(os.path.isfile(path) for path in added.paths[3:])
    assert add_extra_real(files, "auto").paths == added.paths
    no_real = _files([0, 1], ("a", "b"))
    assert add_extra_real(no_real, "auto", sys.stdout) is no_real
    assert "--extra-real auto: no class named 'real' among ['a', 'b'], no real photos added" in capsys.readouterr().out


def test_errors_name_the_flag_and_what_was_expected(tmp_path):
    with pytest.raises(DataError, match=r"--extra-real packaged: expected a class named 'real' .* \['a', 'b'\]"):
        add_extra_real(_files([0, 1], ("a", "b")), "packaged")
    with pytest.raises(DataError, match=r"--extra-real: expected 'auto', 'packaged', 'none' or a folder of photos, "
                                        r"received '.*nowhere', which is not a folder"):
        add_extra_real(_files([0, 1]), str(tmp_path / "nowhere"))
    small = tmp_path / "small"
    small.mkdir()
    Image.fromarray(np.zeros((100, 300, 3), np.uint8)).save(small / "thin.png")
    with pytest.raises(DataError, match=r"--extra-real .*small: .*thin\.png.*at least 128 px"):
        add_extra_real(_files([0, 1]), str(small))


def test_fit_flag_reaches_the_run_and_doubles_the_real_pool(upsampling_data, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["fit", "--data", upsampling_data["train"], "--out", out, "--preset", "tiny", "--steps", "2",
                 "--extra-real", "packaged"]) == 0
    assert RunDir(out).config.sampling.extra_real == "packaged"
    real = int(np.sum(read_dataset(upsampling_data["train"], "train").labels == 0))
    assert f"on {2 * real} real, {real} nearest" in capsys.readouterr().out

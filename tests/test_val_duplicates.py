"""Validation images that are training images by their bytes, which `require_val_apart` cannot tell by the path:
`fit --val` a copy of the training folder, or a list naming the training tree's files, is refused before anything
is written; `--val` some of whose images are copies of training images warns and trains on; `calibrate RUN --val`
alike with the run's own training data (config.json `data`). Files are compared by size first, and hashed only
where a size occurs on both sides: other images of equal size are not duplicates.
"""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from clirun import files_under, run_cli
from dnadet_tf.errors import DataError
from synthetic import CLASSES, write_benchmark

FIT_ERROR = "dnadet-tf fit: error: --val: expected validation images apart from the training images, received --val "
CALIBRATE_ERROR = ("dnadet-tf calibrate: error: --val: expected validation images apart from the training images, "
                   "received --val ")


def _images(root):
    """Every image file under folder tree `root`, sorted."""
    return sorted(os.path.join(parent, name) for parent, _, names in os.walk(root) for name in names
                  if name.endswith(".png"))


def _list_of(tree, folder):
    """An annotation list folder/val.txt (with classes.txt beside it) naming the images of folder tree `tree` by their
    absolute paths; returns its path."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "classes.txt"), "w", encoding="utf-8") as f:
        f.write("".join(f"{name}\n" for name in CLASSES))
    listing = os.path.join(folder, "val.txt")
    with open(listing, "w", encoding="utf-8") as f:
        for label, name in enumerate(CLASSES):
            for image in _images(os.path.join(tree, name)):
                f.write(f"{os.path.abspath(image)}\t{label}\n")
    return listing


def _fit(data, val, out, *flags):
    return run_cli(["fit", "--data", data, "--val", val, "--out", out, "--preset", "tiny", "--steps", "2",
                    "--val-every", "2", *flags])


def _refusal(stderr, prefix):
    """The error line of a refused command: its last stderr line, which must start with `prefix`."""
    line = stderr.splitlines()[-1]
    assert line.startswith(prefix), stderr
    return line


# ------------------------------------------------------------------ fit
@pytest.mark.parametrize("form", ["copy", "list"])
def test_fit_refuses_val_whose_images_are_all_training_images_before_anything_is_written(upsampling_data, tmp_path,
                                                                                         form):
    train = upsampling_data["train"]
    val = (shutil.copytree(train, str(tmp_path / "copy")) if form == "copy"
           else _list_of(train, str(tmp_path / "listed")))
    out = str(tmp_path / "run")
    code, stdout, stderr = _fit(train, val, out)
    assert (code, stdout) == (2, "")  # before the images are checked, let alone trained on
    line = _refusal(stderr, f"{FIT_ERROR}{val}, whose {len(_images(train))} images are all training images (e.g. ")
    assert "\n" not in line.strip() and stderr.strip().count("\n") == 0, stderr  # one line
    assert ", the same bytes as the training image " + os.path.join(train, CLASSES[0]) in line
    assert line.endswith("would rest on images the model learned); pass other labeled images as --val, or "
                         "--val-split F in place of --val to hold out a share of --data."), line
    assert not os.path.exists(out)


def test_a_refused_fit_with_overwrite_leaves_the_run_dir_as_it_was(upsampling_data, untrained_run, tmp_path):
    train = upsampling_data["train"]
    val = shutil.copytree(train, str(tmp_path / "copy"))
    out = shutil.copytree(untrained_run, str(tmp_path / "run"))  # a run dir that --overwrite would replace
    before = files_under(out)
    code, _, stderr = _fit(train, val, out, "--overwrite")
    assert code == 2 and "are all training images" in stderr
    assert files_under(out) == before


def test_the_api_refuses_val_of_training_images_as_the_cli_does(upsampling_data, tmp_path):
    import dnadet_tf

    train = upsampling_data["train"]
    val = shutil.copytree(train, str(tmp_path / "copy"))
    out = str(tmp_path / "run")
    with pytest.raises(DataError, match=r"^`val`: expected validation images apart from the training images, "
                                        r"received `val` .*, whose 72 images are all training images") as error:
        dnadet_tf.fit(train, out, val=val, preset="tiny", steps=1)
    assert "\n" not in str(error.value)
    assert not os.path.exists(out)


def test_a_benchmark_whose_val_txt_lists_copies_of_its_training_images_is_refused_naming_data(upsampling_data,
                                                                                              tmp_path):
    # No --val given: fit reads the benchmark's val.txt, so the line names --data, not a --val the user never passed.
    copy = shutil.copytree(upsampling_data["train"], str(tmp_path / "copy"))
    os.makedirs(tmp_path / "bench")
    bench = write_benchmark({"train": upsampling_data["train"], "val": copy, "test": upsampling_data["test"]},
                            str(tmp_path / "bench"))
    out = str(tmp_path / "run")
    code, stdout, stderr = run_cli(["fit", "--data", bench, "--out", out, "--preset", "tiny", "--steps", "2"])
    assert code == 2 and stdout == "", stderr
    line = _refusal(stderr, f"dnadet-tf fit: error: --data: expected validation images apart from the training "
                            f"images, received --data {bench}, the val.txt read when no --val is given, whose ")
    assert "--val " + bench not in line and line.endswith(
        "give the benchmark's val.txt other images, pass other labeled images as --val, or --val-split F to hold out "
        "a share of --data.")
    assert not os.path.exists(out)


def test_fit_warns_of_val_with_some_training_images_and_trains_on(upsampling_data, tmp_path):
    train = upsampling_data["train"]
    val = shutil.copytree(upsampling_data["val"], str(tmp_path / "val"))
    copied = [os.path.join(train, name, "0003.png") for name in CLASSES[:2]]
    for source, name in zip(copied, CLASSES):
        shutil.copyfile(source, os.path.join(val, name, "copied.png"))
    out = str(tmp_path / "run")
    code, stdout, stderr = _fit(train, val, out)
    assert code == 0, stderr
    warnings = [line for line in stderr.splitlines() if "training images (e.g. " in line]
    assert warnings == [f"warning: --val {val}: 2 of its {len(_images(val))} validation images are training images "
                        f"(e.g. {os.path.join(val, CLASSES[0], 'copied.png')}, the same bytes as the training image "
                        f"{copied[0]}): the choice of best.keras, the temperature and the open-set threshold rest "
                        f"partly on images the model learned"], stderr
    assert os.path.isfile(os.path.join(out, "best.keras")) and "done: step 2" in stdout


# ------------------------------------------------------------------ calibrate
@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A copy of the tiny run (trained on upsampling_data's train tree) to calibrate again."""
    return shutil.copytree(tiny_run, str(tmp_path / "run"))


@pytest.mark.parametrize("form", ["copy", "list"])
def test_calibrate_refuses_val_of_the_runs_training_images_and_changes_nothing(upsampling_data, run_copy, tmp_path,
                                                                               form):
    train = upsampling_data["train"]
    val = (shutil.copytree(train, str(tmp_path / "copy")) if form == "copy"
           else _list_of(train, str(tmp_path / "listed")))
    before = files_under(run_copy)
    code, stdout, stderr = run_cli(["calibrate", run_copy, "--val", val])
    assert (code, stdout) == (2, "")  # before the model is loaded
    line = _refusal(stderr, f"{CALIBRATE_ERROR}{val}, whose 72 images are all training images (e.g. ")
    assert stderr.strip().count("\n") == 0, stderr
    assert line.endswith(": the temperature and the open-set threshold would rest on images the model learned); "
                         "pass other labeled images as --val."), line
    assert files_under(run_copy) == before


def test_calibrate_warns_of_val_with_some_training_images_and_calibrates(upsampling_data, run_copy, tmp_path):
    val = shutil.copytree(upsampling_data["val"], str(tmp_path / "val"))
    copied = os.path.join(upsampling_data["train"], CLASSES[1], "0005.png")
    shutil.copyfile(copied, os.path.join(val, CLASSES[1], "copied.png"))
    code, stdout, stderr = run_cli(["calibrate", run_copy, "--val", val])
    assert code == 0, stderr
    assert (f"warning: --val {val}: 1 of its 37 validation images are training images (e.g. "
            f"{os.path.join(val, CLASSES[1], 'copied.png')}, the same bytes as the training image {copied}): the "
            f"temperature and the open-set threshold rest partly on images the model learned") in stderr.splitlines()
    assert "calibration: temperature" in stdout


def test_calibrate_skips_the_check_when_the_runs_training_data_is_gone(upsampling_data, run_copy, tmp_path):
    import json

    config_path = os.path.join(run_copy, "config.json")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    config["data"] = str(tmp_path / "gone")
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f)
    from dnadet_tf.calibrate import require_val_unlearned_by
    from dnadet_tf.runs import RunDir

    require_val_unlearned_by(RunDir(run_copy), upsampling_data["train"])  # nothing to compare with: no word


# ------------------------------------------------------------------ comparing the files
def _bmp(path, seed):
    """A 16 px BMP of random pixels: every such file has the same size, whatever its pixels."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_other_images_of_equal_size_are_not_duplicates_and_copies_links_are(tmp_path, capsys):
    from dnadet_tf.data import LabeledFiles, same_files
    from dnadet_tf.training import require_val_unlearned

    train = [_bmp(str(tmp_path / "train" / f"{i}.bmp"), i) for i in range(3)]
    other = [_bmp(str(tmp_path / "val" / f"{i}.bmp"), 10 + i) for i in range(3)]
    assert len({os.path.getsize(path) for path in train + other}) == 1
    assert same_files(other, train) == []
    copy = str(tmp_path / "val" / "copy.bmp")
    shutil.copyfile(train[1], copy)
    link, hard = str(tmp_path / "val" / "link.bmp"), str(tmp_path / "val" / "hard.bmp")
    os.symlink(train[2], link)
    os.link(train[0], hard)
    assert same_files(other + [copy, link, hard], train) == [(copy, train[1]), (link, train[2]), (hard, train[0])]

    def files(paths):
        return LabeledFiles(list(paths), np.zeros(len(paths), np.int64), ["real"], "test")

    require_val_unlearned(files(train), files(other), "VAL")  # no word
    assert capsys.readouterr().err == ""
    require_val_unlearned(files(train), files(other + [copy]), "VAL")
    assert capsys.readouterr().err.startswith("warning: --val VAL: 1 of its 4 validation images are training images")
    with pytest.raises(DataError, match=r"^`val`: .* whose 3 images are all training images"):
        require_val_unlearned(files(train), files([copy, link, hard]), "VAL")


def test_only_files_of_a_size_on_both_sides_are_read(tmp_path, monkeypatch):
    import hashlib

    from dnadet_tf import data

    read = []

    def counted(path):
        read.append(path)
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).digest()

    monkeypatch.setattr(data, "file_sha256", counted)
    train = [str(tmp_path / f"t{i}.png") for i in range(3)]
    val = [str(tmp_path / f"v{i}.png") for i in range(3)]
    for i, path in enumerate(train + val):
        with open(path, "wb") as f:
            f.write(bytes([i]) * (10 + i))  # every file its own size
    assert data.same_files(val, train) == [] and read == []
    with open(val[0], "wb") as f:
        f.write(b"x" * 11)  # the size of train[1], other bytes
    assert data.same_files(val, train) == [] and sorted(read) == sorted([val[0], train[1]])

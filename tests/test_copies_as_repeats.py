"""A byte-identical copy of an image is that image again, as a symbolic or a hard link to it is (`data.repeated_files`,
`data.same_files`):
- `adapt --images`: a copy counts once, with the warning a file given twice gives, naming the bytes it repeats;
- `adapt --labeled`: a copy within one class counts once (one DATA or several), a copy in two classes is refused
  before anything is written, in one line naming both files and both classes;
- `fit --extra-real`: a photo that is a copy of a --val image (the --val-split share held out too) or of a training
  image of a fake class is refused before anything is written; one that is a copy of a training image of the real
  class is allowed with the warning line a link gives, and the run trains."""
import json
import os
import shutil

import pytest

from clirun import error_line, files_under, run_cli
from synthetic import CLASSES, copy_tree_head

REPEAT_REASON = ("each counted once (the first kept: a repeat would count twice in the statistics and be its own "
                 "nearest neighbour in the open-set threshold)")


def _json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# --- adapt --images ------------------------------------------------------------------------------------------

def test_adapt_images_count_a_copy_once_with_a_warning(untrained_run, upsampling_data, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        shutil.copy(os.path.join(upsampling_data["test"], "real", f"{i:04d}.png"), images / f"{i:04d}.png")
    shutil.copy(images / "0001.png", images / "copy.png")
    os.link(images / "0002.png", images / "hard.png")  # a hard link, another real path: the same file
    out = str(tmp_path / "adapted")
    code, stdout, stderr = run_cli(["adapt", untrained_run, "--images", str(images), "--out", out])
    assert code == 0, stderr
    assert [line for line in stdout.splitlines() if "given more than once" in line] == [
        f"warning: --images {images}: 2 file(s) given more than once, {REPEAT_REASON}, e.g. {images / 'copy.png'} "
        f"(the same bytes as {images / '0001.png'})"]
    assert "BatchNorm statistics of 4 images" in stdout
    assert _json(os.path.join(out, "adaptation.json"))["images"] == 4


# --- adapt --labeled -------------------------------------------------------------------------------------------

def test_adapt_labeled_refuses_a_copy_in_two_classes_before_anything_is_written(untrained_run, upsampling_data,
                                                                                tmp_path):
    labeled = copy_tree_head(upsampling_data["val"], tmp_path / "labeled", 1)
    shutil.copy(os.path.join(labeled, "real", "0000.png"), os.path.join(labeled, "nearest", "copy.png"))
    out = str(tmp_path / "adapted")
    code, _, stderr = run_cli(["adapt", untrained_run, "--labeled", labeled, "--out", out])
    assert code == 2, stderr
    assert error_line(stderr) == (f"dnadet-tf adapt: error: --labeled {labeled}: {labeled}/nearest/copy.png: the same "
                              f"bytes as {labeled}/real/0000.png, in class 'real' and class 'nearest'; expected each "
                              f"file in one class.")
    assert not os.path.exists(out)
    # in another DATA too
    other = tmp_path / "other"
    os.makedirs(other / "transposed")
    shutil.copy(os.path.join(labeled, "real", "0000.png"), other / "transposed" / "copy.png")
    os.remove(os.path.join(labeled, "nearest", "copy.png"))
    code, _, stderr = run_cli(["adapt", untrained_run, "--labeled", labeled, str(other), "--out", out])
    assert code == 2, stderr
    assert error_line(stderr) == (f"dnadet-tf adapt: error: --labeled {labeled} {other}: {other}/transposed/copy.png: the "
                              f"same bytes as {labeled}/real/0000.png, in class 'real' and class 'transposed'; "
                              f"expected each file in one class.")
    assert not os.path.exists(out)


def test_adapt_labeled_counts_a_copy_within_one_class_once(untrained_run, upsampling_data, tmp_path):
    labeled = copy_tree_head(upsampling_data["val"], tmp_path / "labeled", 2)
    shutil.copy(os.path.join(labeled, "real", "0000.png"), os.path.join(labeled, "real", "copy.png"))
    out = str(tmp_path / "adapted")
    code, stdout, stderr = run_cli(["adapt", untrained_run, "--labeled", labeled, "--out", out])
    assert code == 0, stderr
    assert [line for line in stdout.splitlines() if "given more than once" in line] == [
        f"warning: --labeled {labeled}: 1 file(s) given more than once, {REPEAT_REASON}, e.g. "
        f"{labeled}/real/copy.png (the same bytes as {labeled}/real/0000.png)"]
    report = _json(os.path.join(out, "adaptation.json"))
    assert report["images"] == 6 and report["labeled"]["images_per_class"] == {name: 2 for name in CLASSES}


def test_adapt_labeled_copies_across_data_count_once_and_a_data_of_copies_is_no_group(untrained_run, upsampling_data,
                                                                                        tmp_path):
    first = copy_tree_head(upsampling_data["val"], tmp_path / "first", 2)
    copied = copy_tree_head(upsampling_data["val"], tmp_path / "copied", 2)  # every image a copy of one of `first`
    third = copy_tree_head(upsampling_data["test"], tmp_path / "third", 1)
    out = str(tmp_path / "adapted")
    code, stdout, stderr = run_cli(["adapt", untrained_run, "--labeled", first, copied, third, "--means-per-class",
                                    "1", "--out", out])
    assert code == 0, stderr
    assert [line for line in stdout.splitlines() if "given more than once" in line] == [
        f"warning: --labeled {first} {copied} {third}: 6 file(s) given more than once, {REPEAT_REASON}, e.g. "
        f"{copied}/real/0000.png (the same bytes as {first}/real/0000.png)"]
    report = _json(os.path.join(out, "adaptation.json"))
    assert report["images"] == 9 and report["labeled"]["images_per_class"] == {name: 3 for name in CLASSES}
    assert report["labeled"]["groups"] == 2  # a mean per class of `first` and of `third`


# --- fit --extra-real ------------------------------------------------------------------------------------------

def _copy_all(sources, folder):
    for i, source in enumerate(sources):
        shutil.copy(source, os.path.join(folder, f"zz{i}.png"))


@pytest.mark.parametrize("case", ["val", "fake", "held out"])
def test_extra_real_photos_that_are_copies_of_validation_images_or_fakes_are_refused_before_anything_is_written(
        case, folder):
    photos = str(folder / "photos")
    flags = ["--val", "val"]
    if case == "val":
        _copy_all(["val/nearest/0001.png"], photos)
        received = f"{photos}/zz0.png (the same bytes as val/nearest/0001.png), a validation image of class 'nearest'"
    elif case == "fake":
        _copy_all(["train/transposed/0002.png"], photos)
        received = (f"{photos}/zz0.png (the same bytes as train/transposed/0002.png), a training image of the fake "
                    f"class 'transposed'")
    else:  # every real training image copied: the first one --val-split holds out is refused
        _copy_all([f"train/real/{i:04d}.png" for i in range(3)], photos)
        flags = ["--val-split", "0.5"]
        received = "(held out by val_split) of class 'real'"
    code, _, stderr = run_cli(["fit", "--data", "train", "--out", "run", "--extra-real", "photos", "--preset", "tiny",
                               "--steps", "1"] + flags)
    assert code == 2, stderr
    line = error_line(stderr)
    assert line.startswith(f"dnadet-tf fit: error: --extra-real {photos}: expected photos apart from the training "
                           f"images of the fake classes and from the validation images, received "), line
    assert line.endswith(f"{received}; give a folder of other photos."), line
    assert not os.path.exists("run") and not os.path.exists("cache")


def test_extra_real_photos_that_are_copies_of_real_training_images_are_allowed_with_a_warning(folder):
    photos = str(folder / "photos")
    _copy_all(["train/real/0001.png"], photos)
    code, _, stderr = run_cli(["fit", "--data", "train", "--val", "val", "--out", "run", "--extra-real", "photos",
                               "--preset", "tiny", "--steps", "1"])
    assert code == 0, stderr
    assert (f"warning: --extra-real {photos}: 1 of its 3 photos are training images of the real class (e.g. "
            f"{photos}/zz0.png, the same bytes as train/real/0001.png): their crops add no real photo of other "
            f"content\n") in stderr
    assert "best.keras" in files_under("run")

"""Where `fit`'s inputs and its run dir lie, and what the --extra-real photos are:
- a folder of --extra-real photos is recorded in config.json as an absolute path (`--resume` from another working
  folder read a relative one there: another folder of that name, or none), and a resumed run takes it, and its
  --init run, under any spelling of the same folder;
- --extra-real photos that are --val images (or the --val-split share held out) or training images of a fake class
  are refused before any crop is cut (the same file through a symbolic or a hard link too), and photos that are
  real training images are allowed with one warning line;
- an --out inside a folder-tree --data or --val is refused: the first run worked, and then the run dir read as a
  class, so that `fit --resume` (and `calibrate RUN`) failed from then on."""
import os
import shutil

import pytest

from clirun import error_line, run_cli
from dnadet_tf.config import make_config
from dnadet_tf.errors import DnadetError
from dnadet_tf.runs import RunDir
from dnadet_tf.training import fit, resolve_config
from synthetic import CLASSES, make_photos, make_upsampling_tree, write_benchmark

TINY = ["--preset", "tiny", "--steps", "1"]


class StopBeforeTraining(Exception):
    pass


@pytest.fixture
def stop_before_training(monkeypatch):
    """`fit` stops where training would start (every input read and checked, `out` started)."""
    def stop(*args, **kwargs):
        raise StopBeforeTraining

    monkeypatch.setattr("dnadet_tf.training.run_training", stop)


# --- 2: a folder of --extra-real photos, recorded as an absolute path ---------------------------------------------

def test_a_relative_extra_real_folder_is_recorded_absolute_and_the_run_resumes_from_another_folder(folder,
                                                                                                   monkeypatch):
    out = str(folder / "run")
    code, _, stderr = run_cli(["fit", "--data", "train", "--out", out, "--extra-real", "photos"] + TINY)
    assert code == 0, stderr
    assert RunDir(out).config.sampling.extra_real == str(folder / "photos")
    # Another working folder with other photos in a folder of the same name: the old relative "photos" read them.
    other = folder / "elsewhere"
    make_photos(str(other / "photos"), 3, seed=7)
    monkeypatch.chdir(other)
    code, stdout, stderr = run_cli(["fit", "--resume", "--out", out, "--steps", "2", "--extra-real", "../photos"])
    assert code == 0, stderr
    assert "resumed from" in stdout
    assert "cutting" not in stdout  # the run's own crops, cut from its photos, not new ones of elsewhere/photos
    assert RunDir(out).config.sampling.extra_real == str(folder / "photos")


def test_resume_takes_the_runs_folders_under_another_spelling_and_refuses_another_folder(tmp_path, monkeypatch):
    photos, other = make_photos(str(tmp_path / "photos"), 1), make_photos(str(tmp_path / "other"), 1)
    os.symlink(photos, tmp_path / "link")
    (tmp_path / "init").mkdir()
    run = RunDir(str(tmp_path / "run")).start(make_config("tiny", extra_real=photos, init=str(tmp_path / "init")),
                                              CLASSES)
    monkeypatch.chdir(tmp_path)
    for spelling in ("photos", "photos/", "./link", str(tmp_path / "link"), photos):
        assert resolve_config(run, True, None, {"extra_real": spelling}).sampling.extra_real == photos
    assert resolve_config(run, True, None, {"init": "init/"}).init == str(tmp_path / "init")
    for value in (other, "packaged", "none"):
        with pytest.raises(DnadetError, match=r"^extra_real: expected no change on resume \(the run's config.json "
                                              rf"holds it; .*\), received '{value}'\.$"):
            resolve_config(run, True, None, {"extra_real": value})


def test_a_run_that_recorded_its_extra_real_folder_relative_reads_it_against_the_working_folder(tmp_path,
                                                                                                 monkeypatch):
    """A run made before the folder was recorded absolute: its relative folder is the working folder's, as before."""
    photos = make_photos(str(tmp_path / "photos"), 1)
    run = RunDir(str(tmp_path / "run")).start(make_config("tiny", extra_real="photos"), CLASSES)
    monkeypatch.chdir(tmp_path)
    assert resolve_config(run, True, None, {"extra_real": photos}).sampling.extra_real == "photos"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(DnadetError, match=r"^extra_real: expected no change on resume"):
        resolve_config(run, True, None, {"extra_real": photos})


# --- 5: --extra-real photos that are validation images or fakes -------------------------------------------------

def _link_all(sources, folder, hard=False):
    for i, source in enumerate(sources):
        (os.link if hard else os.symlink)(os.path.abspath(source), os.path.join(folder, f"zz{i}.png"))


@pytest.mark.parametrize("case", ["val hard link", "fake symbolic link", "val folder", "held out"])
def test_extra_real_photos_that_are_validation_images_or_fakes_are_refused_before_any_crop_is_cut(
        case, folder, stop_before_training):
    photos = str(folder / "photos")
    flags = ["--val", "val", "--extra-real", "photos"]
    if case == "val hard link":
        _link_all(["val/nearest/0001.png"], photos, hard=True)
        received = f"{photos}/zz0.png (the same file as val/nearest/0001.png), a validation image of class 'nearest'"
    elif case == "fake symbolic link":
        _link_all(["train/transposed/0002.png"], photos)
        received = (f"{photos}/zz0.png (the same file as train/transposed/0002.png), a training image of the fake "
                    f"class 'transposed'")
    elif case == "val folder":  # the hunt's reproduction: --extra-real DATA/val
        flags, photos = ["--val", "val", "--extra-real", "val"], str(folder / "val")
        received = f"{photos}/nearest/0000.png, a validation image of class 'nearest'"
    else:  # every real training image linked: the first one --val-split holds out is refused
        _link_all([f"train/real/{i:04d}.png" for i in range(3)], photos)
        flags = ["--val-split", "0.5", "--extra-real", "photos"]
        received = "(held out by val_split) of class 'real'"
    code, _, stderr = run_cli(["fit", "--data", "train", "--out", "run"] + flags + TINY)
    assert code == 2, stderr
    line = error_line(stderr)
    assert line.startswith(f"dnadet-tf fit: error: --extra-real {photos}: expected photos apart from the training "
                           f"images of the fake classes and from the validation images, received "), line
    assert line.endswith(f"{received}; give a folder of other photos."), line
    assert not os.path.exists("run") and not os.path.exists("cache")


def test_extra_real_photos_that_are_real_training_images_are_allowed_with_a_warning(folder, capsys,
                                                                                     stop_before_training):
    photos = str(folder / "photos")
    _link_all(["train/real/0001.png"], photos)
    with pytest.raises(StopBeforeTraining):
        fit("train", "run", val="val", preset="tiny", steps=1, extra_real="photos")
    assert (f"warning: --extra-real {photos}: 1 of its 3 photos are training images of the real class (e.g. "
            f"{photos}/zz0.png): their crops add no real photo of other content\n") in capsys.readouterr().err
    assert os.listdir("cache")  # the crops were cut (of the 2 photos large enough)


# --- 8: --out inside a folder-tree --data or --val ------------------------------------------------------------

@pytest.mark.parametrize("out, flags, received", [
    ("train/run", [], "--data folder tree train, received one inside it, where it would be read as a class"),
    ("train/real/run", [], "--data folder tree train, received one inside it, where its image files would be read "
                           "as images of class 'real'"),
    ("val/run", ["--val", "val"], "--val folder tree val, received one inside it, where it would be read as a class"),
    ("train/run", ["--data", "link"], "--data folder tree link, received one inside it, where it would be read as a "
                                      "class"),
])
def test_a_new_run_inside_a_folder_tree_it_reads_is_refused_before_anything_is_read(out, flags, received, folder,
                                                                                     stop_before_training):
    os.symlink(str(folder / "train"), "link")
    argv = ["fit", "--data", "train", "--out", out] + flags + TINY
    code, stdout, stderr = run_cli(argv)
    assert code == 2, stderr
    assert error_line(stderr) == (f"dnadet-tf fit: error: --out {out}: expected a folder outside the {received}; write "
                              f"the run elsewhere."), stderr
    assert not os.path.exists(out) and "checking" not in stdout


def test_a_run_beside_the_images_of_a_list_or_a_benchmark_or_in_a_hidden_folder_is_not_refused(
        folder, stop_before_training):
    make_upsampling_tree("test", 1, seed=3)
    os.makedirs("bench")
    write_benchmark({split: str(folder / split) for split in ("train", "val", "test")}, "bench")
    for data, out in (("bench", "bench/run"), ("bench/train.txt", "bench/run2"), ("train", "train/.run")):
        with pytest.raises(StopBeforeTraining):
            fit(data, out, preset="tiny", steps=1, extra_real="none")
        assert os.path.isdir(out)


def test_resuming_a_run_inside_its_data_folder_tree_says_to_move_it_out_where_it_resumes(folder):
    code, _, stderr = run_cli(["fit", "--data", "train", "--out", "run", "--extra-real", "none"] + TINY)
    assert code == 0, stderr
    shutil.move("run", "train/run")  # as `fit --out train/run` left it before: the run dir read as class 'run'
    code, _, stderr = run_cli(["fit", "--resume", "--out", "train/run", "--steps", "2"])
    assert code == 2, stderr
    assert error_line(stderr) == (f"dnadet-tf fit: error: --out train/run: expected a folder outside the --data folder "
                              f"tree {folder / 'train'}, received one inside it, where it would be read as a class; "
                              f"move the run dir out of {folder / 'train'} and resume it there.")
    shutil.move("train/run", "run")
    code, stdout, stderr = run_cli(["fit", "--resume", "--out", "run", "--steps", "2"])
    assert code == 0, stderr
    assert "resumed from" in stdout and "done: step 2" in stdout

"""How folders of images are found, and what is refused before it is read:
- `calibrate RUN` of a run dir inside a folder tree it reads (its own training or validation data, or a given
  --data / --val) failed with "class 'run-x' has no image files" (the run dir read as a class), or, for a run dir
  inside a class folder, calibrated on its image files as images of that class without a word; it is refused with
  one line naming the run, the tree and what to do, as `fit` refuses an --out there;
- a folder of a data tree (or of --photos) that cannot be read (permissions) was skipped by `os.walk` without a
  word, training on fewer images or classes; it is an error naming the folder;
- `fit --val DIR` with DIR the --data folder itself trained, validated and calibrated on the training images, said
  only by the calibration line at the end; it is refused before anything is read."""
import errno
import os
import shutil

import pytest

from clirun import run_cli
from dnadet_tf import runs
from dnadet_tf.config import make_config
from dnadet_tf.data import read_dataset
from dnadet_tf.errors import DataError
from synthetic import CLASSES, make_photos, make_upsampling_tree, write_benchmark


def _make_run(run_dir, data, val_split=0.25):
    """An untrained run dir of the tiny preset at `run_dir` whose config.json names `data` (held out `val_split`):
    enough to calibrate (the weights play no part in what is refused)."""
    from dnadet_tf.model import Backbone, Classifier

    os.makedirs(run_dir)
    config = make_config("tiny").replace(data=os.path.abspath(data), val_split=val_split)
    runs.RunDir(run_dir).start(config, list(CLASSES))
    Classifier(Backbone(config.model.width), len(CLASSES), config.model.dropout, list(CLASSES),
               config.preprocess).save(os.path.join(run_dir, runs.BEST_MODEL))
    return run_dir


@pytest.fixture
def tree(tmp_path):
    """tmp_path/data/train: real, nearest, transposed, 4 images each (32 px)."""
    root = str(tmp_path / "data" / "train")
    make_upsampling_tree(root, 4, seed=1)
    return root


# ------------------------------------------------------------------ calibrate RUN inside its data folder tree
def test_calibrate_refuses_a_run_inside_its_own_training_tree_naming_run_tree_and_remedy(tree):
    run_dir = _make_run(os.path.join(tree, "run-x"), tree)
    code, stdout, stderr = run_cli(["calibrate", run_dir])
    assert (code, stdout) == (2, "")
    assert stderr == (f"dnadet-tf calibrate: error: {run_dir}: expected a run dir outside the folder tree of its own "
                      f"training data {tree} (config.json), received one inside it, where it would be read as a "
                      f"class; move the run dir out of {tree} and calibrate it there.\n")
    assert not os.path.exists(os.path.join(run_dir, "calibration.json"))


def test_calibrate_refuses_a_run_inside_a_class_folder_whose_images_it_would_read_as_that_class(tree):
    # The run dir's PNG files (an evaluation's plots, say) were read as real images, and calibrated on, silently.
    run_dir = _make_run(os.path.join(tree, "real", "runs", "run-x"), tree)
    os.makedirs(os.path.join(run_dir, "evaluation"))
    shutil.copy(os.path.join(tree, "real", "0000.png"), os.path.join(run_dir, "evaluation", "plot.png"))
    code, _, stderr = run_cli(["calibrate", run_dir])
    assert code == 2
    assert stderr == (f"dnadet-tf calibrate: error: {run_dir}: expected a run dir outside the folder tree of its own "
                      f"training data {tree} (config.json), received one inside it, where its image files would be "
                      f"read as images of class 'real'; move the run dir out of {tree} and calibrate it there.\n")
    assert not os.path.exists(os.path.join(run_dir, "calibration.json"))


def test_calibrate_refuses_a_run_inside_a_given_val_or_data_tree_by_its_flag(tree, tmp_path):
    other = str(tmp_path / "other")
    make_upsampling_tree(other, 3, seed=2)
    run_dir = _make_run(os.path.join(other, "run-x"), tree)
    code, _, stderr = run_cli(["calibrate", run_dir, "--val", other + os.sep])
    assert code == 2
    assert stderr == (f"dnadet-tf calibrate: error: {run_dir}: expected a run dir outside the --val folder tree "
                      f"{other}{os.sep}, received one inside it, where it would be read as a class; move the run dir "
                      f"out of {other}{os.sep} and calibrate it there.\n")
    # --data another tree: the validation images are still the share held out of its own training data.
    inside = _make_run(os.path.join(tree, "run-y"), tree)
    code, _, stderr = run_cli(["calibrate", inside, "--data", other])
    assert code == 2
    assert stderr == (f"dnadet-tf calibrate: error: {inside}: expected a run dir outside the folder tree of its own "
                      f"training data {tree} (config.json; it validates on a share held out of it), received one "
                      f"inside it, where it would be read as a class; move the run dir out of {tree} and calibrate "
                      f"it there.\n")
    code, _, stderr = run_cli(["calibrate", run_dir, "--data", run_dir, "--val", tree])
    assert code == 2
    assert stderr == (f"dnadet-tf calibrate: error: {run_dir}: expected a run dir outside the --data folder tree "
                      f"{run_dir}, received the folder itself; pass another --data.\n")


def test_calibrate_takes_a_run_under_a_hidden_folder_of_its_tree(tree):
    # Hidden folders are not read (as fit accepts an --out there): calibrated as anywhere else.
    run_dir = _make_run(os.path.join(tree, ".runs", "run-x"), tree)
    code, stdout, stderr = run_cli(["calibrate", run_dir])
    assert code == 0, stderr
    assert "calibration: temperature" in stdout and os.path.isfile(os.path.join(run_dir, "calibration.json"))


# ------------------------------------------------------------------ folders that cannot be read
def _deny(monkeypatch, *folders):
    """os.scandir and os.listdir raise PermissionError for `folders` (compared by real path), as for a folder
    without read permission (chmod cannot make one for root)."""
    denied = {os.path.realpath(folder) for folder in folders}
    real_scandir, real_listdir = os.scandir, os.listdir

    def check(path):
        if not isinstance(path, int) and os.path.realpath(os.fspath(path)) in denied:  # an int: a folder's fd
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    def scandir(path="."):
        check(path)
        return real_scandir(path)

    def listdir(path="."):
        check(path)
        return real_listdir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "listdir", listdir)


def test_an_unreadable_subfolder_of_a_class_is_an_error_naming_it_not_fewer_images(tree, monkeypatch):
    inner = os.path.join(tree, "nearest", "more")
    os.makedirs(inner)
    for name in ("a.png", "b.png"):
        shutil.copy(os.path.join(tree, "nearest", "0000.png"), os.path.join(inner, name))
    assert len(read_dataset(tree)) == 14  # readable: its 2 images are read
    _deny(monkeypatch, inner)
    with pytest.raises(DataError) as raised:
        read_dataset(tree)
    class_dir = os.path.join(tree, "nearest")
    assert str(raised.value) == (
        f"{inner}: cannot read folder: Permission denied (under {class_dir}); expected every folder of images to be "
        f"readable (its images would be left out without a word): make it readable, or give it a name that starts "
        f"with '.' (not read).")


def test_an_unreadable_class_folder_or_data_folder_is_an_error_naming_it(tree, monkeypatch):
    class_dir = os.path.join(tree, "nearest")
    _deny(monkeypatch, class_dir)
    with pytest.raises(DataError, match=r"^" + f"{class_dir}: cannot read folder: Permission denied; expected every "
                       r"folder of images to be readable \(its images would be left out without a word\): make it "
                       r"readable\.$"):
        read_dataset(tree)  # was: "class 'nearest' has no image files"
    monkeypatch.undo()
    _deny(monkeypatch, tree)
    with pytest.raises(DataError, match=r"^" + f"{tree}: cannot read folder: Permission denied; expected"):
        read_dataset(tree)  # was: a bare PermissionError


def test_fit_says_which_folder_cannot_be_read_before_anything_is_written(tree, tmp_path, monkeypatch):
    inner = os.path.join(tree, "transposed", "part2")
    os.makedirs(inner)
    shutil.copy(os.path.join(tree, "transposed", "0000.png"), os.path.join(inner, "a.png"))
    _deny(monkeypatch, inner)
    out = str(tmp_path / "run")
    code, stdout, stderr = run_cli(["fit", "--data", tree, "--out", out, "--preset", "tiny", "--steps", "1"])
    assert (code, stdout) == (2, "")
    error = stderr.splitlines()[-1]  # after a warning of the runtime, in this process that began others
    assert error.startswith(f"dnadet-tf fit: error: {inner}: cannot read folder: Permission denied (under ")
    assert not os.path.exists(out)


def test_pretrain_photos_with_an_unreadable_subfolder_is_an_error_naming_it(tmp_path, monkeypatch):
    from dnadet_tf.pretraining import list_photos

    photos = make_photos(str(tmp_path / "photos"), 3)
    inner = make_photos(str(tmp_path / "photos" / "trip"), 2, seed=1)
    assert len(list_photos(photos)) == 5
    _deny(monkeypatch, inner)
    with pytest.raises(DataError, match=r"^" + f"{inner}: cannot read folder: Permission denied \\(under {photos}\\)"):
        list_photos(photos)


def test_extra_real_photos_with_an_unreadable_subfolder_is_an_error_naming_it(tmp_path, monkeypatch):
    from dnadet_tf.extra_real import source_photos

    photos = make_photos(str(tmp_path / "photos"), 3)
    inner = make_photos(str(tmp_path / "photos" / "trip"), 2, seed=1)
    assert len(source_photos(photos)) == 5
    _deny(monkeypatch, inner)
    with pytest.raises(DataError, match=r"^" + f"{inner}: cannot read folder: Permission denied \\(under {photos}\\)"):
        source_photos(photos)  # was: the 3 photos of the readable folder, without a word


# ------------------------------------------------------------------ fit --val the same folder as --data
@pytest.mark.parametrize("spelling", ["same", "trailing separator", "symbolic link"])
def test_fit_refuses_val_that_is_data_itself_before_anything_is_read(tree, tmp_path, spelling):
    val = {"same": tree, "trailing separator": tree + os.sep, "symbolic link": str(tmp_path / "link")}[spelling]
    if spelling == "symbolic link":
        os.symlink(tree, val)
    out = str(tmp_path / "run")
    code, stdout, stderr = run_cli(["fit", "--data", tree, "--val", val, "--out", out, "--preset", "tiny",
                                    "--steps", "1"])
    assert (code, stdout) == (2, "")
    assert stderr.splitlines()[-1] == (f"dnadet-tf fit: error: --val: expected validation images apart from the training images, "
                      f"received --val {val} and --data {tree}, the same folder (best.keras would be picked and the "
                      f"open-set threshold fitted on the images the model learned); pass other labeled images as "
                      f"--val, or --val-split F in place of --val to hold out a share of --data.")
    assert not os.path.exists(out)


def test_fit_refuses_val_that_is_the_data_list_itself(tree, tmp_path):
    listing = tmp_path / "data" / "train.txt"
    (tmp_path / "data" / "classes.txt").write_text("".join(f"{name}\n" for name in CLASSES))
    listing.write_text("".join(f"train/{name}/{number:04d}.png\t{label}\n"
                               for label, name in enumerate(CLASSES) for number in range(2)))
    out = str(tmp_path / "run")
    code, _, stderr = run_cli(["fit", "--data", str(listing), "--val", str(listing), "--out", out, "--preset", "tiny",
                               "--steps", "1"])
    assert code == 2 and ", the same file (best.keras would be picked" in stderr and not os.path.exists(out)


def test_a_benchmark_folder_as_data_and_val_is_not_refused(tree, tmp_path):
    # Its train.txt and val.txt are other images: `fit --data BENCH` validates on its val.txt by default.
    from dnadet_tf.training import require_val_apart

    val = str(tmp_path / "val")
    make_upsampling_tree(val, 2, seed=4)
    os.makedirs(tmp_path / "bench")
    bench = write_benchmark({"train": tree, "val": val, "test": val}, str(tmp_path / "bench"))
    require_val_apart(bench, bench, resume=False)
    require_val_apart(tree, tree, resume=True)  # a resumed run keeps its own
    require_val_apart(bench, os.path.join(bench, "val.txt"))  # what BENCH validates on anyway
    # but its train.txt as --val is the training images again, as is --val its train.txt spelt another way beside
    # --data its train.txt
    with pytest.raises(DataError, match=r", the same file \(best\.keras would be picked"):
        require_val_apart(bench, os.path.join(bench, "train.txt"))
    with pytest.raises(DataError, match=r", the same file \(best\.keras would be picked"):
        require_val_apart(os.path.join(bench, "train.txt"), bench + os.sep + "." + os.sep + "train.txt")


def test_the_api_refuses_val_that_is_data_itself_as_the_cli_does(tree, tmp_path):
    # dnadet_tf.fit(data, out, val=data) trained, validated and calibrated on the training images
    from dnadet_tf.training import fit

    out = str(tmp_path / "run")
    with pytest.raises(DataError, match=r"^`val`: expected validation images apart from the training images, received "
                       r"`val` .* and `data` .*, the same folder"):
        fit(tree, out, val=tree + os.sep, preset="tiny", steps=1)
    assert not os.path.exists(out)

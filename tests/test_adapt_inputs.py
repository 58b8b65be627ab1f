"""`dnadet-tf adapt`: what it is given. A file given twice counts once (--images, --labeled); an --out that reaches
the run through a symbolic link is the run (and `--overwrite` never empties a folder through a link, for any
command); the run's calibration settings carried into the refit; --images --blend 0 keeps the run's calibration."""
import json
import os
import shutil

import numpy as np
import pytest

from clirun import files_under, run_cli
from dnadet_tf.errors import DataError, RunDirError
from dnadet_tf.model import batchnorm_layers
from dnadet_tf.predictor import KerasPredictor
from dnadet_tf.runs import RunDir
from synthetic import CLASSES, copy_tree_head


def _json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_labeled_data_given_twice_counts_each_image_once(tiny_run, upsampling_data, tmp_path):
    # twice, each image was its own nearest other image: every left-out distance 0, and so the threshold
    labeled = copy_tree_head(upsampling_data["val"], tmp_path / "labeled", 2)
    out = str(tmp_path / "twice")
    code, stdout, stderr = run_cli(["adapt", tiny_run, "--labeled", labeled, labeled, "--out", out])
    assert code == 0, stderr
    warnings = [line for line in stdout.splitlines() if "given more than once" in line]
    assert warnings == [f"warning: --labeled {labeled} {labeled}: 6 file(s) given more than once, each counted once "
                        "(the first kept: a repeat would count twice in the statistics and be its own nearest "
                        f"neighbour in the open-set threshold), e.g. {labeled}/real/0000.png"]
    report = _json(os.path.join(out, "adaptation.json"))
    assert report["images"] == 6 and report["labeled"]["images_per_class"] == {name: 2 for name in CLASSES}
    calibration = _json(os.path.join(out, "calibration.json"))
    assert calibration["train_images"] == calibration["val_images"] == 6
    assert calibration["threshold"] > 1e-3
    # one image per class given twice is one image per class: none can be left out, the calibration is dropped
    single = copy_tree_head(upsampling_data["val"], tmp_path / "single", 1)
    out = str(tmp_path / "single-twice")
    code, stdout, stderr = run_cli(["adapt", tiny_run, "--labeled", single, single, "--out", out])
    assert code == 0, stderr
    assert "3 file(s) given more than once" in stdout and "calibration was dropped" in stdout
    assert not os.path.exists(os.path.join(out, "calibration.json"))
    assert _json(os.path.join(out, "adaptation.json"))["calibration_dropped"] is True


def test_labeled_files_keep_the_first_of_a_repeated_file_and_refuse_one_in_two_classes(tiny_run, upsampling_data,
                                                                                        tmp_path):
    from dnadet_tf.labeled_head import labeled_files

    model = RunDir(tiny_run)
    first = copy_tree_head(upsampling_data["val"], tmp_path / "first", 2)
    second = tmp_path / "second"
    for name in CLASSES:
        os.makedirs(second / name)
    # a file of the first DATA again (a link to it), and an image of its own per class
    os.symlink(os.path.join(first, "real", "0000.png"), second / "real" / "a.png")
    for name in ("nearest", "transposed"):
        shutil.copy(os.path.join(upsampling_data["test"], name, "0000.png"), second / name / "new.png")
    lines = []
    files, groups = labeled_files([first, str(second)], model.class_names, model.config.preprocess, lines.append)
    assert len(files) == 8 and files.class_counts().tolist() == [2, 3, 3]
    assert str(second / "real" / "a.png") not in files.paths and groups.tolist() == [0] * 6 + [1, 1]
    assert lines == [f"--labeled {first} {second}: 1 file(s) given more than once, each counted once (the first kept: "
                     "a repeat would count twice in the statistics and be its own nearest neighbour in the open-set "
                     f"threshold), e.g. {second / 'real' / 'a.png'}"]
    # a DATA all of whose files came before is no group of its own
    files, groups = labeled_files([first, first], model.class_names, model.config.preprocess, lines.append)
    assert len(files) == 6 and set(groups.tolist()) == {0}
    # the same file under two classes, one in each DATA: refused, naming it and both classes
    os.symlink(os.path.join(first, "real", "0001.png"), second / "nearest" / "c.png")
    with pytest.raises(DataError, match=r"c\.png: the same file as .*0001\.png, in class 'real' and class "
                                        r"'nearest'; expected each file in one class\.$"):
        labeled_files([first, str(second)], model.class_names, model.config.preprocess, lines.append)


def test_images_given_twice_count_once_and_twenty_copies_of_one_are_one(tiny_run, upsampling_data, tmp_path):
    test = upsampling_data["test"]
    out = str(tmp_path / "twice")
    code, stdout, stderr = run_cli(["adapt", tiny_run, "--images", test, os.path.join(test, "real"), "--out", out])
    assert code == 0, stderr
    assert [line for line in stdout.splitlines() if "given more than once" in line] == [
        f"warning: --images {test} {os.path.join(test, 'real')}: 12 file(s) given more than once, each counted once "
        "(the first kept: a repeat would count twice in the statistics and be its own nearest neighbour in the "
        f"open-set threshold), e.g. {os.path.join(test, 'real', '0000.png')}"]
    assert "BatchNorm statistics of 36 images" in stdout
    assert _json(os.path.join(out, "adaptation.json"))["images"] == 36
    calibration = _json(os.path.join(out, "calibration.json"))
    assert calibration["train_images"] == calibration["val_images"] == 36
    # twenty copies of one file are one image: the warning about few images is not silenced
    one = os.path.join(test, "real", "0000.png")
    code, stdout, stderr = run_cli(["adapt", tiny_run, "--images"] + [one] * 20
                                   + ["--blend", "0", "--out", str(tmp_path / "one")])
    assert code == 0, stderr
    assert "19 file(s) given more than once" in stdout and "warning: 1 images to adapt on; below 20" in stdout


def test_adapt_refuses_an_out_that_reaches_the_run_through_a_link_before_any_work(tiny_run, upsampling_data,
                                                                                  tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(tiny_run, run)
    before = files_under(run)
    os.symlink(str(tmp_path), tmp_path / "linked")
    os.symlink(run, tmp_path / "run-link")
    for out in (os.path.join(tmp_path, "linked", "run"), str(tmp_path / "run-link")):
        code, stdout, stderr = run_cli(["adapt", run, "--images", upsampling_data["test"], "--out", out,
                                        "--overwrite"])
        assert code == 2 and stdout == ""
        assert stderr == (f"dnadet-tf adapt: error: --out {out}: expected a new folder for the adapted run, received "
                          f"the run itself, {os.path.realpath(run)}, through a symbolic link (adaptation keeps {run} "
                          "as it is).\n")
        assert files_under(run) == before
    # a folder that holds the run would lose it too
    code, stdout, stderr = run_cli(["adapt", run, "--images", upsampling_data["test"], "--out", str(tmp_path),
                                    "--overwrite"])
    assert code == 2 and "received a folder that holds the run" in stderr and len(stderr.splitlines()) == 1
    assert files_under(run) == before


def test_overwrite_refuses_an_out_that_is_a_link_to_a_folder_of_files(tiny_run, upsampling_data, tmp_path):
    from dnadet_tf.config import make_config

    other = str(tmp_path / "other")
    shutil.copytree(tiny_run, other)
    before = files_under(other)
    link = str(tmp_path / "link")
    os.symlink(other, link)
    # before any work, in one line, for every command: adapt (another run than the one read), fit, ...
    for argv in (["adapt", tiny_run, "--images", upsampling_data["test"]],
                 ["fit", "--data", upsampling_data["train"], "--preset", "tiny", "--steps", "1"]):
        code, stdout, stderr = run_cli(argv + ["--out", link, "--overwrite"])
        assert code == 2 and "adapting" not in stdout
        assert stderr == (f"dnadet-tf {argv[0]}: error: --out {link}: a symbolic link to {os.path.realpath(other)}; "
                          "--overwrite replaces a run dir's files but not through a link: pass the folder itself.\n")
    assert files_under(other) == before
    # ... and pretrain and import-torch, which check the run dir the same way
    config = make_config("tiny")
    for call in (lambda: RunDir(link).check(overwrite=True),
                 lambda: RunDir(link).check(overwrite=True, resumable=False),
                 lambda: RunDir(link).start(config, CLASSES, overwrite=True)):
        with pytest.raises(RunDirError, match="a symbolic link to .*not through a link"):
            call()
    assert files_under(other) == before
    RunDir(link).check(resume=True)  # a resume empties nothing
    # a link to an empty folder is used as the folder; a link that leads nowhere is named
    os.makedirs(tmp_path / "empty")
    os.symlink(str(tmp_path / "empty"), tmp_path / "empty-link")
    RunDir(str(tmp_path / "empty-link")).start(config, CLASSES, overwrite=True)
    assert os.path.isfile(tmp_path / "empty" / "config.json")
    os.symlink(str(tmp_path / "nowhere"), tmp_path / "dangling")
    with pytest.raises(RunDirError, match="dangling: a symbolic link to .*nowhere, which does not exist"):
        RunDir(str(tmp_path / "dangling")).check()


def test_refit_settings_carry_every_calibration_setting(tmp_path):
    from dnadet_tf.adaptation import refit_settings

    run = tmp_path / "run"
    run.mkdir()
    assert refit_settings(str(run)) == (0.95, "shared", "class")  # no calibration: the defaults
    for recorded, expected in (({"score": "cosine", "known_rate": 0.9, "radii": "per-class", "means": "image"},
                                (0.9, "per-class", "image")),
                               ({"score": "mahalanobis", "known_rate": 0.95, "radii": "shared", "means": 3},
                                (0.95, "shared", 3)),
                               ({"score": "mahalanobis"}, (0.95, "shared", "class")),  # written before the fields
                               ({"score": "energy", "known_rate": 0.8, "radii": None, "means": None},
                                (0.8, "shared", "class"))):  # no distances: the defaults
        (run / "calibration.json").write_text(json.dumps(recorded))
        assert refit_settings(str(run)) == expected


def test_adapt_images_refits_with_the_runs_means_and_radii(tiny_run, upsampling_data, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(tiny_run, run)
    code, _, stderr = run_cli(["calibrate", run, "--means", "2", "--radii", "per-class"])
    assert code == 0, stderr
    out = str(tmp_path / "adapted")
    code, stdout, stderr = run_cli(["adapt", run, "--images", upsampling_data["test"], "--out", out])
    assert code == 0, stderr
    calibration = _json(os.path.join(out, "calibration.json"))
    assert calibration["means"] == 2 and calibration["radii"] == "per-class" and calibration["pseudo_labels"]
    assert max(calibration["points_per_class"]) == 2
    assert "scored by its distance to the nearest of 2 k-means centres of the others of each class" in stdout


def test_adapt_images_blend_0_keeps_the_run_and_its_calibration(tiny_run, upsampling_data, tmp_path):
    # --blend 0 estimates nothing: every weight and BatchNorm statistic is the run's, so is its calibration (as
    # with --photos --blend 0); refitted on the model's own answers it replaced the run's
    out = str(tmp_path / "adapted")
    code, stdout, stderr = run_cli(["adapt", tiny_run, "--images", upsampling_data["test"], "--blend", "0",
                                    "--out", out])
    assert code == 0, stderr
    adapted, source = KerasPredictor(out).model, KerasPredictor(tiny_run).model
    for new, own in zip(adapted.weights, source.weights):
        np.testing.assert_array_equal(new.numpy(), own.numpy())
    assert len(adapted.weights) == len(source.weights) and len(batchnorm_layers(adapted)) == 8
    assert _json(os.path.join(out, "calibration.json")) == _json(os.path.join(tiny_run, "calibration.json"))
    report = _json(os.path.join(out, "adaptation.json"))
    assert report["calibration_dropped"] is False and report["calibration"].startswith("the run's own, kept")
    assert "and calibration.json (the run's own, kept: --blend 0 left its model unchanged)" in stdout
    assert "open-set calibration fitted" not in stdout

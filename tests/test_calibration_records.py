"""What a run's calibration.json records, and who follows it: export's int8 open-set threshold and its default
images, `fit --resume`, `calibrate` on adapted and `--val-split` runs; and errors that start with a path (bug hunt 7).
"""
import json
import os
import shutil

import pytest

from clirun import run_cli as _cli
from dnadet_tf.calibrate import HELD_OUT

CALIBRATION = "calibration.json"


def _json(*parts):
    with open(os.path.join(*parts), encoding="utf-8") as f:
        return json.load(f)


def _copy(run, path):
    shutil.copytree(run, str(path))
    return str(path)


def _without_own_val(run, path):
    """A copy of run dir `run` at `path` as `fit` writes one trained without validation data: config.json `val`
    empty, no calibration.json."""
    copy = _copy(run, path)
    config = _json(copy, "config.json")
    config["val"] = ""
    with open(os.path.join(copy, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    os.remove(os.path.join(copy, CALIBRATION))
    return copy


@pytest.fixture(scope="module")
def adapted_run(tiny_run, upsampling_data, tmp_path_factory):
    """The tiny run adapted by `adapt --images` to the test images (its calibration refitted on them, each left out);
    its config.json's data and val are the content before adaptation."""
    out = str(tmp_path_factory.mktemp("adapted") / "run")
    code, _, stderr = _cli(["adapt", tiny_run, "--images", upsampling_data["test"], "--out", out])
    assert code == 0, stderr
    return out


def _export_int8(run, out, *flags):
    """`dnadet-tf export --model RUN --out OUT --formats int8` (small): (stdout, stderr, report.json, int8 sidecar)."""
    code, stdout, stderr = _cli(["export", "--model", run, "--out", str(out), "--formats", "int8", "--max-eval", "6",
                                 "--calibration-images", "6", *flags])
    assert code == 0, stderr
    base = os.path.join(str(out), "dnadet")
    return stdout, stderr, _json(base, "report.json"), _json(base, "tflite", "dnadet-int8.json")


def test_int8_threshold_and_default_images_of_an_adapted_run_follow_its_calibration(adapted_run, upsampling_data,
                                                                                    tmp_path):
    # The int8 threshold was refitted on config.json's val (the content before adaptation) although calibration.json
    # said the float one was fitted on other images; --eval and --calibration defaulted to config.json's data too.
    test, train = os.path.abspath(upsampling_data["test"]), os.path.abspath(upsampling_data["train"])
    stdout, _, report, _ = _export_int8(adapted_run, tmp_path / "as-adapted")
    # as adapt left it: calibration.json records the images adapted to, [test], as its data and val
    assert report["eval"]["data"] == [test] and report["calibration"]["data"] == [test]
    assert report["eval"]["images"] == 6 and report["eval"]["labelled"]  # one folder tree: read with its classes
    assert f"parity images (--eval): {test}, the validation images its calibration.json records" in stdout
    assert f"int8 calibration images (--calibration): {test}, the training images its calibration.json" in stdout
    run = _copy(adapted_run, tmp_path / "recalibrated")
    code, _, stderr = _cli(["calibrate", run, "--data", upsampling_data["test"], "--val", upsampling_data["train"]])
    assert code == 0, stderr
    assert _json(run, CALIBRATION)["val"] == train and not _json(run, CALIBRATION)["val_left_out"]
    stdout, _, report, sidecar = _export_int8(run, tmp_path / "recalibrated-export")
    fitted_on = sidecar["open_set"]["threshold_fitted_on"]
    assert fitted_on["data"] == train and fitted_on["images"] == 72, fitted_on  # not config.json's val (36)
    assert f"refitting the int8 open-set threshold on 72 images of {train}" in stdout
    assert report["eval"]["data"] == train and report["calibration"]["data"] == test
    # given flags win, and no line says where the defaults come from
    stdout, _, report, _ = _export_int8(run, tmp_path / "given", "--eval", upsampling_data["val"],
                                        "--calibration", upsampling_data["val"])
    assert report["eval"]["data"] == report["calibration"]["data"] == os.path.abspath(upsampling_data["val"])
    assert "parity images (--eval)" not in stdout and "int8 calibration images (--calibration)" not in stdout


def test_int8_threshold_of_a_run_without_own_validation_uses_the_val_calibrate_recorded(tiny_run, upsampling_data,
                                                                                       tmp_path):
    # `fit` without --val, then `calibrate RUN --val DATA`: export warned "no validation images recorded" and kept
    # the float threshold for the int8 file (and compared on the training images).
    run = _without_own_val(tiny_run, tmp_path / "run")
    code, _, stderr = _cli(["calibrate", run, "--val", upsampling_data["test"]])
    assert code == 0, stderr
    stdout, stderr, report, sidecar = _export_int8(run, tmp_path / "out")
    test = os.path.abspath(upsampling_data["test"])
    assert "no validation images recorded" not in stderr
    assert sidecar["open_set"]["threshold_fitted_on"]["data"] == test
    assert sidecar["open_set"]["threshold_fitted_on"]["images"] == 36
    assert report["eval"]["data"] == test and report["calibration"]["data"] == os.path.abspath(upsampling_data["train"])
    assert "the validation images its calibration.json records (the run has none of its own)" in stdout


def test_an_adapted_run_given_data_without_val_is_refused_naming_val(adapted_run, upsampling_data, tmp_path):
    # It calibrated on config.json's val, the content before adaptation, without a word.
    run = _copy(adapted_run, tmp_path / "run")
    before = _json(run, CALIBRATION)
    code, stdout, stderr = _cli(["calibrate", run, "--data", upsampling_data["test"]])
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith(f"dnadet-tf calibrate: error: --val: expected along with --data for {run}, a run adapted")
    assert "pass --val with labeled images of the content it was adapted to" in stderr
    assert _json(run, CALIBRATION) == before
    code, _, stderr = _cli(["calibrate", run, "--val", upsampling_data["test"]])  # refused before, still
    assert code == 2 and "expected --data and --val" in stderr


def test_resume_calibrates_again_with_the_recorded_settings_and_data(tiny_run, upsampling_data, tmp_path):
    # `fit --resume` recalibrated with the defaults (mahalanobis, 0.95, shared, the run's own val): what a later
    # `calibrate` chose was gone.
    run = _copy(tiny_run, tmp_path / "run")
    code, _, stderr = _cli(["calibrate", run, "--score", "cosine", "--known-rate", "0.9", "--radii", "per-class",
                            "--val", upsampling_data["test"]])
    assert code == 0, stderr
    code, stdout, stderr = _cli(["fit", "--resume", "--out", run, "--steps", "41"])
    assert code == 0, stderr
    report = _json(run, CALIBRATION)
    assert (report["score"], report["known_rate"], report["radii"], report["means"]) == ("cosine", 0.9, "per-class",
                                                                                         "class")
    assert report["val"] == os.path.abspath(upsampling_data["test"]) and report["val_images"] == 36
    lines = [line for line in stdout.splitlines() if line.startswith("resumed run: calibrating again")]
    assert lines == [f"resumed run: calibrating again with the settings its calibration.json records (score "
                     f"'cosine', known rate 0.9, radii per-class, means class; --data "
                     f"{os.path.abspath(upsampling_data['train'])} --val {os.path.abspath(upsampling_data['test'])})"]


def test_resume_of_a_run_without_own_validation_keeps_the_calibration_calibrate_fitted(tiny_run, upsampling_data,
                                                                                      tmp_path):
    # The run has no validation data of its own: its resume removed the calibration.json of `calibrate --val`.
    run = _without_own_val(tiny_run, tmp_path / "run")
    code, _, stderr = _cli(["calibrate", run, "--val", upsampling_data["val"], "--known-rate", "0.8"])
    assert code == 0, stderr
    code, stdout, stderr = _cli(["fit", "--resume", "--out", run, "--steps", "41"])
    assert code == 0, stderr
    report = _json(run, CALIBRATION)
    assert report["known_rate"] == 0.8 and report["val"] == os.path.abspath(upsampling_data["val"])
    assert "removed" not in stdout and "resumed run: calibrating again" in stdout


def test_an_error_that_starts_with_a_path_keeps_the_path(tiny_run, tmp_path, monkeypatch):
    # A path that is one word and a flag's name became the flag: "error: --val: no validation images ...",
    # "error: --json: no such file or folder."
    from dnadet_tf.cli.main import build_parser, in_flag_words

    _without_own_val(tiny_run, tmp_path / "val")
    monkeypatch.chdir(tmp_path)
    code, _, stderr = _cli(["calibrate", "val"])
    assert code == 2 and stderr.startswith("dnadet-tf calibrate: error: val: no validation images to calibrate on"), \
        stderr
    code, _, stderr = _cli(["predict", "--model", tiny_run, "json"])
    assert code == 2 and stderr.strip() == "dnadet-tf predict: error: json: no such file or folder.", stderr
    parsers = build_parser()._subparsers._group_actions[0].choices
    # a parameter name still becomes the flag; a value the user typed never does
    assert in_flag_words("val: expected the resumed run's own", parsers["fit"]) == "--val: expected the resumed run's own"
    assert in_flag_words("val: expected x", parsers["calibrate"], {"run": "r", "val": None}) == "--val: expected x"
    assert in_flag_words("val: no validation images", parsers["calibrate"], {"run": "val"}) == (
        "val: no validation images")


def test_calibrating_too_few_labeled_images_names_them_not_a_data_list(tiny_run, upsampling_data, tmp_path):
    # "error: --data ['/.../lab1']: expected 2 or more ..." though no --data was given.
    labeled = tmp_path / "lab1"
    for name in sorted(os.listdir(upsampling_data["test"])):
        (labeled / name).mkdir(parents=True)
        first = sorted(os.listdir(os.path.join(upsampling_data["test"], name)))[0]
        shutil.copy(os.path.join(upsampling_data["test"], name, first), labeled / name / first)
    run = str(tmp_path / "adapted")
    code, _, stderr = _cli(["adapt", tiny_run, "--labeled", str(labeled), "--out", run])
    assert code == 0, stderr
    code, _, stderr = _cli(["calibrate", run])
    assert code == 2, stderr
    assert (f"error: the labeled images the run was adapted to ({labeled}): expected 2 or more training images of "
            f"every class") in stderr
    assert "['" not in stderr and "--data" not in stderr.split(":", 3)[2]


def test_calibrate_a_val_split_run_on_other_data_validates_on_its_held_out_images(upsampling_data, tmp_path):
    # "no validation images to calibrate on (the run had none)" though the run holds its validation images out.
    import io

    from dnadet_tf.training import fit

    run = str(tmp_path / "run")
    fit(upsampling_data["train"], run, preset="tiny", steps=2, val_split=0.25, output=io.StringIO())
    code, stdout, stderr = _cli(["calibrate", run, "--data", upsampling_data["test"]])
    assert code == 0, stderr
    report = _json(run, CALIBRATION)
    assert report["val"] == HELD_OUT and report["data"] == os.path.abspath(upsampling_data["test"])
    assert report["val_images"] == 18 and report["train_images"] == 36  # a quarter of 3 x 24; all of test
    assert "features of 36 training and 18 validation images" in stdout

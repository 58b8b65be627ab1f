"""`--overwrite` empties `--out` before training into it: an input inside that folder was read and then deleted, or
deleted before it was read (`fit --init RUN --out RUN --overwrite` loaded RUN's weights, wiped RUN, and left a
config.json naming itself as --init). Every command that empties its `--out` now refuses such an input first
(`RunDir.require_inputs_outside`, real paths compared), in one line, before any work; `--resume` empties nothing
and is not refused."""
import json
import os
import shutil

import pytest

from clirun import files_under, run_cli
from dnadet_tf.errors import RunDirError
from dnadet_tf.runs import BEST_MODEL, CONFIG_FILE, RunDir
from synthetic import CLASSES

FIT = ["--preset", "tiny", "--steps", "1"]


def _refusal(command, flag, given, what, out, received="one inside it",
             advice="move it out of the folder first, or give another --out"):
    return (f"dnadet-tf {command}: error: {flag} {given}: expected {what} outside --out {out}, which --overwrite "
            f"empties before it is read, received {received}; {advice}.\n")


def _error(stderr):
    """The one error line of `stderr`, past any warning (TensorFlow started by an earlier test in this process)."""
    lines = stderr.splitlines()
    assert all(line.startswith("warning: ") for line in lines[:-1]), stderr
    return lines[-1] + "\n" if lines else ""


def _run_copy(run, tmp_path, name="run"):
    copy = str(tmp_path / name)
    shutil.copytree(run, copy)
    return copy


def test_fit_refuses_an_init_run_that_is_its_own_out(untrained_run, upsampling_data, tmp_path):
    """The run was loaded as --init, then emptied: its best.keras was gone, and its new config.json named itself."""
    run = _run_copy(untrained_run, tmp_path)
    before = files_under(run)
    os.symlink(run, tmp_path / "link")
    for given in (run, os.path.join(run, ".") + os.sep, str(tmp_path / "link")):
        code, stdout, stderr = run_cli(["fit", "--data", upsampling_data["train"], "--init", given, "--out", run,
                                        "--overwrite"] + FIT)
        assert code == 2 and "training" not in stdout, stderr
        itself = "--out itself" + ("" if given != str(tmp_path / "link") else f" ({os.path.realpath(run)})")
        assert _error(stderr) == _refusal("fit", "--init", given, "a run", run, itself, "give another --out"), stderr
        assert files_under(run) == before and os.path.isfile(os.path.join(run, BEST_MODEL))


@pytest.mark.parametrize("case", ["data", "val", "list", "extra_real"])
def test_fit_refuses_data_inside_the_out_it_would_empty(case, untrained_run, upsampling_data, tmp_path):
    """--data, --val, the images an annotation list names and --extra-real photos inside --out were read and deleted
    (the training images between two validations, say); refused before any image is decoded."""
    run = _run_copy(untrained_run, tmp_path)
    data, val, photos = (os.path.join(run, name) for name in ("data", "val", "photos"))
    shutil.copytree(upsampling_data["train"], data)
    shutil.copytree(upsampling_data["val"], val)
    shutil.copytree(os.path.join(upsampling_data["train"], "real"), photos)
    # a list outside the run that names the images inside it
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "classes.txt").write_text("".join(f"{name}\n" for name in CLASSES))
    named = [os.path.join(data, name, image) for name in CLASSES
             for image in sorted(os.listdir(os.path.join(data, name)))]
    (lists / "train.txt").write_text("".join(f"{path}\t{CLASSES.index(path.split(os.sep)[-2])}\n" for path in named))
    before = files_under(run)
    train = upsampling_data["train"]
    argv, expected = {
        "data": (["--data", data], _refusal("fit", "--data", data, "training data", run)),
        "val": (["--data", train, "--val", val], _refusal("fit", "--val", val, "validation data", run)),
        "list": (["--data", str(lists / "train.txt")],
                 _refusal("fit", "--data", str(lists / "train.txt"), "training data", run,
                          f"one that names a file inside it ({named[0]})",
                          "move those files out of the folder first, or give another --out")),
        "extra_real": (["--data", train, "--extra-real", photos],
                       _refusal("fit", "--extra-real", photos, "a folder of photos", run)),
    }[case]
    code, stdout, stderr = run_cli(["fit"] + argv + ["--out", run, "--overwrite"] + FIT)
    assert code == 2 and "checking" not in stdout, stderr
    assert _error(stderr) == expected, stderr
    assert files_under(run) == before
    # without --overwrite nothing is emptied: the refusal is the one it was
    code, _, stderr = run_cli(["fit"] + argv + ["--out", run] + FIT)
    assert code == 2 and _error(stderr) == (f"dnadet-tf fit: error: --out {run}: the folder already holds files; "
                                            "pass --overwrite to replace them or --resume to continue that run.\n")


def test_pretrain_refuses_photos_inside_the_out_it_would_empty(untrained_run, upsampling_data, tmp_path):
    run = _run_copy(untrained_run, tmp_path)
    inside = os.path.join(run, "photos")
    shutil.copytree(upsampling_data["test"], inside)
    before = files_under(run)
    code, stdout, stderr = run_cli(["pretrain", "--photos", inside, "--out", run, "--overwrite", "--preset", "tiny"])
    assert code == 2 and stdout == "", stderr
    assert _error(stderr) == _refusal("pretrain", "--photos", inside, "a folder of photos", run), stderr
    assert files_under(run) == before


@pytest.mark.parametrize("flag, what", [("--images", "images"), ("--labeled", "labeled images"),
                                        ("--photos", "a folder of photos")])
def test_adapt_refuses_images_inside_the_out_it_would_empty(flag, what, untrained_run, upsampling_data, tmp_path):
    """The images were read, then deleted with the --out they lay in."""
    run = _run_copy(untrained_run, tmp_path)
    inside = os.path.join(run, "images")
    shutil.copytree(upsampling_data["test"], inside)
    before = files_under(run)
    code, stdout, stderr = run_cli(["adapt", untrained_run, flag, inside, "--out", run, "--overwrite"])
    assert code == 2 and stdout == "", stderr
    assert _error(stderr) == _refusal("adapt", flag, inside, what, run), stderr
    assert files_under(run) == before


def test_require_inputs_outside_refuses_only_what_overwrite_empties(tmp_path):
    out = tmp_path / "run"
    (out / "data").mkdir(parents=True)
    (out / CONFIG_FILE).write_text("{}")
    outside = tmp_path / "other"
    outside.mkdir()
    run = RunDir(str(out))
    inside = [("data", str(out / "data"), "training data")]
    with pytest.raises(RunDirError, match=r"^data .*: expected training data outside `out` .*, which overwrite=True "
                                          r"empties before it is read, received one inside it; "):
        run.require_inputs_outside(inside, overwrite=True)
    # no overwrite, a resume, an input outside, a missing one, or an out that holds nothing: nothing is refused
    run.require_inputs_outside(inside)
    run.require_inputs_outside(inside, overwrite=True, resume=True)
    run.require_inputs_outside([("data", str(outside), "training data"), ("val", None, "validation data"),
                                ("init", str(out / "gone"), "a run")], overwrite=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    RunDir(str(empty)).require_inputs_outside([("init", str(empty), "a run")], overwrite=True)
    # a run's folder that holds the out is no input inside it
    run.require_inputs_outside([("data", str(tmp_path), "training data")], overwrite=True)


def test_fit_resume_reads_data_inside_its_own_run(upsampling_data, tmp_path):
    """A resumed run empties nothing: data that lies inside it is not refused."""
    run = str(tmp_path / "run")
    code, _, stderr = run_cli(["fit", "--data", upsampling_data["train"], "--out", run] + FIT)
    assert code == 0, stderr
    data = os.path.join(run, "data")
    shutil.copytree(upsampling_data["train"], data)
    with open(os.path.join(run, CONFIG_FILE), encoding="utf-8") as f:
        config = json.load(f)
    config["data"] = data
    with open(os.path.join(run, CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump(config, f)
    code, stdout, stderr = run_cli(["fit", "--data", data, "--out", run, "--resume", "--steps", "2"])
    assert code == 0, stderr
    assert "resumed from" in stdout and os.path.isdir(data) and os.path.isfile(os.path.join(run, BEST_MODEL))

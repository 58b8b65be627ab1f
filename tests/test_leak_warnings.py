"""Two data leaks told by a warning line (stderr), compared by the files' bytes (`data.same_files`,
`data.repeated_files`; nothing decoded):

- `evaluate` on images that are training images of the run (config.json's `data`, less the share `val_split` held
  out of it; a run of `adapt` too): one line per such row, and the count in its metrics' `training_images` (absent
  when none is, for an export, and when the training data are gone);
- `fit` on training images that are an image of another class (a copy in two class folders): one line naming both
  classes, before training; repeats within one class say nothing.
"""
import glob
import io
import json
import os
import shutil

from clirun import run_cli


def run_trained_on(untrained_run, where, data, **config):
    """A copy of `untrained_run` at `where` whose config.json records `data` (absolute) as its training data, with
    the other top-level `config` values (val_split)."""
    run = str(where)
    shutil.copytree(untrained_run, run)
    path = os.path.join(run, "config.json")
    with open(path, encoding="utf-8") as f:
        values = json.load(f)
    values.update(data=os.path.abspath(data), **config)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(values, f)
    return run


def warnings(stderr):
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


def evaluated(args):
    """`dnadet-tf evaluate ARGS --json FILE` in the working folder: (rows of the JSON, warning lines)."""
    code, _, stderr = run_cli(["evaluate", *args, "--json", "evaluation/rows.json"])
    assert code == 0, stderr
    with open(os.path.join("evaluation", "rows.json"), encoding="utf-8") as f:
        return json.load(f), warnings(stderr)


def test_evaluate_warns_of_a_copy_of_the_training_tree_and_counts_it(folder, untrained_run):
    run = run_trained_on(untrained_run, folder / "run", "train")
    shutil.copytree("train", "copy")
    rows, lines = evaluated(["--model", run, "--data", "copy", "val"])
    assert [row["name"] for row in rows] == ["copy", "val"]
    assert rows[0]["metrics"]["training_images"] == 9 and "training_images" not in rows[1]["metrics"]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"warning: copy (copy): 9 of its 9 images are training images of the run {run} ")
    assert f"the same bytes as the training image {os.path.abspath('train')}{os.sep}" in lines[0]
    assert lines[0].endswith("the accuracy of this row is measured only on images the model learned")


def test_api_evaluate_counts_some_and_an_export_records_nothing(folder, untrained_run, capsys):
    import dnadet_tf
    from dnadet_tf.exports.savedmodel import write_savedmodel
    from dnadet_tf.predictor import KerasPredictor

    run = run_trained_on(untrained_run, folder / "run", "train")
    shutil.copytree("val", "mixed")
    shutil.copy(sorted(glob.glob(os.path.join("train", "nearest", "*")))[0], os.path.join("mixed", "nearest", "x.png"))
    os.link(sorted(glob.glob(os.path.join("train", "real", "*")))[0], os.path.join("mixed", "real", "x.png"))
    capsys.readouterr()
    rows = dnadet_tf.evaluate(run, ["mixed", "val"])
    lines = warnings(capsys.readouterr().err)
    assert [row["metrics"].get("training_images") for row in rows] == [2, None]
    assert len(lines) == 1 and "mixed (mixed): 2 of its 8 images are training images of" in lines[0], lines
    assert f"e.g. {os.path.join('mixed', 'real', 'x.png')}, the same bytes as" in lines[0]  # real: the first class

    # an export records no training data: nothing to check, nothing said
    predictor = KerasPredictor(run)
    export = str(folder / "export" / "1")
    write_savedmodel(predictor.model, predictor.class_names, predictor.preprocess, export, {})
    capsys.readouterr()
    rows = dnadet_tf.evaluate(export, ["mixed"])
    assert "training_images" not in rows[0]["metrics"] and warnings(capsys.readouterr().err) == []


def test_the_share_held_out_by_val_split_is_not_counted(folder, untrained_run):
    from dnadet_tf.data import hold_out, read_dataset

    run = run_trained_on(untrained_run, folder / "run", "train", val_split=0.34)
    held = hold_out(read_dataset(os.path.abspath("train")), 0.34)[1].paths
    assert len(held) == 3  # one image of each class
    shutil.copytree("train", "copy")
    os.makedirs("held")
    for path in held:
        os.makedirs(os.path.join("held", os.path.basename(os.path.dirname(path))), exist_ok=True)
        shutil.copy(path, os.path.join("held", os.path.basename(os.path.dirname(path))))
    rows, lines = evaluated(["--model", run, "--data", "copy", "held"])
    assert [row["metrics"].get("training_images") for row in rows] == [6, None]
    assert len(lines) == 1 and "copy (copy): 6 of its 9 images are training images" in lines[0], lines
    assert lines[0].endswith("the accuracy of this row is measured partly on images the model learned")


def test_an_adapted_run_counts_its_data_and_says_nothing_once_they_are_gone(folder, untrained_run):
    shutil.copytree("train", "before")
    run = run_trained_on(untrained_run, folder / "run", "before")
    with open(os.path.join(run, "adaptation.json"), "w", encoding="utf-8") as f:
        json.dump({}, f)
    rows, lines = evaluated(["--model", run, "--data", "train"])
    assert rows[0]["metrics"]["training_images"] == 9 and len(lines) == 1, lines
    shutil.rmtree("before")
    rows, lines = evaluated(["--model", run, "--data", "train"])
    assert "training_images" not in rows[0]["metrics"] and lines == []


def test_fit_warns_once_of_a_picture_in_two_classes_and_trains(folder, capsys):
    from dnadet_tf.training import fit

    nearest = sorted(glob.glob(os.path.join("train", "nearest", "*")))[0]
    real = sorted(glob.glob(os.path.join("train", "real", "*")))[0]
    shutil.copy(nearest, os.path.join("train", "transposed", "copy.png"))  # the same picture as two classes
    shutil.copy(real, os.path.join("train", "real", "again.png"))  # a repeat within one class: nothing said
    capsys.readouterr()
    summary = fit("train", "run", val="val", preset="tiny", steps=2, val_every=2, checkpoint_every=2,
                  output=io.StringIO())
    lines = [line for line in warnings(capsys.readouterr().err) if "another class" in line]
    assert summary["end_step"] == 2 and os.path.isfile(os.path.join("run", "best.keras"))
    assert len(lines) == 1, lines
    assert lines[0].startswith("warning: --data train: 2 training images are, by their bytes, an image of another "
                               "class (1 picture under two classes or more; ")
    assert (f"{os.path.join('train', 'transposed', 'copy.png')} in class transposed, the same bytes as {nearest} in "
            f"class nearest" in lines[0])
    assert "again.png" not in capsys.readouterr().err

    # a resumed run said it when it started
    fit("train", "run", resume=True, steps=4, val_every=2, checkpoint_every=2, output=io.StringIO())
    assert not [line for line in warnings(capsys.readouterr().err) if "another class" in line]


def test_a_list_labeling_two_copies_apart_warns_and_repeats_in_one_class_do_not(folder, capsys):
    from dnadet_tf.data import read_dataset
    from dnadet_tf.training import warn_relabeled_copies

    real = sorted(glob.glob(os.path.join("train", "real", "*")))
    shutil.copy(real[0], "a.png")
    shutil.copy(real[0], "b.png")
    shutil.copy(real[1], "c.png")
    with open("classes.txt", "w", encoding="utf-8") as f:
        f.write("real\nnearest\n")
    with open("list.txt", "w", encoding="utf-8") as f:  # a (real) and c (nearest) stand for two pictures
        f.write(f"{os.path.abspath(real[0])}\t0\n{os.path.abspath(real[1])}\t0\na.png\t0\nc.png\t0\nb.png\t1\n")
    warn_relabeled_copies(read_dataset("list.txt"), "list.txt")
    lines = warnings(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("warning: --data list.txt: 3 training images are, by their bytes, "
                                                   "an image of another class (1 picture under "), lines
    assert f"e.g. {os.path.abspath('b.png')} in class nearest, the same bytes as {os.path.abspath(real[0])} in class " \
           f"real" in lines[0]

    shutil.copy(real[0], os.path.join("train", "real", "again.png"))
    warn_relabeled_copies(read_dataset("train"), "train")  # a repeat within one class
    assert capsys.readouterr().err == ""


def test_robustness_counts_training_images_as_evaluate_does(folder, untrained_run):
    from dnadet_tf.api import load
    from dnadet_tf.robustness import robustness

    run = run_trained_on(untrained_run, folder / "run", "train")
    shutil.copytree("train", "copy")
    lines = []
    rows = robustness(load(run), ["copy", "val"], attacks=("blur",), progress=lambda line: None, warn=lines.append)
    assert [row.get("training_images") for row in rows] == [9, None]
    assert len(lines) == 1 and lines[0].startswith(f"warning: copy (copy): 9 of its 9 images are training images "
                                                   f"of the run {run} "), lines

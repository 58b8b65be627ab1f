"""What `dnadet-tf evaluate` counts and writes: the open set over several benchmarks, one confusion PNG per row,
PNGs of other evaluations in a shared --json folder kept, `.` named after its folder, and an output folder under a
file refused before any work (bug hunt 6)."""
import json
import os
import shutil

import numpy as np
import pytest

from clirun import run_cli

CLASSES = ("real", "nearest", "transposed")


def _benchmark(folder, data, per_class, unknown):
    """A benchmark folder: classes.txt, test.txt (`per_class` images of each class of the tree `data`, absolute
    paths and class indices) and open_set.txt (the images `unknown`, absolute paths, architecture `weird`)."""
    os.makedirs(folder)
    with open(os.path.join(folder, "classes.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(CLASSES) + "\n")
    with open(os.path.join(folder, "test.txt"), "w", encoding="utf-8") as f:
        for label, name in enumerate(CLASSES):
            for image in sorted(os.listdir(os.path.join(data, name)))[:per_class]:
                f.write(f"{os.path.join(data, name, image)}\t{label}\n")
    with open(os.path.join(folder, "open_set.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{path}\tweird\n" for path in unknown)
    return str(folder)


def _rows(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_the_open_set_takes_the_known_images_of_every_benchmark_and_each_image_once(tiny_run, upsampling_data,
                                                                                    tmp_path):
    """Two benchmarks: the open set scores the unknown images of both against the closed-set images of both (it
    took those of the first alone, the row renamed `closed-set-2` missing); one benchmark given twice counts its
    images once (its open_set.txt was read twice)."""
    from dnadet_tf.api import load
    from dnadet_tf.evaluation import OPEN_SET_ROW, evaluate

    train = upsampling_data["train"]
    unknown = [os.path.join(train, "nearest", name) for name in sorted(os.listdir(os.path.join(train, "nearest")))]
    first = _benchmark(tmp_path / "bench", upsampling_data["test"], 2, unknown[:3])
    second = _benchmark(tmp_path / "bench2", upsampling_data["val"], 2, unknown[3:6])
    predictor = load(tiny_run)
    assert predictor.open_set, "tiny_run should be calibrated"

    rows = evaluate(predictor, [first, second], progress=lambda line: None)
    assert [row["name"] for row in rows] == ["closed-set", "closed-set-2", "open-set"]
    open_set = rows[-1]
    assert open_set["kind"] == OPEN_SET_ROW and open_set["known"] == ["closed-set", "closed-set-2"]
    assert open_set["metrics"]["known_images"] == 12 and open_set["metrics"]["unknown_images"] == 6

    rows = evaluate(predictor, [first, first], progress=lambda line: None)
    assert rows[-1]["metrics"]["known_images"] == 6 and rows[-1]["metrics"]["unknown_images"] == 3
    # two lists named test.txt are closed-set rows as well; a folder tree is not one when a closed-set row exists
    lists = [str(tmp_path / name / "test.txt") for name in ("bench", "bench2")]
    rows = evaluate(predictor, lists + [upsampling_data["val"]], unknown_specs=[first],
                    progress=lambda line: None)
    assert rows[-1]["known"] == ["closed-set", "closed-set-2"] and rows[-1]["metrics"]["known_images"] == 12


def test_rows_whose_names_give_one_file_name_get_a_png_each(untrained_run, upsampling_data, tmp_path):
    """`odd/my data` and `odd2/my_data` (and `a.b`, `a_b`; `A`, `a`) made one PNG name: the second row's matrix
    replaced the first's and both rows named it."""
    from dnadet_tf.evaluation import write_confusion_pngs

    for folder in ("odd/my data", "odd2/my_data"):
        os.makedirs(tmp_path / os.path.dirname(folder))
        os.symlink(upsampling_data["test"], tmp_path / folder)
    out = tmp_path / "out" / "evaluation.json"
    code, _, stderr = run_cli(["evaluate", "--model", untrained_run, "--data", str(tmp_path / "odd" / "my data"),
                               str(tmp_path / "odd2" / "my_data"), "--json", str(out)])
    assert code == 0, stderr
    pngs = [row["confusion_png"] for row in _rows(out)]
    assert [os.path.basename(png) for png in pngs] == ["confusion_my_data.png", "confusion_my_data-2.png"]
    assert all(os.path.isfile(png) for png in pngs)

    metrics = {"confusion_matrix": np.eye(3, dtype=int).tolist(), "accuracy": 1.0}
    rows = [{"name": name, "metrics": metrics} for name in ("a.b", "a_b", "A", "a", "a_b-2")]
    written = write_confusion_pngs(rows, list(CLASSES), str(tmp_path / "slugs"))
    assert len({png.casefold() for png in written}) == len(rows) and all(os.path.isfile(png) for png in written)
    assert [row["confusion_png"] for row in rows] == written


def test_an_evaluation_into_a_shared_json_folder_keeps_the_other_evaluations_pngs(untrained_run, upsampling_data,
                                                                                 tmp_path):
    """`--json shared/b.json` beside `shared/a.json` wrote over a.json's confusion_test.png (and a file of the
    user's named confusion_val.png): a PNG that the JSON being replaced does not list is kept, and the new one
    takes the next free name. Replacing a JSON keeps its PNG names; the default folder's names are unchanged."""
    shared = tmp_path / "shared"

    def evaluate(json_name, *data):
        code, _, stderr = run_cli(["evaluate", "--model", untrained_run, "--data", *data,
                                   "--json", str(shared / json_name)])
        assert code == 0, stderr
        return [row["confusion_png"] for row in _rows(shared / json_name)]

    test, val = upsampling_data["test"], upsampling_data["val"]
    (a_png,) = evaluate("a.json", test)
    assert a_png == str(shared / "confusion_test.png")
    first = open(a_png, "rb").read()
    (shared / "confusion_val.png").write_bytes(b"mine")
    b_pngs = evaluate("b.json", val, test)  # rows `val` and `test`
    assert [os.path.basename(png) for png in b_pngs] == ["confusion_val-2.png", "confusion_test-2.png"]
    assert open(a_png, "rb").read() == first and (shared / "confusion_val.png").read_bytes() == b"mine"
    # a.json again: its own PNG replaced under its name; b.json's and the user's kept
    assert evaluate("a.json", test) == [a_png]
    assert all(os.path.isfile(png) for png in b_pngs) and (shared / "confusion_val.png").read_bytes() == b"mine"
    # b.json again, with one row fewer: its PNG of the row it no longer has is removed, no other
    assert evaluate("b.json", test) == [b_pngs[1]]
    assert sorted(os.listdir(shared)) == ["a.json", "b.json", "confusion_test-2.png", "confusion_test.png",
                                          "confusion_val.png"]

    run = str(tmp_path / "run")
    shutil.copytree(untrained_run, run)
    for _ in range(2):  # the default folder: the same names again
        code, _, stderr = run_cli(["evaluate", "--model", run, "--data", test])
        assert code == 0, stderr
        assert [row["confusion_png"] for row in _rows(os.path.join(run, "evaluations", "test", "evaluation.json"))] \
            == [os.path.join(run, "evaluations", "test", "confusion_test.png")]


def test_dot_as_data_is_named_after_its_folder(untrained_run, upsampling_data, tmp_path, monkeypatch):
    """`--data .` made the row `.` and wrote into RUN/evaluations itself (then RUN/evaluations-2); `..` alike; and
    robustness into RUN/robustness/. itself."""
    from dnadet_tf.cli.output_paths import default_output_dir
    from dnadet_tf.evaluation import expand_data_specs

    run = str(tmp_path / "run")
    shutil.copytree(untrained_run, run)
    test = upsampling_data["test"]
    monkeypatch.chdir(test)
    assert expand_data_specs(["."]) == [("test", ".")]
    assert default_output_dir(run, ["."]) == os.path.join(run, "evaluations", "test")
    assert default_output_dir(run, ["."], folder="robustness") == os.path.join(run, "robustness", "test")
    code, _, stderr = run_cli(["evaluate", "--model", run, "--data", "."])
    assert code == 0, stderr
    folder = os.path.join(run, "evaluations", "test")
    assert [row["name"] for row in _rows(os.path.join(folder, "evaluation.json"))] == ["test"]
    monkeypatch.chdir(os.path.join(test, "real"))
    assert expand_data_specs([".."]) == [("test", "..")]
    code, _, stderr = run_cli(["evaluate", "--model", run, "--data", ".."])  # the same data: the same folder
    assert code == 0, stderr
    assert sorted(os.listdir(os.path.join(run, "evaluations"))) == ["test"]


@pytest.mark.parametrize("command", ["evaluate", "explain"])
def test_an_output_folder_under_a_file_is_refused_in_one_line_before_any_work(command, untrained_run,
                                                                              upsampling_data, tmp_path):
    """`--report FILE/DIR` (`explain --out FILE/DIR`) failed after the inference with a bare `[Errno 20] Not a
    directory` naming no flag, exit 1, the evaluation JSON already written."""
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    target = str(a_file / "sub" / "report")
    image = os.path.join(upsampling_data["test"], "real", "0000.png")
    flag, argv = {
        "evaluate": ("--report", ["evaluate", "--model", untrained_run, "--data", upsampling_data["test"],
                                  "--json", str(tmp_path / "e" / "evaluation.json"), "--report", target]),
        "explain": ("--out", ["explain", "--model", untrained_run, image, "--out", target]),
    }[command]
    code, stdout, stderr = run_cli(argv)
    assert code == 2 and stderr.strip().splitlines() == [
        f"dnadet-tf {command}: error: {flag} {target}: expected a folder path, but {a_file} is a file."]
    assert not (tmp_path / "e").exists() and "evaluating" not in stdout and a_file.read_text() == "mine"

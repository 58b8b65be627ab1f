"""Pins found by mutation testing of metrics, ECE, hold_out and the evaluation's split rows: each test is checked
against a hand computation and fails under a plausible mutant that the rest of the fast tests let through (ECE
with 10 bins, hold_out flooring instead of rounding, the evaluation rows' splits, names and closed-set flags)."""
import hashlib
import os

import numpy as np


def test_ece_uses_15_equal_width_bins_by_default():
    """Confidences 0.62 (right) and 0.68 (wrong) lie in bins [9/15, 10/15) and [10/15, 11/15) of 15, but share
    [0.6, 0.7) of 10 bins: 15 bins give 0.5 * |1 - 0.62| + 0.5 * |0 - 0.68| = 0.53, 10 bins |0.5 - 0.65| = 0.15."""
    from dnadet_tf import openset

    p = np.array([[0.62, 0.38], [0.68, 0.32]])
    labels = np.array([0, 1])
    assert abs(openset.expected_calibration_error(p, labels) - 0.53) < 1e-12
    assert abs(openset.expected_calibration_error(p, labels, bins=10) - 0.15) < 1e-12


def test_hold_out_rounds_the_share_of_each_class_and_holds_the_first_by_path_hash():
    """round(fraction * n) per class, at least 1 and at most n - 1 for n >= 2, none of a class of 1: with fraction
    0.4 classes of 4, 2, 1 and 10 hold out round(1.6) = 2, min(1, round(0.8)) = 1, 0 and 4 (flooring would hold
    out 1 of the 4). The ones held are those whose path relative to the common folder has the smallest SHA-256."""
    from dnadet_tf.data import LabeledFiles, hold_out

    sizes = {"real": 4, "a": 2, "b": 1, "c": 10}
    relative = [f"{name}/{i:02d}.png" for name, n in sizes.items() for i in range(n)]
    labels = np.repeat(np.arange(len(sizes)), list(sizes.values()))
    root = os.path.join(os.sep, "data", "set")
    files = LabeledFiles(paths=[os.path.join(root, r) for r in relative], labels=labels,
                         class_names=list(sizes), source=root)
    kept, held = hold_out(files, 0.4)
    assert held.class_counts().tolist() == [2, 1, 0, 4]
    assert kept.class_counts().tolist() == [2, 1, 1, 6]

    def first_by_hash(name, count):
        return sorted((r for r in relative if r.startswith(name + "/")),
                      key=lambda r: hashlib.sha256(r.encode()).hexdigest())[:count]

    expected = first_by_hash("real", 2) + first_by_hash("a", 1) + first_by_hash("c", 4)
    assert sorted(os.path.relpath(p, root) for p in held.paths) == sorted(expected)


def _benchmark(folder, splits):
    os.makedirs(folder)
    for name in ("classes",) + tuple(splits):
        with open(os.path.join(folder, f"{name}.txt"), "w", encoding="utf-8") as f:
            f.write("real\nfake\n" if name == "classes" else "")
    return str(folder)


def test_evaluation_rows_take_the_test_and_cross_splits_in_order_with_unique_names(tmp_path):
    """A benchmark expands to its closed-set list and its cross-test lists, in the order test, cross_seed,
    cross_loss, cross_finetune, cross_dataset (never train, val or open_set); a second benchmark's rows are named
    -2; only the closed-set rows (also `closed-set-2`, and a list named test.txt) are closed-set."""
    from dnadet_tf.evaluation import expand_data_rows, expand_data_specs

    every = ("train", "val", "test", "cross_seed", "cross_loss", "cross_finetune", "cross_dataset", "open_set")
    first = _benchmark(tmp_path / "one", every)
    second = _benchmark(tmp_path / "two", ("val", "test", "cross_dataset"))
    titles = ["closed-set", "cross-seed", "cross-loss", "cross-finetune", "cross-dataset"]
    files = ["test", "cross_seed", "cross_loss", "cross_finetune", "cross_dataset"]
    expected = [(title, os.path.join(first, f"{split}.txt"), title == "closed-set")
                for title, split in zip(titles, files)]
    expected += [("closed-set-2", os.path.join(second, "test.txt"), True),
                 ("cross-dataset-2", os.path.join(second, "cross_dataset.txt"), False)]
    assert expand_data_rows([first, second]) == expected
    assert expand_data_specs([first, second]) == [(name, path) for name, path, _ in expected]

    lists = tmp_path / "lists"
    lists.mkdir()
    for name in ("test", "val"):
        (lists / f"{name}.txt").write_text("", encoding="utf-8")
    tree = tmp_path / "tree"
    tree.mkdir()
    test_list, val_list = str(lists / "test.txt"), str(lists / "val.txt")
    assert expand_data_rows([test_list, val_list, str(tree), test_list]) == [
        ("closed-set", test_list, True), ("val", val_list, False), ("tree", str(tree), False),
        ("closed-set-2", test_list, True)]


def test_folder_tree_sorts_classes_whatever_the_listing_order_with_real_label_0(tmp_path):
    """Seven class folders made in an unsorted order (os.listdir gives creation, reverse or hash order, none of them
    sorted but by a 1 in 5040 chance): `real` is label 0, the others sorted after it, each image labelled by its
    folder."""
    from dnadet_tf.data import read_folder_tree

    made = ("f", "real", "b", "e", "a", "d", "c")
    for name in made:
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.png").write_bytes(b"")
    files = read_folder_tree(str(tmp_path), warn=lambda message: None)
    assert files.class_names == ["real", "a", "b", "c", "d", "e", "f"]
    assert [os.path.basename(p) for p in files.paths] == [f"{name}.png" for name in files.class_names]
    assert files.labels.tolist() == list(range(7))


def test_annotation_list_named_from_its_own_folder_gives_paths_that_outlast_a_change_of_folder(tmp_path, monkeypatch):
    """A list given by a bare name (the working folder is its folder): its relative paths are resolved against that
    folder once, into paths that still lead to the files from another working folder, with classes.txt's names in
    its order (not sorted)."""
    from dnadet_tf.data import read_annotation_list

    data = tmp_path / "bench"
    (data / "img").mkdir(parents=True)
    for name in ("x.png", "y.png"):
        (data / "img" / name).write_bytes(b"")
    (data / "classes.txt").write_text("zgan\nreal\n", encoding="utf-8")
    (data / "list.txt").write_text("img/x.png\t1\nimg/y.png\t0\n", encoding="utf-8")
    monkeypatch.chdir(data)
    files = read_annotation_list("list.txt")
    monkeypatch.chdir(tmp_path)
    assert files.class_names == ["zgan", "real"] and files.labels.tolist() == [1, 0]
    assert [os.path.relpath(p, data) for p in files.paths] == [os.path.join("img", "x.png"), os.path.join("img", "y.png")]
    assert all(os.path.isfile(p) for p in files.paths)

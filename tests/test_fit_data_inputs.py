"""What `fit` reads as its training data and content inputs: the --extra-real crop cache keyed by the photos' contents,
finite loss weights, files linked into two classes (hard links too), annotation-list labels in ASCII digits, and
training files or photos that cannot be used (skipped with one line, also by `adapt --photos`)."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from clirun import run_cli
from dnadet_tf.config import make_config
from dnadet_tf.data import read_annotation_list, read_dataset
from dnadet_tf.errors import DataError, DnadetError
from dnadet_tf.extra_real import extra_real_crops
from synthetic import make_photos, make_upsampling_tree


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))


def _flat_photos(folder, value, count=3):
    """`count` uniform 192x160 BMP photos of grey level `value`: the same names and byte sizes for every value."""
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((160, 192, 3), value, np.uint8)).save(os.path.join(folder, f"p{i}.bmp"))
    return folder


def _means(crops):
    return {round(float(np.asarray(Image.open(crop)).mean())) for crop in crops}


# 1. The crop cache is keyed by the photos' contents, not their names and sizes.

def test_extra_real_crops_of_photos_with_the_same_names_and_sizes_are_cut_from_their_own_contents(tmp_path):
    black = _flat_photos(str(tmp_path / "black"), 0)
    white = _flat_photos(str(tmp_path / "white"), 255)
    assert [os.path.getsize(os.path.join(black, n)) for n in sorted(os.listdir(black))] == \
        [os.path.getsize(os.path.join(white, n)) for n in sorted(os.listdir(white))]
    black_crops = extra_real_crops(black, 4)
    white_crops = extra_real_crops(white, 4)
    assert _means(black_crops) == {0} and _means(white_crops) == {255}
    assert os.path.dirname(black_crops[0]) != os.path.dirname(white_crops[0])
    assert extra_real_crops(black, 4) == black_crops  # the same photos again: read back from the cache
    # A photo replaced in place by another of the same size: cut anew.
    Image.fromarray(np.full((160, 192, 3), 128, np.uint8)).save(os.path.join(black, "p0.bmp"))
    Image.fromarray(np.full((160, 192, 3), 128, np.uint8)).save(os.path.join(black, "p1.bmp"))
    Image.fromarray(np.full((160, 192, 3), 128, np.uint8)).save(os.path.join(black, "p2.bmp"))
    edited = extra_real_crops(black, 4)
    assert os.path.dirname(edited[0]) != os.path.dirname(black_crops[0]) and _means(edited) == {128}


# 3. Loss weights and temperatures: finite.

def test_content_align_inf_is_refused_in_one_line_before_the_missing_crops(upsampling_data, tmp_path):
    for extra in ([], ["--extra-real", "packaged"]):
        out = tmp_path / f"run{len(extra)}"
        code, _, stderr = run_cli(["fit", "--data", upsampling_data["train"], "--out", str(out), "--preset", "tiny",
                                   "--steps", "1", "--content-align", "inf"] + extra)
        assert code == 2 and stderr.strip() == ("dnadet-tf fit: error: --content-align: expected a finite loss "
                                                "weight of 0 or more, received inf."), stderr
        assert not out.exists()


@pytest.mark.parametrize("name,value", [("content_align", float("inf")), ("content_align", float("nan")),
                                        ("content_align", -1.0), ("temperature", 0.0),
                                        ("temperature", float("inf")), ("temperature", float("nan")),
                                        ("base_temperature", -0.07), ("base_temperature", float("inf"))])
def test_float_loss_parameters_must_be_finite(name, value):
    expected = ("a finite loss weight of 0 or more" if name == "content_align" else "a finite temperature above 0")
    with pytest.raises(DnadetError) as raised:
        make_config("tiny", extra_real="packaged", **{name: value})
    assert str(raised.value) == f"{name}: expected {expected}, received {value!r}."
    assert make_config("tiny", extra_real="packaged", **{name: 0.5}) is not None  # a finite value is taken


# 4. One file in two classes through a hard link: refused as through a symbolic link; in one class, read once.

def _tree(tmp_path):
    root = str(tmp_path / "data")
    make_upsampling_tree(root, 3, seed=1)
    return root


@pytest.mark.parametrize("link", [os.link, os.symlink])
def test_a_file_linked_into_two_classes_is_refused_hard_link_or_symbolic(tmp_path, link):
    root = _tree(tmp_path)
    link(os.path.abspath(os.path.join(root, "real", "0001.png")), os.path.join(root, "nearest", "linked.png"))
    with pytest.raises(DataError) as raised:
        read_dataset(root)
    assert str(raised.value) == (f"{os.path.join(root, 'nearest', 'linked.png')}: the same file as "
                                 f"{os.path.join(root, 'real', '0001.png')}, in class 'real' and class "
                                 f"'nearest'; expected each file in one class.")
    out = tmp_path / "run"
    code, _, stderr = run_cli(["fit", "--data", root, "--out", str(out), "--preset", "tiny", "--steps", "1"])
    assert code == 2 and stderr.strip() == f"dnadet-tf fit: error: {raised.value}", stderr


def test_a_file_hard_linked_twice_into_one_class_is_read_once(tmp_path):
    root = _tree(tmp_path)
    os.link(os.path.join(root, "nearest", "0001.png"), os.path.join(root, "nearest", "again.png"))
    warnings = []
    files = read_dataset(root, warn=warnings.append)
    assert files.class_counts().tolist() == [3, 3, 3]
    assert warnings == [f"{os.path.join(root, 'nearest', 'again.png')}: the same file as "
                        f"{os.path.join(root, 'nearest', '0001.png')}; read once."]


def test_an_annotation_list_naming_one_file_through_a_hard_link_with_two_labels_is_refused(tmp_path):
    root = _tree(tmp_path)
    os.link(os.path.join(root, "real", "0000.png"), os.path.join(root, "real", "hard.png"))
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("real\nnearest\ntransposed\n")
    listed = os.path.join(root, "list.txt")
    with open(listed, "w") as f:
        f.write("real/0000.png\t0\nnearest/0000.png\t1\nreal/hard.png\t1\n")
    with pytest.raises(DataError, match=r"list.txt:3: 'real/hard.png' is labelled 1 \(nearest\), but line 1 labels "
                                        r"the same file 0 \(real\); expected one label per file."):
        read_annotation_list(listed)
    with open(listed, "w") as f:
        f.write("real/0000.png\t0\nnearest/0000.png\t1\nreal/hard.png\t0\n")
    warnings = []
    assert len(read_annotation_list(listed, warn=warnings.append)) == 2
    assert warnings == [f"{listed}:3: 'real/hard.png' repeats line 1; counted once."]


# 6. `adapt --photos` drops the training files `fit` skipped.

def test_adapt_photos_skips_the_unusable_training_files_as_fit_did(untrained_run, tmp_path):
    fakes = _tree(tmp_path)
    for name in ("real", "nearest"):
        open(os.path.join(fakes, name, "9999.png"), "wb").close()  # empty: fit skips them
    photos = make_photos(str(tmp_path / "photos"), 3)
    out = str(tmp_path / "adapted")
    code, _, stderr = run_cli(["adapt", untrained_run, "--photos", photos, "--fakes", fakes, "--out", out])
    assert code == 0, stderr
    assert "Traceback" not in stderr
    for name in ("nearest", "real"):
        path = os.path.join(fakes, name, "9999.png")
        assert stderr.count(f"warning: skipped {path}: the file is empty (0 bytes).") == 1, stderr
    assert os.path.isfile(os.path.join(out, "best.keras"))


# 7. Annotation-list labels: ASCII digits only.

@pytest.mark.parametrize("label", ["\u00b2", "--1", "\u0661"])
def test_an_annotation_list_label_of_other_digits_is_one_line(tmp_path, label):
    root = _tree(tmp_path)
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("real\nnearest\ntransposed\n")
    listed = os.path.join(root, "bad.txt")
    with open(listed, "w", encoding="utf-8") as f:
        f.write(f"real/0000.png\t0\nnearest/0000.png\t1\ntransposed/0000.png\t{label}\n")
    expected = f"{listed}:3: expected 'path<TAB>integer label', received {'transposed/0000.png' + chr(9) + label!r}."
    with pytest.raises(DataError) as raised:
        read_annotation_list(listed)
    assert str(raised.value) == expected
    code, _, stderr = run_cli(["fit", "--data", listed, "--out", str(tmp_path / "run"), "--preset", "tiny",
                               "--steps", "1"])
    assert code == 2 and stderr.strip() == f"dnadet-tf fit: error: {expected}", stderr


# 9. A dangling link among the photos is skipped like any photo that cannot be read.

def test_a_dangling_link_among_the_extra_real_photos_is_skipped_with_a_warning(tmp_path, capsys):
    photos = make_photos(str(tmp_path / "photos"), 3)
    dangling = os.path.join(photos, "zz.jpg")
    os.symlink(str(tmp_path / "nonexistent.jpg"), dangling)
    crops = extra_real_crops(photos, 3)
    assert len(crops) == 3 and all(os.path.isfile(crop) for crop in crops)
    assert (f"warning: --extra-real {photos}: skipped {dangling}: cannot be read (No such file or directory)."
            in capsys.readouterr().err)
    # fit goes on with the other photos
    root = _tree(tmp_path)
    shutil.rmtree(str(tmp_path / "cache"))
    code, stdout, stderr = run_cli(["fit", "--data", root, "--out", str(tmp_path / "run"), "--preset", "tiny",
                                    "--steps", "1", "--extra-real", photos])
    assert code == 0, stderr
    assert f"warning: --extra-real {photos}: skipped {dangling}: cannot be read (No such file or directory)." in stderr
    assert f"--extra-real {photos}: cutting 3 crops of 3 photos into" in stdout

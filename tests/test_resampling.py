"""Reading an enlargement back from a set of images (`resampling.read_enlargement`), and `--extra-real-process
auto` choosing `upsample:S` from it."""
import io
import os
import sys

import numpy as np
import pytest
from PIL import Image

from dnadet_tf.data import LabeledFiles
from dnadet_tf.extra_real import add_extra_real
from dnadet_tf.photo_processing import matching_processing
from dnadet_tf.resampling import MIN_IMAGES, read_enlargement

COUNT = 24


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def crops():
    """COUNT natural 128 px crops of the packaged photos (shorter side shrunk to 128-192 px first, as the zoo
    and --extra-real cut them): real photos never enlarged."""
    from dnadet_tf.images import find_images
    from dnadet_tf.zoo.photos import PACKAGED_PHOTOS, crop_for

    photos = find_images(PACKAGED_PHOTOS)
    return [Image.fromarray(crop_for(photos, 0, "resampling-test", i)) for i in range(COUNT)]


def _save(images, folder, name, process=lambda image: image):
    folder.mkdir(exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(folder / f"{name}{i:02d}.png"))
        process(image).save(paths[-1])
    return paths


def _through(side, method=Image.BICUBIC):
    return lambda image: image.resize((side, side), Image.BICUBIC).resize(image.size, method)


def _jpeg_then_png(image):
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=30)
    return Image.open(buffer).convert("RGB")


def test_photos_never_enlarged_show_no_resampling(crops, tmp_path):
    factor, finding = read_enlargement(_save(crops, tmp_path / "plain", "plain"))
    assert factor is None and finding.startswith("no resampling found (highest interpolation peak")
    assert matching_processing(_save(crops, tmp_path / "plain", "plain"), 128)[0] is None


@pytest.mark.parametrize("side, method, low, high", [(100, Image.BICUBIC, 1.26, 1.30),
                                                     (85, Image.BILINEAR, 1.48, 1.53)])
def test_an_enlargement_is_read_back_from_the_interpolation_period(crops, tmp_path, side, method, low, high):
    paths = _save(crops, tmp_path / "up", "up", _through(side, method))
    factor, finding = read_enlargement(paths)
    assert low <= factor <= high, finding
    assert finding.startswith(f"enlarged about {factor:.2f}x (highest interpolation peak")
    processing, line = matching_processing(paths, 128)
    assert processing[0] == "upsample" and abs(processing[1] - side) <= 1
    assert line == f"none of {COUNT} images is a JPEG file; {finding}"


def test_a_jpeg_block_grid_in_lossless_files_is_not_read_as_an_enlargement(crops, tmp_path):
    factor, finding = read_enlargement(_save(crops, tmp_path / "grid", "grid", _jpeg_then_png))
    assert factor is None and finding.startswith("no resampling found"), finding


def test_too_few_images_and_mixed_files_name_no_processing(crops, tmp_path):
    paths = _save(crops[:MIN_IMAGES - 1], tmp_path / "few", "few", _through(100))
    factor, finding = read_enlargement(paths)
    assert factor is None
    assert finding == (f"{MIN_IMAGES - 1} images of at least 32 px, too few to read a resampling from "
                       f"({MIN_IMAGES} needed)")
    crops[0].save(tmp_path / "one.jpg", quality=90)
    processing, line = matching_processing(paths + [str(tmp_path / "one.jpg")], 128)
    assert processing is None and line == f"1 of {MIN_IMAGES} images are JPEG files, no one processing"


def test_auto_reports_an_enlargement_of_the_real_class_and_keeps_the_crops_as_cut(crops, tmp_path, capsys):
    reals = _save(crops, tmp_path / "reals", "real", _through(100))
    files = LabeledFiles(reals + [reals[0]], np.asarray([0] * COUNT + [1]), ["real", "a"], "X")
    added = add_extra_real(files, "packaged", sys.stdout, process="auto")
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("--extra-real-process auto: real training images: none of 24 images is a JPEG file; "
                           "enlarged about 1.2")
    assert "crops kept as cut (--extra-real-process upsample:100 would enlarge them the same way" in line
    assert added.paths[COUNT + 1:] == add_extra_real(files, "packaged", process="none").paths[COUNT + 1:]
    assert all(path.endswith(".png") and "-up" not in os.path.basename(path) for path in added.paths[COUNT + 1:])

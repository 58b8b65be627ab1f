"""`fit --extra-real`: crops of other real photos added to the class named real."""
import os
import sys

import numpy as np
import pytest
from PIL import Image

from dnadet_tf.cli.main import main
from dnadet_tf.data import LabeledFiles, read_dataset
from dnadet_tf.errors import DataError
from dnadet_tf.extra_real import add_extra_real
from dnadet_tf.runs import RunDir
from synthetic import make_photos


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))


def _files(labels, class_names=("real", "a", "b")):
    return LabeledFiles([f"x{i}.png" for i in range(len(labels))], np.asarray(labels), list(class_names), "X")


def test_as_many_crops_as_the_real_class_has_labelled_real_and_the_same_every_time(tmp_path):
    photos = make_photos(str(tmp_path / "photos"), 3, size=(200, 150))
    files = _files([0, 1, 0, 2, 0])
    added = add_extra_real(files, photos)
    assert added.paths[:5] == files.paths and len(added) == 8
    assert added.labels.tolist() == [0, 1, 0, 2, 0, 0, 0, 0]
    crops = [np.asarray(Image.open(path)) for path in added.paths[5:]]
    assert all(crop.shape == (128, 128, 3) for crop in crops)
    assert not np.array_equal(crops[0], crops[1])
    again = add_extra_real(files, photos)  # read back from the cache folder
    assert again.paths == added.paths
    # the cache is only a cache: cut again, the crops are the same pixels
    for path in added.paths[5:]:
        os.remove(path)
    recut = add_extra_real(files, photos)
    for path, crop in zip(recut.paths[5:], crops):
        np.testing.assert_array_equal(np.asarray(Image.open(path)), crop)


def test_the_packaged_photos_are_a_source_none_changes_nothing_and_auto_needs_a_real_class(capsys):
    files = _files([0, 0, 1])
    assert add_extra_real(files, "none") is files and add_extra_real(files, "") is files
    added = add_extra_real(files, "packaged")
    assert len(added) == 5 and all(os.path.isfile(path) for path in added.paths[3:])
    assert add_extra_real(files, "auto").paths == added.paths
    no_real = _files([0, 1], ("a", "b"))
    assert add_extra_real(no_real, "auto", sys.stdout) is no_real
    assert ("--extra-real auto: no class named 'real' or with 'real' as a word of its name among ['a', 'b'], no real "
            "photos added") in capsys.readouterr().out


@pytest.mark.parametrize("names,real", [(("Real", "a", "b"), "Real"), (("0_real", "1_progan"), "0_real"),
                                        (("a", "real-photos"), "real-photos"), (("real", "real_faces"), "real"),
                                        (("unreal", "a"), None), (("real_a", "real_b"), None)])
def test_the_real_class_is_real_else_the_one_name_with_real_as_a_word(names, real, capsys):
    from dnadet_tf.data import real_class_candidates

    files = _files([0, 1, 0], names)
    added = add_extra_real(files, "auto", sys.stdout)
    out = capsys.readouterr().out
    if real is None:
        assert added is files and "no real photos added" in out
        if names[0] == "real_a":
            assert "2 classes may be the real one (real_a, real_b); name it 'real'" in out
        return
    assert real_class_candidates(list(names)) == [real]
    label = names.index(real)
    assert added.labels.tolist()[3:] == [label] * int(np.sum(files.labels == label))
    assert (f"class '{real}' taken as the real photos" in out) == (real != "real")


def test_errors_name_the_flag_and_what_was_expected(tmp_path):
    with pytest.raises(DataError, match=r"--extra-real packaged: expected one class of real photos to add crops to "
                                        r"\('real', or a name with 'real' as a word\), received the classes "
                                        r"\['a', 'b'\]: no class named 'real'"):
        add_extra_real(_files([0, 1], ("a", "b")), "packaged")
    with pytest.raises(DataError, match=r"--extra-real: expected 'auto', 'packaged', 'none' or a folder of photos, "
                                        r"received '.*nowhere', which is not a folder"):
        add_extra_real(_files([0, 1]), str(tmp_path / "nowhere"))
    small = tmp_path / "small"
    small.mkdir()
    Image.fromarray(np.zeros((100, 300, 3), np.uint8)).save(small / "thin.png")
    with pytest.raises(DataError, match=r"--extra-real .*small: none of its 1 photos is usable; expected readable "
                                        r"images of at least 128 px"):  # each unusable photo is named on stderr
        add_extra_real(_files([0, 1]), str(small))


def test_fit_flag_reaches_the_run_and_doubles_the_real_pool(upsampling_data, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["fit", "--data", upsampling_data["train"], "--out", out, "--preset", "tiny", "--steps", "2",
                 "--extra-real", "packaged"]) == 0
    assert RunDir(out).config.sampling.extra_real == "packaged"
    real = int(np.sum(read_dataset(upsampling_data["train"], "train").labels == 0))
    assert f"on {2 * real} real, {real} nearest" in capsys.readouterr().out


def test_processed_crops_are_the_plain_crops_processed_and_cached_apart(tmp_path):
    photos = make_photos(str(tmp_path / "photos"), 3, size=(200, 150))
    files = _files([0, 1, 0])
    plain = add_extra_real(files, photos).paths[3:]
    upsampled = add_extra_real(files, photos, process="upsample:100").paths[3:]
    jpeg = add_extra_real(files, photos, process="jpeg:75").paths[3:]
    assert len({os.path.dirname(p[0]) for p in (plain, upsampled, jpeg)}) == 3  # one cache folder per processing
    assert all(p.endswith("-up100.png") for p in upsampled) and all(p.endswith("-q75.jpg") for p in jpeg)
    for plain_path, up_path, jpeg_path in zip(plain, upsampled, jpeg):
        crop = Image.open(plain_path).convert("RGB")
        expected = crop.resize((100, 100), Image.BICUBIC).resize((128, 128), Image.BICUBIC)
        np.testing.assert_array_equal(np.asarray(Image.open(up_path)), np.asarray(expected))
        crop.save(tmp_path / "expected.jpg", format="JPEG", quality=75)
        assert open(jpeg_path, "rb").read() == (tmp_path / "expected.jpg").read_bytes()
    # the plain crops' folder and files are those of a run without the flag
    assert add_extra_real(files, photos, process="none").paths[3:] == plain


@pytest.mark.parametrize("args, message", [
    (["--extra-real", "packaged", "--extra-real-process", "gzip:3"],
     "--extra-real-process: expected 'jpeg:QUALITY', 'upsample:SIDE' or 'none'; received 'gzip:3'"),
    (["--extra-real", "packaged", "--extra-real-process", "jpeg:0"],
     "--extra-real-process: JPEG quality must be in 1..100; received 0"),
    (["--extra-real", "none", "--extra-real-process", "upsample:100"],
     "--extra-real-process: expected crops to process (extra_real 'auto', 'packaged' or a folder), received "
     "extra_real_process 'upsample:100' with extra_real 'none'"),
])
def test_a_bad_processing_is_one_line_and_writes_no_run(upsampling_data, tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["fit", "--data", upsampling_data["train"], "--out", str(out), "--preset", "tiny", "--steps", "2",
                 *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_fit_flag_trains_on_the_processed_crops(upsampling_data, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["fit", "--data", upsampling_data["train"], "--out", out, "--preset", "tiny", "--steps", "2",
                 "--extra-real", "packaged", "--extra-real-process", "jpeg:90"]) == 0
    assert RunDir(out).config.sampling.extra_real_process == "jpeg:90"
    printed = capsys.readouterr().out
    assert "--extra-real packaged: cutting" in printed and "crops (jpeg:90) of 60 photos" in printed


def test_jpeg_quality_is_read_back_from_the_file_and_auto_matches_only_all_jpeg_reals(tmp_path):
    from dnadet_tf.photo_processing import jpeg_quality, matching_processing

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), np.uint8))
    paths = []
    for quality in (60, 75, 90, 100):
        paths.append(str(tmp_path / f"q{quality}.jpg"))
        image.save(paths[-1], format="JPEG", quality=quality)
        assert jpeg_quality(paths[-1]) == quality
    image.save(tmp_path / "lossless.png")
    assert jpeg_quality(str(tmp_path / "lossless.png")) is None
    assert matching_processing(paths[:3], 128)[0] == ("jpeg", 75)  # the median
    processing, why = matching_processing(paths + [str(tmp_path / "lossless.png")], 128)
    assert processing is None and why == "4 of 5 images are JPEG files, no one processing"


def test_a_jpeg_file_with_a_multi_picture_segment_is_a_jpeg_file_of_its_quality(tmp_path):
    # Some cameras and phones write JPEG files with a multi-picture segment, which Pillow opens as format "MPO".
    from dnadet_tf.photo_processing import jpeg_quality, matching_processing

    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 48, 3), np.uint8))
    paths = [str(tmp_path / "camera.jpg"), str(tmp_path / "plain.jpg")]
    image.save(paths[0], format="MPO", save_all=True, append_images=[image], quality=80)
    image.save(paths[1], format="JPEG", quality=80)
    with Image.open(paths[0]) as opened:
        assert opened.format == "MPO"
    assert jpeg_quality(paths[0]) == 80
    assert matching_processing(paths, 128)[0] == ("jpeg", 80)


def test_auto_processes_the_crops_as_the_real_class_files_are(tmp_path, capsys):
    photos = make_photos(str(tmp_path / "photos"), 3, size=(200, 150))
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8))
    reals = []
    for i in range(2):
        reals.append(str(tmp_path / f"real{i}.jpg"))
        image.save(reals[-1], format="JPEG", quality=80)
    image.save(tmp_path / "fake.png")
    files = LabeledFiles(reals + [str(tmp_path / "fake.png")], np.asarray([0, 0, 1]), ["real", "a"], "X")
    added = add_extra_real(files, photos, sys.stdout, process="auto")
    assert added.paths[3:] == add_extra_real(files, photos, process="jpeg:80").paths[3:]
    assert ("--extra-real-process auto: real training images: all 2 images are JPEG files, estimated quality "
            "80..80, median 80: crops saved as jpeg:80") in capsys.readouterr().out
    image.save(reals[0].replace(".jpg", ".png"))
    mixed = LabeledFiles([reals[0].replace(".jpg", ".png")] + reals[1:] + files.paths[2:], files.labels,
                         files.class_names, "X")
    assert add_extra_real(mixed, photos, process="auto").paths[3:] == add_extra_real(files, photos).paths[3:]


def test_auto_needs_no_crops_but_a_named_processing_does():
    from dnadet_tf.config import make_config
    from dnadet_tf.errors import DnadetError

    assert make_config("tiny", extra_real="none", extra_real_process="auto").sampling.extra_real_process == "auto"
    # the cpu preset matches JPEG reals; with PNG reals (every zoo) its crops are the plain ones
    assert make_config("cpu").sampling.extra_real_process == "auto"
    assert make_config("tiny").sampling.extra_real_process == "none"
    with pytest.raises(DnadetError, match="received extra_real_process 'jpeg:75' with extra_real 'none'"):
        make_config("tiny", extra_real="none", extra_real_process="jpeg:75")

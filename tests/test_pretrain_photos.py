"""`pretrain`'s photos: the size check's message, and a resumed run kept to the photos it started with."""
import os
import shutil

import pytest
from PIL import Image

from dnadet_tf.errors import DataError
from dnadet_tf.pretraining import MIN_PHOTOS, pretrain, usable_photos
from synthetic import make_photos


def test_small_photos_are_skipped_naming_the_128_px_crop(tmp_path, capsys):
    make_photos(str(tmp_path), MIN_PHOTOS)
    Image.new("RGB", (300, 120)).save(tmp_path / "wide.png")
    Image.new("RGB", (100, 100)).save(tmp_path / "square.png")
    kept = usable_photos(str(tmp_path))
    assert len(kept) == MIN_PHOTOS and len(kept.skipped) == 2
    err = capsys.readouterr().err
    assert ("wide.png: too small; expected a non-square image to have both sides >= 128 px for the 128 px "
            "center crop, received 300x120 px.") in err
    assert "square.png: too small; expected a square image with sides >= 128 px, received 100x100 px." in err


def test_resume_refuses_photos_added_or_removed(tmp_path, capsys):
    photos, aside = str(tmp_path / "photos"), str(tmp_path / "aside")
    make_photos(photos, 12)
    make_photos(aside, 2, seed=1)
    run_dir = str(tmp_path / "run")
    pretrain(photos, run_dir, preset="tiny", steps=2, val_every=2)
    # steps=2: a resume that got through would train no further.
    shutil.copy(os.path.join(aside, "p00.jpg"), os.path.join(photos, "new.jpg"))
    with pytest.raises(DataError, match=r"^photos: expected the 12 usable photos the resumed run started with, "
                                        r"received 13 in .* \(1 added, 0 removed\); restore them or train into "
                                        r"a new `out`\.$"):
        pretrain(photos, run_dir, resume=True, steps=2)
    from dnadet_tf.cli.main import main

    capsys.readouterr()
    assert main(["pretrain", "--photos", photos, "--out", run_dir, "--resume", "--steps", "2"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "(1 added, 0 removed); restore them or train into a new --out.")
    os.remove(os.path.join(photos, "new.jpg"))
    os.replace(os.path.join(photos, "p03.jpg"), os.path.join(aside, "p03.jpg"))
    with pytest.raises(DataError, match=r"received 11 in .* \(0 added, 1 removed\)"):
        pretrain(photos, run_dir, resume=True, steps=2)
    os.replace(os.path.join(aside, "p03.jpg"), os.path.join(photos, "p03.jpg"))
    assert pretrain(photos, run_dir, resume=True, steps=2)["end_step"] == 2  # the same photos again
    # A run made before the photos were recorded resumes unchecked.
    os.remove(os.path.join(run_dir, "photos.json"))  # pretraining.PHOTOS_FILE
    shutil.copy(os.path.join(aside, "p00.jpg"), os.path.join(photos, "new.jpg"))
    assert pretrain(photos, run_dir, resume=True, steps=2)["end_step"] == 2


def test_resume_refuses_a_photo_edited_under_its_name(tmp_path):
    # photos.json held the names alone: a photo replaced under its name resumed on other training and held-out photos
    photos = str(tmp_path / "photos")
    make_photos(photos, 12)
    run_dir = str(tmp_path / "run")
    pretrain(photos, run_dir, preset="tiny", steps=2, val_every=2)
    original = open(os.path.join(photos, "p04.jpg"), "rb").read()
    make_photos(str(tmp_path / "other"), 1, seed=3)
    shutil.copy(os.path.join(str(tmp_path / "other"), "p00.jpg"), os.path.join(photos, "p04.jpg"))
    with pytest.raises(DataError, match=r"^photos: expected the photos the resumed run started with, received 1 with "
                                        r"other contents under the same names in .* \(p04\.jpg\); restore them or "
                                        r"train into a new `out`\.$"):
        pretrain(photos, run_dir, resume=True, steps=2)
    open(os.path.join(photos, "p04.jpg"), "wb").write(original)
    assert pretrain(photos, run_dir, resume=True, steps=2)["end_step"] == 2

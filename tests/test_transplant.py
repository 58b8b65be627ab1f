"""`fit --transplant`: fakes' high-frequency residuals moved onto real photos of other content."""
import numpy as np
import pytest
from PIL import Image
import tensorflow as tf

from dnadet_tf.cli.main import main
from dnadet_tf.config import make_config
from dnadet_tf.data import LabeledFiles
from dnadet_tf.errors import DataError, DnadetError
from dnadet_tf.pipeline import training_dataset
from dnadet_tf.runs import RunDir
from dnadet_tf.transplant import ResidualTransplant, gaussian_kernel, high_frequency_residual, training_transplant


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))


def _blurred_by_hand(image, sigma=1.0, radius=2):
    """The 5 x 5 Gaussian blur with reflected borders, as plain loops over numpy."""
    r = np.arange(-radius, radius + 1)
    g = np.exp(-r ** 2 / (2 * sigma ** 2))
    kernel = np.outer(g, g) / np.outer(g, g).sum()
    padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    out = np.zeros_like(image, np.float64)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out += kernel[dy, dx] * padded[dy:dy + image.shape[0], dx:dx + image.shape[1]]
    return out


def test_the_residual_is_the_image_minus_its_gaussian_blur_and_zero_on_flat_images():
    image = np.random.default_rng(0).uniform(0, 255, (9, 11, 3)).astype(np.float32)
    residual = high_frequency_residual(tf.constant(image), tf.constant(gaussian_kernel())).numpy()
    np.testing.assert_allclose(residual, image - _blurred_by_hand(image), atol=1e-3)
    flat = np.full((8, 8, 3), 77.0, np.float32)
    np.testing.assert_allclose(high_frequency_residual(tf.constant(flat), tf.constant(gaussian_kernel())), 0, atol=1e-4)
    assert gaussian_kernel().shape == (5, 5, 3, 1) and gaussian_kernel()[:, :, 0, 0].sum() == pytest.approx(1.0)


def test_fakes_are_moved_onto_a_photo_and_real_images_never():
    rng = np.random.default_rng(1)
    photos = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    fake = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    always = ResidualTransplant(photos, share=1.0, real_label=0)
    seed = tf.constant([5, 7], tf.int64)
    moved = always(tf.constant(fake), tf.constant(2), seed).numpy()
    residual = fake - _blurred_by_hand(fake.astype(np.float64))
    # one of the photos carries the fake's residual (clipped to the pixel range)
    matches = [np.abs(moved - np.clip(photo + residual, 0, 255)).max() < 1e-3 for photo in photos.astype(np.float64)]
    assert sum(matches) == 1
    np.testing.assert_array_equal(always(tf.constant(fake), tf.constant(2), seed).numpy(), moved)  # stateless
    np.testing.assert_array_equal(always(tf.constant(fake), tf.constant(0), seed).numpy(), fake)  # real: as it was
    never = ResidualTransplant(photos, share=0.0, real_label=0)
    np.testing.assert_array_equal(never(tf.constant(fake), tf.constant(2), seed).numpy(), fake)
    # a share of 0.5 moves about half of the fakes, and which ones depends on the seed only
    half = ResidualTransplant(photos, share=0.5, real_label=0)
    flags = [not np.array_equal(half(tf.constant(fake), tf.constant(1), tf.constant([0, i], tf.int64)).numpy(), fake)
             for i in range(200)]
    assert 70 < sum(flags) < 130


def test_the_photos_are_the_extra_real_ones_and_none_is_an_error_naming_the_flag(tmp_path):
    config = make_config("tiny", transplant=0.5)
    user = LabeledFiles(["a.png", "b.png"], np.asarray([0, 1]), ["real", "gan"], "X")
    with pytest.raises(DataError, match=r"--transplant 0.5: expected real photos of other content .* received "
                                        r"none \(--extra-real 'none'"):
        training_transplant(config, user)
    assert training_transplant(make_config("tiny"), user) is None
    with pytest.raises(DnadetError, match=r"transplant: expected a probability from 0 to 1, received 1.5"):
        make_config("tiny", transplant=1.5)
    # the real class need not be named exactly `real`: the photos' own label is the one never transplanted
    named = LabeledFiles(["a.png", "b.png"], np.asarray([0, 1]), ["gan", "Real"], "X")
    photo = str(tmp_path / "p.png")
    Image.fromarray(np.full((128, 128, 3), 99, np.uint8)).save(photo)
    with_photos = LabeledFiles(named.paths + [photo], np.asarray([0, 1, 1]), named.class_names, "X",
                               other_content=np.asarray([False, False, True]))
    assert training_transplant(config, with_photos).real_label == 1


def test_the_training_batches_change_only_where_fakes_are_moved(upsampling_data):
    from dnadet_tf.data import read_dataset
    from dnadet_tf.extra_real import add_extra_real

    config = make_config("tiny", extra_real="packaged")
    user = read_dataset(upsampling_data["train"], "train")
    files = add_extra_real(user, "packaged")
    plain = next(iter(training_dataset(files, config)))
    transplant = training_transplant(config.replace(transplant=1.0), files)
    moved = next(iter(training_dataset(files, config, transplant=transplant)))
    images, labels = (np.asarray(t) for t in plain)
    moved_images, moved_labels = (np.asarray(t) for t in moved)
    np.testing.assert_array_equal(labels, moved_labels)
    real = labels == 0
    np.testing.assert_array_equal(moved_images[real], images[real])
    assert all(not np.array_equal(moved_images[i], images[i]) for i in np.flatnonzero(~real))


def test_fit_flag_reaches_the_run_config(upsampling_data, tmp_path):
    out = str(tmp_path / "run")
    assert main(["fit", "--data", upsampling_data["train"], "--out", out, "--preset", "tiny", "--steps", "2",
                 "--extra-real", "packaged", "--transplant", "0.5"]) == 0
    assert RunDir(out).config.sampling.transplant == 0.5
    assert main(["fit", "--data", upsampling_data["train"], "--out", str(tmp_path / "none"), "--preset", "tiny",
                 "--steps", "2", "--transplant", "0.5"]) != 0


def test_transplanted_fakes_are_the_photo_plus_the_scaled_residual_rounded(tmp_path):
    from dnadet_tf.images import load_rgb
    from dnadet_tf.transplant import residual_rms, transplanted_fakes

    rng = np.random.default_rng(3)
    fake = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    photo = rng.integers(60, 200, (32, 32, 3), dtype=np.uint8)  # resized (bilinear) to the fake's 16 px
    Image.fromarray(fake).save(tmp_path / "fake.png")
    Image.fromarray(photo).save(tmp_path / "photo.png")
    flat = np.full((16, 16, 3), 90, np.uint8)
    Image.fromarray(flat).save(tmp_path / "flat.png")
    for scale in (1.0, 0.25):
        [path] = transplanted_fakes([str(tmp_path / "fake.png")], [str(tmp_path / "photo.png")],
                                    str(tmp_path / f"made{scale}"), scale)
        resized = tf.image.resize(photo.astype(np.float32), (16, 16)).numpy()
        residual = fake - _blurred_by_hand(fake.astype(np.float64))
        expected = np.round(np.clip(resized + scale * residual, 0, 255))
        assert np.abs(load_rgb(path).astype(np.float64) - expected).max() <= 1
    # The residual RMS is that of image - blur: 0 on a flat image, the hand figure on the fake.
    assert residual_rms([str(tmp_path / "flat.png")]) == pytest.approx(0.0, abs=1e-4)
    assert residual_rms([str(tmp_path / "fake.png")]) == pytest.approx(np.sqrt(np.mean(residual ** 2)), rel=1e-4)
    with pytest.raises(ValueError, match="expected lists of one length, received 1 and 0"):
        transplanted_fakes([str(tmp_path / "fake.png")], [], str(tmp_path / "none"))

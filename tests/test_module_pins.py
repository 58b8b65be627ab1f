"""Pins of small module behaviours that the suite reached only end to end, each checked against a hand computation:
resampling's reading chain (the prominence threshold, the image count, the median over the images, rows and columns,
the Hann-windowed spectrum, the JPEG block grid, the low-frequency mask, thin images), the bounds of
`parse_processing`, `cluster_groups`' numbering by first appearance, the ends of the attacks' parameter ranges and the
crop's geometry, the transplant's bilinear resize and `laid_over`'s rounding, and `--extra-real`'s crop keys and cache
key.

Why: a mutation audit changed each of these (a threshold, a boundary, a median made a mean, a resize method, a key)
and no test failed; each test here fails under its change."""
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from sklearn.cluster import KMeans

from dnadet_tf.attacks import apply_attacks, attack_parameters
from dnadet_tf.data import LabeledFiles, find_images
from dnadet_tf.errors import DnadetError
from dnadet_tf.extra_real import add_extra_real
from dnadet_tf.images import load_rgb
from dnadet_tf.photo_processing import parse_processing
from dnadet_tf.prototypes import cluster_groups
from dnadet_tf.resampling import (BINS, MIN_IMAGES, block_grid, enlargement, frequencies, grey_center, highest_peak,
                                  interpolation_spectrum, prominence)
from dnadet_tf.transplant import ResidualTransplant, laid_over
from dnadet_tf.zoo.photos import crop_for
from synthetic import make_photos

# ------------------------------------------------------------------------------------------------- resampling
# Synthetic spectra: (N, BINS + 1) rows of ones, some bins raised. The consensus (median over the rows) is then 1
# but at the raised bins, and a single raised bin leaves the running median over 31 bins at 1, so the prominence
# at that bin is its height. The grid has a bin every 0.5 / 256 = 1/512 cycle/px: bin 100 is f = 100/512.

PEAK_BIN = 100
PEAK_FACTOR = 1.0 / (1.0 - PEAK_BIN / 512)  # r = 1 / (1 - f) = 512 / 412 = 1.2427


def _flat_spectra(count=MIN_IMAGES):
    return np.ones((count, BINS + 1))


def _spectra_with_peak(height, count=MIN_IMAGES):
    spectra = _flat_spectra(count)
    spectra[:, PEAK_BIN] = height
    return spectra


@pytest.mark.parametrize("height, read", [(4.4, False), (4.5, True), (6.0, True)])
def test_a_peak_is_read_as_an_enlargement_from_a_prominence_of_4_5(height, read):
    factor, _ = enlargement(_spectra_with_peak(height))
    if read:  # prominence = height / 1 >= PROMINENCE 4.5
        assert factor == pytest.approx(PEAK_FACTOR)
    else:
        assert factor is None


def test_twenty_images_are_enough_to_read_an_enlargement_and_nineteen_are_not():
    spectra = _spectra_with_peak(6.0, count=20)
    assert enlargement(spectra)[0] == pytest.approx(PEAK_FACTOR)
    factor, line = enlargement(spectra[:19])  # the same peak in one image fewer
    assert factor is None and line.startswith("19 images of at least 32 px, too few")
    assert MIN_IMAGES == 20


def test_the_prominence_is_the_median_over_the_images_so_one_image_cannot_make_a_peak():
    spectra = _flat_spectra(5)
    spectra[0, PEAK_BIN] = 1000.0  # one image's own period: the median of (1000, 1, 1, 1, 1) is 1 (the mean 200.8)
    assert prominence(spectra)[PEAK_BIN] == pytest.approx(1.0)


def test_the_spectrum_reads_rows_and_columns_alike():
    # the mean of the rows' and the columns' spectra: the same for an image and its transpose
    gray = np.random.default_rng(0).uniform(0, 255, (64, 48))
    np.testing.assert_allclose(interpolation_spectrum(gray), interpolation_spectrum(gray.T), rtol=1e-12)


def test_the_spectrum_is_the_power_of_the_hann_windowed_second_derivative_profile():
    line = np.random.default_rng(1).uniform(0, 255, 40)
    gray = np.tile(line, (8, 1))  # 8 identical rows: each row's profile is the line's, each column's is 0
    profile = np.abs(line[2:] - 2.0 * line[1:-1] + line[:-2])  # |x[j-1] - 2 x[j] + x[j+1]|, 38 values
    windowed = (profile - profile.mean()) * np.hanning(38)
    power = np.interp(frequencies(), np.fft.rfftfreq(38), np.abs(np.fft.rfft(windowed)) ** 2) / 2  # the columns' 0
    expected = power / np.median(power[frequencies() >= 0.03])
    np.testing.assert_allclose(interpolation_spectrum(gray), expected, rtol=1e-10)


def test_a_block_grid_needs_one_other_multiple_of_an_eighth_as_prominent_as_2_5():
    grid = frequencies()
    peaks = np.ones(BINS + 1)
    peaks[np.argmin(np.abs(grid - 0.25))] = 10.0
    peaks[np.argmin(np.abs(grid - 0.125))] = 3.0
    assert block_grid(peaks, 0.25)  # the others: 3.0 at 1/8, 1.0 at 3/8; their max 3.0 >= 2.5
    peaks[np.argmin(np.abs(grid - 0.125))] = 2.0
    assert not block_grid(peaks, 0.25)  # max(2.0, 1.0) < 2.5
    assert not block_grid(peaks, 0.2)  # 0.2 is 0.05 from 1/4, beyond the tolerance 0.01


def test_the_highest_peak_is_read_above_the_lowest_frequencies_only():
    spectra = _spectra_with_peak(10.0)
    spectra[:, 2] = 100.0  # f = 2/512 = 0.0039, below MIN_FREQUENCY 0.03: were it read, it would win
    frequency, height, _ = highest_peak(spectra)
    assert frequency == pytest.approx(PEAK_BIN / 512) and height == pytest.approx(10.0)


def test_an_image_with_a_side_below_32_px_is_not_read(tmp_path):
    path = str(tmp_path / "thin.png")
    Image.fromarray(np.zeros((16, 64, 3), np.uint8)).save(path)  # 16 < MIN_IMAGE_SIDE 32, though 64 is not
    assert grey_center(path) is None


# ------------------------------------------------------------------------------------------ photo processing


def test_processing_bounds_are_jpeg_quality_1_to_100_and_a_side_of_8_px_or_more():
    assert parse_processing("upsample:8", "--x") == ("upsample", 8)
    assert parse_processing("jpeg:100", "--x") == ("jpeg", 100)
    assert parse_processing("jpeg:1", "--x") == ("jpeg", 1)
    with pytest.raises(DnadetError, match=r"--x: JPEG quality must be in 1\.\.100; received 101"):
        parse_processing("jpeg:101", "--x")
    with pytest.raises(DnadetError, match=r"--x: the side to resample through must be at least 8 px; received 7"):
        parse_processing("upsample:7", "--x")


# ------------------------------------------------------------------------------------------------- prototypes


def test_cluster_groups_are_numbered_by_first_appearance_where_k_means_numbers_them_otherwise():
    features = np.array([[100.0, 0.0], [101.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # k-means' own numbers put the first feature's cluster second: renumbering is needed (else the pin is moot)
    assert KMeans(2, n_init=10, random_state=0).fit_predict(features)[0] == 1
    np.testing.assert_array_equal(cluster_groups(features, np.zeros(5, int), 2), [0, 0, 1, 1, 1])


# ---------------------------------------------------------------------------------------------------- attacks


def test_the_attacks_parameter_ranges_are_reached_at_both_ends():
    seeds = [[7, i] for i in range(600)]
    # crop area uniform in [0.80, 0.95]: 600 draws come within 0.01 of each end, mean 0.875
    areas = np.array([float(attack_parameters("crop", seed)["area"]) for seed in seeds])
    assert areas.min() < 0.81 and areas.max() > 0.94 and abs(areas.mean() - 0.875) < 0.01
    # relight factor uniform in [0.1, 1.9]: mean 1.0
    factors = np.array([float(attack_parameters("relight", seed)["factor"]) for seed in seeds])
    assert factors.min() < 0.15 and factors.max() > 1.85 and abs(factors.mean() - 1.0) < 0.05
    # JPEG quality uniform in {10, ..., 75}: 66 values, each drawn about 9 times in 600
    assert {int(attack_parameters("jpeg", seed)["quality"]) for seed in seeds} == set(range(10, 76))


def test_the_crop_attack_is_the_bilinear_resize_of_the_window_its_parameters_name():
    image = np.random.default_rng(5).integers(0, 256, (40, 56, 3), np.uint8)
    for seed in ([1, 2], [3, 4], [5, 6]):
        drawn = {key: float(value) for key, value in attack_parameters("crop", seed).items()}
        # the window: sides scaled by sqrt(area), placed by the `top` and `left` fractions of the margins (+ 1)
        height, width = round(40 * np.sqrt(drawn["area"])), round(56 * np.sqrt(drawn["area"]))
        top = min(int(np.floor(drawn["top"] * (40 - height + 1))), 40 - height)
        left = min(int(np.floor(drawn["left"] * (56 - width + 1))), 56 - width)
        window = image[top:top + height, left:left + width].astype(np.float32)
        expected = np.clip(np.round(tf.image.resize(window, (40, 56), method="bilinear").numpy()), 0, 255)
        assert np.abs(apply_attacks(image, "crop", seed).numpy() - expected).max() <= 1.0


# ------------------------------------------------------------------------------------------------- transplant


def test_the_transplanted_photo_is_resized_to_the_fake_bilinear():
    photo = np.array([[[0] * 3, [100] * 3]] * 2, np.uint8)  # 2 x 2: a column of 0, one of 100
    fake = np.full((4, 4, 3), 50, np.uint8)  # flat: its residual is 0, the moved image is the photo resized
    moved = ResidualTransplant(photo[None], share=1.0, real_label=0)(
        tf.constant(fake), tf.constant(1), tf.constant([0, 0], tf.int64)).numpy()
    # x2 bilinear, half-pixel centres: new columns at 0.25, 0.75, 1.25, 1.75 of the old pixel -> 0, 25, 75, 100
    # (nearest would give 0, 0, 100, 100)
    np.testing.assert_allclose(moved[0, :, 0], [0, 25, 75, 100], atol=1e-3)


def test_laid_over_rounds_the_photo_plus_the_residual(tmp_path):
    photo, out = str(tmp_path / "photo.png"), str(tmp_path / "out.png")
    Image.fromarray(np.full((4, 4, 3), 100, np.uint8)).save(photo)
    laid_over(photo, np.full((4, 4, 3), 0.7, np.float32), out)
    assert (load_rgb(out) == 101).all()  # round(100.7) = 101; truncated it would be 100


# ------------------------------------------------------------------------------------------------- extra real


def test_extra_real_crop_i_is_cut_with_key_i_and_a_photo_changed_in_place_is_cut_anew(tmp_path, monkeypatch):
    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))
    photos = make_photos(str(tmp_path / "photos"), 3, size=(200, 150))
    files = LabeledFiles(["x0.png", "x1.png", "x2.png"], np.asarray([0, 1, 0]), ["real", "a"], "X")
    added = add_extra_real(files, photos)  # as many crops as the real class has images: 2
    assert len(added.paths) == 5
    for i, path in enumerate(added.paths[3:]):  # the documented key of crop i: ("extra-real", i) with seed 0
        np.testing.assert_array_equal(np.asarray(Image.open(path)), crop_for(find_images(photos), 0, "extra-real", i))
    # other pixels under the same name: the cache key is the SHA-256 of the bytes, so the crops are cut anew
    first = find_images(photos)[0]
    Image.fromarray(np.random.default_rng(9).integers(0, 256, (150, 200, 3), np.uint8)).save(first)
    again = add_extra_real(files, photos)
    assert os.path.dirname(again.paths[3]) != os.path.dirname(added.paths[3])

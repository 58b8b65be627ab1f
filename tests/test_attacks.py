"""Tests of the robustness attacks (crop, blur, jpeg, noise, relight, combo) and the training augmentations
(channels, detail, filter)."""
import numpy as np
import pytest
import tensorflow as tf

from dnadet_tf import attacks
from dnadet_tf.attacks import ATTACK_NAMES, apply_attacks, attack_parameters, parse_attacks

SEEDS = [(0, s) for s in range(8)]


def random_image(height=72, width=90, seed=0):
    """uint8 (H, W, 3) uniform noise: every attack leaves a measurable mark on it."""
    return np.random.RandomState(seed).randint(0, 256, (height, width, 3)).astype(np.uint8)


def seed_where(name, key, predicate):
    """The first seed of SEEDS for which attack `name` draws a parameter satisfying `predicate`."""
    for seed in SEEDS:
        if predicate(attack_parameters(name, seed)[key].numpy()):
            return seed
    raise AssertionError(f"no seed in SEEDS gives a suitable {name} {key}")


def test_attack_names():
    assert ATTACK_NAMES == ("crop", "blur", "jpeg", "noise", "relight", "combo", "channels", "detail", "filter")


def test_parse_attacks():
    assert parse_attacks("crop,blur") == ("crop", "blur")
    assert parse_attacks(" Combo ") == ("combo",)
    assert parse_attacks("jpeg, noise,jpeg,") == ("jpeg", "noise")
    assert parse_attacks("") == ()
    assert parse_attacks(["relight"]) == ("relight",)


def test_parse_attacks_names_the_bad_value():
    with pytest.raises(ValueError) as error:
        parse_attacks("crop,sharpen")
    message = str(error.value)
    assert "'sharpen'" in message and "\n" not in message
    assert all(name in message for name in ATTACK_NAMES)


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_same_seed_same_output_and_same_size(name):
    image = random_image(61, 83)
    first = apply_attacks(image, name, [5, 6])
    assert first.shape == (61, 83, 3) and first.dtype == tf.float32
    assert np.array_equal(first.numpy(), apply_attacks(image, name, [5, 6]).numpy())
    assert np.array_equal(first.numpy(), apply_attacks(image.astype(np.float32), name, [5, 6]).numpy())
    values = first.numpy()
    assert values.min() >= 0 and values.max() <= 255


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_different_seeds_give_different_outputs(name):
    image = random_image(48, 48, seed=1)
    outputs = [apply_attacks(image, name, seed).numpy() for seed in SEEDS[:4]]
    assert any(not np.array_equal(outputs[0], other) for other in outputs[1:])
    if name in ("crop", "noise"):  # continuous randomness: every pair differs
        assert not np.array_equal(outputs[0], outputs[1])


def test_crop_keeps_size_and_differs():
    image = random_image(90, 130)
    for seed in SEEDS[:3]:
        out = apply_attacks(image, "crop", seed).numpy()
        assert out.shape == image.shape
        assert np.abs(out - image).mean() > 10
        assert 0.80 <= float(attack_parameters("crop", seed)["area"]) <= 0.95


def test_crop_of_constant_image_is_constant():
    image = np.full((50, 70, 3), 123, np.uint8)
    assert np.array_equal(apply_attacks(image, "crop", [1, 1]).numpy(), image.astype(np.float32))


def test_blur_reduces_variance():
    image = random_image()
    seed = seed_where("blur", "kernel", lambda k: k > 1)
    out = apply_attacks(image, "blur", seed).numpy()
    assert out.var() < 0.8 * image.astype(np.float64).var()
    identity_seed = seed_where("blur", "kernel", lambda k: k == 1)
    assert np.array_equal(apply_attacks(image, "blur", identity_seed).numpy(), image.astype(np.float32))
    kernels = {int(attack_parameters("blur", seed)["kernel"]) for seed in SEEDS}
    assert kernels <= {1, 3, 5, 7, 9}


def test_jpeg_changes_pixels():
    image = random_image()
    for seed in SEEDS[:2]:
        assert 10 <= int(attack_parameters("jpeg", seed)["quality"]) <= 75
        assert np.abs(apply_attacks(image, "jpeg", seed).numpy() - image).mean() > 5


def test_noise_variance_in_range():
    grey = np.full((128, 128, 3), 128, np.uint8)
    for seed in SEEDS[:3]:
        drawn = float(attack_parameters("noise", seed)["variance"])
        assert 5 <= drawn <= 20
        measured = float(np.var(apply_attacks(grey, "noise", seed).numpy() - 128.0))
        assert abs(measured - drawn) < 0.1 * drawn + 0.1, (drawn, measured)


def test_relight_changes_mean_brightness_by_its_factor():
    grey = np.full((32, 32, 3), 100, np.uint8)
    for seed in SEEDS:
        factor = float(attack_parameters("relight", seed)["factor"])
        assert 0.1 <= factor <= 1.9
        mean = float(apply_attacks(grey, "relight", seed).numpy().mean())
        assert mean == pytest.approx(round(100 * factor), abs=1e-4)
    seed = seed_where("relight", "factor", lambda f: abs(f - 1) > 0.2)
    assert abs(float(apply_attacks(random_image(), "relight", seed).numpy().mean()) - random_image().mean()) > 5


def test_channels_permutes_the_channels_and_keeps_every_value():
    image = random_image(20, 30, seed=3)
    seen = set()
    for seed in [(1, s) for s in range(40)]:
        order = tuple(int(c) for c in attack_parameters("channels", seed)["order"].numpy())
        assert sorted(order) == [0, 1, 2]
        out = apply_attacks(image, "channels", seed).numpy()
        assert np.array_equal(out, image[..., list(order)].astype(np.float32))
        seen.add(order)
    assert seen == set(attacks.CHANNEL_ORDERS)


def test_combo_is_the_selected_attacks_in_fixed_order():
    image = random_image(40, 56, seed=2)
    selections = []
    for seed in SEEDS:
        selected = attacks.combo_selection(seed).numpy()
        selections.append(selected)
        names = [name for name, on in zip(attacks.COMBO_ORDER, selected) if on]
        expected = apply_attacks(image, ",".join(names), seed).numpy()
        assert np.array_equal(apply_attacks(image, "combo", seed).numpy(), expected), names
    assert attacks.COMBO_ORDER == ("relight", "crop", "blur", "jpeg", "noise")
    share = np.mean([attacks.combo_selection((1, s)).numpy() for s in range(64)], axis=0)
    assert np.all((share > 0.25) & (share < 0.75)), share


def test_apply_attacks_in_parallel_tf_data_map():
    images = np.stack([random_image(64, 80, seed=s) for s in range(4)])
    dataset = tf.data.Dataset.from_tensor_slices(images).enumerate()

    def attack(position, image):
        return apply_attacks(image, "combo,crop", tf.stack([tf.constant(9, tf.int64), position]))

    outputs = list(dataset.map(attack, num_parallel_calls=tf.data.AUTOTUNE).as_numpy_iterator())
    assert [out.shape for out in outputs] == [(64, 80, 3)] * 4
    eager = apply_attacks(images[2], "combo,crop", tf.constant([9, 2], tf.int64)).numpy()
    assert np.array_equal(outputs[2], eager)


def test_no_attack_returns_the_image_as_float():
    image = random_image(10, 12)
    out = apply_attacks(image, "", [0, 0])
    assert out.dtype == tf.float32 and np.array_equal(out.numpy(), image.astype(np.float32))


def test_detail_scales_the_high_frequency_residual_by_a_log_uniform_gain():
    from dnadet_tf import imageops

    gains = np.array([float(attack_parameters("detail", seed)["gain"]) for seed in [[0, i] for i in range(400)]])
    assert gains.min() >= 0.25 and gains.max() < 4.0
    assert abs(np.mean(gains < 1.0) - 0.5) < 0.1  # log-uniform: as many gains below 1 as above
    image = random_image(40, 40, seed=3).astype(np.float32) * 0.5 + 64  # room for the residual to grow unclipped
    low = imageops.gaussian_blur(image, 5).numpy()
    for seed in ([0, 1], [0, 2]):
        gain = float(attack_parameters("detail", seed)["gain"])
        out = apply_attacks(image, "detail", seed).numpy()
        expected = np.clip(np.round(low + gain * (image - low)), 0, 255)
        assert np.abs(out - expected).max() <= 1.0
    # The low-pass part stays: blurring the output gives back (nearly) the blurred input.
    out = apply_attacks(image, "detail", [0, 1]).numpy()
    assert np.abs(imageops.gaussian_blur(out, 5).numpy() - low).mean() < 3.0


def test_filter_is_the_identity_plus_a_zero_mean_colour_mixing_perturbation():
    stds = np.array([float(attack_parameters("filter", [0, i])["std"]) for i in range(200)])
    assert stds.min() >= 0.0 and stds.max() < 0.1 and abs(stds.mean() - 0.05) < 0.01
    kernel = attack_parameters("filter", [0, 1])["kernel"].numpy()
    perturbation = kernel.copy()
    perturbation[1, 1] -= np.eye(3)
    assert kernel.shape == (3, 3, 3, 3)
    assert np.abs(perturbation.sum(axis=(0, 1))).max() < 1e-5  # each channel pair's taps: mean 0
    assert np.abs(perturbation[:, :, 0, 1]).max() > 0  # the channels are mixed
    # By hand, away from the borders: out[y, x, o] = sum of kernel[i, j, c, o] * image[y + i - 1, x + j - 1, c].
    image = random_image(20, 24, seed=4).astype(np.float32) * 0.5 + 64  # no clipping
    out = apply_attacks(image, "filter", [0, 1]).numpy()
    y, x = 7, 11
    window = image[y - 1 : y + 2, x - 1 : x + 2]
    expected = np.einsum("ijc,ijco->o", window, kernel)
    assert np.abs(out[y, x] - np.round(expected)).max() <= 1.0
    # Flat colours keep their values; only the detail moves.
    flat = np.full((16, 16, 3), [10, 100, 200], np.uint8)
    assert np.array_equal(apply_attacks(flat, "filter", [0, 1]).numpy(), flat.astype(np.float32))
    assert np.abs(out - image).mean() > 0.5

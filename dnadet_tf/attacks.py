"""Robustness attacks (the paper's Table 5): train-time augmentation and test-time perturbation.

Each attack takes one (H, W, 3) image of any size (uint8 or float in
[0, 255]) and returns float32 (H, W, 3) on the uint8 grid, drawing its
parameter from a stateless seed:

- crop:    random resized crop keeping a fraction a ~ U[0.80, 0.95] of the
           area, with the image's aspect ratio (each side scaled by sqrt(a),
           rounded), at a uniform random position, resized back to H x W
           (bilinear).
- blur:    Gaussian blur, kernel k uniform in {1, 3, 5, 7, 9} with OpenCV's
           sigma rule; k = 1 is the identity.
- jpeg:    JPEG round trip, quality uniform in {10, ..., 75}.
- noise:   additive Gaussian noise, variance ~ U[5, 20] on the 0-255 scale.
- relight: brightness factor b ~ U[0.1, 1.9], i.e. 1 + f with f ~ U[-0.9, 0.9]:
           every pixel is multiplied by b, then clipped to 255 (as
           torchvision's ColorJitter(brightness=0.9) does).
- combo:   relight, crop, blur, jpeg, noise, in that fixed order (the order
           the paper lists them), each applied with probability 0.5.
- channels: the colour channels in a random order, one of the 6
           permutations of (R, G, B), each with probability 1/6 (the identity
           included); every pixel value is kept, only which channel holds it
           changes. Not one of the paper's attacks: a training augmentation
           that keeps a model from tying a generator to the colours of the
           content it was trained on.
- detail:  the high-frequency residual r = x - blur5(x) (5 x 5 Gaussian, OpenCV's
           sigma rule) scaled by a gain g, log-uniform in [1/4, 4]: blur5(x) + g r,
           clipped and rounded. Not one of the paper's attacks: a training
           augmentation for generators of one architecture whose traces are
           weaker or stronger than the training generator's; measured on the
           seven-family faces -> scenes zoo, it did not help (docs/results.md, "Content or
           weights").
- filter:  a random 3 x 3 filter that mixes the colour channels: the identity
           plus a perturbation P (3, 3, 3, 3) of Gaussian taps with a standard
           deviation s ~ U[0, 0.1], each (input, output) channel pair's 9 taps
           made zero-mean, so that flat areas and colours keep their values and
           only the fine detail changes (reflect borders); clipped and rounded.
           Not one of the paper's attacks: a training augmentation for
           generators of one architecture whose last layers were trained on
           other images (the same upsampling, so the same frequencies, with
           other weights, so other strengths and colour mixtures there); measured
           on the faces -> scenes zoo, it lost 9 points across content and
           steadied the other seeds' ProGAN faces (docs/results.md, "Content
           or weights").

`apply_attacks` applies several named attacks in the order given. Each
attack's randomness comes from `stateless_fold_in(seed, <its position in
ATTACK_NAMES>)`, so an attack draws the same parameters for a seed whether it
runs alone, in a list, or inside combo. Same seed -> same output, bit for bit.
In `tf.data`, give every element its own seed, e.g. from
`dataset.enumerate()`: `seed = tf.stack([base_seed, index])`.
"""
import numpy as np
import tensorflow as tf

from dnadet_tf import imageops

ATTACK_NAMES = ("crop", "blur", "jpeg", "noise", "relight", "combo", "channels", "detail", "filter")
CHANNEL_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
COMBO_ORDER = ("relight", "crop", "blur", "jpeg", "noise")
COMBO_PROBABILITY = 0.5

CROP_AREA_RANGE = (0.80, 0.95)
BLUR_KERNELS = (1, 3, 5, 7, 9)
JPEG_QUALITY_RANGE = (10, 75)  # inclusive
NOISE_VARIANCE_RANGE = (5.0, 20.0)
RELIGHT_FACTOR_RANGE = (0.1, 1.9)  # 1 +- 0.9
DETAIL_GAIN_RANGE = (0.25, 4.0)  # log-uniform
DETAIL_BLUR_KERNEL = 5
FILTER_STD_RANGE = (0.0, 0.1)  # the perturbation's tap standard deviation
FILTER_SIZE = 3

_COIN_SALT = 100  # combo's coin for attack i uses salt 100 + i


def parse_attacks(text):
    """Turns "crop,blur" (or a sequence of names) into a tuple of attack names.

    Names are stripped and lower-cased; empty entries are ignored, so "" gives
    () (no attack); a repeated name is kept once, at its first place.
    Raises ValueError naming the unknown attack and listing the valid ones.
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    names = []
    for part in parts:
        name = str(part).strip().lower()
        if not name:
            continue
        if name not in ATTACK_NAMES:
            raise ValueError(f"unknown attack {name!r}; expected a comma-separated list of: {', '.join(ATTACK_NAMES)}.")
        if name not in names:
            names.append(name)
    return tuple(names)


def _seed_for(seed, salt):
    """Seed of shape [2] and an int salt -> an independent seed of shape [2]."""
    return tf.random.experimental.stateless_fold_in(imageops.as_seed(seed), salt)


def _uniform(seed, low, high):
    """Float32 scalar uniform in [low, high) from a stateless seed."""
    return tf.random.stateless_uniform([], seed=seed, minval=low, maxval=high, dtype=tf.float32)


def _uniform_int(seed, low, high_inclusive):
    """Int32 scalar uniform in {low, ..., high_inclusive}; bounds may be tensors."""
    return tf.random.stateless_uniform(
        [], seed=seed, minval=low, maxval=high_inclusive + 1, dtype=tf.int32
    )


def _crop_parameters(seed):
    """-> {"area": kept area fraction, "top": row fraction, "left": column fraction} (float32 scalars).

    The offsets are fractions in [0, 1) of the free margin; `crop` turns
    them into pixels for the image's size."""
    return {
        "area": _uniform(tf.random.experimental.stateless_fold_in(seed, 0), *CROP_AREA_RANGE),
        "top": _uniform(tf.random.experimental.stateless_fold_in(seed, 1), 0.0, 1.0),
        "left": _uniform(tf.random.experimental.stateless_fold_in(seed, 2), 0.0, 1.0),
    }


def _blur_parameters(seed):
    """-> {"kernel": int32 scalar in BLUR_KERNELS}."""
    index = _uniform_int(seed, 0, len(BLUR_KERNELS) - 1)
    return {"kernel": tf.gather(tf.constant(BLUR_KERNELS, tf.int32), index)}


def _jpeg_parameters(seed):
    """-> {"quality": int32 scalar in [10, 75]}."""
    return {"quality": _uniform_int(seed, *JPEG_QUALITY_RANGE)}


def _noise_parameters(seed):
    """-> {"variance": float32 scalar in [5, 20), "noise_seed": int32 (2,)}."""
    return {
        "variance": _uniform(tf.random.experimental.stateless_fold_in(seed, 0), *NOISE_VARIANCE_RANGE),
        "noise_seed": tf.random.experimental.stateless_fold_in(seed, 1),
    }


def _relight_parameters(seed):
    """-> {"factor": float32 scalar in [0.1, 1.9)}."""
    return {"factor": _uniform(seed, *RELIGHT_FACTOR_RANGE)}


def _channels_parameters(seed):
    """-> {"order": int32 (3,), one of CHANNEL_ORDERS, each with probability 1/6}."""
    index = _uniform_int(seed, 0, len(CHANNEL_ORDERS) - 1)
    return {"order": tf.gather(tf.constant(CHANNEL_ORDERS, tf.int32), index)}


def _detail_parameters(seed):
    """-> {"gain": float32 scalar in [0.25, 4), log-uniform}."""
    low, high = DETAIL_GAIN_RANGE
    return {"gain": tf.exp(_uniform(seed, float(np.log(low)), float(np.log(high))))}


def _filter_parameters(seed):
    """-> {"std": float32 scalar in [0, 0.1), "kernel": float32 (3, 3, 3, 3)}: the identity plus the
    zero-mean perturbation, indexed (row, column, input channel, output channel)."""
    std = _uniform(tf.random.experimental.stateless_fold_in(seed, 0), *FILTER_STD_RANGE)
    taps = tf.random.stateless_normal((FILTER_SIZE, FILTER_SIZE, 3, 3), tf.random.experimental.stateless_fold_in(seed, 1))
    taps = taps - tf.reduce_mean(taps, axis=(0, 1), keepdims=True)
    centre = np.zeros((FILTER_SIZE, FILTER_SIZE, 3, 3), np.float32)
    centre[FILTER_SIZE // 2, FILTER_SIZE // 2] = np.eye(3, dtype=np.float32)
    return {"std": std, "kernel": tf.constant(centre) + std * taps}


def crop(image, seed):
    """Random resized crop: (H, W, 3) -> float32 (H, W, 3), about 80-95 % of the area kept."""
    image = imageops.as_float_image(image)
    params = _crop_parameters(seed)
    size = tf.shape(image)[:2]
    side = tf.sqrt(params["area"])
    crop_size = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) * side), tf.int32), 1)
    margin = size - crop_size
    top = tf.cast(tf.floor(params["top"] * tf.cast(margin[0] + 1, tf.float32)), tf.int32)
    left = tf.cast(tf.floor(params["left"] * tf.cast(margin[1] + 1, tf.float32)), tf.int32)
    top, left = tf.minimum(top, margin[0]), tf.minimum(left, margin[1])
    window = image[top : top + crop_size[0], left : left + crop_size[1], :]
    out = tf.image.resize(window, size, method="bilinear")
    out.set_shape(image.shape)
    return imageops.quantize(out)


def blur(image, seed):
    """Gaussian blur with kernel uniform in {1, 3, 5, 7, 9}: (H, W, 3) -> float32 (H, W, 3); H, W >= 5."""
    kernel = _blur_parameters(seed)["kernel"]
    return imageops.gaussian_blur(image, kernel, max_kernel_size=max(BLUR_KERNELS))


def jpeg(image, seed):
    """JPEG round trip with quality uniform in {10, ..., 75}: (H, W, 3) -> float32 (H, W, 3)."""
    return imageops.jpeg_round_trip(image, _jpeg_parameters(seed)["quality"])


def noise(image, seed):
    """Gaussian noise with variance ~ U[5, 20] (0-255 scale): (H, W, 3) -> float32 (H, W, 3)."""
    params = _noise_parameters(seed)
    return imageops.gaussian_noise(image, params["variance"], params["noise_seed"])


def relight(image, seed):
    """Brightness: pixels times b ~ U[0.1, 1.9], clipped and rounded: (H, W, 3) -> float32 (H, W, 3)."""
    factor = _relight_parameters(seed)["factor"]
    return imageops.quantize(imageops.as_float_image(image) * factor)


def channels(image, seed):
    """Channel permutation: (H, W, 3) -> float32 (H, W, 3) holding the input's channels in a random order."""
    image = imageops.as_float_image(image)
    out = tf.gather(image, _channels_parameters(seed)["order"], axis=-1)
    out.set_shape(image.shape)
    return out


def detail(image, seed):
    """High-frequency residual times a gain g in [1/4, 4]: (H, W, 3) -> float32 (H, W, 3); H, W >= 3."""
    image = imageops.as_float_image(image)
    low = imageops.gaussian_blur(image, DETAIL_BLUR_KERNEL)
    out = imageops.quantize(low + _detail_parameters(seed)["gain"] * (image - low))
    out.set_shape(image.shape)
    return out


def filter(image, seed):  # noqa: A001 (the attack's name, as the flag spells it)
    """A random 3 x 3 colour-mixing filter near the identity: (H, W, 3) -> float32 (H, W, 3); H, W >= 2."""
    image = imageops.as_float_image(image)
    radius = FILTER_SIZE // 2
    padded = tf.pad(image, [[radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    kernel = _filter_parameters(seed)["kernel"]
    out = tf.nn.conv2d(padded[None], kernel, strides=1, padding="VALID")[0]
    out = imageops.quantize(out)
    out.set_shape(image.shape)
    return out


_PARAMETERS = {
    "crop": _crop_parameters,
    "blur": _blur_parameters,
    "jpeg": _jpeg_parameters,
    "noise": _noise_parameters,
    "relight": _relight_parameters,
    "channels": _channels_parameters,
    "detail": _detail_parameters,
    "filter": _filter_parameters,
}


def attack_parameters(name, seed):
    """The parameters attack `name` (not "combo") draws for `seed` in `apply_attacks`.

    Returns a dict of scalar tensors, e.g. {"factor": 1.42} for relight or
    {"quality": 37} for jpeg; useful to log test-time perturbations.
    """
    if name not in _PARAMETERS:
        raise ValueError(f"attack_parameters: expected one of {', '.join(_PARAMETERS)}, received {name!r}.")
    return _PARAMETERS[name](_seed_for(seed, ATTACK_NAMES.index(name)))


_ATTACKS = {"crop": crop, "blur": blur, "jpeg": jpeg, "noise": noise, "relight": relight, "channels": channels,
            "detail": detail, "filter": filter}


def _apply_one(image, name, seed):
    return _ATTACKS[name](image, _seed_for(seed, ATTACK_NAMES.index(name)))


def combo_selection(seed):
    """Which attacks of COMBO_ORDER `combo` applies for `seed`: bool tensor (5,), each True with p = 0.5."""
    seed = imageops.as_seed(seed)
    coins = [_uniform(_seed_for(seed, _COIN_SALT + ATTACK_NAMES.index(name)), 0.0, 1.0) for name in COMBO_ORDER]
    return tf.stack(coins) < COMBO_PROBABILITY


def combo(image, seed):
    """relight, crop, blur, jpeg, noise, each with probability 0.5: (H, W, 3) -> float32 (H, W, 3).

    An attack that runs draws the same parameters as it would alone with the same seed."""
    image = imageops.as_float_image(image)
    selected = combo_selection(seed)
    for position, name in enumerate(COMBO_ORDER):
        current = image
        image = tf.cond(
            selected[position],
            lambda: _apply_one(current, name, seed),
            lambda: current,
        )
        image.set_shape(current.shape)
    return image


def apply_attacks(image, names, seed):
    """Applies the named attacks, in the order given, to one image.

    Args:
      image: (H, W, 3) uint8 or float in [0, 255], any size (H, W >= 5).
      names: a tuple of names from ATTACK_NAMES, or a comma-separated string
        (parsed with `parse_attacks`); empty means no attack.
      seed: int tensor (or pair of ints) of shape [2].

    Returns:
      float32 (H, W, 3) in [0, 255], same size as the input; on the uint8
      grid whenever at least one attack ran.
    """
    names = parse_attacks(names)
    image = imageops.as_float_image(image)
    seed = imageops.as_seed(seed)
    for name in names:
        if name == "combo":
            image = combo(image, seed)
        else:
            image = _apply_one(image, name, seed)
    return image


def attack_fn(names):
    """The perturbation `fn(image, seed)` applying `names` (as `apply_attacks`), used as a
    training augmentation and as an evaluation perturbation; None when `names` is empty."""
    names = parse_attacks(names)
    if not names:
        return None
    return lambda image, seed: apply_attacks(image, names, seed)

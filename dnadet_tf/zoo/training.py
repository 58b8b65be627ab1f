"""Training one zoo generator: adversarial loss against a patch discriminator plus reconstruction.

One step (a `tf.function`): a batch of real crops -> their low-resolution views
(area average by `scale`) plus stateless Gaussian noise -> the generator's output;
the discriminator scores real and generated crops (a grid of logits each); both
networks are updated from the same forward pass:

    d_loss = adversarial discriminator loss
    g_loss = adv_weight * adversarial generator loss + rec_weight * reconstruction(output, crop)

Adversarial objectives: `hinge`, `nonsaturating` (the original GAN loss with the
non-saturating generator term) and `lsgan` (least squares); reconstruction: `l1` or
`l2` on pixels in [-1, 1]. Fine-tuning is the same loop started from a finished
generator's weights (with a fresh discriminator) on other photos.

Determinism: every random draw is seeded from the model's own seed (initial weights
via `keras.utils.set_random_seed`, batches via a NumPy generator, noise via
stateless ops keyed by the step), so a model's weights depend on nothing else the
build did before it. Run under `tf.config.experimental.enable_op_determinism()`.
"""
import hashlib
import time
from dataclasses import asdict, dataclass

import keras
import numpy as np
import tensorflow as tf

from dnadet_tf.zoo.generators import build_discriminator, build_generator

ADVERSARIAL_LOSSES = ("hinge", "nonsaturating", "lsgan")
RECONSTRUCTION_LOSSES = ("l1", "l2")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training (or fine-tuning) run."""

    steps: int
    batch_size: int = 8
    crop: int = 64  # training crop side (fully convolutional models generate larger images)
    scale: int = 4
    width: int = 32
    disc_width: int = 32
    adv_loss: str = "hinge"
    rec_loss: str = "l1"
    adv_weight: float = 1.0
    rec_weight: float = 50.0
    learning_rate: float = 1e-3
    beta_1: float = 0.5
    beta_2: float = 0.99

    def as_dict(self):
        return asdict(self)


def lowres_view(images, scale):
    """Area-averaged low-resolution view: (N, H, W, 3) -> (N, H/scale, W/scale, 3)."""
    return tf.nn.avg_pool2d(images, ksize=scale, strides=scale, padding="VALID")


def discriminator_loss(kind, real_logits, fake_logits):
    """The discriminator's loss `kind` (ADVERSARIAL_LOSSES), a scalar: real_logits and fake_logits, any shape (the
    discriminator's scores of real and generated images, or of patches of them), are each averaged."""
    if kind == "hinge":
        return tf.reduce_mean(tf.nn.relu(1.0 - real_logits)) + tf.reduce_mean(tf.nn.relu(1.0 + fake_logits))
    if kind == "nonsaturating":
        return tf.reduce_mean(tf.nn.softplus(-real_logits)) + tf.reduce_mean(tf.nn.softplus(fake_logits))
    if kind == "lsgan":
        return 0.5 * tf.reduce_mean(tf.square(real_logits - 1.0)) + 0.5 * tf.reduce_mean(tf.square(fake_logits))
    raise ValueError(f"unknown adversarial loss {kind!r}; expected one of {', '.join(ADVERSARIAL_LOSSES)}")


def generator_adversarial_loss(kind, fake_logits):
    """The generator's side of adversarial loss `kind`, a scalar: the mean over fake_logits (any shape), the
    discriminator's scores of the generated images."""
    if kind == "hinge":
        return -tf.reduce_mean(fake_logits)
    if kind == "nonsaturating":
        return tf.reduce_mean(tf.nn.softplus(-fake_logits))
    if kind == "lsgan":
        return 0.5 * tf.reduce_mean(tf.square(fake_logits - 1.0))
    raise ValueError(f"unknown adversarial loss {kind!r}; expected one of {', '.join(ADVERSARIAL_LOSSES)}")


def reconstruction_loss(kind, fake, real):
    """Mean absolute ("l1") or squared ("l2") difference, a scalar, of generated and target images (N, H, W, 3)."""
    if kind == "l1":
        return tf.reduce_mean(tf.abs(fake - real))
    if kind == "l2":
        return tf.reduce_mean(tf.square(fake - real))
    raise ValueError(f"unknown reconstruction loss {kind!r}; expected one of {', '.join(RECONSTRUCTION_LOSSES)}")


def weights_checksum(model):
    """SHA-256 over every weight of the model (name, shape, dtype and bytes), in model order."""
    digest = hashlib.sha256()
    for variable in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(variable.value))
        digest.update(f"{variable.path}:{value.shape}:{value.dtype}\n".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def load_checked_weights(model, path, expected):
    """Loads the weights file `path` into `model` and checks them against `expected`, the `weights_sha256` the
    zoo recorded when it wrote the file (None: nothing to check). Raises DataError naming the file for other
    weights: a zoo's images and digests describe the generators its build trained."""
    from dnadet_tf.errors import DataError

    model.load_weights(path)
    if expected and weights_checksum(model) != expected:
        raise DataError(f"{path}: other weights than the zoo's build wrote (its record's weights_sha256 is "
                        f"{expected[:16]}...); expected that file: delete the model's files and run 'dnadet-tf zoo "
                        f"build' again to retrain it.")
    return model


def new_generator(family, config, seed):
    """The generator of `family` with initial weights drawn from `seed` alone."""
    keras.utils.set_random_seed(seed)
    return build_generator(family, width=config.width, scale=config.scale)


def _make_step(generator, discriminator, config):
    g_opt = keras.optimizers.Adam(config.learning_rate, beta_1=config.beta_1, beta_2=config.beta_2)
    d_opt = keras.optimizers.Adam(config.learning_rate, beta_1=config.beta_1, beta_2=config.beta_2)
    g_opt.build(generator.trainable_variables)
    d_opt.build(discriminator.trainable_variables)
    shape = (config.batch_size, config.crop, config.crop, 1)

    @tf.function
    def step(real, noise_seed):
        real = tf.cast(real, tf.float32) / 127.5 - 1.0
        noise = tf.random.stateless_normal(shape, seed=noise_seed)
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = generator([lowres_view(real, config.scale), noise], training=True)
            real_logits = discriminator(real, training=True)
            fake_logits = discriminator(fake, training=True)
            d_loss = discriminator_loss(config.adv_loss, real_logits, fake_logits)
            g_adv = generator_adversarial_loss(config.adv_loss, fake_logits)
            rec = reconstruction_loss(config.rec_loss, fake, real)
            g_loss = config.adv_weight * g_adv + config.rec_weight * rec
        d_grads = d_tape.gradient(d_loss, discriminator.trainable_variables)
        g_grads = g_tape.gradient(g_loss, generator.trainable_variables)
        d_opt.apply_gradients(zip(d_grads, discriminator.trainable_variables))
        g_opt.apply_gradients(zip(g_grads, generator.trainable_variables))
        return tf.stack([g_adv, rec, d_loss])

    return step


class CropSampler:
    """Training batches: random `crop` px windows of a pool of natural 128 px crops.

    Each window is mirrored half of the time and has its colour channels permuted at
    random: a few dozen photos hold few colours, and without this the generators learn
    the palette of their training photos instead of passing the input's colours through.
    """

    def __init__(self, pool, crop, batch_size, seed):
        self.pool = pool  # uint8 (n, 128, 128, 3)
        self.crop = crop
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)

    def __call__(self):
        n, height, width = self.pool.shape[:3]
        index = self.rng.integers(0, n, self.batch_size)
        tops = self.rng.integers(0, height - self.crop + 1, self.batch_size)
        lefts = self.rng.integers(0, width - self.crop + 1, self.batch_size)
        flips = self.rng.random(self.batch_size) < 0.5
        channels = np.argsort(self.rng.random((self.batch_size, 3)), axis=1)
        batch = np.empty((self.batch_size, self.crop, self.crop, 3), np.uint8)
        for k in range(self.batch_size):
            window = self.pool[index[k], tops[k]:tops[k] + self.crop, lefts[k]:lefts[k] + self.crop]
            window = window[:, ::-1] if flips[k] else window
            batch[k] = window[:, :, channels[k]]
        return batch


def train(generator, pool, config, seed, progress=None, label="", report_every_s=30.0):
    """Trains `generator` (in place) against a fresh patch discriminator seeded by `seed`.

    Args:
      generator: a model from `build_generator` (fresh, or loaded for fine-tuning).
      pool: uint8 array (n, 128, 128, 3) of natural crops of the training photos.
      config: a `TrainConfig`.
      seed: integer seed of this run (discriminator init, batches, noise).
      progress: called with a short line at most every `report_every_s` seconds.
      label: prefix of those lines.

    Returns:
      Final losses {'g_adv', 'rec', 'd'}: means over the last tenth of the steps.
    """
    if config.adv_loss not in ADVERSARIAL_LOSSES:
        raise ValueError(f"unknown adversarial loss {config.adv_loss!r}")
    if config.rec_loss not in RECONSTRUCTION_LOSSES:
        raise ValueError(f"unknown reconstruction loss {config.rec_loss!r}")
    keras.utils.set_random_seed(seed + 1)
    discriminator = build_discriminator(config.disc_width)
    step = _make_step(generator, discriminator, config)
    sampler = CropSampler(pool, config.crop, config.batch_size, seed)
    tail = max(1, config.steps // 10)
    history = []
    last_report = time.monotonic()
    for i in range(config.steps):
        noise_seed = tf.constant([seed % (2**31 - 1), i], dtype=tf.int64)
        losses = step(tf.constant(sampler()), noise_seed)
        if i >= config.steps - tail:
            history.append(losses)
        if progress is not None and time.monotonic() - last_report >= report_every_s:
            last_report = time.monotonic()
            g_adv, rec, d = losses.numpy()
            progress(f"    {label}step {i + 1}/{config.steps}: g_adv={g_adv:.3f} rec={rec:.3f} d={d:.3f}")
    final = np.mean(np.stack([h.numpy() for h in history]), axis=0)
    return {"g_adv": float(final[0]), "rec": float(final[1]), "d": float(final[2])}


def generate(generator, crops, noise_seeds, scale):
    """Generates one image per crop: uint8 (n, H, W, 3) from the crops' low-res views and seeded noise.

    `noise_seeds` is a list of (int, int) pairs, one per crop, so an image does not
    depend on the others in its batch.
    """
    real = tf.cast(tf.constant(crops), tf.float32) / 127.5 - 1.0
    height, width = crops.shape[1:3]
    noise = tf.concat(
        [tf.random.stateless_normal((1, height, width, 1), seed=tf.constant(s, tf.int64)) for s in noise_seeds],
        axis=0,
    )
    fake = generator([lowres_view(real, scale), noise], training=False)
    pixels = tf.clip_by_value(tf.round((fake + 1.0) * 127.5), 0.0, 255.0)
    return tf.cast(pixels, tf.uint8).numpy()

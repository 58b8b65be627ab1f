"""The DNA-Det network as Keras model classes, in keras-hub's shape.

`Backbone` is the encoder: four stages of
  Conv 4x4 stride 2 -> BatchNorm -> LeakyReLU(0.2)
  Conv 3x3 stride 1 -> BatchNorm -> LeakyReLU(0.2)
with widths 64, 128, 256, 512 (times `width`), then global average pooling.
Every convolution pads one pixel on each side, as the authors' PyTorch code
does (for input sides that are multiples of 16, the total stride, "same"
padding is exactly that), so their weights load unchanged.

`Classifier` is the task: the backbone's graph continued by Dropout -> Dense
(logits), with the class names and the preprocessing inside, so a saved
`best.keras` alone is a complete attributor:

    model = keras.saving.load_model("best.keras")   # after `import dnadet_tf.model`
    model(pixels)          # (N, S, S, 3) preprocessed pixels in [-1, 1] -> (N, C) logits
    model.predict(images)  # (N, H, W, 3) decoded images in [0, 255] -> (N, C) probabilities

The classifier's layers are the backbone's layers plus `dropout` and `logits`,
in one flat graph (`stage{s}_{conv,bn,act}{1,2}`, `feature`, `dropout`,
`logits`), so Grad-CAM can target any encoder layer by name.

After training, a `Calibration` (temperature scaling and an open-set score,
fitted by `dnadet_tf.calibrate`) may be attached: `probabilities` then divides
the logits by its temperature, and `attribute` adds `ood_score` and `unknown`.
"""
import keras
import numpy as np
import tensorflow as tf
from keras import layers

from dnadet_tf.config import SHIFT_FIRST_STAGE
from dnadet_tf.preprocess import PreprocessConfig, preprocess_image

STAGE_WIDTHS = (64, 128, 256, 512)
DEFAULT_GRADCAM_LAYER = "stage2_act2"
FEATURE_LAYER = "feature"
LOGITS_LAYER = "logits"
PROTOTYPE_LOGITS_LAYER = "prototype_logits"
CLASS_MAXIMUM_LAYER = "class_maximum"


def stage_widths(width):
    """Channel widths of the four stages for a width multiplier, at least 4 each."""
    return tuple(max(4, int(round(w * width))) for w in STAGE_WIDTHS)


def freeze_stages(classifier, count):
    """Marks the layers of the first `count` encoder stages (`stage1_*` .. `stage{count}_*`) not trainable.

    Their kernels are then left out of `trainable_variables`, and their BatchNorm normalises with
    its moving statistics also in training mode, so those stages compute exactly what the loaded
    weights (step 1, `--init`) computed. `count` 0 leaves every layer as it is.
    """
    prefixes = tuple(f"stage{s}_" for s in range(1, count + 1))
    for layer in classifier.layers:
        if layer.name.startswith(prefixes):  # False for every name when prefixes is empty
            layer.trainable = False


def batchnorm_layers(model):
    """The BatchNormalization layers of a classifier's encoder, input to output."""
    return [layer for layer in model.backbone._flatten_layers() if isinstance(layer, BatchNormalization)]


def layer_stage(layer):
    """The encoder stage (1-4) of a layer named `stage{s}_...`."""
    return int(layer.name.split("_", 1)[0][len("stage"):])


def probabilities(model, pixels):
    """The one softmax of a classifier's logits: (N, S, S, 3) pixels -> (N, C) float32, inference mode.

    With a `Calibration` attached, the logits are divided by its temperature first.
    """
    logits = tf.cast(model(pixels, training=False), tf.float32)
    calibration = getattr(model, "calibration", None)
    if calibration is not None:
        logits = logits / calibration.temperature
    return tf.nn.softmax(logits, axis=-1)


def attribute(model, pixels):
    """Everything a classifier answers for (N, S, S, 3) pixels, inference mode:

      probabilities (N, C) float32   as `probabilities(model, pixels)`
      ood_score     (N,)   float32   the open-set score (higher = less like any known class)
      unknown       (N,)   bool      ood_score > the calibrated threshold

    The last two only when a `Calibration` is attached (a dict with probabilities alone otherwise).
    The encoder runs once: the pooled feature feeds both the logits and the score.
    """
    calibration = getattr(model, "calibration", None)
    if calibration is None:
        return {"probabilities": probabilities(model, pixels)}
    return calibration(*feature_and_logits(model, pixels))


def feature_and_logits(model, pixels):
    """(N, S, S, 3) pixels -> pooled features (N, D) and logits (N, C), float32, inference mode, one encoder pass."""
    feature = model.backbone(pixels, training=False)
    logits = model.head_logits(feature)  # dropout is the identity at inference
    return tf.cast(feature, tf.float32), tf.cast(logits, tf.float32)


@keras.saving.register_keras_serializable(package="dnadet_tf")
class Calibration(keras.layers.Layer):
    """Temperature scaling and an open-set score, fitted after training on known images.

    `call(feature, logits)`: pooled features (N, D) and logits (N, C) -> {"probabilities": (N, C),
    "ood_score": (N,), "unknown": (N,) bool}. The score is one of `dnadet_tf.openset.SCORES`;
    its statistics are non-trainable weights, so they travel in `.keras` files and exports:
    temperature (), threshold (), class_means (C, D), whitening (D, D): W with W W' = the precision
    matrix, so the Mahalanobis distance is ||(f - m) W||^2, a difference before any product (no
    cancellation, which keeps it usable in quantized exports); with `class_radii`, also radii (C,):
    the distance scores divide each class's distance by its radius before taking the smallest. With
    `means_per_class` G > 1, class_means is (G * C, D), row g * C + c the c-th class's g-th mean (every
    labeled image its own, `openset.MEANS` "image"), and a class's distance is that to the nearest of its own.

    Args:
      num_classes, feature_dim: C and D.
      score: "mahalanobis", "cosine", "energy" or "max_softmax".
      class_radii: whether the layer holds per-class radii (`openset.class_radii`); False in files
        written before radii existed, which then load and score as they did.
      means_per_class: G, the means of each class (default 1).
    """

    def __init__(self, num_classes, feature_dim, score="mahalanobis", class_radii=False, means_per_class=1,
                 **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        from dnadet_tf.openset import SCORES

        if score not in SCORES:
            raise ValueError(f"score: expected one of {', '.join(SCORES)}, received {score!r}.")
        self.num_classes, self.feature_dim, self.score = int(num_classes), int(feature_dim), score
        self.means_per_class = int(means_per_class)
        if self.means_per_class < 1:
            raise ValueError(f"means_per_class: expected an integer >= 1, received {means_per_class}.")
        constant = lambda shape, value="zeros": self.add_weight(  # noqa: E731
            shape=shape, initializer=value, trainable=False, dtype="float32")
        self.temperature = constant((), "ones")
        self.threshold = constant((), "zeros")
        self.class_means = constant((self.means_per_class * self.num_classes, self.feature_dim))
        self.whitening = constant((self.feature_dim, self.feature_dim))
        self.class_radii = bool(class_radii)
        self.radii = constant((self.num_classes,), "ones") if self.class_radii else None
        self.built = True

    def set_statistics(self, statistics):
        """Assigns an `openset.OpenSetStatistics` (its score must be this layer's)."""
        if statistics.score != self.score:
            raise ValueError(f"score: expected {self.score!r}, received {statistics.score!r}.")
        if statistics.means_per_class != self.means_per_class:
            raise ValueError(f"means_per_class: expected {self.means_per_class}, received "
                             f"{statistics.means_per_class}.")
        self.temperature.assign(float(statistics.temperature))
        self.threshold.assign(float(statistics.threshold))
        self.class_means.assign(statistics.class_means)
        self.whitening.assign(statistics.whitening)
        if (statistics.class_radii is not None) != self.class_radii:
            raise ValueError(f"class_radii: expected {'radii' if self.class_radii else 'none'} (C,), received "
                             f"{'none' if statistics.class_radii is None else 'radii'}.")
        if self.class_radii:
            self.radii.assign(np.asarray(statistics.class_radii, np.float32))

    def statistics(self):
        """The `openset.OpenSetStatistics` this layer holds (what `set_statistics` assigned)."""
        from dnadet_tf.openset import OpenSetStatistics

        return OpenSetStatistics(self.score, self.class_means.numpy(), self.whitening.numpy(),
                                 float(self.temperature.numpy()), float(self.threshold.numpy()),
                                 self.radii.numpy() if self.class_radii else None, self.means_per_class)

    def ood_scores(self, feature, logits):
        """(N, D), (N, C) -> (N,) float32, as `openset.scores` computes them."""
        t = self.temperature
        if self.score == "max_softmax":
            return 1.0 - tf.reduce_max(tf.nn.softmax(logits / t, axis=-1), axis=-1)
        if self.score == "energy":
            return -t * tf.reduce_logsumexp(logits / t, axis=-1)
        means = self.class_means
        if self.score == "cosine":
            distances = 1.0 - tf.matmul(tf.math.l2_normalize(feature, axis=-1), tf.math.l2_normalize(means, axis=-1),
                                        transpose_b=True)
        else:
            whitened = tf.matmul(feature, self.whitening)[:, None, :] - tf.matmul(means, self.whitening)[None, :, :]
            distances = tf.reduce_sum(tf.square(whitened), axis=-1)
        if self.means_per_class > 1:  # (N, G * C) -> (N, C): the nearest of each class's means
            distances = tf.reduce_min(tf.reshape(distances, (-1, self.means_per_class, self.num_classes)), axis=1)
        if self.class_radii:
            distances = distances / self.radii[None, :]
        return tf.reduce_min(distances, axis=-1)

    def call(self, feature, logits):
        score = self.ood_scores(feature, logits)
        return {"probabilities": tf.nn.softmax(logits / self.temperature, axis=-1),
                "ood_score": score, "unknown": score > self.threshold}

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "feature_dim": self.feature_dim,
                "score": self.score, "class_radii": self.class_radii, "means_per_class": self.means_per_class}


# The share of training steps whose BatchNorm outputs `statistics_shift` moves (the measured setting).
SHIFT_PROBABILITY = 0.5


@keras.saving.register_keras_serializable(package="dnadet_tf")
class BatchNormalization(layers.BatchNormalization):
    """Keras' BatchNormalization; in training, one fused TensorFlow kernel (`FusedBatchNormV3`).

    Keras 3 normalises with separate ops (moments, then scale and shift, each a pass over the
    activations, with float32 casts under mixed precision); the fused kernel does the same
    arithmetic in fewer passes: on the `paper` step it raised this 2-core CPU's throughput by
    about 15 % (benchmarks/train_throughput.py). Same outputs up to float rounding, same
    weights, same moving statistics (biased batch variance, as Keras). Synchronised,
    renormalised, masked or non-4D uses, and inference, are Keras' own code.

    `statistics_shift` S > 0 (training only; inference is unchanged): in a share `SHIFT_PROBABILITY`
    of the training steps, the normalised activations z of every channel become z * exp(a) + b, with
    a, b ~ N(0, S^2) drawn per channel, once for the whole batch, before the layer's scale and
    offset. That is what running statistics do to a batch whose own statistics they miss, as
    those of one content miss another's; the layers after it learn to answer through it.

    The class keeps Keras' name on purpose: `.keras` files address weights by snake-cased
    class names (`batch_normalization_3`), so files written before this class existed load.
    """

    def __init__(self, *args, statistics_shift=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if not statistics_shift >= 0:
            raise ValueError(f"statistics_shift: expected a standard deviation of 0 or more, received "
                             f"{statistics_shift!r}.")
        self.statistics_shift = float(statistics_shift)
        self.shift_seed = keras.random.SeedGenerator() if self.statistics_shift else None

    def _fused(self, inputs, training, mask):
        return (training and self.trainable and mask is None and not self.synchronized and not self.renorm
                and self.scale and self.center and len(inputs.shape) == 4 and self.axis in (-1, 3))

    def call(self, inputs, training=None, mask=None):
        """(N, H, W, C) -> (N, H, W, C) in the layer's compute dtype."""
        if not self._fused(inputs, training, mask):
            outputs = super().call(inputs, training=training, mask=mask)
        else:
            outputs = self._fused_call(inputs)
        if training and self.trainable and self.statistics_shift:
            outputs = self._shifted(outputs)
        return outputs

    def _fused_call(self, inputs):
        x = inputs if inputs.dtype in (tf.float32, tf.bfloat16, tf.float16) else tf.cast(inputs, tf.float32)
        empty = tf.constant([], tf.float32)
        y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=tf.cast(self.gamma, tf.float32), offset=tf.cast(self.beta, tf.float32), mean=empty,
            variance=empty, epsilon=self.epsilon, data_format="NHWC", is_training=True)
        # The kernel returns the unbiased batch variance (n / (n - 1)); Keras' moving variance uses the biased one.
        count = tf.cast(tf.size(x, out_type=tf.int64) // tf.cast(tf.shape(x)[-1], tf.int64), tf.float32)
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        return tf.cast(y, self.compute_dtype)

    def _shifted(self, outputs):
        """gamma * (z * exp(a) + b) + beta for outputs gamma * z + beta, in SHIFT_PROBABILITY of the calls."""
        channels = outputs.shape[-1]
        on = tf.cast(keras.random.uniform((), seed=self.shift_seed) < SHIFT_PROBABILITY, tf.float32)
        log_scale = keras.random.normal((channels,), stddev=self.statistics_shift, seed=self.shift_seed) * on
        offset = keras.random.normal((channels,), stddev=self.statistics_shift, seed=self.shift_seed) * on
        gamma = tf.cast(self.gamma, tf.float32)
        beta = tf.cast(self.beta, tf.float32)
        y = tf.cast(outputs, tf.float32)
        return tf.cast(tf.exp(log_scale) * (y - beta) + gamma * offset + beta, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "statistics_shift": self.statistics_shift}


@keras.saving.register_keras_serializable(package="dnadet_tf")
class ZeroMeanKernel(keras.constraints.Constraint):
    """Keeps a convolution kernel (kh, kw, in, out) at zero mean over its spatial taps, for every
    pair of input and output channel: `w - mean(w, axis=(0, 1))`.

    Such a filter answers to local differences of its input channel, not to its level: a high-pass
    filter, as the constrained first layers of image forensics are (Bayar and Stamm), here with the
    mean subtracted instead of a fixed centre tap. Keras applies it after every optimizer update.
    """

    def __call__(self, w):
        return w - keras.ops.mean(w, axis=(0, 1), keepdims=True)


def _conv_block(x, filters, kernel_size, strides, name, index, synchronized, dtype, kernel_constraint=None,
                statistics_shift=0.0):
    # The authors pad one pixel on every side, then convolve without padding. For inputs whose
    # sides are multiples of 16 (every size the package feeds: `config` enforces it), every
    # stride-2 convolution sees an even side, and "same" pads exactly one pixel on every side
    # too, without a separate padding op and its copy of the activations (about 15 % of the
    # `paper` step on this CPU; weights unchanged, so the authors' weights still load).
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                      name=f"{name}_conv{index}", dtype=dtype, kernel_constraint=kernel_constraint)(x)
    x = BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=synchronized, statistics_shift=statistics_shift,
                           name=f"{name}_bn{index}", dtype=dtype)(x)
    return layers.LeakyReLU(negative_slope=0.2, name=f"{name}_act{index}", dtype=dtype)(x)


@keras.saving.register_keras_serializable(package="dnadet_tf")
class Backbone(keras.Model):
    """The DNA-Det encoder: (N, H, W, 3) float pixels in [-1, 1] -> (N, 8 * stage-1 width) pooled feature.

    Args:
      width: multiplier of the stage widths (1.0 = the paper's 64..512).
      synchronized_bn: synchronise BatchNorm statistics across replicas under tf.distribute.
      input_size: fixed spatial size, or None for any size (the network is fully convolutional).
      dtype: dtype policy of every layer (e.g. "float32", "mixed_bfloat16"); None = Keras' global policy.
      zero_mean_stem: train the first convolution (`stage1_conv1`) under `ZeroMeanKernel`, so that
        every one of its filters is a high-pass filter of one colour channel; the weights stay plain
        convolution weights (exports and the web app see no difference).
      statistics_shift: standard deviation of the random per-channel scale and offset that training
        puts on the BatchNorm outputs of stages `SHIFT_FIRST_STAGE`-4 (`BatchNormalization`); 0: none.

    >>> import numpy as np
    >>> from dnadet_tf.model import Backbone
    >>> tuple(Backbone(width=0.0625)(np.zeros((2, 64, 64, 3), "float32")).shape)
    (2, 32)
    """

    def __init__(self, width=1.0, synchronized_bn=False, input_size=None, dtype=None, zero_mean_stem=False,
                 statistics_shift=0.0, name="dnadet_backbone", **kwargs):
        inputs = keras.Input(shape=(input_size, input_size, 3), name="pixels")
        x = inputs
        for stage, filters in enumerate(stage_widths(width), start=1):
            stem_constraint = ZeroMeanKernel() if zero_mean_stem and stage == 1 else None
            shift = statistics_shift if stage >= SHIFT_FIRST_STAGE else 0.0
            x = _conv_block(x, filters, 4, 2, f"stage{stage}", 1, synchronized_bn, dtype, stem_constraint,
                            statistics_shift=shift)
            x = _conv_block(x, filters, 3, 1, f"stage{stage}", 2, synchronized_bn, dtype, statistics_shift=shift)
        feature = layers.GlobalAveragePooling2D(name=FEATURE_LAYER, dtype=dtype)(x)
        super().__init__(inputs, feature, name=name, **kwargs)
        self.width = float(width)
        self.layer_dtype = dtype if dtype is None or isinstance(dtype, str) else dtype.name
        self.synchronized_bn = bool(synchronized_bn)
        self.input_size = input_size
        self.zero_mean_stem = bool(zero_mean_stem)
        self.statistics_shift = float(statistics_shift)

    @property
    def feature_dim(self):
        return int(self.output.shape[-1])

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "width": self.width,
                "synchronized_bn": self.synchronized_bn, "input_size": self.input_size,
                "dtype": self.layer_dtype, "zero_mean_stem": self.zero_mean_stem,
                "statistics_shift": self.statistics_shift}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="dnadet_tf")
class ReplicaDropout(layers.Dropout):
    """Dropout whose masks differ from replica to replica of a distributed step, as one device's masks differ
    from image to image: (N, ...) -> (N, ...).

    Keras' Dropout draws from one seed generator, which every replica of a `tf.distribute` strategy shares, so
    each replica drew the same mask for its share of the batch. Here a replica beyond the first folds its id
    into the seed (stateless dropout); with one replica, or at inference, it is Keras' Dropout exactly.
    """

    def call(self, inputs, training=False):
        context = tf.distribute.get_replica_context()
        if not training or self.rate <= 0 or context is None or context.num_replicas_in_sync == 1:
            return super().call(inputs, training=training)
        seed = tf.cast(self.seed_generator.next(), tf.int64)
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(context.replica_id_in_sync_group, tf.int64))
        return tf.nn.experimental.stateless_dropout(inputs, self.rate, seed, noise_shape=self.noise_shape)


@keras.saving.register_keras_serializable(package="dnadet_tf")
class Classifier(keras.Model):
    """The attribution task: a `Backbone` continued by Dropout -> Dense(num_classes).

    `model(pixels)`: (N, S, S, 3) preprocessed pixels in [-1, 1] -> (N, C) float32 logits.
    `model.predict(images)`: (N, H, W, 3) decoded images in [0, 255] (any size the
    preprocessing accepts) -> (N, C) probabilities, the preprocessing applied in the step.

    With `prototypes_per_class` G > 1 the Dense layer has G * C units (unit g * C + c: the c-th class's g-th
    logit) and a class's logit is the largest of its G (Reshape (G, C) -> max over G): what `adapt --labeled`
    writes when its labeled images come in several groups (contents), one class mean per group.

    Args:
      backbone: a `Backbone`; its graph is continued, so its layers are the classifier's first layers.
      num_classes: number of output logits.
      dropout: dropout rate before the last Dense layer.
      class_names: names of the classes in label order (default "0", "1", ...).
      preprocessing: a `PreprocessConfig` (or its dict) that turns decoded images into pixels.
      calibration: the config of an attached `Calibration` (its weights load with the model), or None.
      prototypes_per_class: G, the logits each class takes the largest of (default 1: the plain Dense head).

    >>> import numpy as np
    >>> from dnadet_tf.model import Backbone, Classifier
    >>> model = Classifier(Backbone(width=0.0625), 3, class_names=["real", "a", "b"])
    >>> tuple(model(np.zeros((2, 64, 64, 3), "float32")).shape)
    (2, 3)
    >>> model.predict(np.zeros((1, 200, 300, 3), "uint8"), verbose=0).shape  # 128 px crop, 512 px resize
    (1, 3)
    >>> tuple(Classifier(Backbone(width=0.0625), 3, prototypes_per_class=2)(np.zeros((2, 64, 64, 3))).shape)
    (2, 3)
    """

    def __init__(self, backbone, num_classes, dropout=0.2, class_names=None, preprocessing=None, calibration=None,
                 prototypes_per_class=1, name="dnadet", **kwargs):
        prototypes_per_class = int(prototypes_per_class)
        if prototypes_per_class < 1:
            raise ValueError(f"prototypes_per_class: expected an integer >= 1, received {prototypes_per_class}.")
        x = ReplicaDropout(dropout, name="dropout", dtype=backbone.layer_dtype)(backbone.output)
        logits = layers.Dense(num_classes * prototypes_per_class, dtype="float32", name=LOGITS_LAYER)(x)
        if prototypes_per_class > 1:
            logits = layers.Reshape((prototypes_per_class, num_classes), dtype="float32",
                                    name=PROTOTYPE_LOGITS_LAYER)(logits)
            logits = layers.GlobalMaxPooling1D(dtype="float32", name=CLASS_MAXIMUM_LAYER)(logits)
        super().__init__(backbone.input, logits, name=name, **kwargs)
        class_names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(num_classes)]
        if len(class_names) != num_classes:
            raise ValueError(f"class_names: expected {num_classes} names, received {len(class_names)}.")
        if isinstance(preprocessing, dict):
            preprocessing = PreprocessConfig.from_dict(preprocessing)
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.prototypes_per_class = prototypes_per_class
        self.dropout_rate = float(dropout)
        self.class_names = class_names
        self.preprocessing = preprocessing or PreprocessConfig()
        self.calibration = None
        if calibration:
            self.calibration = Calibration.from_config(calibration)

    def head_logits(self, feature):
        """Pooled features (N, D) -> (N, C) logits through the head's own layers (dropout, the identity at
        inference, left out): the logits Dense layer, then with several prototypes per class its Reshape and
        maximum."""
        logits = self.get_layer(LOGITS_LAYER)(feature)
        if self.prototypes_per_class > 1:
            logits = self.get_layer(CLASS_MAXIMUM_LAYER)(self.get_layer(PROTOTYPE_LOGITS_LAYER)(logits))
        return logits

    def calibrate(self, statistics):
        """Attaches (or replaces) a `Calibration` holding `statistics` (an `openset.OpenSetStatistics`)."""
        calibration = Calibration(self.num_classes, self.backbone.feature_dim, statistics.score,
                                  class_radii=statistics.class_radii is not None,
                                  means_per_class=statistics.means_per_class, name="calibration")
        calibration.set_statistics(statistics)
        self.calibration = calibration
        return calibration

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "num_classes": self.num_classes, "dropout": self.dropout_rate,
                "prototypes_per_class": self.prototypes_per_class,
                "class_names": list(self.class_names), "preprocessing": self.preprocessing.to_dict(),
                "calibration": self.calibration.get_config() if self.calibration is not None else None}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

    def preprocess(self, images):
        """Decoded images (N, H, W, 3) or one (H, W, 3), values in [0, 255] -> (N, S, S, 3) float32 pixels."""
        images = tf.convert_to_tensor(images)
        if images.shape.rank == 3:
            images = images[None]
        size = self.preprocessing.resize2
        return tf.map_fn(lambda image: preprocess_image(image, self.preprocessing), images,
                         fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))

    def predict_step(self, data):
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return probabilities(self, self.preprocess(images))


def build_projection_head(feature_dim, hidden_dim=512, out_dim=128, dtype=None, name="projection_head"):
    """Dense(hidden) -> ReLU -> Dense(out) -> L2-normalise: (N, feature_dim) -> (N, out_dim) float32.

    Used only for the contrastive loss; not part of saved or exported classifiers.
    `dtype` is the dtype policy of the Dense layers; the normalisation computes in float32.
    """
    return keras.Sequential(
        [
            keras.Input(shape=(feature_dim,)),
            layers.Dense(hidden_dim, name="proj_dense1", dtype=dtype),
            layers.ReLU(name="proj_relu", dtype=dtype),
            layers.Dense(out_dim, name="proj_dense2", dtype=dtype),
            layers.UnitNormalization(name="proj_l2", dtype="float32"),
        ],
        name=name,
    )


def precision_copy(classifier, precision):
    """`classifier` itself when its backbone already computes as `precision` ("float32" or
    "mixed_bfloat16", a Keras dtype policy), else the same network rebuilt with that policy and
    given the same weights (float32 variables either way; the logits stay float32)."""
    wanted = keras.dtype_policies.get(precision).compute_dtype
    if keras.dtype_policies.get(classifier.backbone.layer_dtype or keras.config.dtype_policy()).compute_dtype == wanted:
        return classifier
    config = classifier.get_config()
    config["backbone"] = Backbone(**{**classifier.backbone.get_config(), "dtype": precision})
    clone = Classifier(**config)
    clone.set_weights(classifier.get_weights())
    return clone


def load_classifier(path, class_names=None, preprocessing=None):
    """A `Classifier` from a `.keras` file (safe mode, not compiled).

    A file written before the model classes existed holds a plain functional
    model with the same layers and no class names or preprocessing: it is
    converted, taking `class_names` and `preprocessing` (a PreprocessConfig)
    from the caller (its run dir's labels.txt and config.json).
    """
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    if isinstance(model, Classifier):
        return model
    if class_names is None:
        raise ValueError(f"class_names: expected the class names of the legacy model {path}, received None.")
    first = model.get_layer("stage1_conv1")
    backbone = Backbone(width=first.filters / STAGE_WIDTHS[0], dtype=first.dtype_policy.name)
    if backbone.get_layer("stage1_conv1").filters != first.filters:
        raise ValueError(f"{path}: stage1 width {first.filters} is no width multiplier of {STAGE_WIDTHS[0]}.")
    converted = Classifier(backbone, int(model.output.shape[-1]), model.get_layer("dropout").rate,
                           class_names, preprocessing, name=model.name)
    converted.set_weights(model.get_weights())
    return converted


def _named_weights(model):
    """{"layer/weight": variable} for every weight of `model`, in layer order."""
    return {f"{layer.name}/{weight.name}": weight for layer in model.layers for weight in layer.weights}


def encoder_weight_names(classifier):
    """The "layer/weight" names of `classifier`'s encoder (backbone) weights, as `transfer_matching_weights` names
    the weights it loads."""
    return set(_named_weights(classifier.backbone))


def encoder_mismatch(source, target):
    """The first backbone weight of classifier `target` that `source` lacks or holds in another shape:
    (name, expected shape, received shape or None), or None when the encoders match.
    Head weights (after the pooled feature) do not count."""
    source_weights = _named_weights(source)
    for name, weight in _named_weights(target.backbone).items():
        expected = tuple(weight.shape)
        match = source_weights.get(name)
        if match is None or tuple(match.shape) != expected:
            return name, expected, None if match is None else tuple(match.shape)
    return None


def transfer_matching_weights(source, target, skip_layers=()):
    """Copies every weight of `source` whose layer name and shape match into `target`, but those of the layers
    named in `skip_layers`.

    Returns (loaded, skipped): lists of weight paths ("layer/weight").
    """
    source_weights = _named_weights(source)
    loaded, skipped = [], []
    for key, weight in _named_weights(target).items():
        match = source_weights.get(key)
        if match is not None and tuple(match.shape) == tuple(weight.shape) and key.split("/")[0] not in skip_layers:
            weight.assign(match)
            loaded.append(key)
        else:
            skipped.append(key)
    return loaded, skipped

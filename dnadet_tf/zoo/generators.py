"""Small conditional generators of distinct architectures, and the patch discriminator.

Every generator maps a low-resolution view of a photo crop plus a full-resolution
noise map to an image `scale` times larger, in [-1, 1] (tanh):

    inputs  = [lowres (N, h, w, 3) in [-1, 1], noise (N, h*scale, w*scale, 1) ~ N(0, 1)]
    outputs = (N, h*scale, w*scale, 3)

`scale` is 4 (two x2 upsampling stages) by default, so a 32x32 view gives a 128x128
image. The models are fully convolutional: they train on smaller crops than they
generate. The families mirror the architecture components of DNA-Det's Table 3
(block type, skip, upsampling, normalisation), which is what leaves the traces the
attributor learns:

| family     | block              | skip      | upsampling             | norm             |
|------------|--------------------|-----------|------------------------|------------------|
| progan     | DCGAN-style convs  | none      | nearest                | pixel norm       |
| mmdgan     | ResNet up-block    | up + conv | depth-to-space         | batch norm       |
| sngan      | ResNet up-block    | up + conv | nearest                | batch norm       |
| infomaxgan | ResNet up-block    | up + conv | bilinear               | batch norm       |
| dcgan      | conv               | none      | transposed conv 4x4/2  | batch norm       |
| stylegan   | modulated convs    | none      | bilinear + [1,2,1] blur| demodulation     |
|            | + per-pixel noise  |           |                        |                  |
| cyclegan   | ResNet enc.-dec.   | residual  | transposed conv 3x3/2  | batch norm       |

Custom layers are registered Keras layers with `get_config`; the zoo itself saves
weights only (`.weights.h5`) and rebuilds the architecture from `build_generator`.
Layers without a seed draw their initial values from Keras' global seed, which the
trainer sets per model with `keras.utils.set_random_seed`.
"""
import keras
import tensorflow as tf
from keras import layers

PAPER_FAMILIES = ("progan", "mmdgan", "sngan", "infomaxgan")
WILD_FAMILIES = ("dcgan", "stylegan", "cyclegan")
FAMILIES = PAPER_FAMILIES + WILD_FAMILIES

_PACKAGE = "dnadet_tf_zoo"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PixelNorm(layers.Layer):
    """ProGAN's pixelwise feature normalisation: x / sqrt(mean over channels of x^2 + eps)."""

    def __init__(self, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, x):
        return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=-1, keepdims=True) + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DepthToSpace(layers.Layer):
    """Sub-pixel rearrangement (N, h, w, c*b*b) -> (N, h*b, w*b, c)."""

    def __init__(self, block_size=2, **kwargs):
        super().__init__(**kwargs)
        self.block_size = block_size

    def call(self, x):
        return tf.nn.depth_to_space(x, self.block_size)

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpaceToDepth(layers.Layer):
    """Inverse of DepthToSpace: (N, h*b, w*b, c) -> (N, h, w, c*b*b)."""

    def __init__(self, block_size=2, **kwargs):
        super().__init__(**kwargs)
        self.block_size = block_size

    def call(self, x):
        return tf.nn.space_to_depth(x, self.block_size)

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Blur(layers.Layer):
    """Fixed separable [1, 2, 1] low-pass filter per channel, reflect padding (StyleGAN's blur)."""

    def call(self, x):
        taps = tf.constant([1.0, 2.0, 1.0], dtype=x.dtype) / 4.0
        kernel = taps[:, None] * taps[None, :]
        channels = tf.shape(x)[-1]
        kernel = tf.tile(kernel[:, :, None, None], tf.stack([1, 1, channels, 1]))
        x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
        return tf.nn.depthwise_conv2d(x, kernel, strides=[1, 1, 1, 1], padding="VALID")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NoiseInjection(layers.Layer):
    """Adds per-pixel noise times a learned per-channel strength (StyleGAN).

    Called on [features (N, h, w, c), noise (N, h*stride, w*stride, 1)]: the noise map
    is subsampled with `stride` so every resolution gets its own independent pixels.
    """

    def __init__(self, stride=1, initial_strength=0.05, **kwargs):
        super().__init__(**kwargs)
        self.stride = stride
        self.initial_strength = initial_strength

    def build(self, input_shape):
        channels = input_shape[0][-1]
        self.strength = self.add_weight(
            name="strength",
            shape=(channels,),
            initializer=keras.initializers.Constant(self.initial_strength),
        )

    def call(self, inputs):
        x, noise = inputs
        s = self.stride
        # Offset the subsampling per stride so the maps of different resolutions are disjoint pixels.
        offset = s // 2
        return x + self.strength * noise[:, offset::s, offset::s, :]

    def get_config(self):
        return {**super().get_config(), "stride": self.stride, "initial_strength": self.initial_strength}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ModulatedConv2D(layers.Layer):
    """StyleGAN2's modulated convolution with weight demodulation.

    Called on [x (N, h, w, cin), style (N, d)]: an affine map of the style scales the
    input channels per sample, a shared kernel convolves, and (with `demodulate`) each
    output channel is rescaled to unit expected variance. Scaling the input instead of
    the kernel is mathematically the same as StyleGAN2's per-sample kernels.
    """

    def __init__(self, filters, kernel_size=3, demodulate=True, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.epsilon = epsilon

    def build(self, input_shape):
        x_shape, style_shape = input_shape
        cin = x_shape[-1]
        k = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel", shape=(k, k, cin, self.filters), initializer="he_normal"
        )
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
        self.affine_kernel = self.add_weight(
            name="affine_kernel", shape=(style_shape[-1], cin), initializer="glorot_uniform"
        )
        self.affine_bias = self.add_weight(name="affine_bias", shape=(cin,), initializer="ones")

    def call(self, inputs):
        x, style = inputs
        s = tf.matmul(style, self.affine_kernel) + self.affine_bias  # (N, cin)
        y = tf.nn.conv2d(x * s[:, None, None, :], self.kernel, strides=1, padding="SAME")
        if self.demodulate:
            energy = tf.reduce_sum(tf.square(self.kernel), axis=[0, 1])  # (cin, filters)
            y = y * tf.math.rsqrt(tf.matmul(tf.square(s), energy) + self.epsilon)[:, None, None, :]
        return y + self.bias

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "demodulate": self.demodulate,
            "epsilon": self.epsilon,
        }


def _conv(filters, kernel_size, name, strides=1):
    return layers.Conv2D(filters, kernel_size, strides=strides, padding="same", name=name)


def _bn(name):
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def _stem(lowres, noise, scale, filters, name):
    """Shared entry: low-res pixels + the noise map folded to low resolution -> features."""
    folded = SpaceToDepth(scale, name=f"{name}_noise_fold")(noise)
    x = layers.Concatenate(name=f"{name}_stem_concat")([lowres, folded])
    return _conv(filters, 3, f"{name}_stem_conv")(x)


def _upsample(x, kind, name, filters=None):
    if kind == "nearest":
        return layers.UpSampling2D(2, interpolation="nearest", name=name)(x)
    if kind == "bilinear":
        return layers.UpSampling2D(2, interpolation="bilinear", name=name)(x)
    if kind == "depth_to_space":
        x = _conv(4 * filters, 3, f"{name}_subpixel_conv")(x)
        return DepthToSpace(2, name=name)(x)
    raise ValueError(f"unknown upsampling {kind!r}")


def _to_rgb(x, name, kernel_size=3):
    x = _conv(3, kernel_size, f"{name}_to_rgb")(x)
    return layers.Activation("tanh", name=f"{name}_tanh", dtype="float32")(x)


def _progan(lowres, noise, widths, scale, name):
    x = _stem(lowres, noise, scale, widths[0], name)
    x = layers.LeakyReLU(0.2, name=f"{name}_stem_act")(x)
    x = PixelNorm(name=f"{name}_stem_pn")(x)
    for i, filters in enumerate(widths[1:], start=1):
        x = _upsample(x, "nearest", f"{name}_up{i}")
        for j in (1, 2):
            x = _conv(filters, 3, f"{name}_b{i}_conv{j}")(x)
            x = layers.LeakyReLU(0.2, name=f"{name}_b{i}_act{j}")(x)
            x = PixelNorm(name=f"{name}_b{i}_pn{j}")(x)
    return _to_rgb(x, name, kernel_size=1)


def _resnet(lowres, noise, widths, scale, name, upsampling):
    """SNGAN-style generator: pre-activation ResNet up-blocks, up + 1x1 conv on the skip."""
    x = _stem(lowres, noise, scale, widths[0], name)
    for i, filters in enumerate(widths[1:], start=1):
        p = f"{name}_b{i}"
        h = _bn(f"{p}_bn1")(x)
        h = layers.ReLU(name=f"{p}_act1")(h)
        if upsampling == "depth_to_space":
            h = _upsample(h, upsampling, f"{p}_up", filters)
        else:
            h = _upsample(h, upsampling, f"{p}_up")
            h = _conv(filters, 3, f"{p}_conv1")(h)
        h = _bn(f"{p}_bn2")(h)
        h = layers.ReLU(name=f"{p}_act2")(h)
        h = _conv(filters, 3, f"{p}_conv2")(h)
        if upsampling == "depth_to_space":
            s = _conv(4 * filters, 1, f"{p}_skip_conv")(x)
            s = DepthToSpace(2, name=f"{p}_skip_up")(s)
        else:
            s = _upsample(x, upsampling, f"{p}_skip_up")
            s = _conv(filters, 1, f"{p}_skip_conv")(s)
        x = layers.Add(name=f"{p}_add")([h, s])
    x = _bn(f"{name}_out_bn")(x)
    x = layers.ReLU(name=f"{name}_out_act")(x)
    return _to_rgb(x, name)


def _dcgan(lowres, noise, widths, scale, name):
    x = _stem(lowres, noise, scale, widths[0], name)
    x = layers.ReLU(name=f"{name}_stem_act")(x)
    for i, filters in enumerate(widths[1:], start=1):
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", name=f"{name}_b{i}_deconv")(x)
        x = _bn(f"{name}_b{i}_bn")(x)
        x = layers.ReLU(name=f"{name}_b{i}_act")(x)
    return _to_rgb(x, name)


def _stylegan(lowres, noise, widths, scale, name):
    x = _stem(lowres, noise, scale, widths[0], name)
    x = layers.LeakyReLU(0.2, name=f"{name}_stem_act")(x)
    # Mapping network: a global style vector from the pooled content features.
    w = layers.GlobalAveragePooling2D(name=f"{name}_map_pool")(x)
    for j in (1, 2):
        w = layers.Dense(widths[0], name=f"{name}_map_fc{j}")(w)
        w = layers.LeakyReLU(0.2, name=f"{name}_map_act{j}")(w)
    stride = scale
    for i, filters in enumerate(widths[1:], start=1):
        p = f"{name}_b{i}"
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{p}_up")(x)
        x = Blur(name=f"{p}_blur")(x)
        stride //= 2
        for j in (1, 2):
            x = ModulatedConv2D(filters, 3, name=f"{p}_modconv{j}")([x, w])
            x = NoiseInjection(stride=stride, name=f"{p}_noise{j}")([x, noise])
            x = layers.LeakyReLU(0.2, name=f"{p}_act{j}")(x)
    rgb = ModulatedConv2D(3, 1, demodulate=False, name=f"{name}_to_rgb")([x, w])
    return layers.Activation("tanh", name=f"{name}_tanh", dtype="float32")(rgb)


def _cyclegan(lowres, noise, widths, scale, name, res_blocks=2):
    """CycleGAN's ResNet generator on the (bilinearly) enlarged view: c7s1, d, d, R x n, u, u, c7s1.

    With batch norm (CycleGAN's `--norm batch` option): instance norm erases each image's
    channel means, so a generator that must keep the input's colours cannot learn with it.
    """
    norm = _bn
    big = layers.UpSampling2D(scale, interpolation="bilinear", name=f"{name}_enlarge")(lowres)
    x = layers.Concatenate(name=f"{name}_in_concat")([big, noise])
    c = widths[-2]
    x = _conv(c, 7, f"{name}_c7_in")(x)
    x = layers.ReLU(name=f"{name}_c7_in_act")(norm(f"{name}_c7_in_norm")(x))
    downs = [c * 2, c * 2]
    for i, filters in enumerate(downs, start=1):
        x = _conv(filters, 3, f"{name}_down{i}", strides=2)(x)
        x = layers.ReLU(name=f"{name}_down{i}_act")(norm(f"{name}_down{i}_norm")(x))
    for r in range(1, res_blocks + 1):
        p = f"{name}_res{r}"
        h = _conv(downs[-1], 3, f"{p}_conv1")(x)
        h = layers.ReLU(name=f"{p}_act")(norm(f"{p}_norm1")(h))
        h = norm(f"{p}_norm2")(_conv(downs[-1], 3, f"{p}_conv2")(h))
        x = layers.Add(name=f"{p}_add")([x, h])
    for i, filters in enumerate([downs[0], c], start=1):
        x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", name=f"{name}_up{i}")(x)
        x = layers.ReLU(name=f"{name}_up{i}_act")(norm(f"{name}_up{i}_norm")(x))
    x = _conv(3, 7, f"{name}_c7_out")(x)
    return layers.Activation("tanh", name=f"{name}_tanh", dtype="float32")(x)


def generator_widths(width, scale=4):
    """Channel widths from the low-resolution stem to the output resolution, halving per x2 stage."""
    stages = scale.bit_length() - 1
    return tuple(max(4, int(width) >> i) for i in range(stages + 1))


def build_generator(family, width=32, scale=4, name=None):
    """Builds one conditional generator.

    Args:
      family: one of FAMILIES.
      width: channels at the low-resolution stem; each x2 stage halves it (at least 4).
      scale: total upsampling factor, a power of two >= 2 (4: 32x32 view -> 128x128 image).
      name: model name (default: the family).

    Returns:
      A `keras.Model` taking [lowres (N, h, w, 3), noise (N, h*scale, w*scale, 1)] and
      returning (N, h*scale, w*scale, 3) float32 in [-1, 1].
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown generator family {family!r}; expected one of {', '.join(FAMILIES)}")
    if scale < 2 or scale & (scale - 1):
        raise ValueError(f"scale must be a power of two >= 2, received {scale}")
    widths = generator_widths(width, scale)
    lowres = keras.Input(shape=(None, None, 3), name="lowres")
    noise = keras.Input(shape=(None, None, 1), name="noise")
    builders = {
        "progan": _progan,
        "mmdgan": lambda *a: _resnet(*a, upsampling="depth_to_space"),
        "sngan": lambda *a: _resnet(*a, upsampling="nearest"),
        "infomaxgan": lambda *a: _resnet(*a, upsampling="bilinear"),
        "dcgan": _dcgan,
        "stylegan": _stylegan,
        "cyclegan": _cyclegan,
    }
    output = builders[family](lowres, noise, widths, scale, family)
    return keras.Model([lowres, noise], output, name=name or family)


def build_discriminator(width=32, layers_count=3, name="patch_discriminator"):
    """PatchGAN-style discriminator: strided 4x4 convs -> a grid of real/fake logits.

    (N, H, W, 3) in [-1, 1] -> (N, H / 2**layers_count, W / 2**layers_count, 1) float32 logits.
    """
    image = keras.Input(shape=(None, None, 3), name="image")
    x = image
    for i in range(layers_count):
        x = layers.Conv2D(min(width << i, 8 * width), 4, strides=2, padding="same", name=f"d_conv{i + 1}")(x)
        x = layers.LeakyReLU(0.2, name=f"d_act{i + 1}")(x)
    logits = layers.Conv2D(1, 3, padding="same", name="d_logits", dtype="float32")(x)
    return keras.Model(image, logits, name=name)

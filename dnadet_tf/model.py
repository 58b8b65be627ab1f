"""The DNA-Det network as Keras layers.

Encoder: four stages of
  ZeroPadding(1) -> Conv 4x4 stride 2 -> BatchNorm -> LeakyReLU(0.2)
  ZeroPadding(1) -> Conv 3x3 stride 1 -> BatchNorm -> LeakyReLU(0.2)
with widths 64, 128, 256, 512 (times a width multiplier), then global average
pooling. Padding is explicit and symmetric, as in the authors' PyTorch code,
so their weights could be loaded one day. Total stride 16.

Every layer is a stock Keras layer except `L2Normalize`, which is registered
for serialization, so `best.keras` loads with plain Keras.
"""
import keras
from keras import layers

STAGE_WIDTHS = (64, 128, 256, 512)
DEFAULT_GRADCAM_LAYER = "stage2_act2"
FEATURE_LAYER = "feature"
LOGITS_LAYER = "logits"


def stage_widths(width_multiplier):
    """Channel widths of the four stages for a width multiplier, at least 4 each."""
    return tuple(max(4, int(round(w * width_multiplier))) for w in STAGE_WIDTHS)


@keras.saving.register_keras_serializable(package="dnadet_tf")
class L2Normalize(layers.Layer):
    """Scales each row to unit L2 norm: (N, D) -> (N, D)."""

    def __init__(self, axis=-1, epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis
        self.epsilon = epsilon

    def call(self, inputs):
        return keras.ops.normalize(inputs, axis=self.axis, order=2, epsilon=self.epsilon)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}


def _conv_block(x, filters, kernel_size, strides, name, index, synchronized):
    x = layers.ZeroPadding2D(padding=1, name=f"{name}_pad{index}")(x)
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding="valid", use_bias=False, name=f"{name}_conv{index}"
    )(x)
    x = layers.BatchNormalization(
        momentum=0.9, epsilon=1e-5, synchronized=synchronized, name=f"{name}_bn{index}"
    )(x)
    return layers.LeakyReLU(negative_slope=0.2, name=f"{name}_act{index}")(x)


def build_classifier(
    num_classes, width_multiplier=1.0, dropout=0.2, input_size=None, synchronized_bn=False, name="dnadet"
):
    """Builds the encoder plus classification head as one flat functional model.

    Args:
      num_classes: number of output logits.
      width_multiplier: scales the stage widths (1.0 = the paper's 64..512).
      dropout: dropout rate before the last Dense layer.
      input_size: fixed spatial size, or None for any size (the model is fully convolutional).
      synchronized_bn: synchronise BatchNorm statistics across replicas under tf.distribute.
      name: model name.

    Returns:
      A `keras.Model` mapping (N, H, W, 3) float pixels in [-1, 1] to (N, num_classes)
      float32 logits. Layer names: `stage{s}_{pad,conv,bn,act}{1,2}` for the encoder
      (s = 1..4), `feature` (pooled, (N, 8 * stage-1 width)), `dropout`, `logits`.
    """
    inputs = keras.Input(shape=(input_size, input_size, 3), name="pixels")
    x = inputs
    for stage, filters in enumerate(stage_widths(width_multiplier), start=1):
        x = _conv_block(x, filters, 4, 2, f"stage{stage}", 1, synchronized_bn)
        x = _conv_block(x, filters, 3, 1, f"stage{stage}", 2, synchronized_bn)
    feature = layers.GlobalAveragePooling2D(name=FEATURE_LAYER)(x)
    x = layers.Dropout(dropout, name="dropout")(feature)
    logits = layers.Dense(num_classes, dtype="float32", name=LOGITS_LAYER)(x)
    return keras.Model(inputs, logits, name=name)


def encoder_of(classifier):
    """The classifier's encoder as a model sharing its weights: pixels -> pooled feature."""
    return keras.Model(classifier.input, classifier.get_layer(FEATURE_LAYER).output, name="encoder")


def build_projection_head(feature_dim, hidden_dim=512, out_dim=128, name="projection_head"):
    """Dense(hidden) -> ReLU -> Dense(out) -> L2-normalise: (N, feature_dim) -> (N, out_dim).

    Used only for the contrastive loss; not part of saved or exported classifiers.
    """
    return keras.Sequential(
        [
            keras.Input(shape=(feature_dim,)),
            layers.Dense(hidden_dim, name="proj_dense1"),
            layers.ReLU(name="proj_relu"),
            layers.Dense(out_dim, name="proj_dense2"),
            L2Normalize(name="proj_l2", dtype="float32"),
        ],
        name=name,
    )


def feature_dim_of(classifier):
    """Width of the pooled feature of a classifier built by `build_classifier`."""
    return int(classifier.get_layer(FEATURE_LAYER).output.shape[-1])


def classifier_from_encoder(classifier_source, num_classes, **kwargs):
    """A new classifier with `num_classes` outputs that starts from the weights of
    `classifier_source` wherever the shapes match (the head is re-initialised).

    Returns (model, loaded_names, skipped_names).
    """
    model = build_classifier(num_classes, **kwargs)
    loaded, skipped = transfer_matching_weights(classifier_source, model)
    return model, loaded, skipped


def _named_weights(model):
    """{"layer/weight": variable} for every weight of `model`, in layer order."""
    return {f"{layer.name}/{weight.name}": weight for layer in model.layers for weight in layer.weights}


def encoder_weight_names(classifier):
    """Names ("layer/weight") of the encoder's weights: every layer up to the pooled feature."""
    names = []
    for layer in classifier.layers:
        names.extend(f"{layer.name}/{weight.name}" for weight in layer.weights)
        if layer.name == FEATURE_LAYER:
            break
    return names


def encoder_mismatch(source, target):
    """The first encoder weight of `target` that `source` lacks or holds in another shape:
    (name, expected shape, received shape or None), or None when the encoders match.
    Head weights (after the pooled feature) do not count."""
    source_weights = _named_weights(source)
    target_weights = _named_weights(target)
    for name in encoder_weight_names(target):
        expected = tuple(target_weights[name].shape)
        match = source_weights.get(name)
        if match is None or tuple(match.shape) != expected:
            return name, expected, None if match is None else tuple(match.shape)
    return None


def transfer_matching_weights(source, target):
    """Copies every weight of `source` whose layer name and shape match into `target`.

    Returns (loaded, skipped): lists of weight paths ("layer/weight").
    """
    source_weights = _named_weights(source)
    loaded, skipped = [], []
    for key, weight in _named_weights(target).items():
        match = source_weights.get(key)
        if match is not None and tuple(match.shape) == tuple(weight.shape):
            weight.assign(match)
            loaded.append(key)
        else:
            skipped.append(key)
    return loaded, skipped

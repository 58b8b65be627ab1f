"""DNA-Det's losses: patch-wise supervised contrastive loss and the learned
weighting of the contrastive and cross-entropy losses; and the content-alignment
loss (`content_align`, not the paper's)."""
import keras
import tensorflow as tf


def classification_cross_entropy(labels, logits, ce_input="logits"):
    """Per-sample cross-entropy of the classification head.

    Args:
      labels: (N,) integer labels.
      logits: (N, C) float logits.
      ce_input: `logits` (the method: softmax cross-entropy of the logits) or
        `probabilities` (the authors' release: its model ends in a softmax and
        `nn.CrossEntropyLoss` applies another one, so the loss reads
        probabilities; it is bounded below by about log(C - 1 + e) - 1).

    Returns:
      (N,) float32 losses.
    """
    logits = tf.cast(logits, tf.float32)
    if ce_input == "probabilities":
        logits = tf.nn.softmax(logits)
    elif ce_input != "logits":
        raise ValueError(f"ce_input: expected 'logits' or 'probabilities', received {ce_input!r}.")
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)


def supervised_contrastive_loss(features, labels, temperature=0.07, base_temperature=0.07):
    """Supervised contrastive loss (Khosla et al. 2020), "all" anchors.

    Every sample is an anchor; its positives are all *other* samples with the
    same label; the denominator runs over all other samples.

    Args:
      features: (N, D) float, L2-normalised embeddings.
      labels: (N,) integer labels.
      temperature: softmax temperature.
      base_temperature: the loss is scaled by temperature / base_temperature.

    Returns:
      Per-anchor losses, shape (N,). Anchors without any positive get 0.
    """
    features = tf.cast(features, tf.float32)
    labels = tf.reshape(labels, (-1, 1))
    n = tf.shape(features)[0]
    logits = tf.matmul(features, features, transpose_b=True) / temperature
    # Subtract the row max (a constant per row) for numerical stability.
    logits = logits - tf.stop_gradient(tf.reduce_max(logits, axis=1, keepdims=True))
    not_self = 1.0 - tf.eye(n, dtype=tf.float32)
    positives = tf.cast(tf.equal(labels, tf.transpose(labels)), tf.float32) * not_self
    exp_logits = tf.exp(logits) * not_self
    log_prob = logits - tf.math.log(tf.reduce_sum(exp_logits, axis=1, keepdims=True))
    num_positives = tf.reduce_sum(positives, axis=1)
    mean_log_prob_pos = tf.math.divide_no_nan(tf.reduce_sum(positives * log_prob, axis=1), num_positives)
    return -(temperature / base_temperature) * mean_log_prob_pos


def content_alignment_loss(activations, in_content, other_content, epsilon=1e-5):
    """How far the activation statistics of two groups of images lie apart: the real training images
    (`in_content`) and real photos of other content (`other_content`, the extra real crops).

    For every channel of every layer, each group's mean and standard deviation over all its images'
    positions; the squared gaps of both, divided by the channel's variance over the whole batch (held
    constant: the loss measures the gap in the batch's own units and cannot shrink by scaling the
    activations), averaged over channels and then over layers. A model trained to keep it small
    normalises the traces it reads with statistics that do not move with the content.

    Args:
      activations: list of (N, H, W, C) activations, one per layer (any float dtype).
      in_content, other_content: (N,) bool masks of the two groups.

    Returns:
      scalar float32; 0 when either group is empty.
    """
    return alignment_of_statistics(image_statistics(activations), in_content, other_content, epsilon)


def image_statistics(activations):
    """Per layer, each image's (mean (N, C), mean square (N, C)) of its channels over its positions, float32:
    all `content_alignment_loss` needs of (N, H, W, C) activations, small enough to gather across replicas."""
    statistics = []
    for layer in activations:
        layer = tf.cast(layer, tf.float32)
        statistics.append((tf.reduce_mean(layer, axis=[1, 2]), tf.reduce_mean(tf.square(layer), axis=[1, 2])))
    return statistics


def alignment_of_statistics(statistics, in_content, other_content, epsilon=1e-5):
    """`content_alignment_loss` from `image_statistics` of its activations (per layer (means, mean squares),
    each (N, C)) and the two (N,) masks; the batch's variance of a channel is that of all N images' positions."""
    first = tf.cast(in_content, tf.float32)
    second = tf.cast(other_content, tf.float32)
    both_present = tf.cast((tf.reduce_sum(first) > 0) & (tf.reduce_sum(second) > 0), tf.float32)

    def moments(values, mean_square, weights):
        weights = weights[:, None] / tf.maximum(tf.reduce_sum(weights), 1.0)
        mean = tf.reduce_sum(weights * values, axis=0)
        variance = tf.nn.relu(tf.reduce_sum(weights * mean_square, axis=0) - tf.square(mean))
        return mean, tf.sqrt(variance + epsilon)

    gaps = []
    for means, mean_squares in statistics:
        mean_a, std_a = moments(means, mean_squares, first)
        mean_b, std_b = moments(means, mean_squares, second)
        # every position of every image (all of one size): E[x^2] - E[x]^2 over the batch
        batch_variance = tf.nn.relu(tf.reduce_mean(mean_squares, axis=0) - tf.square(tf.reduce_mean(means, axis=0)))
        scale = tf.stop_gradient(batch_variance) + epsilon
        gaps.append(tf.reduce_mean((tf.square(mean_a - mean_b) + tf.square(std_a - std_b)) / scale))
    return both_present * tf.add_n(gaps) / len(gaps)


@keras.saving.register_keras_serializable(package="dnadet_tf")
class AutomaticWeightedLoss(keras.layers.Layer):
    """Learned weighting of several losses (after Kendall et al. 2018), as the
    authors' release does it:

        L = sum_i 0.5 / p_i^2 * L_i + log(1 + p_i^2)

    with trainable p_i initialised to 1, held in one tracked weight of shape
    (num_losses,) so that checkpoints save it.

    Call with a (num_losses,) tensor of losses; returns the scalar total.
    """

    def __init__(self, num_losses=2, **kwargs):
        super().__init__(**kwargs)
        self.num_losses = num_losses
        self.params = self.add_weight(
            name="params", shape=(num_losses,), initializer="ones", trainable=True, dtype="float32"
        )

    def call(self, losses, replicas=1):
        """losses: (num_losses,) tensor or list of scalars -> scalar total.

        Under tf.distribute each replica passes its share of every loss; the
        regulariser log(1 + p^2) is divided by `replicas` so that the sum over
        replicas is the loss of the whole batch.
        """
        losses = tf.cast(tf.stack(losses) if isinstance(losses, (list, tuple)) else losses, tf.float32)
        squared = tf.square(self.params)
        return tf.reduce_sum(0.5 / squared * losses + tf.math.log1p(squared) / replicas)

    def get_config(self):
        return {**super().get_config(), "num_losses": self.num_losses}

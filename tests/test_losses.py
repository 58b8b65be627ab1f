import numpy as np
import tensorflow as tf

from dnadet_tf.losses import AutomaticWeightedLoss, supervised_contrastive_loss


def numpy_supcon(features, labels, temperature, base_temperature):
    """Plain-loop reference of Khosla et al.'s loss, 'all' anchors."""
    n = len(labels)
    losses = []
    for i in range(n):
        sims = np.array([features[i] @ features[a] / temperature for a in range(n)])
        others = [a for a in range(n) if a != i]
        log_denominator = np.log(np.sum(np.exp(sims[others])))
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            losses.append(0.0)
            continue
        mean_log_prob = np.mean([sims[p] - log_denominator for p in positives])
        losses.append(-(temperature / base_temperature) * mean_log_prob)
    return np.array(losses)


def normalised(rows):
    rows = np.asarray(rows, np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_supcon_matches_numpy_on_a_hand_made_batch():
    features = normalised([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.8, 0.2], [0.5, 0.5, 0.7], [0.2, 0.1, 1]])
    labels = np.array([0, 0, 1, 1, 2, 2])
    got = supervised_contrastive_loss(features.astype(np.float32), labels, 0.07, 0.07).numpy()
    np.testing.assert_allclose(got, numpy_supcon(features, labels, 0.07, 0.07), rtol=1e-4, atol=1e-5)


def test_supcon_other_temperatures_and_lonely_anchor():
    rng = np.random.default_rng(3)
    features = normalised(rng.normal(size=(7, 5)))
    labels = np.array([0, 1, 1, 2, 2, 2, 3])  # class 0 and 3 have no positives
    got = supervised_contrastive_loss(features.astype(np.float32), labels, 0.5, 0.07).numpy()
    want = numpy_supcon(features, labels, 0.5, 0.07)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert got[0] == 0.0 and got[6] == 0.0


def test_supcon_is_lower_when_classes_cluster():
    labels = np.array([0, 0, 1, 1])
    clustered = normalised([[1, 0], [1, 0.01], [0, 1], [0.01, 1]]).astype(np.float32)
    mixed = normalised([[1, 0], [0, 1], [1, 0.01], [0.01, 1]]).astype(np.float32)
    low = tf.reduce_mean(supervised_contrastive_loss(clustered, labels)).numpy()
    high = tf.reduce_mean(supervised_contrastive_loss(mixed, labels)).numpy()
    assert low < high


def test_automatic_weighted_loss_matches_hand_computation():
    layer = AutomaticWeightedLoss(2)
    layer.params.assign([1.5, 0.5])
    losses = np.array([0.8, 2.3])
    want = sum(0.5 / p**2 * l + np.log(1 + p**2) for p, l in zip([1.5, 0.5], losses))
    np.testing.assert_allclose(layer(losses).numpy(), want, rtol=1e-6)
    # Shared over two replicas, the regulariser is split so that the sum is the whole.
    halves = [layer(losses / 2, replicas=2).numpy() for _ in range(2)]
    np.testing.assert_allclose(sum(halves), want, rtol=1e-6)


def test_automatic_weighted_loss_starts_at_one_and_is_checkpointed(tmp_path):
    layer = AutomaticWeightedLoss(2)
    np.testing.assert_array_equal(layer.params.numpy(), [1.0, 1.0])
    assert len(layer.trainable_weights) == 1 and layer.trainable_weights[0].shape == (2,)
    layer.params.assign([2.0, 3.0])
    path = tf.train.Checkpoint(weights=layer).save(str(tmp_path / "ckpt"))
    fresh = AutomaticWeightedLoss(2)
    tf.train.Checkpoint(weights=fresh).restore(path).assert_consumed()
    np.testing.assert_array_equal(fresh.params.numpy(), [2.0, 3.0])
    config = fresh.get_config()
    assert AutomaticWeightedLoss.from_config(config).num_losses == 2


def test_cross_entropy_on_logits_and_on_probabilities_match_numpy():
    from dnadet_tf.losses import classification_cross_entropy

    logits = np.array([[2.0, -1.0, 0.5, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0], [-3.0, 4.0, 1.0, 0.0, 2.0]])
    labels = np.array([0, 3, 1])

    def log_softmax(x):
        return x - np.log(np.sum(np.exp(x), axis=1, keepdims=True))

    on_logits = classification_cross_entropy(labels, logits.astype(np.float32), "logits").numpy()
    np.testing.assert_allclose(on_logits, -log_softmax(logits)[np.arange(3), labels], rtol=1e-5)
    probabilities = np.exp(log_softmax(logits))
    on_probabilities = classification_cross_entropy(labels, logits.astype(np.float32), "probabilities").numpy()
    np.testing.assert_allclose(on_probabilities, -log_softmax(probabilities)[np.arange(3), labels], rtol=1e-5)
    # The release's loss is bounded: a perfect answer over 5 classes still costs log(4 + e) - 1.
    perfect = classification_cross_entropy(np.array([0]), np.array([[60.0, 0, 0, 0, 0]], np.float32), "probabilities")
    np.testing.assert_allclose(perfect.numpy(), [np.log(4 + np.e) - 1], rtol=1e-5)

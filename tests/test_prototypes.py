"""The head of class means (`dnadet_tf.prototypes`): its weights, temperature and leave-one-out estimate, against a
hand computation."""
import numpy as np
import pytest

from dnadet_tf.prototypes import (class_means, cluster_groups, group_means, image_groups, leave_one_out_accuracy,
                                  nearest_mean_weights, neighbour_spread, spread)


def test_class_means_are_each_class_average_and_a_class_without_features_is_named():
    features = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [1.0, 1.0]])
    means = class_means(features, [0, 0, 1, 2], 3)
    np.testing.assert_allclose(means, [[1.0, 0.0], [0.0, 4.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="received none of class 1"):
        class_means(features[:2], [0, 0], 2)


def test_the_dense_weights_give_minus_the_squared_distance_over_the_temperature_up_to_a_constant():
    rng = np.random.default_rng(0)
    means, features = rng.normal(size=(4, 6)), rng.normal(size=(50, 6))
    kernel, bias = nearest_mean_weights(means, 2.5)
    assert kernel.shape == (6, 4) and bias.shape == (4,) and kernel.dtype == np.float32
    logits = features @ kernel + bias
    distances = ((features[:, None, :] - means[None]) ** 2).sum(-1)
    expected = -distances / 2.5
    # the same up to a constant per image: equal softmax, equal argmax (the nearest class mean)
    np.testing.assert_allclose(logits - logits[:, :1], expected - expected[:, :1], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(logits.argmax(-1), distances.argmin(-1))


def test_spread_is_the_unbiased_within_class_squared_distance_or_a_quarter_of_the_nearest_other_mean():
    features = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 2.0], [30.0, 0.0]])
    labels = np.array([0, 0, 1, 1, 2])
    means = class_means(features, labels, 3)
    # classes 0 and 1: squared distances 1, 1 and 1, 1, each times 2 / 1; the class of one counts nothing
    assert spread(features, labels, means) == pytest.approx(2.0)
    one_each = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 6.0]])
    # nearest other mean: 16, 16, 36 -> mean 68 / 3, a quarter of it
    assert spread(one_each, [0, 1, 2], one_each) == pytest.approx(68.0 / 3.0 / 4.0)
    assert spread(np.zeros((2, 2)), [0, 1], np.zeros((2, 2))) == 1.0  # nothing to measure: 1


def test_leave_one_out_counts_an_image_right_when_its_own_class_mean_without_it_is_nearest():
    features = np.array([[0.0], [1.0], [10.0], [11.0], [5.8]])
    labels = np.array([0, 0, 1, 1, 0])
    # class 0 = {0, 1, 5.8}: 5.8 left out -> mean 0.5 (5.3 away) against 10.5 (4.7 away): wrong; the others right
    assert leave_one_out_accuracy(features, labels, 2) == pytest.approx(4 / 5)
    assert leave_one_out_accuracy(features[[0, 2]], [0, 1], 2) is None  # one image per class: nothing to leave out


def test_group_means_keep_a_mean_per_group_and_class_and_fill_a_missing_one_with_the_class_mean():
    features = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [20.0, 0.0], [30.0, 30.0]])
    labels = np.array([0, 0, 1, 0, 1])
    groups = np.array([0, 0, 0, 1, 1])
    means = group_means(features, labels, groups, 2)
    # rows: group 0 class 0, group 0 class 1, group 1 class 0, group 1 class 1
    np.testing.assert_allclose(means, [[1.0, 0.0], [10.0, 10.0], [20.0, 0.0], [30.0, 30.0]])
    filled = group_means(features[:4], labels[:4], groups[:4], 2)  # group 1 has no class 1: its mean over all
    np.testing.assert_allclose(filled[3], [10.0, 10.0])
    with pytest.raises(ValueError, match="received none of class 1"):
        group_means(features[:2], labels[:2], groups[:2], 2)


def test_leave_one_out_with_groups_is_right_when_the_nearest_mean_left_is_of_the_feature_class():
    # class 0 in two far groups (around 0 and around 100), class 1 near 50: per group every feature is nearest a
    # mean of its own class; one mean of class 0 over both groups sits at 50.5 and nothing is right (0 left out:
    # 67.3 against 50 away; 49 left out: its class mean 51 is 2 away, class 0's 0.5 nearer)
    features = np.array([[0.0], [1.0], [100.0], [101.0], [49.0], [51.0]])
    labels = np.array([0, 0, 0, 0, 1, 1])
    groups = np.array([0, 0, 1, 1, 0, 0])
    assert leave_one_out_accuracy(features, labels, 2, groups) == pytest.approx(1.0)
    assert leave_one_out_accuracy(features, labels, 2) == 0.0


def test_spread_with_one_feature_per_mean_measures_to_the_nearest_mean_of_another_class():
    means = np.array([[0.0, 0.0], [4.0, 0.0], [1.0, 0.0], [0.0, 6.0]])  # rows 0, 2 of class 0; 1, 3 of class 1
    mean_classes = np.array([0, 1, 0, 1])
    # nearest mean of another class: row 0 -> row 1 (16), row 1 -> row 2 (9), row 2 -> row 1 (9), row 3 -> row 0
    # (36); the distance 1 between rows 0 and 2, both of class 0, is left out
    assert spread(means, [0, 1, 2, 3], means, mean_classes) == pytest.approx((16 + 9 + 9 + 36) / 4 / 4)


def test_cluster_groups_split_each_class_into_its_clusters_numbered_by_first_appearance():
    # class 0: two far clumps (around 100 first, then around 0); class 1: two features; class 2: one
    features = np.array([[100.0, 0.0], [0.0, 0.0], [101.0, 0.0], [1.0, 0.0], [0.0, 1.0], [50.0, 50.0], [60.0, 50.0],
                         [5.0, 5.0]])
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 2])
    groups = cluster_groups(features, labels, 2)
    # class 0: the clump of its first feature is group 0; class 1 (two features, two groups): one each; class 2: 0
    np.testing.assert_array_equal(groups, [0, 1, 0, 1, 1, 0, 1, 0])
    np.testing.assert_array_equal(cluster_groups(features, labels, 2), groups)  # the same features, the same groups
    np.testing.assert_array_equal(cluster_groups(features, labels, 1), np.zeros(8))
    three = cluster_groups(features, labels, 3)
    assert set(three[labels == 0].tolist()) == {0, 1, 2} and three[0] == 0 and three[2] == 0  # 100 and 101 together
    with pytest.raises(ValueError, match="received 0"):
        cluster_groups(features, labels, 0)


def test_image_groups_give_every_feature_its_own_mean_and_a_missing_group_a_copy_of_the_first():
    labels = np.array([1, 0, 1, 1, 0])
    groups = image_groups(labels)
    np.testing.assert_array_equal(groups, [0, 0, 1, 2, 1])  # each feature's place among its class's features
    features = np.array([[1.0, 0.0], [0.0, 5.0], [3.0, 0.0], [5.0, 0.0], [0.0, 7.0]])
    means = group_means(features, labels, groups, 2)
    # rows g * 2 + c: every feature itself; class 0 has no third feature: its first feature's mean again
    np.testing.assert_array_equal(means, [[0.0, 5.0], [1.0, 0.0], [0.0, 7.0], [3.0, 0.0], [0.0, 5.0], [5.0, 0.0]])


def test_leave_one_out_of_image_groups_is_the_class_of_the_nearest_other_feature():
    # 1-D: class 0 at 0, 1, 10; class 1 at 4, 11. Without itself each feature's nearest other feature:
    # 0 -> 1 (class 0, right), 1 -> 0 (right), 10 -> 11 (class 1, wrong), 4 -> 1 (class 0, wrong), 11 -> 10 (wrong)
    features = np.array([[0.0], [1.0], [10.0], [4.0], [11.0]])
    labels = np.array([0, 0, 0, 1, 1])
    assert leave_one_out_accuracy(features, labels, 2, image_groups(labels)) == pytest.approx(2 / 5)
    # a class of one image has no mean left without it: only class 0's three are scored
    assert leave_one_out_accuracy(features[:4], labels[:4], 2, image_groups(labels[:4])) == pytest.approx(2 / 3)


def test_neighbour_spread_is_the_mean_squared_distance_to_the_nearest_other_feature_of_the_class():
    # class 0 at 0, 1, 3 (nearest others: 1, 1, 4 squared); class 1 at 10, 12 (4, 4); class 2 alone at 50 (unscored)
    features = np.array([[0.0], [1.0], [3.0], [10.0], [12.0], [50.0]])
    labels = np.array([0, 0, 0, 1, 1, 2])
    assert neighbour_spread(features, labels) == pytest.approx((1 + 1 + 4 + 4 + 4) / 5)
    assert neighbour_spread(features[[0, 3, 5]], labels[[0, 3, 5]]) is None  # one feature per class

"""A classifier head of class means: each class is the mean encoder feature of a few labeled images of it
(nearest class mean, Mensink et al. 2013; the prototypes of Snell et al. 2017), written into the logits layer.

    labeled images (a few per class) -> encoder features (N, D) -> class means (C, D)
      -> logits_c = -||f - mean_c||^2 / T + const = (2 f . mean_c - ||mean_c||^2) / T
      -> the Dense logits layer's kernel (D, C) = 2 means^T / T and bias (C,) = -||means||^2 / T

The head stays one Dense layer, so the model saves, exports (SavedModel, TFLite) and explains as before. Labeled
images in several groups (contents) give one mean per group and class (`group_means`): the Dense layer then has a
logit per mean and a class takes the largest of its own (`Classifier(prototypes_per_class=G)`), so one run names
the generators of every content it has means of; labeled images of several contents in one folder get their groups
from k-means within each class (`cluster_groups`), or every labeled image is its own mean (`image_groups`: the
nearest labeled image answers, `adapt --labeled`'s default, with `neighbour_spread` for its temperature). A run
trained on one content names a few labeled images' generators of another content far better by their class means
than by its trained head: the encoder keeps the generators apart (its features cluster by generator) where the head
maps them to the wrong architectures (docs/results.md, "A few labeled images of the new content").
"""
import numpy as np

ALL_IMAGES = "all"  # means_per_class: every labeled image its own mean (the nearest labeled image answers)


def class_means(features, labels, num_classes):
    """(C, D) float64 mean feature of each class. features: (N, D); labels: (N,) ints in [0, num_classes).
    Raises ValueError naming a class with no feature."""
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=num_classes)
    if (counts == 0).any():
        raise ValueError(f"labels: expected at least one feature of every class 0-{num_classes - 1}, received none "
                         f"of class {int(np.flatnonzero(counts == 0)[0])}.")
    means = np.zeros((num_classes, features.shape[1]), np.float64)
    np.add.at(means, labels, features)
    return means / counts[:, None]


def group_means(features, labels, groups, num_classes):
    """(G * C, D) float64: row g * C + c the mean feature of class c among the features of group g (groups: (N,)
    ints in [0, G)); a class with no feature in a group takes there a copy of its mean in the first group it has
    features in (a prototype it has already, which leaves the largest logit of the class unchanged). Raises
    ValueError naming a class with no feature in any group."""
    features, labels, groups = np.asarray(features, np.float64), np.asarray(labels), np.asarray(groups)
    class_means(features, labels, num_classes)  # every class has a feature, or the error naming it
    count = int(groups.max()) + 1 if len(groups) else 1
    sums = np.zeros((count * num_classes, features.shape[1]), np.float64)
    rows = groups * num_classes + labels
    np.add.at(sums, rows, features)
    counts = np.bincount(rows, minlength=count * num_classes)
    means = sums / np.maximum(counts, 1)[:, None]
    present = (counts > 0).reshape(count, num_classes)
    first = np.argmax(present, axis=0)  # per class, the first group holding one of its features
    for group, label in zip(*np.nonzero(~present)):
        means[group * num_classes + label] = means[first[label] * num_classes + label]
    return means


def image_groups(labels):
    """(N,) int64: every feature its own group within its class (its place among the features of its class), so
    that `group_means` gives every labeled image its own mean and the head answers the class of the nearest
    labeled image (the nearest neighbour, where one mean per class answers the nearest class mean)."""
    labels = np.asarray(labels)
    groups = np.zeros(len(labels), np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        groups[members] = np.arange(len(members))
    return groups


def cluster_groups(features, labels, count, seed=0):
    """(N,) int64 groups in [0, count): each class's features split into `count` clusters by k-means (k-means++
    starts, 10 of them, seeded with `seed`; the clustering of least inertia), for `group_means` when the groups
    (such as the contents) of labeled images are not given. A class of `count` features or fewer gets one group per
    feature. Within a class the groups are numbered in the order of their first feature, so the same features give
    the same groups. features: (N, D); labels: (N,) ints."""
    import warnings

    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    features, labels = np.asarray(features, np.float64), np.asarray(labels)
    if count < 1:
        raise ValueError(f"count: expected a positive number of groups per class, received {count}.")
    groups = np.zeros(len(labels), np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if count == 1 or len(members) < 2:
            continue
        if len(members) <= count:
            clusters = np.arange(len(members))
        else:
            with warnings.catch_warnings():  # identical features: fewer distinct clusters, which is fine here
                warnings.simplefilter("ignore", ConvergenceWarning)
                clusters = KMeans(count, n_init=10, random_state=seed).fit_predict(features[members])
        _, first, cluster = np.unique(clusters, return_index=True, return_inverse=True)
        groups[members] = np.argsort(np.argsort(first))[cluster]  # cluster numbers by first appearance
    return groups


def spread(features, labels, means, mean_classes=None):
    """The temperature T of the head: the mean squared distance of a feature to its class mean, over the classes
    with two or more features (unbiased: n / (n - 1)); with one feature per class, a quarter of the mean squared
    distance from each class mean to its nearest mean of another class (as if each class reached halfway to its
    neighbour). `labels` index the rows of `means`; `mean_classes` ((M,) ints, default each row its own class)
    names the class of each row when a class has several (`group_means`). Logits are then minus the squared
    distance in units of a class's spread. Returns a float > 0."""
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    squared, pairs = 0.0, 0
    for label in np.unique(labels):
        members = features[labels == label]
        if len(members) > 1:
            squared += np.sum((members - means[label]) ** 2) * len(members) / (len(members) - 1)
            pairs += len(members)
    if pairs:
        value = squared / pairs
    else:
        mean_classes = np.arange(len(means)) if mean_classes is None else np.asarray(mean_classes)
        between = np.stack([np.sum((means - row) ** 2, axis=-1) for row in means])  # row by row: (M, M) in memory
        between[mean_classes[:, None] == mean_classes[None, :]] = np.inf
        nearest = between.min(axis=1)
        value = float(np.mean(nearest[np.isfinite(nearest)])) / 4.0 if np.isfinite(nearest).any() else 1.0
    return float(value) if value > 0 else 1.0


def neighbour_spread(features, labels):
    """The temperature of a head whose every labeled feature is its own mean (`image_groups`): the mean squared
    distance of a feature to the nearest other feature of its class, over the classes with two or more features
    (what `spread` is to class means, for the nearest labeled image). None when every class has one feature."""
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    nearest = []
    for index, feature in enumerate(features):  # row by row: memory of one class's features at a time
        others = np.flatnonzero((labels == labels[index]) & (np.arange(len(labels)) != index))
        if len(others):
            nearest.append(np.min(np.sum((features[others] - feature) ** 2, axis=-1)))
    return float(np.mean(nearest)) if nearest and np.mean(nearest) > 0 else None


def nearest_mean_weights(means, temperature):
    """(kernel (D, C), bias (C,)) float32 of the Dense layer whose logits are -||f - mean_c||^2 / T up to a
    constant per image (the argmax is the nearest class mean)."""
    means = np.asarray(means, np.float64)
    kernel = 2.0 * means.T / temperature
    bias = -np.sum(means ** 2, axis=1) / temperature
    return kernel.astype(np.float32), bias.astype(np.float32)


def leave_one_out_logits(features, labels, num_classes, groups=None, temperature=1.0):
    """(N, C) float64: each feature's logits under the nearest-mean head of the others, the head `labeled_head`
    makes of the features (N, D) with labels (N,) and `groups` ((N,) ints, default one group): the means of each
    group and class, the feature's own mean taken without it (a feature alone in its group, such as every one of
    `image_groups`, leaves its class's other means); a class's logit is minus the squared distance to the nearest of
    its means over `temperature` (the head's logits, `nearest_mean_weights`, up to a constant per feature, which the
    softmax ignores), -inf for a class left without a mean (a class of one feature, for that feature)."""
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    groups = np.zeros(len(labels), np.int64) if groups is None else np.asarray(groups)
    # the (group, class) pairs present are the means
    present, pairs = np.unique(groups * num_classes + labels, return_inverse=True)
    classes = present % num_classes
    counts = np.bincount(pairs, minlength=len(present))
    sums = np.zeros((len(present), features.shape[1]), np.float64)
    np.add.at(sums, pairs, features)
    all_means = sums / counts[:, None]
    logits = np.full((len(labels), num_classes), -np.inf)
    for row, (feature, pair) in enumerate(zip(features, pairs)):
        means, kept = all_means.copy(), np.ones(len(present), bool)
        if counts[pair] > 1:
            means[pair] = (sums[pair] - feature) / (counts[pair] - 1)
        else:
            kept[pair] = False
        np.maximum.at(logits[row], classes[kept], -np.sum((means[kept] - feature) ** 2, axis=1) / temperature)
    return logits


def leave_one_out_accuracy(features, labels, num_classes, groups=None):
    """Share of the features whose nearest mean, their own mean taken without them, is one of their own class
    (`leave_one_out_logits`); over the features whose class has a mean left without them (a class of one image has
    none). A feature alone in its group (`image_groups`) leaves its class's other means. None when no feature is
    scored. A quality estimate of the head from the labeled images alone. With `groups` ((N,) ints), the means are
    those of each group and class, and the nearest must be one of the feature's class."""
    labels = np.asarray(labels)
    scored = np.bincount(labels, minlength=num_classes)[labels] >= 2
    if not scored.any():
        return None
    logits = leave_one_out_logits(features, labels, num_classes, groups)
    return float(np.mean(logits[scored].argmax(axis=1) == labels[scored]))


def head_points(head):
    """The `openset.MEANS` a head of `labeled_head` (its report `head`) answers by, for the open-set score to
    measure to the same points: "image" for every labeled image its own mean, G for G k-means centres per class
    (the same seeded clusters of the same features), else "class" (a mean per class, or per DATA and class, which
    the score measures as the class means)."""
    if head["means_per_class"] == ALL_IMAGES:
        return "image"
    return head["means_per_class"] if head["means_per_class"] > 1 else "class"

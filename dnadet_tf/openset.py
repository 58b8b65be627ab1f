"""Open-set scores and calibration, fitted after training on a classifier's features and logits.

NumPy only: the figures a trained `Classifier` gives on known images go in, the
statistics a `model.Calibration` layer holds come out. Nothing here runs a network.

Scores (higher = less like any known architecture):
  max_softmax   1 - the largest calibrated probability (the baseline of Hendrycks & Gimpel)
  energy        -T * logsumexp(logits / T)
  cosine        1 - the largest cosine similarity between the pooled feature and a class mean
  mahalanobis   the smallest squared Mahalanobis distance of the pooled feature to a class mean,
                with one covariance shared by the classes (Lee et al. 2018), shrunk towards
                its diagonal so that it stays invertible with few images per class

The two distance scores may measure each class's distance in units of that class's own radius
(`RADII`: "per-class"; default "shared", one scale for all): the distance that keeps the known rate
of the class's own validation images, so that one class whose validation images spread far does not
set the one threshold for all. Measured (docs/results.md, "One radius per class"): it flags more new
architectures, and more images of known ones whose seed, loss or data changed, so "shared" stays.

The distance scores measure to the class means (`MEANS`: "class") or to every known image of the class
("image": each image its own mean, the nearest known image of a class sets its distance; the covariance stays
the one around the class means): the open set of a head that answers the nearest labeled image
(`adapt --labeled`), where one class's images lie in several clusters (contents, generators). A number K in
their place measures to K k-means centres of each class's images (`prototypes.cluster_groups`): the nearest of
a few points, where every image of a large training set would make the calibration as large as the images.
"""
import dataclasses

import numpy as np

SCORES = ("mahalanobis", "cosine", "energy", "max_softmax")
DEFAULT_SCORE = "mahalanobis"
KNOWN_RATE = 0.95  # the threshold keeps this fraction of known validation images
RADII = ("per-class", "shared")  # the distance scores' scale: each class's own radius, or one for all
DEFAULT_RADII = "shared"
RADIUS_SCORES = ("mahalanobis", "cosine")  # the scores that measure a distance to each class
MIN_RADIUS_IMAGES = 10  # a class with fewer validation images gets the radius of all of them
ECE_BINS = 15
MEANS = ("class", "image")  # the distance scores' points: one mean per class, or every known image
DEFAULT_MEANS = "class"


def softmax(logits, temperature=1.0):
    """(N, C) logits -> (N, C) float64 probabilities of softmax(logits / temperature)."""
    z = np.asarray(logits, np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits, labels, temperature=1.0):
    """Mean negative log-likelihood of `labels` (N,) under softmax(logits / temperature)."""
    z = np.asarray(logits, np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(log_p[np.arange(len(labels)), np.asarray(labels, np.int64)]))


def fit_temperature(logits, labels, low=0.05, high=20.0):
    """The temperature T in [low, high] minimising the NLL of softmax(logits / T) (temperature
    scaling, Guo et al. 2017): golden-section search on log T, the NLL being unimodal there.

    When every image is already classified right, the NLL keeps falling as T -> 0: such data
    cannot say how sharp is too sharp, so T is not taken below 1 then (no sharpening).
    """
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels, np.int64)
    if len(labels) and np.all(logits.argmax(axis=1) == labels):
        low = max(low, 1.0)
    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(logits, labels, np.exp(c)), nll(logits, labels, np.exp(d))
    for _ in range(80):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(logits, labels, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(logits, labels, np.exp(d))
    return float(np.exp((a + b) / 2.0))


def expected_calibration_error(probabilities, labels, bins=ECE_BINS):
    """ECE: the confidence-weighted gap |accuracy - confidence| over `bins` equal-width bins of
    the top probability, each weighted by its share of the N images."""
    probabilities = np.asarray(probabilities, np.float64)
    if len(probabilities) == 0:
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels, np.int64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


@dataclasses.dataclass
class OpenSetStatistics:
    """What a score needs besides the image's own feature and logits.

    class_means: (C, D) mean pooled feature per class; whitening: (D, D) W with W W' = the inverse
    of the shared covariance, so ||(f - m) W||^2 is the squared Mahalanobis distance; temperature: the calibration temperature;
    threshold: scores above it are "unknown"; class_radii: (C,) each class's distance radius, by which
    a distance score (RADIUS_SCORES) divides that class's distances, or None (one shared scale);
    means_per_class: G, with class_means then (G * C, D), row g * C + c the c-th class's g-th mean (the layout of
    `prototypes.group_means` and of the head's prototypes): a class's distance is that to the nearest of its own."""

    score: str
    class_means: np.ndarray
    whitening: np.ndarray
    temperature: float = 1.0
    threshold: float = np.inf
    class_radii: np.ndarray = None
    means_per_class: int = 1


def check_means(means):
    """`means` if it is one of MEANS or a number of k-means centres per class (an int >= 2; 1 is "class", the one
    mean of a class), else ValueError."""
    if isinstance(means, (int, np.integer)) and not isinstance(means, bool):
        if means >= 1:
            return "class" if means == 1 else int(means)
    elif means in MEANS:
        return means
    raise ValueError(f"means: expected one of {', '.join(MEANS)} or a positive number of centres per class, "
                     f"received {means!r}.")


def parse_means(text):
    """The `means` a command-line value names: "class", "image" or a number K (k-means centres per class)."""
    try:
        return check_means(int(text) if str(text).strip().isdigit() else text)
    except ValueError:
        raise ValueError(f"expected one of {', '.join(MEANS)} or a positive number of centres per class, "
                         f"received {text!r}") from None


def class_statistics(features, labels, num_classes, shrinkage=0.1, means="class", groups=None):
    """(class means (C, D), whitening (D, D)) of known features (N, D) with labels (N,): W W' = the
    inverse of the shared covariance (its Cholesky factor).

    The shared covariance is the within-class scatter / N, shrunk as (1 - s) * S + s * diag(S)
    and given a floor of 1e-6 times its mean variance, so it inverts with N < D.
    A class without images gets the mean of all features. With `means` "image" the first array is every
    feature ((G * C, D), G the most features of a class, row g * C + c the c-th class's g-th feature, a class of
    fewer repeating its first; `prototypes.group_means` of `prototypes.image_groups`); with a number K, the K
    k-means centres of each class's features in that layout (`prototypes.cluster_groups`, seeded: the same
    features give the same centres; a class of K features or fewer keeps each). The covariance is the same.
    `groups` ((N,) ints, with a number K only): the features' `cluster_groups` when the caller has them already
    (k-means fits each class apart, so a class whose features did not change keeps its groups).
    """
    means = check_means(means)
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels, np.int64)
    overall = features.mean(axis=0)
    present = np.array([np.any(labels == c) for c in range(num_classes)])
    centres = np.stack([features[labels == c].mean(axis=0) if present[c] else overall for c in range(num_classes)])
    centred = features - centres[labels]
    covariance = centred.T @ centred / max(1, len(features))
    covariance = (1.0 - shrinkage) * covariance + shrinkage * np.diag(np.diag(covariance))
    floor = 1e-6 * max(float(np.mean(np.diag(covariance))), 1e-12)
    covariance += floor * np.eye(len(covariance))
    whitening = np.linalg.cholesky(np.linalg.inv(covariance)).astype(np.float32)
    if means == "class":
        return centres.astype(np.float32), whitening
    from dnadet_tf.prototypes import cluster_groups, group_means, image_groups

    # a class without features gets the mean of all of them, as one image of its own
    stand_ins = np.flatnonzero(~present)
    all_features = np.concatenate([features, np.repeat(overall[None], len(stand_ins), axis=0)])
    all_labels = np.concatenate([labels, stand_ins])
    if means == "image":
        groups = image_groups(all_labels)
    elif groups is None:
        groups = cluster_groups(all_features, all_labels, means)
    else:  # a stand-in is its class's one feature: group 0
        groups = np.concatenate([np.asarray(groups, np.int64), np.zeros(len(stand_ins), np.int64)])
    return group_means(all_features, all_labels, groups, num_classes).astype(np.float32), whitening


def points_per_class(labels, num_classes, means):
    """(C,) list of ints: how many points `class_statistics` keeps of each class of training labels (N,): 1 with
    `means` "class", the class's images with "image", at most K (its images, when fewer) with a number K; a class
    without images has one, the mean of all."""
    means = check_means(means)
    counts = np.maximum(np.bincount(np.asarray(labels, np.int64), minlength=num_classes), 1)
    if means == "class":
        return [1] * num_classes
    return [int(n) for n in (counts if means == "image" else np.minimum(counts, means))]


def statistics_of(kind, features, labels, num_classes, means="class", groups=None):
    """An `OpenSetStatistics` of score `kind` holding `class_statistics` of the features (N, D) and labels (N,)
    (`groups`: their k-means groups when known, with `means` a number)."""
    centres, whitening = class_statistics(features, labels, num_classes, means=means, groups=groups)
    return OpenSetStatistics(kind, centres, whitening, means_per_class=len(centres) // num_classes)


def class_distances(kind, features, statistics):
    """(N, C) distances of features (N, D) to every class, for a distance score (RADIUS_SCORES): 1 - cosine
    similarity, or the squared Mahalanobis distance, to the class mean (to the nearest of the class's means when
    the statistics hold several, `means_per_class`); not yet divided by any radius."""
    features = np.asarray(features, np.float64)
    means = np.asarray(statistics.class_means, np.float64)
    if kind == "cosine":
        f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        m = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        distances = 1.0 - f @ m.T
    elif kind == "mahalanobis":
        whitening = np.asarray(statistics.whitening, np.float64)
        # ||f - m||_P^2 = ||(f - m) W||^2, for every mean at once, as the exports compute it; in blocks of images
        # whose differences (block, M, D) stay near 2^24 floats (M: every training image with means "image")
        queries, points = features @ whitening, means @ whitening
        block = max(1, 2 ** 24 // max(1, points.size))
        distances = np.concatenate([np.square(queries[i:i + block, None, :] - points[None]).sum(axis=2)
                                    for i in range(0, len(queries), block)] or [np.zeros((0, len(points)))])
    else:
        raise ValueError(f"score: expected one of {', '.join(RADIUS_SCORES)}, received {kind!r}.")
    per_class = statistics.means_per_class
    return distances.reshape(len(features), per_class, len(means) // per_class).min(axis=1)


def leave_one_out_distances(kind, features, labels, num_classes, rows, means="class"):
    """(len(rows), C) distances (`class_distances`) of the known features (N, D) at `rows` to every class,
    each with the class statistics (`means` of each class and covariance) fitted on the other N - 1 features
    (`class_statistics`): how far images the statistics never saw lie, when the validation images are among the
    training ones. An image alone in its class leaves that class the mean of all the others. With `means` K the
    other classes keep their k-means groups (each class is clustered apart, so only the left-out image's class is
    clustered again: the same centres as clustering every class again)."""
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels, np.int64)
    means = check_means(means)
    clustered = isinstance(means, int)  # a number of k-means centres (check_means makes 1 "class")
    if clustered:
        from dnadet_tf.prototypes import cluster_groups

        groups = cluster_groups(features, labels, means)
    distances = []
    for row in rows:
        others = np.arange(len(labels)) != row
        kept = None
        if clustered:
            kept = groups[others]
            same = labels[others] == labels[row]
            kept[same] = cluster_groups(features[others][same], labels[others][same], means)
        statistics = statistics_of(kind, features[others], labels[others], num_classes, means, kept)
        distances.append(class_distances(kind, features[row:row + 1], statistics)[0])
    return np.asarray(distances, np.float64).reshape(len(distances), num_classes)


def scores(kind, features, logits, statistics, distances=None):
    """(N,) open-set scores of one kind (SCORES) for features (N, D) and logits (N, C).

    A distance score is the smallest distance to a class mean, each class's distance divided by its
    radius when the statistics hold radii (`class_radii`) for that score (theirs, `statistics.score`);
    `distances` ((N, C), `class_distances`), when given, are used in place of the features'."""
    if kind == "max_softmax":
        return 1.0 - softmax(logits, statistics.temperature).max(axis=1)
    if kind == "energy":
        z = np.asarray(logits, np.float64) / statistics.temperature
        top = z.max(axis=1)
        return -statistics.temperature * (top + np.log(np.exp(z - top[:, None]).sum(axis=1)))
    if kind not in RADIUS_SCORES:
        raise ValueError(f"score: expected one of {', '.join(SCORES)}, received {kind!r}.")
    if distances is None:
        distances = class_distances(kind, features, statistics)
    if statistics.class_radii is not None and kind == statistics.score:
        distances = distances / np.asarray(statistics.class_radii, np.float64)[None, :]
    return distances.min(axis=1)


def class_radii(distances, labels, rate=KNOWN_RATE, min_images=MIN_RADIUS_IMAGES):
    """(C,) radii from known images' distances (N, C) to every class and their labels (N,): class c's
    radius is the `rate` quantile of its own images' distances to its own mean, so it keeps `rate` of
    them; a class with fewer than `min_images` images gets that quantile over every image's distance
    to its own class. Never below a millionth of the largest radius, so that no class divides by 0."""
    distances = np.asarray(distances, np.float64)
    labels = np.asarray(labels, np.int64)
    own = distances[np.arange(len(labels)), labels]
    shared = float(np.quantile(own, rate)) if len(own) else 1.0
    radii = np.array([float(np.quantile(own[labels == c], rate)) if np.sum(labels == c) >= min_images else shared
                      for c in range(distances.shape[1])])
    return np.maximum(radii, 1e-6 * max(float(radii.max()), 1e-12))


def threshold_at_known_rate(known_scores, rate=KNOWN_RATE):
    """The score under which `rate` of the known images fall: their `rate` quantile, interpolated linearly
    between neighbouring scores, so on n images at least `rate` - 1/n of them are at or under it."""
    if len(known_scores) == 0:
        return float("inf")
    return float(np.quantile(np.asarray(known_scores, np.float64), rate))


def auroc(known_scores, unknown_scores):
    """Area under the ROC curve of telling unknown (positive, higher score) from known images;
    ties count one half (the Mann-Whitney statistic)."""
    known = np.asarray(known_scores, np.float64)
    unknown = np.asarray(unknown_scores, np.float64)
    if not len(known) or not len(unknown):
        return float("nan")
    both = np.concatenate([known, unknown])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(len(both), np.float64)
    sorted_values = both[order]
    i = 0
    while i < len(both):  # average ranks over ties
        j = i
        while j + 1 < len(both) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    unknown_ranks = ranks[len(known):].sum()
    return float((unknown_ranks - len(unknown) * (len(unknown) + 1) / 2.0) / (len(known) * len(unknown)))


def fpr_at_known_rate(known_scores, unknown_scores, rate=KNOWN_RATE):
    """FPR at 95 % TPR, the open-set convention: the fraction of unknown images that pass as known
    when the threshold keeps `rate` of these known images."""
    if not len(unknown_scores):
        return float("nan")
    threshold = threshold_at_known_rate(known_scores, rate)
    return float(np.mean(np.asarray(unknown_scores) <= threshold))


def open_set_accuracy(known_labels, known_predictions, known_scores, unknown_scores, threshold):
    """Share of all images answered right: a known image attributed to its class and not flagged,
    an unknown image flagged (score > threshold)."""
    known_right = (np.asarray(known_predictions) == np.asarray(known_labels)) & (np.asarray(known_scores) <= threshold)
    unknown_right = np.asarray(unknown_scores) > threshold
    total = len(known_right) + len(unknown_right)
    return float((known_right.sum() + unknown_right.sum()) / total) if total else float("nan")


def check_known_rate(rate):
    """`rate` as a float if it is a share in (0, 1], else ValueError."""
    if not 0.0 < float(rate) <= 1.0:
        raise ValueError(f"known_rate: expected the share of validation images kept as known, above 0 and at most "
                         f"1, received {rate}.")
    return float(rate)


def check_radii(radii):
    """`radii` if it is one of RADII, else ValueError."""
    if radii not in RADII:
        raise ValueError(f"radii: expected one of {', '.join(RADII)}, received {radii!r}.")
    return radii


def fit_statistics(score, train_features, train_labels, num_classes, val_features, val_logits, val_labels,
                   known_rate=KNOWN_RATE, radii=DEFAULT_RADII, val_in_train=None, means=DEFAULT_MEANS,
                   temperature_logits=None):
    """Everything a `Calibration` layer stores, fitted on known images only.

    The temperature minimises the validation NLL (of `temperature_logits`, (N_val, C), when given: the validation
    images' logits, each under a head made without it where the head is made of them, as `adapt --labeled`'s is, so
    that an image the head holds counts as one never seen; the report's NLL and ECE are then theirs; the scores
    that read logits, energy and max_softmax, keep `val_logits`); class means and the shared covariance come from
    the training features; with `radii` "per-class" (default "shared") a distance score's
    class radii keep `known_rate` of each class's validation images (`class_radii`); the threshold
    keeps `known_rate` (default 95 %) of the validation images as known. `val_in_train` ((N_val,) ints, -1 for
    none): each validation image's row among the training features when it is one of them; a distance score
    measures such an image with the statistics fitted without it (`leave_one_out_distances`), since its own
    feature pulls its class mean to it (5 labeled images per class of a new content, scored in-sample: 96.7-99.1 %
    of its known images flagged, left out 3.7-5.4 %; docs/results.md, "The open set after `adapt --labeled`").
    `means` ("class", default, "image" or K): a distance score's distance to a class is that to its mean of the
    training features, to the nearest training feature of the class, or to the nearest of K k-means centres of
    the class's training features (`class_statistics`).
    Returns (OpenSetStatistics, report dict); the report names the radii and means (None for the scores that have
    none) and counts the validation images scored leave-one-out.
    """
    if score not in SCORES:
        raise ValueError(f"score: expected one of {', '.join(SCORES)}, received {score!r}.")
    known_rate = check_known_rate(known_rate)
    check_radii(radii)
    means = check_means(means)
    means = means if score in RADIUS_SCORES else DEFAULT_MEANS
    statistics = statistics_of(score, train_features, train_labels, num_classes, means)
    fitted_logits = val_logits if temperature_logits is None else temperature_logits
    statistics.temperature = temperature = fit_temperature(fitted_logits, val_labels)
    rows = np.full(len(val_labels), -1) if val_in_train is None else np.asarray(val_in_train, np.int64)
    held_in = np.flatnonzero(rows >= 0) if score in RADIUS_SCORES else np.zeros(0, np.int64)
    distances = None
    if score in RADIUS_SCORES:
        distances = class_distances(score, val_features, statistics)
        if len(held_in):
            distances[held_in] = leave_one_out_distances(score, train_features, train_labels, num_classes,
                                                         rows[held_in], means)
    if score in RADIUS_SCORES and radii == "per-class":
        statistics.class_radii = class_radii(distances, val_labels, known_rate).astype(np.float32)
    val_scores = scores(score, val_features, val_logits, statistics, distances)
    statistics.threshold = threshold_at_known_rate(val_scores, known_rate)
    report = {
        "score": score,
        "temperature": temperature,
        "threshold": statistics.threshold,
        "known_rate": known_rate,
        "radii": radii if score in RADIUS_SCORES else None,
        "means": means if score in RADIUS_SCORES else None,
        "class_radii": None if statistics.class_radii is None else [float(r) for r in statistics.class_radii],
        # the classes whose radius is the shared one: fewer than MIN_RADIUS_IMAGES validation images of their own
        "shared_radius_classes": [] if statistics.class_radii is None else
        [c for c in range(num_classes) if np.sum(np.asarray(val_labels) == c) < MIN_RADIUS_IMAGES],
        "points_per_class": points_per_class(train_labels, num_classes, means) if score in RADIUS_SCORES else None,
        "val_images": int(len(val_labels)),
        "val_in_train": int(np.sum(rows >= 0)),
        "val_left_out": int(len(held_in)),
        "train_images": int(len(train_labels)),
        "val_nll_before": nll(fitted_logits, val_labels),
        "val_nll_after": nll(fitted_logits, val_labels, temperature),
        "val_ece_before": expected_calibration_error(softmax(fitted_logits), val_labels),
        "val_ece_after": expected_calibration_error(softmax(fitted_logits, temperature), val_labels),
    }
    return statistics, report

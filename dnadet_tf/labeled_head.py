"""The head `dnadet-tf adapt --labeled` gives a run: its logits layer answers the class of the nearest of a few
labeled images of the new content (or of their means), classes the run lacks added.

    a few labeled images (one DATA, or one per content) + the adapted run's encoder
      -> `labeled_files`: one `LabeledFiles` in the run's classes, then any new ones, and each image's DATA
      -> pooled features of the labeled images (inference mode, the adapted statistics)
      -> `labeled_head`: every image its own mean (ALL_IMAGES, the default), the class means (a mean per DATA and
         class with several), or G k-means means per class; a Dense layer of nearest-mean weights (`prototypes`)

The encoder keeps generators apart across content where its trained head names them wrongly; labeled images of
several contents keep one run right on each (docs/results.md, "Every labeled image its own mean").
`head_points` names the points the head answers by, for the open-set score to measure to the same ones.
"""
import dataclasses
import os
import sys

import numpy as np

from dnadet_tf.errors import DataError, DnadetError
from dnadet_tf.predictor import features_and_logits
from dnadet_tf.prototypes import ALL_IMAGES


def head_line(head, images):
    """The line `adapt --labeled` prints of the head `labeled_head` reported, from `images` labeled images."""
    if head["means_per_class"] == ALL_IMAGES:
        line = f"logits: the class of the nearest of {images} labeled images (each its own mean)"
    else:
        line = f"logits: the nearest of the class means of {images} labeled images" + (
            f" in {head['groups']} clusters per class (k-means)" if head["means_per_class"] > 1 else
            f" in {head['groups']} groups (a mean per group and class)" if head["groups"] > 1 else "")
    line += " (" + ", ".join(f"{count} {name}" for name, count in head["images_per_class"].items()) + ")"
    if head["classes_added"]:
        line += f"; classes added: {', '.join(head['classes_added'])}"
    if head["leave_one_out_accuracy"] is not None:
        line += f"; leave-one-out accuracy over them {100 * head['leave_one_out_accuracy']:.1f} %"
    return line


def labeled_files(specs, class_names, preprocess, warn=None):
    """(files, groups): the usable images of the dataset specs `specs` (a list; each a folder per class, an
    annotation list, or a benchmark folder's train.txt; each a group, such as one content) as one
    `LabeledFiles` in the classes `class_names` followed by the classes of the specs that are not among them
    (sorted), and groups (N,) int: the index of each image's spec (among those left with images). A file given
    more than once (the same real path, in one spec or several) counts once, where it first occurs (one warning
    line to `warn` says how many were dropped, `without_repeats`). Raises DataError when a class of
    `class_names` has no usable image in any of them (every class the adapted run names needs a mean), or when a
    file is labeled with two classes."""
    from dnadet_tf.data import LabeledFiles, read_dataset, remap_to, usable_files

    read = [read_dataset(spec, "train") for spec in specs]
    added = sorted({files.class_names[label] for files in read for label in set(files.labels.tolist())}
                   - set(class_names))
    names = list(class_names) + added
    given = " ".join(str(spec) for spec in specs)
    parts = without_repeats([remap_to(files, names) for files in read], given, warn)
    # a DATA all of whose files came before in another is no group, not refused as one without images
    checked = [usable_files(part, preprocess, warn) for part in parts if len(part)]
    files = LabeledFiles([path for part in checked for path in part.paths],
                         np.concatenate([part.labels for part in checked]).astype(np.int64), names,
                         ", ".join(str(spec) for spec in specs),
                         skipped=[item for part in checked for item in part.skipped])
    groups = np.concatenate([np.full(len(part.paths), index, np.int64) for index, part in enumerate(checked)])
    lacking = [name for name, count in zip(names, files.class_counts()) if count == 0]
    if lacking:
        raise DataError(f"--labeled {given}: expected at least one image of every class of the run "
                        f"({', '.join(class_names)}), received none of {', '.join(map(repr, lacking))}.")
    return files, groups


def repeats(paths):
    """(first, dropped): the indices of `paths` whose file (its real path: a symbolic link, `.` or `..` in a path
    name the file they lead to) did not occur earlier, in order, and {index: index of its first occurrence} of the
    others, the repeats."""
    seen, first, dropped = {}, [], {}
    for index, path in enumerate(paths):
        key = os.path.realpath(path)
        if key in seen:
            dropped[index] = seen[key]
        else:
            seen[key] = index
            first.append(index)
    return first, dropped


def repeats_line(flag, count, path):
    """The warning line (without "warning: ") that `count` repeated files of `flag` were dropped, `path` one."""
    return (f"{flag}: {count} file(s) given more than once, each counted once (the first kept: a repeat would "
            f"count twice in the statistics and be its own nearest neighbour in the open-set threshold), e.g. {path}")


def without_repeats(parts, given, warn=None):
    """`parts` (LabeledFiles, one per labeled DATA, in the same classes) without the files that occur earlier in
    them (the same real path, `repeats`): one warning line to `warn` (default stderr) says how many were dropped.
    (Within one DATA, `read_folder_tree` and `read_annotation_list` read a file once already; this is across DATA.)
    Raises DataError naming the file and both classes when a file is labeled with two classes."""
    paths = [path for part in parts for path in part.paths]
    labels = np.concatenate([part.labels for part in parts]) if parts else np.zeros(0, np.int64)
    first, dropped = repeats(paths)
    if not dropped:
        return parts
    names = parts[0].class_names
    for index, earlier in dropped.items():
        if labels[index] != labels[earlier]:
            raise DataError(f"--labeled {given}: {paths[index]}: the same file as {paths[earlier]}, in class "
                            f"{names[labels[earlier]]!r} and class {names[labels[index]]!r}; expected each file in "
                            f"one class.")
    warn = warn or (lambda line: print(f"warning: {line}", file=sys.stderr))
    warn(repeats_line(f"--labeled {given}", len(dropped), paths[min(dropped)]))
    kept, start = [], 0
    for part in parts:
        rows = [index - start for index in range(start, start + len(part)) if index not in dropped]
        kept.append(dataclasses.replace(part, paths=[part.paths[row] for row in rows], labels=part.labels[rows]))
        start += len(part)
    return kept


def check_means_per_class(means_per_class, specs=1):
    """Raises DnadetError unless `means_per_class` is a positive int, 1 or ALL_IMAGES with several (`specs`)
    labeled DATA (each its own group already)."""
    if means_per_class == ALL_IMAGES:
        return
    if isinstance(means_per_class, bool) or not isinstance(means_per_class, (int, np.integer)) or means_per_class < 1:
        raise DnadetError(f"means_per_class: expected a positive number or {ALL_IMAGES!r}, received "
                          f"{means_per_class!r}.")
    if means_per_class > 1 and specs > 1:
        raise DnadetError(f"means_per_class: expected 1 or {ALL_IMAGES} with several `labeled` DATA (each DATA is "
                          f"already its own group of means), received {means_per_class} with {specs} DATA.")


def labeled_head(model, files, batch_size=16, groups=None, means_per_class=ALL_IMAGES, features=None):
    """(classifier, report): `model` whose logits layer answers the class of the nearest of the features of
    `files` (`LabeledFiles` in the model's classes, then any new ones; `prototypes`), inference mode with the
    model's current statistics. By default (ALL_IMAGES, "all") every image is its own group and mean
    (`image_groups`: the nearest labeled image answers; `groups` then change nothing). With `means_per_class` 1
    the head is the nearest class mean, or with `groups` ((N,) ints, more than one value) each group gets its own
    mean per class and a class's logit is the largest of its means (`Classifier(prototypes_per_class=G)`); with
    `means_per_class` G > 1 in their place, the groups are G clusters of each class's features (`cluster_groups`:
    for labeled images of several contents not given apart). With new classes or groups the classifier is rebuilt
    around the same encoder. Report: images per class, the groups, the temperature, the classes added, and the
    leave-one-out accuracy of the head over the labeled images (None when no class has two images).
    `features`: (N, D) pooled features of `files` under `model` (`predictor.features_and_logits`) when the caller
    has them, in place of a pass over the images. Raises ValueError when both `groups` and `means_per_class` > 1
    are given."""
    from dnadet_tf.model import LOGITS_LAYER, Classifier
    from dnadet_tf.prototypes import group_means, leave_one_out_accuracy, nearest_mean_weights, neighbour_spread, spread

    check_means_per_class(means_per_class)
    if features is None:
        features = features_and_logits(model, files.paths, batch_size)[0]
    features = np.asarray(features, np.float64)
    names, known = list(files.class_names), list(model.class_names)
    groups = head_groups(features, files.labels, groups, means_per_class)
    count = int(groups.max()) + 1 if len(groups) else 1
    means = group_means(features, files.labels, groups, len(names))
    rows = groups * len(names) + files.labels
    temperature = spread(features, rows, means, mean_classes=np.tile(np.arange(len(names)), count))
    neighbours = neighbour_spread(features, files.labels) if means_per_class == ALL_IMAGES else None
    if neighbours is not None:
        # the sharper of the two: where a class's nearest other image is of another content, the rule of `spread`
        # (docs/results.md, "Every labeled image its own mean")
        temperature = min(temperature, neighbours)
    if names != known or count != getattr(model, "prototypes_per_class", 1):
        model = Classifier(model.backbone, len(names), model.dropout_rate, names, model.preprocessing,
                           prototypes_per_class=count, name=model.name)
    model.get_layer(LOGITS_LAYER).set_weights(list(nearest_mean_weights(means, temperature)))
    report = {"images_per_class": {name: int(number) for name, number in zip(names, files.class_counts())},
              "temperature": temperature, "classes_added": names[len(known):], "groups": count,
              "means_per_class": means_per_class if means_per_class == ALL_IMAGES else int(means_per_class),
              "leave_one_out_accuracy": leave_one_out_accuracy(features, files.labels, len(names), groups)}
    return model, report


def head_groups(features, labels, groups=None, means_per_class=ALL_IMAGES):
    """(N,) int64: the group of each labeled image (features (N, D), labels (N,)) in the head `labeled_head` makes,
    a mean per group and class (`prototypes.group_means`): every image its own with ALL_IMAGES (`image_groups`), G
    k-means clusters of each class's features with `means_per_class` G > 1 (`cluster_groups`, seeded: the same
    features give the same groups), else `groups` (each image's DATA) or one group. Raises ValueError when both
    `groups` (more than one value) and G > 1 are given."""
    from dnadet_tf.prototypes import cluster_groups, image_groups

    if means_per_class == ALL_IMAGES:
        return image_groups(labels)
    if means_per_class > 1:
        if groups is not None and len(set(np.asarray(groups).tolist())) > 1:
            raise ValueError(f"means_per_class: expected 1 with groups given, received {means_per_class} "
                             "(the groups are either given or found by k-means).")
        return cluster_groups(features, labels, means_per_class)
    return np.zeros(len(labels), np.int64) if groups is None else np.asarray(groups, np.int64)


def left_out_logits(features, labels, logits, head, groups=None):
    """(N, C) logits of the N labeled images a head of `labeled_head` was made of (features (N, D) under the model,
    labels (N,), their `logits` (N, C) under the head; `head`: its report, with "means_per_class", "temperature" and
    "images_per_class"; `groups`: each image's DATA, as `labeled_files` gives them), each under the head made of
    the others (`prototypes.leave_one_out_logits`: its own point, or its group's mean, taken without it; k-means
    groups kept), as the open-set calibration scores each with the class statistics of the others: what a
    temperature is fitted on, where the head's logits for an image it holds are those of an image already known.
    An image alone in its class keeps its row of `logits` (left out, its class would have no point)."""
    from dnadet_tf.prototypes import leave_one_out_logits

    labels = np.asarray(labels, np.int64)
    num_classes = len(head["images_per_class"])
    groups = head_groups(features, labels, groups, head["means_per_class"])
    left_out = leave_one_out_logits(features, labels, num_classes, groups, head["temperature"])
    alone = np.bincount(labels, minlength=num_classes)[labels] < 2
    left_out[alone] = np.asarray(logits, np.float64)[alone]
    return left_out

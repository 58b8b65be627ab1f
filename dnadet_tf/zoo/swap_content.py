"""Two more splits of a zoo, each changing one of the two things its cross_dataset split changes at once.

A zoo's cross_dataset split changes the content (photos of domain B) and the generators' weights (every
family trained anew on B-train). Running each set of generators on the other set's photos separates the two,
the way a released image-to-image model is run on photos of another kind:

- `cross_content`: the training generators, other content. Each class's base model (seed 0, its family's own
  losses, trained on A-train: the generator of the train/val/test images) turns every real image of the
  zoo's cross_dataset split (a 128 px crop of a B-test photo) into a fake; those real images are the real class.
- `cross_weights`: other weights, the training content. Each class's cross_dataset model (trained on B-train)
  turns every real image of the zoo's test split (a crop of an A-test photo) into a fake; those real images
  are the real class. A zoo has these models for its `dataset_families` (all of them at size demo and full).

Fakes and reals are paired: class k's image i is made from the split's real image i.

Written to a folder of its own, so the zoo (and its `zoo_sha256`) is never changed:

    classes.txt          the zoo's classes
    cross_content.txt, cross_weights.txt   `relative/path<TAB>label` per line (evaluate with --data DIR/NAME.txt)
    images/<split>/<class>/<name>_<index>.png   128x128 RGB
    swap_content.json    the zoo, its SHA-256, and per split the models used (name, weights_sha256) and image count

The images depend only on the zoo: the same zoo gives the same bytes (noise maps are seeded from the zoo's
build seed, each model's name and the split, and ops run under TF's op determinism, as in the build).
"""
import json
import os
import shutil

import numpy as np

from dnadet_tf.data import REAL_CLASS, SWAP_CONTENT_RECORD, benchmark_digest, read_annotation_list
from dnadet_tf.errors import DataError
from dnadet_tf.images import load_rgb, save_png_atomic
from dnadet_tf.runs import write_json_atomic, write_text_atomic
from dnadet_tf.zoo.build import DEFAULT_LOSSES, GENERATE_BATCH, SCALE, _graph_settings, refuse_empty_path
from dnadet_tf.zoo.photos import seed_key
from dnadet_tf.zoo.training import TrainConfig, generate, load_checked_weights, new_generator

# split: (the domain its generators were trained on, the zoo split whose real images they generate from)
SWAPPED_SPLITS = {"cross_content": ("A", "cross_dataset"), "cross_weights": ("B", "test")}
RECORD = SWAP_CONTENT_RECORD


def _read_zoo(zoo_dir):
    path = os.path.join(zoo_dir, "zoo.json")
    if not os.path.isfile(path):
        what = ("an unfinished zoo build: run 'dnadet-tf zoo build' on it again to finish it" if
                os.path.isfile(os.path.join(zoo_dir, "build.json")) else "no zoo.json in it" if
                os.path.isdir(zoo_dir) else "a file" if os.path.exists(zoo_dir) else "no such folder")
        raise DataError(f"--zoo {zoo_dir}: expected a complete zoo folder ('dnadet-tf zoo build' writes zoo.json "
                        f"last), received {what}.")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def models_trained_on(zoo, domain):
    """The records of the zoo's class models trained from scratch on `domain` ('A': the generators of the
    train/val/test images; 'B': those of cross_dataset) with seed 0 and their family's own losses, in class order."""
    records = {}
    for record in zoo["models"]:
        family = record["family"]
        if (record["domain"] == domain and record["seed"] == 0 and not record.get("finetuned_from")
                and (record["adversarial_loss"], record["reconstruction_loss"]) == DEFAULT_LOSSES[family]
                and family in zoo["classes"]):
            records[family] = record
    return [records[c] for c in zoo["classes"] if c in records]


def real_inputs(zoo_dir, split, classes):
    """The paths of the real images of one of the zoo's splits, sorted."""
    list_path = os.path.join(zoo_dir, f"{split}.txt")
    files = read_annotation_list(list_path)
    real = classes.index(REAL_CLASS)
    paths = sorted(p for p, label in zip(files.paths, files.labels) if label == real)
    if not paths:
        raise DataError(f"{list_path}: no image of class '{REAL_CLASS}'; expected the real crops to generate from.")
    return paths


def load_generator(zoo_dir, record):
    """A generator of the zoo, rebuilt from its record and loaded from its weights file."""
    generator = new_generator(record["family"], TrainConfig(**record["train_config"]), record["rng_seed"])
    return load_checked_weights(generator, os.path.join(zoo_dir, record["weights"]), record.get("weights_sha256"))


def _check_zoo_files(zoo_dir, zoo):
    """Refuses, before anything is written, a zoo that lacks a file the swapped splits need: the split lists they
    take real images from, or a generator's weights file (a zoo whose files were deleted since its build)."""
    needed = [os.path.join(zoo_dir, f"{source}.txt") for _, source in SWAPPED_SPLITS.values()]
    for domain, _ in SWAPPED_SPLITS.values():
        needed += [os.path.join(zoo_dir, record["weights"]) for record in models_trained_on(zoo, domain)]
    missing = [path for path in needed if not os.path.isfile(path)]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(f"--zoo {zoo_dir}: expected a complete zoo, received one without {missing[0]}{more}; run "
                        f"'dnadet-tf zoo build' on it again (with the settings of its build.json) to write them; "
                        f"nothing was written.")


def _check_out_dir(out_dir):
    """Refuses a folder that holds anything but earlier swapped splits (a zoo above all)."""
    if not os.path.isdir(out_dir) or not os.listdir(out_dir):
        os.makedirs(out_dir, exist_ok=True)
        return
    if not os.path.isfile(os.path.join(out_dir, RECORD)):
        raise DataError(f"--out {out_dir}: expected an empty folder or one this command wrote ({RECORD} in it), "
                        f"received a folder with other files; nothing was written.")


def _write_split(zoo_dir, zoo, split, out_dir, progress):
    """Writes one swapped split's images and list; returns its record."""
    domain, source = SWAPPED_SPLITS[split]
    classes = list(zoo["classes"])
    inputs = real_inputs(zoo_dir, source, classes)
    pixels = np.stack([load_rgb(p) for p in inputs])
    models = models_trained_on(zoo, domain)
    folder = os.path.join(out_dir, "images", split)
    list_path = os.path.join(out_dir, f"{split}.txt")
    if os.path.isfile(list_path):  # an earlier run's list, of the images about to be replaced: not left behind
        os.remove(list_path)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    for name in [REAL_CLASS] + [r["family"] for r in models]:
        os.makedirs(os.path.join(folder, name), exist_ok=True)
    lines = []
    for i, path in enumerate(inputs):
        relative = f"images/{split}/{REAL_CLASS}/{os.path.splitext(os.path.basename(path))[0]}_{i:05d}.png"
        save_png_atomic(pixels[i], os.path.join(out_dir, relative))
        lines.append((relative, classes.index(REAL_CLASS)))
    for record in models:
        generator = load_generator(zoo_dir, record)
        noise_key = seed_key(zoo["seed"], "noise", record["name"], split) % (2**31 - 1)
        for start in range(0, len(inputs), GENERATE_BATCH):
            chunk = range(start, min(len(inputs), start + GENERATE_BATCH))
            images = generate(generator, pixels[start:chunk.stop], [(noise_key, i) for i in chunk], SCALE)
            for offset, i in enumerate(chunk):
                relative = f"images/{split}/{record['family']}/{record['name']}_{i:05d}.png"
                save_png_atomic(images[offset], os.path.join(out_dir, relative))
                lines.append((relative, classes.index(record["family"])))
        progress(f"{split}: {record['name']} (trained on {record['training_photos']}) -> {len(inputs)} images "
                 f"from the real crops of {source}")
    write_text_atomic(os.path.join(out_dir, f"{split}.txt"),
                      "".join(f"{p}\t{label}\n" for p, label in sorted(lines, key=lambda e: (e[1], e[0]))))
    return {"generators_trained_on": domain, "inputs": f"the real images of the zoo's {source} split",
            "images_per_class": len(inputs), "images": len(lines),
            "models": [{"name": r["name"], "family": r["family"], "weights_sha256": r["weights_sha256"]}
                       for r in models]}


def write_swapped_splits(zoo_dir, out_dir, progress=print):
    """Writes the zoo's cross_content and cross_weights splits into `out_dir` (see the module docstring).

    Args:
      zoo_dir: a complete zoo folder ('dnadet-tf zoo build').
      out_dir: the folder to write: a new or empty one, or one this function wrote (its splits are replaced).
      progress: called with one line per model and one per split.

    Returns:
      {split: path of out_dir/<split>.txt}.

    Raises:
      DataError: `zoo_dir` is not a complete zoo (no zoo.json, or a list or weights file it needs missing), a
        split it generates from has no real image, `out_dir` holds other files than earlier swapped splits (the
        zoo itself, say), or either path is empty.
    """
    zoo_dir, out_dir = os.fspath(zoo_dir), os.fspath(out_dir)
    for flag, value in (("--zoo", zoo_dir), ("--out", out_dir)):
        refuse_empty_path(flag, value)  # os.path's current folder: a zoo there, or files written into it
    zoo = _read_zoo(zoo_dir)
    _check_zoo_files(zoo_dir, zoo)
    _check_out_dir(out_dir)
    record = {"zoo": os.path.abspath(zoo_dir), "zoo_sha256": benchmark_digest(zoo_dir), "classes": zoo["classes"],
              "splits": {}}
    write_json_atomic(os.path.join(out_dir, RECORD), record)  # first: an interrupted run's folder is ours to reuse
    paths = {}
    with _graph_settings():
        for split in SWAPPED_SPLITS:
            record["splits"][split] = _write_split(zoo_dir, zoo, split, out_dir, progress)
            paths[split] = os.path.join(out_dir, f"{split}.txt")
            count = len(record["splits"][split]["models"])
            progress(f"{split}: {record['splits'][split]['images']} images ({count} generator{'s' * (count != 1)} "
                     f"and the real class) in {paths[split]}")
    write_text_atomic(os.path.join(out_dir, "classes.txt"), "".join(f"{c}\n" for c in zoo["classes"]))
    write_json_atomic(os.path.join(out_dir, RECORD), record)
    return paths

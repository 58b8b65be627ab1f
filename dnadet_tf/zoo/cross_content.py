"""A zoo's cross-content split: the same generators, other content.

A zoo's cross_dataset split changes two things at once: the content (photos of domain B) and the
generators' weights (every family trained anew on B). This split changes only the content, the way a
released image-to-image model is run on photos of another kind: each class's base model (seed 0, its
family's own losses, trained on A-train, the one behind the train/val/test images) turns every real
image of the zoo's cross_dataset split (a 128 px crop of a B-test photo) into a fake, and those real
images are the split's real class. Fakes and reals are paired: class k's image i comes from real image i.

Written to a folder of its own, so the zoo (and its `zoo_sha256`) is never changed:

    classes.txt          the zoo's classes
    cross_content.txt    `relative/path<TAB>label` per line (evaluate it with `--data DIR/cross_content.txt`)
    images/<class>/<name>_<index>.png   128x128 RGB
    cross_content.json   the zoo, its SHA-256, the models used (name, weights_sha256) and the images per class

The images depend only on the zoo: the same zoo gives the same bytes (noise maps are seeded from the
zoo's build seed and each model's name, and ops run under TF's op determinism, as in the build).
"""
import json
import os
import shutil

import numpy as np

from dnadet_tf.data import REAL_CLASS, benchmark_digest, read_annotation_list
from dnadet_tf.errors import DataError
from dnadet_tf.images import load_rgb, save_png_atomic
from dnadet_tf.runs import write_json_atomic, write_text_atomic
from dnadet_tf.zoo.build import DEFAULT_LOSSES, GENERATE_BATCH, SCALE, _graph_settings
from dnadet_tf.zoo.photos import seed_key
from dnadet_tf.zoo.training import TrainConfig, generate, new_generator

SPLIT = "cross_content"


def _read_zoo(zoo_dir):
    path = os.path.join(zoo_dir, "zoo.json")
    if not os.path.isfile(path):
        raise DataError(f"{path}: not found; expected a complete zoo folder ('dnadet-tf zoo build' writes "
                        f"zoo.json last).")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def base_models(zoo):
    """The records of the zoo's class models behind its train/val/test images, in class order."""
    records = {}
    for record in zoo["models"]:
        family = record["family"]
        if (record["domain"] == "A" and record["seed"] == 0 and not record.get("finetuned_from")
                and (record["adversarial_loss"], record["reconstruction_loss"]) == DEFAULT_LOSSES[family]
                and family in zoo["classes"]):
            records[family] = record
    return [records[c] for c in zoo["classes"] if c in records]


def real_inputs(zoo_dir, classes):
    """The paths of the zoo's real cross_dataset images, sorted."""
    files = read_annotation_list(os.path.join(zoo_dir, "cross_dataset.txt"))
    real = classes.index(REAL_CLASS)
    paths = sorted(p for p, label in zip(files.paths, files.labels) if label == real)
    if not paths:
        raise DataError(f"{os.path.join(zoo_dir, 'cross_dataset.txt')}: no image of class '{REAL_CLASS}'; "
                        f"expected the real crops of domain B to generate from.")
    return paths


def load_base_generator(zoo_dir, record):
    """A base model of the zoo, rebuilt from its record and loaded from its weights file."""
    generator = new_generator(record["family"], TrainConfig(**record["train_config"]), record["rng_seed"])
    generator.load_weights(os.path.join(zoo_dir, record["weights"]))
    return generator


def _check_out_dir(out_dir):
    """Refuses a folder that holds anything but an earlier cross-content split (a zoo above all)."""
    if not os.path.isdir(out_dir) or not os.listdir(out_dir):
        os.makedirs(out_dir, exist_ok=True)
        return
    if not os.path.isfile(os.path.join(out_dir, f"{SPLIT}.json")):
        raise DataError(f"--out {out_dir}: expected an empty folder or one this command wrote "
                        f"({SPLIT}.json in it), received a folder with other files; nothing was written.")


def write_cross_content(zoo_dir, out_dir, progress=print):
    """Writes the cross-content split of the zoo in `zoo_dir` into `out_dir` (see the module docstring).

    Args:
      zoo_dir: a complete zoo folder ('dnadet-tf zoo build').
      out_dir: the folder to write: a new or empty one, or one this function wrote (its split is replaced).
      progress: called with one line per model.

    Returns:
      The path of out_dir/cross_content.txt.

    Raises:
      DataError: `zoo_dir` is not a complete zoo, its cross_dataset split has no real image, or `out_dir`
        holds other files than an earlier split (the zoo itself, say).
    """
    zoo_dir, out_dir = os.fspath(zoo_dir), os.fspath(out_dir)
    zoo = _read_zoo(zoo_dir)
    _check_out_dir(out_dir)
    classes = list(zoo["classes"])
    inputs = real_inputs(zoo_dir, classes)
    pixels = np.stack([load_rgb(p) for p in inputs])
    models = base_models(zoo)
    if os.path.isdir(os.path.join(out_dir, "images")):
        shutil.rmtree(os.path.join(out_dir, "images"))
    for name in [REAL_CLASS] + [r["family"] for r in models]:
        os.makedirs(os.path.join(out_dir, "images", name), exist_ok=True)
    lines = []
    for i, path in enumerate(inputs):
        relative = f"images/{REAL_CLASS}/{os.path.splitext(os.path.basename(path))[0]}_{i:05d}.png"
        save_png_atomic(pixels[i], os.path.join(out_dir, relative))
        lines.append((relative, classes.index(REAL_CLASS)))
    with _graph_settings():
        for record in models:
            generator = load_base_generator(zoo_dir, record)
            noise_key = seed_key(zoo["seed"], "noise", record["name"], SPLIT) % (2**31 - 1)
            for start in range(0, len(inputs), GENERATE_BATCH):
                chunk = range(start, min(len(inputs), start + GENERATE_BATCH))
                images = generate(generator, pixels[start:chunk.stop], [(noise_key, i) for i in chunk], SCALE)
                for offset, i in enumerate(chunk):
                    relative = f"images/{record['family']}/{record['name']}_{i:05d}.png"
                    save_png_atomic(images[offset], os.path.join(out_dir, relative))
                    lines.append((relative, classes.index(record["family"])))
            progress(f"{SPLIT}: {record['name']} (trained on {record['training_photos']}) -> "
                     f"{len(inputs)} images from the cross_dataset real crops")
    write_text_atomic(os.path.join(out_dir, "classes.txt"), "".join(f"{c}\n" for c in classes))
    list_path = os.path.join(out_dir, f"{SPLIT}.txt")
    write_text_atomic(list_path, "".join(f"{p}\t{label}\n" for p, label in sorted(lines, key=lambda e: (e[1], e[0]))))
    write_json_atomic(os.path.join(out_dir, f"{SPLIT}.json"), {
        "zoo": os.path.abspath(zoo_dir),
        "zoo_sha256": benchmark_digest(zoo_dir),
        "inputs": "the zoo's real cross_dataset images",
        "models": [{"name": r["name"], "family": r["family"], "weights_sha256": r["weights_sha256"]} for r in models],
        "images_per_class": len(inputs),
        "classes": classes,
    })
    progress(f"{SPLIT}: {len(lines)} images ({len(models)} generators and the real class) in {list_path}")
    return list_path

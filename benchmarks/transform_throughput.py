"""Step 1 (pre-training on 170 transformations): input pipeline throughput next
to what the training step consumes; and, with --compare, the input pipelines
before and after their speed-ups.

Default: measures `pipeline.transformation_dataset` (decode a photo, random 128 px
crop, one of the 170 transformations, the shared resize chain, random 64 px crops;
parallel map and prefetch, exactly as `dnadet-tf pretrain` uses it) with
nothing consuming it, and the Trainer's step with 170 classes on one batch
held in memory. The pipeline must keep up (ratio >= 1; we aim for >= 2).

--compare: first the cost per image of the training crops, from whole resize2
images and from windows (`crops`), at the tiny, cpu and paper sizes; then
patches/s (wall) and CPU milliseconds per image of the `fit` pipeline
(`training_dataset` over generated 128 px PNGs, 5 classes, as train_throughput.py
makes them) and of the `pretrain` pipeline, per preset, "before" (every file
decoded on every visit, the whole resize2 image made and cropped) and "after"
(decoded-image cache, window crops where `crops.windows_pay_off`), each of the two
alone, and "after" with tf.data's thread-pool options set. The variants run in the same process,
alternating, each variant's cache filled by one pass over the data first, after the
runtime is configured as `fit` configures it (one inter-op thread); the ratios
after / before are what to read on a shared machine.

--families: CPU milliseconds of each family of the 170 transformations on a 128 px crop
(one thread of calls, the median of R rounds), and the mean over the 170 classes: what one
image of step 1 costs before its crops.

Usage: python benchmarks/transform_throughput.py [--photos DIR] [--presets cpu,paper] [--steps N]
           [--compare] [--families] [--rounds R] [--json FILE]
Without --photos: /work/shared/data/photos/scenes when it exists, else generated photos.
"""
import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_throughput import generated_photos, make_images, pipeline_rate, step_rate  # noqa: E402

from dnadet_tf.config import make_config  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.image_cache import DecodedImageCache  # noqa: E402
from dnadet_tf.pipeline import training_dataset, transformation_dataset  # noqa: E402
from dnadet_tf.pretraining import PHOTO_SIZE, list_photos  # noqa: E402
from dnadet_tf.runs import write_json_atomic  # noqa: E402
from dnadet_tf.transforms import TRANSFORM_NAMES  # noqa: E402

DEFAULT_PHOTOS = "/work/shared/data/photos/scenes"


# Pipeline variants of --compare: keyword arguments of the dataset functions, and tf.data threading options.
BEFORE = dict(image_cache=0, window_crops=False)
VARIANTS = {
    "before": (BEFORE, {}),
    "cache_only": (dict(window_crops=False), {}),
    "windows_only": (dict(image_cache=0), {}),
    "after": ({}, {}),
    "after_private_pool_2": ({}, {"private_threadpool_size": 2}),
    "after_intra_op_1": ({}, {"max_intra_op_parallelism": 1}),
}


def with_threading(dataset, threading):
    """`dataset` with tf.data threading options set (e.g. private_threadpool_size=2)."""
    if not threading:
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    for name, value in threading.items():
        setattr(options.threading, name, value)
    return dataset.with_options(options)


def timed_batches(dataset, warmup, batches):
    """(wall seconds, process CPU seconds, patches) of `batches` batches of a fresh iterator
    over `dataset`, after `warmup` untimed ones (the start, and the parallelism tuning)."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    wall, cpu, patches = time.perf_counter(), time.process_time(), 0
    for _ in range(batches):
        images, _ = next(iterator)
        patches += int(np.prod(images.shape[:2]))
    return time.perf_counter() - wall, time.process_time() - cpu, patches


def compare_variants(make_dataset, paths, per_image, rounds, batches):
    """Alternates the variants; returns {variant: figures} (medians over `rounds`).

    `make_dataset(**kwargs)` builds a pipeline. Every variant with a cache gets one cache,
    holding the files `paths` first (what `fit` has after its first epoch, `pretrain` after
    some hundred steps) and shared by all its pipelines. Then, `rounds` times, each variant
    in turn times `batches` batches of a new pipeline, after 3 untimed ones.
    """
    caches = {}
    for name, (kwargs, _) in VARIANTS.items():
        if "image_cache" not in kwargs:
            caches[name] = DecodedImageCache()
            for path in paths:
                caches[name].load(path)
    samples = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, (kwargs, threading) in VARIANTS.items():
            cache = {"image_cache": caches[name]} if name in caches else {}
            dataset = with_threading(make_dataset(**kwargs, **cache), threading)
            samples[name].append(timed_batches(dataset, 3, batches))
    figures = {}
    for name, runs in samples.items():
        rate = float(np.median([p / w for w, _, p in runs]))
        cpu_ms = float(np.median([c / p * per_image * 1e3 for _, c, p in runs]))
        figures[name] = {"pipeline_patches_per_s": round(rate, 1), "cpu_ms_per_image": round(cpu_ms, 3)}
        if name in caches:
            figures[name]["images_cached"] = len(caches[name])
    base = figures["before"]
    for name, values in figures.items():
        values["patches_per_s_vs_before"] = round(values["pipeline_patches_per_s"] / base["pipeline_patches_per_s"], 3)
        values["cpu_per_image_vs_before"] = round(values["cpu_ms_per_image"] / base["cpu_ms_per_image"], 3)
    return figures


def crop_costs(presets, rounds, images=100):
    """{"crops_<preset>": ms per image of the crops from whole resize2 images and from windows}.

    One tf.function per way (`pipeline.TrainingCrops`, both parts on one image), on one thread of Python calls, a
    128 px (tiny: 32 px) uint8 image and a new seed per call; the ways alternate `rounds`
    times and the medians are kept. This is what `crops.windows_pay_off` decides on.
    """
    import tensorflow as tf

    from dnadet_tf.pipeline import TrainingCrops

    results = {}
    for preset in presets:
        config = make_config(preset)
        side = config.preprocessing.resize1
        image = tf.constant(np.random.default_rng(0).integers(0, 256, (side, side, 3)).astype(np.uint8))
        ways = {name: tf.function(TrainingCrops(config, window_crops=windows))
                for name, windows in (("whole_image", False), ("windows", True))}
        times = {name: [] for name in ways}
        for round_ in range(rounds + 1):
            for name, crops in ways.items():
                began = time.perf_counter()
                for i in range(images):
                    crops(image, tf.constant([round_, i], tf.int64))
                if round_:  # the first round traces and warms up
                    times[name].append((time.perf_counter() - began) / images * 1e3)
        whole, windows = (float(np.median(times[name])) for name in ways)
        results[f"crops_{preset}"] = {"whole_image_ms_per_image": round(whole, 3),
                                      "windows_ms_per_image": round(windows, 3),
                                      "windows_vs_whole_image": round(windows / whole, 3)}
        print(f"[crops_{preset}] {config.sampling.patches_per_image} crops of {config.sampling.patch_size} px from "
              f"{config.preprocessing.resize2} px: whole image {whole:.2f} ms, windows {windows:.2f} ms per image "
              f"({windows / whole:.2f}x)", flush=True)
    return results


def family_costs(photos, rounds, per_class=8):
    """{"transformations": CPU ms per 128 px crop of each family of the 170, and their class-weighted mean}.

    `transforms.apply_transform` as one tf.function, one thread of calls, on 128 px crops of
    the first photos; every class `per_class` times per round, the first round untimed
    (tracing). Each family's figure is the median over rounds of its classes' mean.
    """
    import tensorflow as tf

    from dnadet_tf.images import load_rgb
    from dnadet_tf.transforms import FAMILIES, FAMILY_STARTS, NUM_TRANSFORMS, apply_transform

    crops = [tf.constant(load_rgb(path)[:PHOTO_SIZE, :PHOTO_SIZE]) for path in photos[:per_class]]
    transform = tf.function(lambda image, index: apply_transform(image, index, tf.constant([0, 1], tf.int64)))
    per_round = []
    for round_ in range(rounds + 1):
        costs = np.zeros(NUM_TRANSFORMS)
        for index in range(NUM_TRANSFORMS):
            began = time.process_time()
            for crop in crops:
                transform(crop, tf.constant(index, tf.int32))
            costs[index] = (time.process_time() - began) / len(crops) * 1e3
        if round_:
            per_round.append(costs)
    costs = np.median(per_round, axis=0)
    families = {name: round(float(costs[start:start + count].mean()), 3)
                for (name, count), start in zip(FAMILIES, FAMILY_STARTS)}
    mean = round(float(costs.mean()), 3)
    print("[transformations] CPU ms per 128 px crop: "
          + ", ".join(f"{name} {value:.2f}" for name, value in families.items())
          + f"; mean over the 170 classes {mean:.2f}", flush=True)
    return {"transformations": {"cpu_ms_per_image": families, "mean_over_classes_cpu_ms": mean}}


def compare(args, photos, root):
    """--compare: {"fit_<preset>" | "pretrain_<preset>": {variant: figures}}, printed as it goes."""
    files = make_images(os.path.join(root, "data"))
    results = {}
    for preset in args.presets.split(","):
        fit_config = make_config(preset, **({"images_per_class": 4} if preset == "paper" else {}))
        pretrain_config = make_config(preset).replace(crop_size=PHOTO_SIZE, resize1=PHOTO_SIZE)
        pretrain_batch = pretrain_config.pretrain.batch_size if preset != "paper" else 20
        pipelines = {
            f"fit_{preset}": (lambda c=fit_config, **kw: training_dataset(files, c, **kw), fit_config, files.paths),
            f"pretrain_{preset}": (lambda c=pretrain_config, b=pretrain_batch, **kw:
                                   transformation_dataset(photos, c, b, **kw), pretrain_config, photos),
        }
        for key, (make_dataset, config, paths) in pipelines.items():
            per_image = config.sampling.patches_per_image
            figures = compare_variants(make_dataset, paths, per_image, args.rounds, args.steps)
            results[key] = figures
            for name, values in figures.items():
                print(f"[{key}] {name:20s} {values['pipeline_patches_per_s']:8.1f} patches/s "
                      f"({values['patches_per_s_vs_before']:.2f}x before), "
                      f"{values['cpu_ms_per_image']:7.2f} CPU ms/image "
                      f"({values['cpu_per_image_vs_before']:.2f}x before)", flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=DEFAULT_PHOTOS if os.path.isdir(DEFAULT_PHOTOS) else None)
    parser.add_argument("--presets", default="cpu,paper")
    parser.add_argument("--steps", type=int, default=4, help="batches (or training steps) per measurement")
    parser.add_argument("--compare", action="store_true", help="the pipelines before and after their speed-ups")
    parser.add_argument("--rounds", type=int, default=5, help="--compare: alternations of the variants")
    parser.add_argument("--families", action="store_true",
                        help="CPU time of each family of the 170 transformations on 128 px crops, one thread")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    configure_runtime("auto")  # as `fit` and `pretrain` run: before any TF op
    results = {}
    with tempfile.TemporaryDirectory() as root:
        photos = list_photos(args.photos) if args.photos else generated_photos(root)
        print(f"photos: {len(photos)} from {args.photos or 'generated'}", flush=True)
        if args.families:
            results.update(family_costs(photos, args.rounds))
        if args.compare:
            results.update(crop_costs(["tiny", *args.presets.split(",")], args.rounds))
            results.update(compare(args, photos, root))
        for preset in [] if args.compare or args.families else args.presets.split(","):
            config = make_config(preset)
            config = config.replace(crop_size=PHOTO_SIZE, resize1=PHOTO_SIZE)
            batch = config.pretrain.batch_size if preset != "paper" else 20  # the release's batch for the step
            dataset_fn = lambda start, c=config, b=batch: transformation_dataset(photos, c, b, start)  # noqa: E731
            pipe = pipeline_rate(dataset_fn(0), batches=max(4, args.steps))
            step, patches = step_rate(config, TRANSFORM_NAMES, dataset_fn, args.steps,
                                      os.path.join(root, f"run-{preset}"))
            per_image = config.sampling.patches_per_image
            results[preset] = {"pipeline_patches_per_s": round(pipe, 1), "step_patches_per_s": round(step, 1)}
            print(f"[{preset}] {batch} images x {per_image} crops = {patches} patches per step, "
                  f"{config.preprocessing.resize2} px resize", flush=True)
            print(f"[{preset}] transformation pipeline: {pipe / per_image:7.1f} images/s ({pipe:7.1f} patches/s)",
                  flush=True)
            print(f"[{preset}] training step consumes:  {step / per_image:7.1f} images/s ({step:7.1f} patches/s); "
                  f"pipeline / step = {pipe / step:.1f}x", flush=True)
    if args.json:
        write_json_atomic(args.json, results, indent=1, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

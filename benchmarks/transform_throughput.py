"""Step 1 (pre-training on 170 transformations): input pipeline throughput next
to what the training step consumes.

Measures `pipeline.transformation_dataset` (decode a photo, random 128 px crop,
one of the 170 transformations, the shared resize chain, random 64 px crops;
parallel map and prefetch, exactly as `dnadet-tf pretrain` uses it) with
nothing consuming it, and the Trainer's step with 170 classes on one batch
held in memory. The pipeline must keep up (ratio >= 1; we aim for >= 2).

Usage: python benchmarks/transform_throughput.py [--photos DIR] [--presets cpu,paper] [--steps N]
Without --photos: /work/shared/data/photos/scenes when it exists, else generated photos.
"""
import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_throughput import pipeline_rate, step_rate  # noqa: E402

from dnadet_tf.config import make_config  # noqa: E402
from dnadet_tf.pipeline import transformation_dataset  # noqa: E402
from dnadet_tf.pretraining import PHOTO_SIZE, list_photos  # noqa: E402
from dnadet_tf.transforms import TRANSFORM_NAMES  # noqa: E402

DEFAULT_PHOTOS = "/work/shared/data/photos/scenes"


def generated_photos(folder, count=64):
    rng = np.random.default_rng(0)
    for i in range(count):
        low = rng.uniform(0, 255, (48, 64, 3)).astype(np.uint8)
        Image.fromarray(low).resize((384, 256), Image.BICUBIC).save(os.path.join(folder, f"{i}.jpg"), quality=95)
    return list_photos(folder)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=DEFAULT_PHOTOS if os.path.isdir(DEFAULT_PHOTOS) else None)
    parser.add_argument("--presets", default="cpu,paper")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        photos = list_photos(args.photos) if args.photos else generated_photos(root)
        print(f"photos: {len(photos)} from {args.photos or 'generated'}", flush=True)
        for preset in args.presets.split(","):
            config = make_config(preset)
            config = config.replace(crop_size=PHOTO_SIZE, resize1=PHOTO_SIZE)
            batch = config.pretrain.batch_size if preset != "paper" else 20  # the release's batch for the step
            dataset_fn = lambda start, c=config, b=batch: transformation_dataset(photos, c, b, start)  # noqa: E731
            pipe = pipeline_rate(dataset_fn(0), batches=max(4, args.steps))
            step, patches = step_rate(config, TRANSFORM_NAMES, dataset_fn, args.steps,
                                      os.path.join(root, f"run-{preset}"))
            per_image = config.sampling.patches_per_image
            print(f"[{preset}] {batch} images x {per_image} crops = {patches} patches per step, "
                  f"{config.preprocessing.resize2} px resize", flush=True)
            print(f"[{preset}] transformation pipeline: {pipe / per_image:7.1f} images/s ({pipe:7.1f} patches/s)",
                  flush=True)
            print(f"[{preset}] training step consumes:  {step / per_image:7.1f} images/s ({step:7.1f} patches/s); "
                  f"pipeline / step = {pipe / step:.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What `--extra-real-process auto` reads from lossless real photos: `resampling.read_enlargement` on sets of
images enlarged (or JPEG-compressed) in known ways, and on folders as they are.

The base set is COUNT natural 128 px crops of the photos shipped with the package (cut as `--extra-real` cuts
them: the shorter side shrunk to 128-192 px, a random window), so the command runs anywhere. Each processing
below is applied to every crop, the result saved as PNG, and the set read whole and in random subsets of 20
and 40 (50 draws each, fixed seed) to show how far the consensus peak moves with fewer images. `--folder` adds
folders read as they are (a zoo's real training images, lossless photos).

    python benchmarks/resampling_detection.py --json benchmarks/results/resampling-detection.json \
        [--folder NAME=DIR ...]

Prints one Markdown row per set: the factor found (or the reason none was), the peak's frequency and
prominence over the whole set, and the lowest and highest prominence over the subsets.
"""
import argparse
import io
import os
import sys
import tempfile

import numpy as np
from PIL import Image

from dnadet_tf.resampling import PROMINENCE, enlargement, highest_peak, image_spectra
from dnadet_tf.runs import write_json_atomic

COUNT = 240
SUBSETS = (20, 40)
DRAWS = 50


def _through(side, method):
    return lambda image: image.resize((side, side), Image.BICUBIC).resize(image.size, method)


def _jpeg(quality):
    def process(image):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        return Image.open(buffer).convert("RGB")
    return process


PROCESSINGS = {
    "none (the crops as cut)": lambda image: image,
    "bicubic through 100 px (x1.28)": _through(100, Image.BICUBIC),
    "bicubic through 96 px (x1.33)": _through(96, Image.BICUBIC),
    "bicubic through 85 px (x1.5)": _through(85, Image.BICUBIC),
    "bilinear through 102 px (x1.25)": _through(102, Image.BILINEAR),
    "Lanczos through 116 px (x1.1)": _through(116, Image.LANCZOS),
    "nearest through 80 px (x1.6)": _through(80, Image.NEAREST),
    "bicubic through 64 px (x2)": _through(64, Image.BICUBIC),
    "JPEG q90, saved as PNG": _jpeg(90),
    "JPEG q60, saved as PNG": _jpeg(60),
}


def packaged_crops(count):
    from dnadet_tf.images import find_images
    from dnadet_tf.zoo.photos import PACKAGED_PHOTOS, crop_for

    photos = find_images(PACKAGED_PHOTOS)
    return [Image.fromarray(crop_for(photos, 0, "resampling-detection", i)) for i in range(count)]


def measure(paths, rng):
    """The set's finding, and what random subsets of it are read as."""
    spectra = image_spectra(paths)
    factor, finding = enlargement(spectra)
    frequency, height, _ = highest_peak(spectra)
    row = {"images": len(paths), "factor": factor, "finding": finding, "peak_frequency": frequency,
           "peak_prominence": height, "subsets": {}}
    for size in SUBSETS:
        if size >= len(spectra):
            continue
        heights, factors = [], []
        for _ in range(DRAWS):
            picked = spectra[rng.choice(len(spectra), size, replace=False)]
            heights.append(highest_peak(picked)[1])
            factors.append(enlargement(picked)[0])
        row["subsets"][str(size)] = {"min": min(heights), "max": max(heights), "factors": factors}
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--folder", action="append", default=[], metavar="NAME=DIR",
                        help="a folder of images read as they are (recursively); repeatable")
    parser.add_argument("--count", type=int, default=COUNT, help="crops of the packaged photos per set")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    crops = packaged_crops(args.count)
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, process in PROCESSINGS.items():
            folder = os.path.join(scratch, str(len(rows)))
            os.makedirs(folder)
            paths = []
            for i, crop in enumerate(crops):
                paths.append(os.path.join(folder, f"{i:04d}.png"))
                process(crop).save(paths[-1])
            rows[f"packaged crops, {name}"] = measure(paths, rng)
    from dnadet_tf.images import find_images

    for spec in args.folder:
        name, _, folder = spec.partition("=")
        rows[name] = measure(find_images(folder), rng)
    write_json_atomic(args.json, {"threshold": PROMINENCE, "sets": rows}, indent=1, sort_keys=False)
    sizes = " / ".join(map(str, SUBSETS))
    print(f"| images | read as | peak (cycles/px) | prominence | subsets of {sizes}: prominence | "
          f"subsets of {sizes} read as enlarged |\n|---|---|---:|---:|---|---|")
    for name, row in rows.items():
        read = f"x{row['factor']:.2f}" if row["factor"] else row["finding"].split(" (")[0]
        subsets = row["subsets"].values()
        ranges = " / ".join(f"{r['min']:.1f}..{r['max']:.1f}" for r in subsets)
        found = " / ".join(f"{sum(f is not None for f in r['factors'])} of {len(r['factors'])}" for r in subsets)
        print(f"| {name} ({row['images']}) | {read} | {row['peak_frequency']:.3f} | {row['peak_prominence']:.1f} | "
              f"{ranges} | {found} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

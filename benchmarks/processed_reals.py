"""A copy of a zoo's lists whose real images carry a processing that differs by content.

Every real image of a zoo is made by one crop pipeline, so the real photos of the training content and those of
cross_dataset share their low-level statistics. Released data sets differ there: one kind of content comes as
JPEG, another lossless; one enlarged to a generator's input size, another not. This writes a benchmark where they
differ, to see whether an attributor learns "real" as the training content's processing:

- `--process`: applied to the real images of every split but cross_dataset and open_set (the training content);
- `--cross-process`: applied to the real images of cross_dataset (the other content); `none` keeps them.
One of the two may be `none`, not both.

A processing is `jpeg:Q` or `upsample:S` (`dnadet_tf/photo_processing.py`). Fakes, and every image left as it
was, are listed by absolute path to the zoo's file; processed images are written under DIR/images/ with the
processing in the name. The zoo itself is never changed. The same zoo and flags give the same bytes.

Usage: python benchmarks/processed_reals.py --zoo ZOO --out DIR --process upsample:100 [--cross-process none]
"""
import argparse
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from PIL import Image  # noqa: E402

from dnadet_tf.data import REAL_CLASS, read_annotation_list  # noqa: E402
from dnadet_tf.errors import DataError, DnadetError  # noqa: E402
from dnadet_tf.photo_processing import parse_processing, save_processed  # noqa: E402
from dnadet_tf.runs import write_text_atomic  # noqa: E402


def processed_copy(src, dst_stem, processing):
    """Writes `src` processed (`photo_processing.save_processed`) to DST_STEM + suffix and returns that path."""
    os.makedirs(os.path.dirname(dst_stem), exist_ok=True)
    return save_processed(Image.open(src).convert("RGB"), dst_stem, processing)


def write_processed_reals(zoo, out, process, cross_process):
    """Writes DIR/classes.txt and one list per zoo list (see the module docstring); returns the list names."""
    classes_path = os.path.join(zoo, "classes.txt")
    if not os.path.isfile(classes_path):
        raise DataError(f"{classes_path}: not found; expected a zoo folder ('dnadet-tf zoo build' writes it).")
    if os.path.abspath(out) == os.path.abspath(zoo):
        raise DataError(f"--out: must be another folder than the zoo; received {out}.")
    os.makedirs(out, exist_ok=True)
    shutil.copy(classes_path, out)
    names = sorted(n for n in os.listdir(zoo) if n.endswith(".txt") and n != "classes.txt")
    for name in names:
        lines = (_open_set_lines(zoo, name) if name == "open_set.txt"
                 else _split_lines(zoo, out, name, cross_process if name == "cross_dataset.txt" else process))
        write_text_atomic(os.path.join(out, name), "\n".join(lines) + "\n")
    return names


def _open_set_lines(zoo, name):
    """The open_set list's lines by absolute path: unknown architectures, labelled by name, none of them real."""
    with open(os.path.join(zoo, name), encoding="utf-8") as handle:
        return [f"{os.path.abspath(os.path.join(zoo, path))}\t{label}"
                for path, label in (line.rstrip("\n").rsplit("\t", 1) for line in handle)]


def _split_lines(zoo, out, name, processing):
    """One split's lines: its real images processed into OUT (relative paths), every other image by absolute path."""
    files = read_annotation_list(os.path.join(zoo, name))
    real = files.class_names.index(REAL_CLASS)
    lines = []
    for path, label in zip(files.paths, files.labels):
        if label == real and processing is not None:
            stem = os.path.join(out, os.path.splitext(os.path.relpath(path, zoo))[0])
            lines.append(f"{os.path.relpath(processed_copy(path, stem, processing), out)}\t{label}")
        else:
            lines.append(f"{os.path.abspath(path)}\t{label}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", required=True, help="a zoo folder (classes.txt and its lists)")
    parser.add_argument("--out", required=True, help="the folder to write the lists and processed images into")
    parser.add_argument("--process", required=True,
                        help="jpeg:Q | upsample:S | none (with a --cross-process), for the training content's reals")
    parser.add_argument("--cross-process", default="none", help="jpeg:Q | upsample:S | none, for cross_dataset's reals")
    args = parser.parse_args(argv)
    try:
        process = parse_processing(args.process, "--process")
        cross = parse_processing(args.cross_process, "--cross-process")
        if process is None and cross is None:
            raise DataError("--process: expected 'jpeg:QUALITY' or 'upsample:SIDE' when --cross-process is none; "
                            "received 'none'.")
        names = write_processed_reals(args.zoo, args.out, process, cross)
    except DnadetError as error:
        sys.exit(f"error: {error}")
    print(f"wrote {len(names)} lists to {args.out}")


if __name__ == "__main__":
    main()

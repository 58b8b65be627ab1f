"""How a real photo was prepared before it reached a data set, named as text.

Released data sets prepare their real photos in different ways: one kind of content comes as JPEG, another
lossless; one is resized to a generator's input side, another is not. A processing is written as

- `jpeg:Q`: a JPEG round trip at quality Q (1..100), kept as the JPEG file;
- `upsample:S`: bicubic to S x S and back to the image's own size (the look of a photo resized through a
  generator's input side), kept as PNG;
- `none`: the image as it is.

Both can be read back from a set of files (`matching_processing`, what `fit --extra-real-process auto` uses):
`jpeg_quality` estimates the quality a JPEG file was saved at from its luminance quantization table, and for
lossless files `resampling.read_enlargement` reads an enlargement (by 1x to 2x) from the period that
interpolation leaves in them (`auto` applies the JPEG quality and reports the enlargement: `extra_real.AUTO_KINDS`).
A downsampling, a mix of processings, or JPEG and other files mixed, are not named: name them yourself.

`fit --extra-real-process` gives the extra real crops the processing of the user's real photos;
`benchmarks/processed_reals.py` writes benchmarks whose real photos differ in it by content.
"""
import functools
import io

import numpy as np
from PIL import Image

from dnadet_tf.errors import DnadetError

KINDS = ("jpeg", "upsample")
NONE = "none"
AUTO = "auto"
MIN_SIDE = 8
JPEG_FORMATS = ("JPEG", "MPO")  # Pillow's names of a JPEG file: "MPO" for one with a multi-picture segment


def parse_processing(text, flag):
    """'jpeg:Q' | 'upsample:S' | 'none' -> (kind, value), or None for 'none'.

    Raises DnadetError, one line naming `flag`, for anything else.
    """
    if text == NONE:
        return None
    kind, _, value = str(text).partition(":")
    if kind not in KINDS or not value.isdigit():
        raise DnadetError(f"{flag}: expected 'jpeg:QUALITY', 'upsample:SIDE' or 'none'; received '{text}'.")
    value = int(value)
    if kind == "jpeg" and not 1 <= value <= 100:
        raise DnadetError(f"{flag}: JPEG quality must be in 1..100; received {value}.")
    if kind == "upsample" and value < MIN_SIDE:
        raise DnadetError(f"{flag}: the side to resample through must be at least {MIN_SIDE} px; received {value}.")
    return kind, value


def processing_name(processing):
    """The text of a parsed processing: None -> 'none', ("jpeg", 75) -> 'jpeg:75'."""
    return NONE if processing is None else f"{processing[0]}:{processing[1]}"


def suffix(processing):
    """The file name ending of an image saved by `save_processed`: '.png' (None), '-q75.jpg', '-up100.png'."""
    if processing is None:
        return ".png"
    kind, value = processing
    return f"-q{value}.jpg" if kind == "jpeg" else f"-up{value}.png"


def save_processed(image, dst_stem, processing):
    """Writes the PIL RGB `image` processed (None: as it is, PNG) to DST_STEM + `suffix(processing)` and returns
    that path; the file appears whole or not at all (`images.save_image_atomic`).
    """
    from dnadet_tf.images import save_image_atomic

    dst = dst_stem + suffix(processing)
    if processing is None:
        save_image_atomic(image, dst, "PNG")
    elif processing[0] == "jpeg":
        save_image_atomic(image, dst, "JPEG", quality=processing[1])
    else:
        side = processing[1]
        save_image_atomic(image.resize((side, side), Image.BICUBIC).resize(image.size, Image.BICUBIC), dst, "PNG")
    return dst


@functools.lru_cache(maxsize=1)
def _libjpeg_luminance_tables():
    """(100, 64) int: the luminance quantization table Pillow's libjpeg writes at qualities 1..100."""
    tables = []
    for quality in range(1, 101):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        tables.append(list(Image.open(buffer).quantization[0]))
    return np.asarray(tables, dtype=np.int64)


def jpeg_quality(path):
    """The quality (1..100) at which the JPEG file `path` was saved, or None when it is not a JPEG file (one
    with a multi-picture segment, which Pillow opens as "MPO", as some cameras and phones write them, is one).

    The quality whose libjpeg luminance table is nearest (sum of absolute differences) to the file's: exact
    for files that libjpeg wrote at an integer quality, the closest such quality for other encoders.
    """
    with Image.open(path) as image:
        if image.format not in JPEG_FORMATS or not getattr(image, "quantization", None):
            return None
        table = np.asarray(list(image.quantization[0]), dtype=np.int64)
    tables = _libjpeg_luminance_tables()
    if table.shape != tables.shape[1:]:
        return None
    return int(np.argmin(np.abs(tables - table).sum(axis=1))) + 1


def matching_processing(paths, side):
    """The processing shared by the image files `paths`, for crops of `side` px: ((kind, value) or None, a line
    saying what was found in the files).

    ("jpeg", Q) when every file is a JPEG, Q the median of their estimated qualities (`jpeg_quality`);
    ("upsample", S) when none is and `resampling.read_enlargement` finds them enlarged by a factor r, S =
    round(side / r) (a `side` px crop through S px and back is enlarged by the same factor); None otherwise
    (JPEG and other files mixed, or lossless files with no enlargement found).
    """
    from dnadet_tf.resampling import read_enlargement

    qualities = [jpeg_quality(path) for path in paths]
    jpegs = [q for q in qualities if q is not None]
    if paths and len(jpegs) == len(paths):
        quality = int(np.median(jpegs))
        return ("jpeg", quality), (f"all {len(paths)} images are JPEG files, estimated quality "
                                   f"{min(jpegs)}..{max(jpegs)}, median {quality}")
    if jpegs or not paths:
        return None, f"{len(jpegs)} of {len(paths)} images are JPEG files, no one processing"
    factor, finding = read_enlargement(paths)
    if factor is None:
        return None, f"none of {len(paths)} images is a JPEG file; {finding}"
    processing = ("upsample", max(MIN_SIDE, min(side, int(round(side / factor)))))
    return processing, f"none of {len(paths)} images is a JPEG file; {finding}"

"""How a real photo was prepared before it reached a data set, named as text.

Released data sets prepare their real photos in different ways: one kind of content comes as JPEG, another
lossless; one is resized to a generator's input side, another is not. A processing is written as

- `jpeg:Q`: a JPEG round trip at quality Q (1..100), kept as the JPEG file;
- `upsample:S`: bicubic to S x S and back to the image's own size (the look of a photo resized through a
  generator's input side), kept as PNG;
- `none`: the image as it is.

`fit --extra-real-process` gives the extra real crops the processing of the user's real photos;
`benchmarks/processed_reals.py` writes benchmarks whose real photos differ in it by content.
"""
import os

from PIL import Image

from dnadet_tf.errors import DnadetError

KINDS = ("jpeg", "upsample")
NONE = "none"
MIN_SIDE = 8


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


def suffix(processing):
    """The file name ending of a processed image: '-q75.jpg', '-up100.png'."""
    kind, value = processing
    return f"-q{value}.jpg" if kind == "jpeg" else f"-up{value}.png"


def save_processed(image, dst_stem, processing):
    """Writes the PIL RGB `image` processed to DST_STEM + `suffix(processing)` and returns that path.

    The file appears whole or not at all (written to a temporary name, then renamed).
    """
    kind, value = processing
    dst = dst_stem + suffix(processing)
    tmp = f"{dst}.tmp-{os.getpid()}"
    if kind == "jpeg":
        image.save(tmp, format="JPEG", quality=value)
    else:
        image.resize((value, value), Image.BICUBIC).resize(image.size, Image.BICUBIC).save(tmp, format="PNG")
    os.replace(tmp, dst)
    return dst

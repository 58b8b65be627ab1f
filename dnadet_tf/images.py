"""Reading image files: the one place where files become RGB pixels.

Every image, whatever its mode (palette, grey, RGBA, CMYK, 16-bit) or EXIF
orientation, becomes an 8-bit RGB array the same way here. Pillow's
decompression-bomb guard stays on: an image of more than `PIL.Image.MAX_IMAGE_PIXELS`
pixels (89.5 M by default) is refused, here and in the exported graph; the environment
variable DNADET_TF_MAX_PIXELS sets another limit (a 200 MP phone photo needs 2e8; a value beyond int64's range,
`inf` included, is int64's largest, i.e. no practical limit).
"""
import os
import sys
import warnings

import numpy as np
from PIL import Image, ImageOps

MAX_PIXELS_VARIABLE = "DNADET_TF_MAX_PIXELS"
# The largest limit: the exported graph compares an int64 pixel count with it.
LARGEST_MAX_PIXELS = int(np.iinfo(np.int64).max)


def _apply_max_pixels():
    """Sets Pillow's decompression-bomb limit from DNADET_TF_MAX_PIXELS, when set (a positive number, at most
    `LARGEST_MAX_PIXELS`: a larger one, `inf` included, becomes it; anything else is said in a warning line and
    changes nothing)."""
    text = os.environ.get(MAX_PIXELS_VARIABLE, "").strip()
    if not text:
        return
    try:
        number = float(text)
        limit = LARGEST_MAX_PIXELS if number >= LARGEST_MAX_PIXELS else int(number)
    except ValueError:  # not a number, or nan
        limit = 0
    if limit <= 0:
        print(f"warning: {MAX_PIXELS_VARIABLE}: expected a positive number of pixels, received {text!r}; the limit "
              f"stays {Image.MAX_IMAGE_PIXELS}.", file=sys.stderr, flush=True)
        return
    Image.MAX_IMAGE_PIXELS = limit


_apply_max_pixels()

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# Formats whose checksums Pillow checks only in `verify` (not in `load`).
VERIFIED_FORMATS = ("PNG",)


class ImageError(ValueError):
    """A file that cannot be used as an image; the message names the file."""


def is_image_file(path):
    """True when `path` has one of the accepted extensions (any case) and is not hidden."""
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def find_images(folder, others=None, onerror=None):
    """Image files under `folder`, recursively, in walk order: a folder's files (sorted) before its
    subfolders (sorted); hidden files and folders skipped, linked folders followed (each real folder read once).
    `others`, a list, receives the paths of the files not read (not hidden, without an image extension).
    `onerror(OSError)` is called for a folder that cannot be read (default: it is skipped, as by `os.walk`)."""
    found, visited = [], set()
    for root, subdirs, files in os.walk(folder, followlinks=True, onerror=onerror):
        real = os.path.realpath(root)
        if real in visited:  # a link back to a folder already read: read once, and no endless loop
            subdirs[:] = []
            continue
        visited.add(real)
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in sorted(files) if is_image_file(f))
        if others is not None:
            others.extend(os.path.join(root, f) for f in sorted(files)
                          if not f.startswith(".") and not is_image_file(f))
    return found


def _transparent_colour(image):
    """The colour a tRNS chunk declares fully transparent (an RGB or grey PNG's transparency; a palette's is
    handled by mode "P"), in the sample values Pillow decodes, or None. Pillow keeps it in info["transparency"]
    in the file's bit depth while it decodes a 2- or 4-bit grey image to 0-255 and a 16-bit RGB one to its high
    bytes, so it is scaled the same way (read before `load`: the decoder's raw mode is in the tile)."""
    colour = image.info.get("transparency")
    if image.mode not in ("1", "L", "RGB", "I;16", "I;16B", "I;16L", "I") or not isinstance(colour, (int, tuple)):
        return None
    raw = image.tile[0][3] if image.tile else None
    if raw in ("L;2", "L;4"):
        colour = colour * 255 // ((1 << int(raw[2])) - 1)
    elif raw == "RGB;16B" and isinstance(colour, tuple):
        colour = tuple(value >> 8 for value in colour)
    return colour


def _to_rgb(image, transparent=None):
    """`image` as 8-bit RGB; `transparent`: the colour from `_transparent_colour`, which becomes white (a fully
    transparent pixel composited over white, as the web app and a browser show it)."""
    mask = None
    if transparent is not None:
        # Before the 16-bit scaling: the colour is compared with the samples as stored.
        samples = np.asarray(image.convert("L") if image.mode == "1" else image)
        mask = np.all(samples == transparent, axis=-1) if samples.ndim == 3 else samples == transparent
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit samples (a 16-bit grey PNG) keep their high byte (v >> 8), whatever the content: what TF's PNG
        # decoder (the SavedModel's) does, and what Pillow does with a 16-bit RGB PNG. A 32-bit integer image
        # ("I") has no depth to go by: values up to 255 are taken as 8-bit ones, others as 16-bit samples.
        array = np.asarray(image, dtype=np.int64)
        if image.mode != "I" or array.max() > 255:
            array = np.clip(array, 0, 65535) >> 8
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(array * (255.0 if array.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        # Composite over white so that transparent areas do not become black noise.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    rgb = image.convert("RGB")
    if mask is not None and mask.any():
        array = np.array(rgb)
        array[mask] = 255
        rgb = Image.fromarray(array, "RGB")
    return rgb


def load_rgb(path, min_side=1):
    """Reads an image file into a uint8 array of shape (H, W, 3).

    Applies EXIF orientation, takes the first frame of animations, and turns
    any mode into 8-bit RGB, transparency (an alpha channel, a palette's or a
    PNG's transparent colour) composited over white. Raises `ImageError` naming the file when it is
    empty, unreadable, truncated, corrupt (a PNG chunk checksum included), not
    an image, or has a side below `min_side`.
    """
    path = os.fspath(path)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # bytes of another encoding, kept by Python as surrogates: TF's paths cannot hold them
        shown = path.encode("utf-8", "backslashreplace").decode("utf-8")
        raise ImageError(f"{shown}: the file name is not valid UTF-8 (the data pipeline reads UTF-8 names); rename "
                         f"the file.") from None
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise ImageError(f"{path}: cannot be read ({error.strerror}).") from None
    if size == 0:
        raise ImageError(f"{path}: the file is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as probe:
                if probe.format in VERIFIED_FORMATS:
                    # `load` does not check chunk checksums; `verify` does, and leaves the
                    # image unusable, so the file is opened a second time (from the OS cache).
                    probe.verify()
            with Image.open(path) as image:
                image.seek(0)
                _check_first_frame_fills(image)
                transparent = _transparent_colour(image)
                image.load()
                image = ImageOps.exif_transpose(image)
                rgb = _to_rgb(image, transparent)
            array = np.asarray(rgb, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"{path}: refused as a possible decompression bomb ({error}); set {MAX_PIXELS_VARIABLE} "
                         f"to a larger number of pixels to read it.") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read.") from None
    except Exception as error:  # noqa: BLE001  Pillow's decoders raise many types on malformed data
        raise ImageError(f"{path}: cannot be decoded ({_one_line(error)}).") from None
    if min(array.shape[:2]) < min_side:
        raise ImageError(
            f"{path}: too small; expected both sides >= {min_side} px, received "
            f"{array.shape[1]}x{array.shape[0]} px."
        )
    return array


def _check_first_frame_fills(image):
    """Raises ValueError for a GIF whose first frame does not cover its screen: Pillow pads it to
    the screen size while TensorFlow's decoder (the SavedModel's) returns the frame alone, so the
    two would see different images (a damaged header can declare a screen of any size)."""
    if image.format != "GIF" or not image.tile:
        return
    x0, y0, x1, y1 = image.tile[0][1]
    if (x0, y0, x1, y1) != (0, 0, *image.size):
        raise ValueError(f"its first frame ({x1 - x0}x{y1 - y0} px at {x0},{y0}) does not fill its "
                         f"{image.size[0]}x{image.size[1]} px screen")


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def save_image_atomic(image, path, format, **params):
    """Writes the PIL `image` to `path` in `format` (Pillow's name, e.g. "PNG", "JPEG"; `params` are Pillow's
    save options) via a temporary file and a rename, so the file appears whole or not at all."""
    tmp = f"{path}.tmp-{os.getpid()}{os.path.splitext(path)[1]}"
    image.save(tmp, format=format, **params)
    os.replace(tmp, path)


def save_png_atomic(array, path):
    """Writes a uint8 (H, W, 3) array as PNG via a temporary file and a rename."""
    save_image_atomic(Image.fromarray(np.asarray(array, dtype=np.uint8)), path, "PNG")


def save_figure_atomic(figure, path, dpi=100):
    """Saves a matplotlib figure as PNG via a temporary file and a rename, then closes it."""
    import matplotlib.pyplot as plt

    tmp = f"{path}.tmp-{os.getpid()}.png"
    figure.savefig(tmp, dpi=dpi)
    plt.close(figure)
    os.replace(tmp, path)
    return path

"""Contact sheets: one PNG per split, one row per class, a few samples each, the class name first."""
import numpy as np
from PIL import Image, ImageDraw

from dnadet_tf.images import load_rgb, save_png_atomic

LABEL_WIDTH = 112
GAP = 4


def contact_sheet(rows, path, tile=128):
    """Writes a contact sheet.

    Args:
      rows: list of (title, [image paths]) in display order.
      path: the PNG to write (atomically).
      tile: side of each sample in the sheet (images of another size are resized).
    """
    columns = max((len(paths) for _, paths in rows), default=1) or 1
    width = LABEL_WIDTH + columns * (tile + GAP) + GAP
    height = len(rows) * (tile + GAP) + GAP
    sheet = Image.new("RGB", (width, max(height, tile)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (title, paths) in enumerate(rows):
        top = GAP + r * (tile + GAP)
        draw.text((GAP * 2, top + tile // 2 - 6), title, fill=(0, 0, 0))
        for c, image_path in enumerate(paths):
            image = Image.fromarray(load_rgb(image_path))
            if image.size != (tile, tile):
                image = image.resize((tile, tile), Image.BICUBIC)
            sheet.paste(image, (LABEL_WIDTH + GAP + c * (tile + GAP), top))
    save_png_atomic(np.asarray(sheet), path)

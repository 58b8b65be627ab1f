"""Small generated images for tests: three classes that share content and
differ only in how the content was upsampled (nearest, bilinear, and a
transposed convolution with a fixed kernel that leaves checkerboard traces)."""
import glob
import os
import shutil

import numpy as np
from PIL import Image

CLASSES = ("real", "nearest", "transposed")


def _content(rng, low):
    return rng.uniform(0, 255, size=(low, low, 3))


def _upsample_nearest(x, factor):
    return np.repeat(np.repeat(x, factor, axis=0), factor, axis=1)


def _upsample_bilinear(x, factor):
    image = Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))
    size = x.shape[0] * factor
    return np.asarray(image.resize((size, size), Image.BILINEAR), np.float64)


def _upsample_transposed(x, factor):
    """Zero-insertion then a fixed 2-D kernel whose taps do not sum evenly:
    periodic (checkerboard) traces at the upsampling period."""
    size = x.shape[0] * factor
    out = np.zeros((size, size, 3))
    out[::factor, ::factor] = x
    kernel = np.outer([0.5, 1.0, 0.7, 0.3], [0.5, 1.0, 0.7, 0.3])
    kernel = kernel / kernel.sum() * factor * factor
    padded = np.pad(out, ((2, 1), (2, 1), (0, 0)), mode="edge")
    result = np.zeros_like(out)
    for i in range(4):
        for j in range(4):
            result += kernel[i, j] * padded[i : i + size, j : j + size]
    return result


UPSAMPLERS = {"real": _upsample_bilinear, "nearest": _upsample_nearest, "transposed": _upsample_transposed}


def make_upsampling_tree(root, images_per_class, seed=0, size=32, factor=4):
    """Writes ROOT/<class>/<i>.png for the three classes (same content per i).

    Returns the class names in label order.
    """
    rng = np.random.default_rng(seed)
    for i in range(images_per_class):
        content = _content(rng, size // factor)
        for name in CLASSES:
            folder = os.path.join(root, name)
            os.makedirs(folder, exist_ok=True)
            pixels = np.clip(UPSAMPLERS[name](content, factor) + 0.5, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, f"{i:04d}.png"))
    return list(CLASSES)


def make_photos(folder, count, size=(192, 160), seed=0):
    """Smooth random 'photos': low-resolution noise upsampled bicubically, saved as high-quality JPEG."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        low = rng.uniform(0, 255, (size[1] // 8, size[0] // 8, 3)).astype(np.uint8)
        Image.fromarray(low).resize(size, Image.BICUBIC).save(os.path.join(folder, f"p{i:02d}.jpg"), quality=95)
    return folder


def write_benchmark(data, folder):
    """Writes a benchmark folder in `folder` over the trees of make_upsampling_tree {'train', 'val', 'test': ROOT}
    (`data`): classes.txt, train.txt and val.txt of their images, and the test images in every test list. Returns
    `folder` as a str."""
    def listing(split):
        lines = []
        for label, name in enumerate(CLASSES):
            root = os.path.join(data[split], name)
            lines += [f"{os.path.join(root, file)}\t{label}\n" for file in sorted(os.listdir(root))]
        return "".join(lines)

    with open(os.path.join(folder, "classes.txt"), "w") as f:
        f.write("".join(f"{name}\n" for name in CLASSES))
    for split, source in (("train", "train"), ("val", "val"), ("test", "test"), ("cross_seed", "test"),
                          ("cross_loss", "test"), ("cross_finetune", "test"), ("cross_dataset", "test")):
        with open(os.path.join(folder, f"{split}.txt"), "w") as f:
            f.write(listing(source))
    return str(folder)


def packaged_photo_dirs(root, counts):
    """Copies `counts` = {'a': n, ...} of the package's demo photos (in sorted order, none twice) into
    root/<letter>/; returns root."""
    from dnadet_tf.zoo.photos import PACKAGED_PHOTOS

    sources = iter(sorted(glob.glob(os.path.join(PACKAGED_PHOTOS, "*", "*.jpg"))))
    for letter, count in counts.items():
        os.makedirs(os.path.join(root, letter), exist_ok=True)
        for _ in range(count):
            shutil.copy(next(sources), os.path.join(root, letter))
    return root


def copy_tree_head(source, folder, per_class):
    """FOLDER/<class>/ holding copies of the first `per_class` images of each class of the tree `source`; returns
    FOLDER as a str."""
    for name in CLASSES:
        os.makedirs(os.path.join(folder, name))
        for image in sorted(os.listdir(os.path.join(source, name)))[:per_class]:
            shutil.copy(os.path.join(source, name, image), os.path.join(folder, name, image))
    return str(folder)

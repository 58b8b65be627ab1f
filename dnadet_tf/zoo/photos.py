"""Photos for the zoo: finding them, grouping them into content domains, cutting 128 px crops.

Domains. The zoo needs three content domains, A (the training domain), B (the
cross-dataset domain) and C (the fine-tuning domain). From a photo folder DIR:

1. if DIR has subfolders named `a`, `b` and `c` (any case), those are A, B and C;
2. else if DIR has three or more subfolders, in sorted order the first is A, the
   second is B, and all the others together are C;
3. else if DIR has no subfolder, its photos, sorted by name, are dealt out in turn
   A, B, A, C, A, B, A, C, ... (half of them for A);
4. else (one or two subfolders) the folder is refused.

Photos are found recursively (hidden files and folders ignored, extensions as in
`dnadet_tf.images`). A photo that cannot be decoded is skipped with a warning on
stderr naming it; so is one with the same pixels as a photo found before it (a copy,
a link, a folder linked twice, a lossless re-save: in two content groups it would put
test content into training), the first kept in the order A, B, C and by path; a photo
whose shorter side is below 128 px, an empty domain folder, or fewer usable photos
than the size needs stop the build with `DataError`.

Content groups. Within A the photos are split (seeded shuffle) into disjoint
`A-train`, `A-val` and `A-test` groups, so test content was never seen in training;
B and C are split into `-train` (generators learn on them) and `-test` (content the
cross-test images are generated from).

Crops. A crop is natural: the photo is resized (Lanczos, never enlarged) so its shorter
side is a random size in [128, 192], then a random 128x128 window is cut and, half
of the time, mirrored.
"""
import functools
import hashlib
import os
import sys

import numpy as np
from PIL import Image

from dnadet_tf.errors import DataError
from dnadet_tf.images import ImageError, find_images, is_image_file, load_rgb

PACKAGED_PHOTOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_photos")


def cache_root():
    """The folder of the files the package derives from photos (zoos, `extra_real` crops):
    $DNADET_TF_CACHE, or ~/.cache/dnadet-tf."""
    return os.environ.get("DNADET_TF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "dnadet-tf")
DOMAINS = ("A", "B", "C")
CROP = 128
MAX_CROP_SIDE = 192
# Fraction of each domain used for validation / test content (A) or held-out content (B, C).
_A_FRACTIONS = (0.15, 0.25)
_HELD_OUT_FRACTION = 0.4


def _list_images(folder):
    return sorted(find_images(folder))


def _subfolders(folder):
    return sorted(
        d for d in os.listdir(folder) if not d.startswith(".") and os.path.isdir(os.path.join(folder, d))
    )


def _domain_folders(folder):
    """Applies the folder rule of the module docstring: {'A': [dirs], ...} or None for a flat folder."""
    subs = _subfolders(folder)
    by_lower = {s.lower(): s for s in subs}
    if all(letter in by_lower for letter in ("a", "b", "c")):
        return {d: [os.path.join(folder, by_lower[d.lower()])] for d in DOMAINS}
    if len(subs) >= 3:
        paths = [os.path.join(folder, s) for s in subs]
        return {"A": paths[:1], "B": paths[1:2], "C": paths[2:]}
    if not subs:
        return None
    raise DataError(
        f"{folder}: expected subfolders a/, b/, c/, or at least three subfolders (one per content "
        f"domain), or no subfolder at all; found {len(subs)}: {', '.join(subs)}."
    )


class PhotoSet:
    """The usable photos of a source folder, by domain, with a fingerprint of the file set.

    Attributes:
      source: the folder as given (absolute), or the packaged set's folder.
      packaged: True for the photos shipped with the package.
      domains: {'A': [paths], 'B': [...], 'C': [...]}, each sorted.
      folders: {'A': [dirs], ...}, the folders each domain came from (empty lists for a flat folder).
      fingerprint: SHA-256 over the relative paths and byte sizes of the photos used.
      content_digest: SHA-256 over their bytes too (a photo edited in place keeps its size; read on first use).
    """

    def __init__(self, source, packaged, domains, folders):
        self.source = source
        self.packaged = packaged
        self.domains = domains
        self.folders = folders
        digest = hashlib.sha256()
        for domain in DOMAINS:
            for path in domains[domain]:
                digest.update(f"{domain}:{os.path.relpath(path, source)}:{os.path.getsize(path)}\n".encode())
        self.fingerprint = digest.hexdigest()
        self._content_digest = None

    @property
    def content_digest(self):
        if self._content_digest is None:
            digest = hashlib.sha256()
            for domain in DOMAINS:
                for path in self.domains[domain]:
                    digest.update(f"{domain}:{os.path.relpath(path, self.source)}\n".encode())
                    with open(path, "rb") as handle:
                        for block in iter(lambda: handle.read(1 << 20), b""):
                            digest.update(block)
            self._content_digest = digest.hexdigest()
        return self._content_digest

    def describe(self):
        return {
            "source": "packaged demo set (dnadet_tf/zoo/demo_photos)" if self.packaged else self.source,
            "fingerprint": self.fingerprint,
            "domains": {
                d: {
                    "folders": [os.path.relpath(f, self.source) for f in self.folders[d]],
                    "photos": len(self.domains[d]),
                }
                for d in DOMAINS
            },
        }


FLAT_STD = 2.0  # photos whose pixels vary less (in 0-255 levels) hold no content; real photos: tens of levels


def _check_photos(paths, min_side, warn, seen, repeats):
    """Decodes every photo: unreadable and flat ones are skipped with a warning, and so are repeats.

    `seen` maps the digest of each usable photo's pixels to its path (shared by the domains, in the order A, B,
    C); a photo whose pixels are already there is left out and "path (the same pixels as first)" appended to
    `repeats`, for the caller's one warning.

    Returns:
      (usable paths, small): `small` lists "path (WxH px)" for each photo whose shorter
      side is below `min_side`; the caller refuses them, all domains at once.
    """
    usable, small = [], []
    for path in paths:
        try:
            array = load_rgb(path)
        except ImageError as error:
            warn(f"warning: skipping a photo that cannot be used: {error}")
            continue
        height, width = array.shape[:2]
        spread = float(array.std())
        if min(height, width) < min_side:
            small.append(f"{path} ({width}x{height} px)")
        elif spread < FLAT_STD:  # a blank scan or a fully transparent PNG: the generators would learn no content
            warn(f"warning: skipping a photo that cannot be used: {path}: expected content, received an image of "
                 f"one colour (pixel standard deviation {spread:.2f} levels, below {FLAT_STD}).")
        else:
            key = hashlib.sha256(f"{array.shape}".encode() + np.ascontiguousarray(array).tobytes()).hexdigest()
            if key in seen:
                repeats.append(f"{path} (the same pixels as {seen[key]})")
            else:
                seen[key] = path
                usable.append(path)
    return usable, small


def _warn_repeats(repeats, warn):
    """One warning line for the photos left out as repeats of others: their count and the first three."""
    if repeats:
        more = f" and {len(repeats) - 3} more" if len(repeats) > 3 else ""
        warn(f"warning: skipping {len(repeats)} photo(s) that repeat another (a photo in two content groups would "
             f"put test content into training): {', '.join(repeats[:3])}{more}")


def _refuse_small(small, min_side):
    """Raises one DataError naming the count of too-small photos over every domain and the first three."""
    if small:
        more = f" and {len(small) - 3} more" if len(small) > 3 else ""
        raise DataError(
            f"{len(small)} photo(s) too small for the generators, which need a shorter side of at least "
            f"{min_side} px: {', '.join(small[:3])}{more}; remove or enlarge them."
        )


def _stderr(message):
    print(message, file=sys.stderr)


def find_photos(photos=None, min_per_domain=(4, 2, 2), warn=_stderr):
    """Finds and checks the photos of the zoo's three content domains.

    Args:
      photos: a folder (see the module docstring for the domain rule), or None for the
        photo set shipped with the package.
      min_per_domain: usable photos needed in A, B and C.
      warn: called with a one-line message for each skipped photo.

    Returns:
      A `PhotoSet`.

    Photos with the same pixels as one found before (domains in the order A, B, C) are left out, with one
    warning line naming them.

    Raises:
      DataError: a missing folder, a bad folder layout, an empty domain folder, a photo
        below 128 px, or too few usable photos (the message says found and needed).
    """
    packaged = photos is None
    source = os.path.abspath(PACKAGED_PHOTOS if packaged else os.fspath(photos))
    if not os.path.isdir(source):
        raise DataError(f"--photos {source}: not a folder.")
    folders = _domain_folders(source)
    if folders is None:
        flat = _list_images(source)
        domains = {d: [] for d in DOMAINS}
        for i, path in enumerate(flat):
            domains["ABAC"[i % 4]].append(path)
        folders = {d: [] for d in DOMAINS}
        where = {d: f"{source} (flat folder, every {'2nd' if d == 'A' else '4th'} photo)" for d in DOMAINS}
    else:
        loose = [name for name in sorted(os.listdir(source))
                 if is_image_file(name) and os.path.isfile(os.path.join(source, name))]
        if loose:  # the subfolders are the domains: photos beside them are in none
            warn(f"--photos {source}: {len(loose)} photo(s) beside the domain subfolders not used (each domain is "
                 f"a subfolder), e.g. {os.path.join(source, loose[0])}")
        domains = {}
        for d in DOMAINS:
            domains[d] = []
            for folder in folders[d]:
                listed = _list_images(folder)
                if not listed:
                    raise DataError(
                        f"{folder}: domain {d} folder holds no photo "
                        f"(expected files ending in .jpg, .png, ...)."
                    )
                domains[d].extend(listed)
        where = {d: ", ".join(folders[d]) for d in DOMAINS}
    small, seen, repeats = [], {}, []
    for d in DOMAINS:
        domains[d], small_here = _check_photos(domains[d], CROP, warn, seen, repeats)
        small.extend(small_here)
    _refuse_small(small, CROP)
    _warn_repeats(repeats, warn)
    for d, needed in zip(DOMAINS, min_per_domain):
        if len(domains[d]) < needed:
            raise DataError(
                f"too few usable photos for content domain {d} ({where[d]}): found {len(domains[d])}, "
                f"need at least {needed}."
            )
    return PhotoSet(source, packaged, domains, folders)


def _shuffled(paths, seed, name):
    key = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")
    order = np.random.default_rng(key).permutation(len(paths))
    return [paths[i] for i in order]


def content_groups(photo_set, seed):
    """Disjoint content groups: A-train/A-val/A-test, B-train/B-test, C-train/C-test -> [paths]."""
    groups = {}
    a = _shuffled(photo_set.domains["A"], seed, "A")
    n_val = max(1, int(round(_A_FRACTIONS[0] * len(a))))
    n_test = max(1, int(round(_A_FRACTIONS[1] * len(a))))
    groups["A-val"], groups["A-test"], groups["A-train"] = a[:n_val], a[n_val:n_val + n_test], a[n_val + n_test:]
    for d in ("B", "C"):
        paths = _shuffled(photo_set.domains[d], seed, d)
        held = max(1, int(round(_HELD_OUT_FRACTION * len(paths))))
        groups[f"{d}-test"], groups[f"{d}-train"] = paths[:held], paths[held:]
    return groups


def seed_key(*parts):
    """A 63-bit integer derived from the parts (order-independent of anything else in the build)."""
    text = ":".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


@functools.lru_cache(maxsize=256)
def _photo(path):
    array = load_rgb(path)
    return Image.fromarray(array)


def forget_decoded_photos():
    """Drops the photos decoded so far in this process (`_photo` keeps them by path), so that a photo changed in
    place since is decoded anew (`extra_real.extra_real_crops` calls it before it cuts)."""
    _photo.cache_clear()


def natural_crop(path, rng, size=CROP):
    """A natural `size` px crop of a photo as uint8 (size, size, 3), drawn with `rng`.

    The shorter side is resized to a random value in [size, min(192, shorter side)]
    (Lanczos; never enlarged), then a random window is cut and mirrored half of the time.
    """
    image = _photo(path)
    width, height = image.size
    short = min(width, height)
    target = int(rng.integers(size, max(size, min(MAX_CROP_SIDE, short)) + 1))
    if target != short:
        ratio = target / short
        new = (max(size, int(round(width * ratio))), max(size, int(round(height * ratio))))
        image = image.resize(new, Image.LANCZOS)
    array = np.asarray(image)
    top = int(rng.integers(0, array.shape[0] - size + 1))
    left = int(rng.integers(0, array.shape[1] - size + 1))
    crop = array[top:top + size, left:left + size]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def crop_for(paths, *key_parts):
    """The crop number `key_parts` of a content group: photo, scale and window all from the key."""
    rng = np.random.default_rng(seed_key(*key_parts))
    path = paths[int(rng.integers(0, len(paths)))]
    return natural_crop(path, rng)

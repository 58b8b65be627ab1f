"""Real photos of other content in the real class (`fit --extra-real`).

A training set whose real images all show one kind of content (faces, say) lets the
network learn "real" partly as that content, and real photos of other content then
get called fakes. `--extra-real SOURCE` adds to the real class as many
natural 128 px crops (`zoo.photos.natural_crop`: shorter side resized to 128-192 px,
a random window, mirrored half of the time) as that class has training images,
cut from the photos of SOURCE: `packaged` (the 60 photos shipped with the package,
`dnadet_tf/zoo/demo_photos`) or a folder (read recursively). Crop i is drawn with
the key (0, "extra-real", i), so every run with the same photos and count adds the
same crops. `auto` means `packaged` when the training set has a real class (`real`, else the one
class with "real" as a word of its name, such as `Real` or `0_real`), and nothing (one line says so)
when it has none. They are written once as image files to a cache folder
($DNADET_TF_CACHE or ~/.cache/dnadet-tf, `extra-real-<key>`), named by the photos'
contents (the SHA-256 of each one's bytes, in order), the count and the processing, and read by the training
pipeline like any other file.

`--extra-real-process jpeg:Q|upsample:S` gives every crop the processing of the user's real photos
(`photo_processing`): saved as a JPEG file at quality Q, or bicubic through S x S px and back (PNG);
`auto` is `jpeg:Q` when every real training image is a JPEG file (Q: the median of the qualities
estimated from their quantization tables) and `none` (PNG as cut) otherwise; when none is a JPEG file
and they were enlarged by a factor r between 1 and 2 (read from the period interpolation leaves in them,
`resampling`), it says so and names `upsample:S` (S = 128 / r) without applying it (`AUTO_KINDS`).
Crops processed unlike the user's reals teach "real" partly as a processing: next to training reals
enlarged x1.28, plain crops made the model call fakes of other content real, and crops enlarged the same
way did less so (docs/results.md, "Crops processed like the training reals"); at x1.5 those crops made it call the
other content's real photos fakes ("Enlarged real photos read back").
"""
import hashlib
import os
import sys

import numpy as np

from dnadet_tf.data import REAL_CLASS, LabeledFiles, file_sha256, real_class_candidates
from dnadet_tf.errors import DataError
from dnadet_tf.photo_processing import AUTO as AUTO_PROCESS
from dnadet_tf.photo_processing import matching_processing, parse_processing, processing_name

PACKAGED = "packaged"
NONE = "none"
AUTO = "auto"
# The processings `--extra-real-process auto` gives the crops when the real class's files share one. An
# enlargement is read and reported, not applied: crops enlarged like the reals named the other content's fakes
# better at x1.28 and worse at x1.5, where they made the model call the other content's real photos fakes.
AUTO_KINDS = ("jpeg",)


def source_photos(source, flag="--extra-real", packaged=True):
    """The photo paths of a source of photos, in `images.find_images` order: a folder, or with `packaged`
    (an --extra-real source) also "packaged", the photos shipped with the package.

    Raises DataError for a folder that does not exist or holds no image, naming `flag` (the option that gave it),
    and for a folder under it that cannot be read (`data.find_images`).
    """
    from dnadet_tf.data import find_images
    from dnadet_tf.zoo.photos import PACKAGED_PHOTOS

    folder = PACKAGED_PHOTOS if packaged and source == PACKAGED else source
    if not os.path.isdir(folder):
        expected = f"'{AUTO}', '{PACKAGED}', '{NONE}' or a folder of photos" if packaged else "a folder of photos"
        raise DataError(f"{flag}: expected {expected}, received {source!r}, which is not a folder.")
    paths = find_images(folder)
    if not paths:
        raise DataError(f"{flag} {source}: expected photos in {folder}, found no image file.")
    return paths


def photo_digest(path):
    """The SHA-256 (hex) of the bytes of the file `path`, or "unreadable" for one that cannot be read (a dangling
    link: the crops skip it, `extra_real_crops`)."""
    try:
        return file_sha256(path).hex()
    except (OSError, ValueError):
        return "unreadable"


def cache_folder(paths, count, processing=None):
    """The cache folder of `count` crops of `paths`: named by the photos' contents in their order (the SHA-256 of
    each one's bytes, `photo_digest`: photos of other folders with the same names and sizes, or a photo changed in
    place, are cut anew), the count and the processing ((kind, value) or None)."""
    from dnadet_tf.zoo.photos import cache_root

    key = hashlib.sha256()
    for path in paths:
        key.update(f"{photo_digest(path)}\n".encode())
    key.update(f"count:{count}".encode())
    if processing is not None:
        key.update(f"\nprocess:{processing_name(processing)}".encode())
    return os.path.join(cache_root(), f"extra-real-{key.hexdigest()[:16]}")


def extra_real_crops(source, count, output=None, processing=None, flag="--extra-real", packaged=True):
    """Paths of `count` 128 px crops of the photos of `source` (`source_photos`'), written to the cache folder if
    not there yet: PNG, or processed by `processing` ((kind, value) of `photo_processing.parse_processing`, or None).

    When crops must be cut, a photo that cannot be read, or whose shorter side is below 128 px, is skipped with one
    warning line on stderr naming it and `flag`, the option that gave the photos (a dangling link too); none usable
    is a DataError (cached crops were cut from the usable photos of the same contents).
    """
    from PIL import Image

    from dnadet_tf.images import ImageError, load_rgb
    from dnadet_tf.photo_processing import save_processed, suffix
    from dnadet_tf.zoo.photos import CROP, crop_for, forget_decoded_photos

    paths = source_photos(source, flag, packaged)
    folder = cache_folder(paths, count, processing)
    stems = [os.path.join(folder, f"extra-real_{i:05d}") for i in range(count)]
    crops = [stem + suffix(processing) for stem in stems]
    missing = [i for i, crop in enumerate(crops) if not os.path.isfile(crop)]
    if not missing:
        return crops
    forget_decoded_photos()  # a photo decoded earlier in this process may have changed in place since
    usable = []
    for path in paths:
        try:
            load_rgb(path, min_side=CROP)
            usable.append(path)
        except ImageError as error:
            print(f"warning: {flag} {source}: skipped {error}", file=sys.stderr, flush=True)
    if not usable:
        raise DataError(f"{flag} {source}: none of its {len(paths)} photos is usable; expected readable images of "
                        f"at least {CROP} px on the shorter side.")
    os.makedirs(folder, exist_ok=True)
    if output is not None:
        process = f" ({processing_name(processing)})" if processing is not None else ""
        print(f"{flag} {source}: cutting {len(missing)} crops{process} of {len(usable)} photos into {folder}",
              file=output, flush=True)
    for i in missing:
        save_processed(Image.fromarray(crop_for(usable, 0, "extra-real", i)), stems[i], processing)
    return crops


def auto_processing(real_paths, output=None):
    """The processing `--extra-real-process auto` gives the crops for the real training images `real_paths`:
    what `photo_processing.matching_processing` finds in them when its kind is in AUTO_KINDS, else None; one
    line to `output` says what was found and done."""
    from dnadet_tf.zoo.photos import CROP

    found, finding = matching_processing(real_paths, CROP)
    processing = found if found is not None and found[0] in AUTO_KINDS else None
    if output is not None:
        if processing is not None:
            outcome = f"crops saved as {processing_name(processing)}"
        elif found is not None:
            outcome = (f"crops kept as cut (--extra-real-process {processing_name(found)} would enlarge them the "
                       "same way: better or worse by the factor, docs/results.md \"Enlarged real photos read back\")")
        else:
            outcome = "crops kept as cut (--extra-real-process jpeg:Q or upsample:S names a processing)"
        print(f"--extra-real-process auto: real training images: {finding}: {outcome}", file=output, flush=True)
    return processing


def add_extra_real(files, source, output=None, process="none"):
    """`files` (LabeledFiles) with crops of `source` added to the real class, as many as it has (marked in
    `other_content`), each
    processed by `process` ("none", "jpeg:Q", "upsample:S" or "auto": `auto_processing` of the class's own
    files). The real class is the one `data.real_class_candidates` names: `real`, else the one class with
    "real" as a word of its name ("Real", "0_real"; a line says which was taken).

    `source` "none" (or empty) returns `files` unchanged, "auto" is "packaged" when there is a real class
    and "none" otherwise (one line says why); with any other source a training set without one real class
    raises DataError naming its classes.
    """
    if not source or source == NONE:
        return files
    candidates = real_class_candidates(files.class_names)
    if len(candidates) != 1:
        why = (f"no class named '{REAL_CLASS}' or with 'real' as a word of its name" if not candidates else
               f"{len(candidates)} classes may be the real one ({', '.join(candidates)}); name it '{REAL_CLASS}'")
        if source == AUTO:
            if output is not None:
                print(f"--extra-real auto: {why} among {files.class_names}, no real photos added", file=output,
                      flush=True)
            return files
        raise DataError(f"--extra-real {source}: expected one class of real photos to add crops to ('{REAL_CLASS}', "
                        f"or a name with 'real' as a word), received the classes {files.class_names}: {why}.")
    if source == AUTO:
        source = PACKAGED
    name = candidates[0]
    if name != REAL_CLASS and output is not None:
        print(f"--extra-real: class '{name}' taken as the real photos (its name has 'real' as a word)", file=output,
              flush=True)
    real = files.class_names.index(name)
    count = int(np.sum(files.labels == real))
    if process == AUTO_PROCESS:
        processing = auto_processing([p for p, label in zip(files.paths, files.labels) if label == real], output)
    else:
        processing = parse_processing(process, "--extra-real-process")
    crops = extra_real_crops(source, count, output, processing)
    labels = np.concatenate([files.labels, np.full(count, real, files.labels.dtype)])
    other_content = np.concatenate([files.other_content_mask(), np.ones(count, bool)])
    return LabeledFiles(list(files.paths) + crops, labels, files.class_names, files.source, list(files.skipped),
                        other_content)


def added_crops(files, flag, purpose, source):
    """(paths, label) of the crops `add_extra_real` added to `files` (its `other_content`), for the training
    option `flag` (e.g. "--transplant 0.5") that needs them `purpose` ("to move fakes onto"); `source` is the
    run's --extra-real. Raises one DataError line naming the flag when there are none."""
    added = np.flatnonzero(files.other_content_mask())
    if not len(added):
        raise DataError(f"{flag}: expected real photos of other content {purpose} (--extra-real auto, packaged or a "
                        f"folder, and a class named '{REAL_CLASS}' or with 'real' as a word of its name), received "
                        f"none (--extra-real {source or NONE!r}, classes {files.class_names}).")
    return [files.paths[i] for i in added], int(files.labels[added[0]])

"""Finding labelled image files: folder trees, the authors' annotation lists,
and benchmark folders (a `classes.txt` plus one list per split).

Files are checked once here (decoded with `images.load_rgb`); a file that
cannot be used is skipped with one warning line naming it and counted.
"""
import codecs
import concurrent.futures
import dataclasses
import hashlib
import os
import re
import sys

import numpy as np

from dnadet_tf.errors import DataError
from dnadet_tf import images
from dnadet_tf.images import IMAGE_EXTENSIONS, ImageError, is_image_file, load_rgb
from dnadet_tf.preprocess import size_problem

SPLITS = ("train", "val", "test", "cross_seed", "cross_loss", "cross_finetune", "cross_dataset")


@dataclasses.dataclass
class LabeledFiles:
    """Image paths with integer labels into `class_names`; `other_content` (N,) bool marks the images
    added from photos of other content (`extra_real`), None when there are none."""

    paths: list
    labels: np.ndarray
    class_names: list
    source: str
    skipped: list = dataclasses.field(default_factory=list)
    other_content: np.ndarray = None

    def __len__(self):
        return len(self.paths)

    def other_content_mask(self):
        """(N,) bool: which images are of other content (all False when `other_content` is None)."""
        if self.other_content is None:
            return np.zeros(len(self.paths), bool)
        return np.asarray(self.other_content, bool)

    def class_counts(self):
        return np.bincount(self.labels, minlength=len(self.class_names))

    def counts_text(self):
        """"12 real, 10 progan, ...": the images of each class, in label order."""
        return ", ".join(f"{n} {c}" for n, c in zip(self.class_counts(), self.class_names))


REAL_CLASS = "real"


REAL_WORDS = ("real", "reals")


def real_class_candidates(class_names):
    """The class names that may hold the real photos: `real` (REAL_CLASS) alone when it is one of them,
    else every name one of whose words (lower case, split at each character that is neither a letter nor
    a digit) is "real" or "reals": "Real", "0_real", "real-photos", not "unreal". A list, in the given order."""
    if REAL_CLASS in class_names:
        return [REAL_CLASS]
    return [name for name in class_names
            if any(word in REAL_WORDS for word in re.split(r"[^0-9a-z]+", str(name).lower()))]


def order_classes(names):
    """Sorted class names, except that the real class is first (label 0): `real` (REAL_CLASS), else the one
    name `real_class_candidates` finds ("Real", "0_real"); with several candidates, sorted order alone."""
    names = sorted(names)
    candidates = real_class_candidates(names)
    if len(candidates) == 1:
        names.remove(candidates[0])
        names.insert(0, candidates[0])
    return names


def read_text_lines(path, what):
    """The lines of text file `path` (without their line ends), which must be UTF-8: a UTF-8 byte order mark
    (Windows editors) is dropped. Raises DataError naming the file, `what` it was read as and what it holds
    instead (UTF-16, a binary file such as an image, another encoding such as Latin-1)."""
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        received = "UTF-16 text (save it as UTF-8)"
    elif b"\0" in data:
        received = "a binary file (it holds NUL bytes)"
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            received = (f"a file that is not UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start}: another "
                        f"encoding such as Latin-1, or a binary file)")
        else:
            return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # the line ends open() reads
    raise DataError(f"{path}: expected {what} in UTF-8 text, received {received}.")


def read_classes_file(path):
    """Class names, one per line, from a `classes.txt`."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: classes.txt not found; an annotation list needs one beside it.")
    names = [line.strip() for line in read_text_lines(path, "class names, one per line,") if line.strip()]
    if not names:
        raise DataError(f"{path}: expected one class name per line, received an empty file.")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: class names must be distinct, received {names}.")
    return names


def is_benchmark_dir(path):
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "classes.txt")) and any(
        os.path.isfile(os.path.join(path, f"{split}.txt")) for split in SPLITS
    )


# Files only `dnadet-tf zoo build` writes (build.json and build.lock first, zoo.json last): a folder holding one of
# them is a zoo built or being built. A `classes.txt` or a `models/` folder alone is not one: folder-tree data sets
# and projects hold them too.
ZOO_MARKERS = ("build.json", "zoo.json", "build.lock")
SWAP_CONTENT_RECORD = "swap_content.json"  # in the folder `zoo swap-content` writes (its splits' lists beside it)


def is_zoo_dir(path):
    """Whether `path` holds one of ZOO_MARKERS: a zoo, finished or not."""
    return any(os.path.exists(os.path.join(path, name)) for name in ZOO_MARKERS)


def benchmark_digest(path):
    """SHA-256 (hex) of a benchmark's contents: classes.txt, every split list (open_set.txt included) and
    every image they list.

    Two folders with the same digest hold the same images under the same labels, wherever they
    were built, so results measured on them can be compared (a zoo built on another kind of CPU
    may hold other pixels). Images are hashed by content in the order of their sorted paths
    relative to the folder, each once.

    Raises:
      DataError: `path` is not a folder, or holds neither classes.txt nor any split list (its digest would be that
        of nothing, e3b0c442..., the same for every such path).
    """
    from dnadet_tf.runs import describe_path  # here: runs imports this module

    digest = hashlib.sha256()
    listed = set()
    lists = [benchmark_split(path, split) for split in ("classes",) + SPLITS + (OPEN_SET_SPLIT,)]
    if not os.path.isdir(path) or not any(os.path.isfile(list_path) for list_path in lists):
        raise DataError(f"{path}: expected a benchmark folder (classes.txt and split lists, as 'dnadet-tf zoo build' "
                        f"writes), received {describe_path(path)}.")
    for split in ("classes",) + SPLITS + (OPEN_SET_SPLIT,):
        list_path = benchmark_split(path, split)
        if not os.path.isfile(list_path):
            continue
        with open(list_path, "rb") as f:
            digest.update(os.path.basename(list_path).encode() + b"\0" + f.read() + b"\0")
        if split == OPEN_SET_SPLIT:
            listed.update(read_unknown(list_path)[0])
        elif split != "classes":
            listed.update(read_annotation_list(list_path, warn=lambda message: None).paths)
    for image_path in sorted(os.path.relpath(p, path) for p in listed):
        with open(os.path.join(path, image_path), "rb") as f:
            digest.update(image_path.encode() + b"\0" + hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def benchmark_split(path, split):
    """Path of a benchmark's split list, e.g. `ZOO/train.txt`."""
    return os.path.join(path, f"{split}.txt")


def _split_list_line(line):
    """An annotation list's line (without its line end) as [path, label]: split at the last tab, else at the last
    run of spaces; one part for a line with neither."""
    return line.rsplit("\t", 1) if "\t" in line else line.strip().rsplit(None, 1)


# An annotation list's label: ASCII digits, optionally negative (`str.isdigit` also takes "²", which int() refuses).
LABEL_PATTERN = re.compile(r"-?[0-9]+")


def file_identity(path):
    """What makes two paths one file: (device, inode) of the file `path` leads to (`os.stat` follows symbolic
    links, and a hard link shares its file's inode), else its real path (a path that cannot be stat'ed, such as
    a dangling link, or a file system that reports no inode numbers)."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return os.path.realpath(path)
    if not status.st_ino:
        return os.path.realpath(path)
    return (status.st_dev, status.st_ino)


def same_files(paths, others):
    """[(path, other)]: each of `paths`, in order, that is one of `others` by its bytes, with the first such
    other: the same file (`file_identity`: a symbolic or a hard link too) or a file of the same SHA-256 (a copy).
    Nothing is decoded, and only files whose size occurs on both sides are read (`os.stat` first), so that two
    sets of other images cost one stat per file; a path that cannot be stat'ed or read matches nothing."""
    digests = {}  # file identity -> SHA-256 of its bytes (None: unreadable), each file read once
    mine, theirs = _by_size(paths), _by_size(others)
    found = {}
    for size in mine.keys() & theirs.keys():
        files = {}  # identity -> the first other that is that file
        for other in (others[index] for index in theirs[size]):
            files.setdefault(file_identity(other), other)
        copies = None  # digest -> the first other of those bytes, once a path is not one of the files
        for path in (paths[index] for index in mine[size]):
            identity = file_identity(path)
            if identity in files:
                found[path] = files[identity]
                continue
            if copies is None:
                copies = {}
                for other_identity, other in files.items():
                    copies.setdefault(_digest(other, other_identity, digests), other)
                copies.pop(None, None)
            hit = copies.get(_digest(path, identity, digests))
            if hit is not None:
                found[path] = hit
    return [(path, found[path]) for path in paths if path in found]


def repeated_files(paths):
    """{index: index of the first}: each of `paths` that is an earlier one by its bytes, the same file
    (`file_identity`: a symbolic or a hard link too) or a file of the same SHA-256 (a copy), with the index of the
    first of those bytes, in order. As in `same_files`, nothing is decoded and only files whose size another of
    `paths` has are read; a path that cannot be stat'ed repeats nothing, one that cannot be read only its own
    file."""
    digests = {}  # file identity -> SHA-256 of its bytes (None: unreadable), each file read once
    found = {}
    for indices in _by_size(paths).values():
        if len(indices) < 2:
            continue
        files, copies = {}, {}  # identity, digest -> the index of the first of those bytes
        for index in indices:
            identity = file_identity(paths[index])
            if identity in files:
                found[index] = files[identity]
                continue
            digest = _digest(paths[index], identity, digests)
            first = copies.setdefault(digest, index) if digest is not None else index
            files[identity] = first
            if first != index:
                found[index] = first
    return dict(sorted(found.items()))


def _by_size(paths):
    """{size in bytes: [index of each of `paths` of that size, in order]}; a path that cannot be stat'ed is left
    out."""
    sizes = {}
    for index, path in enumerate(paths):
        try:
            sizes.setdefault(os.stat(path).st_size, []).append(index)
        except (OSError, ValueError):
            pass
    return sizes


def _digest(path, identity, digests):
    """The SHA-256 of file `path` (None when it cannot be read), kept in `digests` by its `identity`
    (`file_identity`), so that each file is read once."""
    if identity not in digests:
        try:
            digests[identity] = file_sha256(path)
        except OSError:
            digests[identity] = None
    return digests[identity]


def file_sha256(path):
    """The SHA-256 digest (bytes) of file `path`, read in chunks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def looks_like_annotation_list(path):
    """Whether text file `path` reads as an annotation list: its first line that is neither empty nor a comment
    splits into a path with an image extension and a label (a notes.txt or a classes.txt does not)."""
    try:
        lines = read_text_lines(path, "an annotation list")
    except DataError:
        return False
    entries = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    parts = _split_list_line(entries[0]) if entries else []
    return len(parts) == 2 and is_image_file(parts[0].strip())


def read_annotation_list(path, warn=None):
    """Reads `path<TAB>label` lines; paths relative to the list's folder.

    Returns a LabeledFiles with the class names of `classes.txt` beside the list.
    Raises DataError naming the list and line for a line that does not parse, a
    label not in classes.txt, a path that does not exist, or a path listed again
    with another label; a repeated line (same path, same label) is a warning and
    counts once.
    """
    warn = warn or _warn
    folder = os.path.dirname(os.path.abspath(path))
    class_names = read_classes_file(os.path.join(folder, "classes.txt"))
    paths, labels, first_seen = [], [], {}
    for number, line in enumerate(read_text_lines(path, "an annotation list (path<TAB>label lines)"), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = _split_list_line(line)
        if len(parts) != 2 or not LABEL_PATTERN.fullmatch(parts[1].strip()):
            raise DataError(
                f"{path}:{number}: expected 'path<TAB>integer label', received {line.strip()!r}."
            )
        label = int(parts[1])
        if not 0 <= label < len(class_names):
            raise DataError(
                f"{path}:{number}: label {label} is not in classes.txt "
                f"(expected 0..{len(class_names) - 1} for {class_names})."
            )
        file_path = parts[0].strip()
        full_path = file_path if os.path.isabs(file_path) else os.path.join(folder, file_path)
        if not os.path.isfile(full_path):
            raise DataError(f"{path}:{number}: expected an image file, received {file_path!r}, "
                            f"which does not exist ({full_path}).")
        key = file_identity(full_path)  # a link (symbolic or hard) and its file are one file
        if key in first_seen:
            first_number, first_label = first_seen[key]
            if first_label != label:
                raise DataError(
                    f"{path}:{number}: {file_path!r} is labelled {label} ({class_names[label]}), but line "
                    f"{first_number} labels the same file {first_label} ({class_names[first_label]}); "
                    f"expected one label per file."
                )
            warn(f"{path}:{number}: {file_path!r} repeats line {first_number}; counted once.")
            continue
        first_seen[key] = (number, label)
        paths.append(full_path)
        labels.append(label)
    if not paths:
        raise DataError(f"{path}: the list holds no image lines.")
    return LabeledFiles(paths, np.asarray(labels, np.int64), class_names, path)


def find_images(folder, others=None):
    """`images.find_images` (the same files in the same order), but a folder that cannot be read raises DataError
    naming it (`unreadable_folder`), where `os.walk` skips it and its images without a word."""
    def refuse(error):
        raise unreadable_folder(error, folder)

    return images.find_images(folder, others, onerror=refuse)


def unreadable_folder(error, top):
    """The DataError for the folder `os.walk` (or `os.listdir`) of `top` could not read (`error`, an OSError such as
    a PermissionError): one line naming the folder, why, and what to do (a hidden folder is not read: the way to
    leave one out on purpose)."""
    path = os.fspath(error.filename) if error.filename is not None else os.fspath(top)
    inner = os.path.abspath(path) != os.path.abspath(top)
    reason = error.strerror or type(error).__name__
    return DataError(f"{path}: cannot read folder: {reason}" + (f" (under {top})" if inner else "")
                     + "; expected every folder of images to be readable (its images would be left out without a "
                     + "word): make it readable" + (", or give it a name that starts with '.' (not read)."
                                                    if inner else "."))


def read_folder_tree(root, warn=None):
    """Reads `ROOT/<class>/**/<image>`; classes sorted with `real` first.

    `warn` (default: a line on stderr) receives one line for image files directly in ROOT (in no class) and one
    for files without an image extension in the class folders, neither of which is read, and one per file found
    twice in a class (through a symbolic or hard link, `file_identity`; read once). Raises DataError for a class
    without image files, for a file in two classes (one of them through a link): a file has one source, and for a
    folder of the tree that cannot be read (`unreadable_folder`: its images are not left out without a word).
    """
    warn = warn or _warn
    try:
        entries = [d for d in os.listdir(root) if not d.startswith(".")]
    except OSError as error:
        raise unreadable_folder(error, root) from None
    class_dirs = [d for d in entries if os.path.isdir(os.path.join(root, d))]
    if not class_dirs:
        raise DataError(f"{root}: expected one subfolder per class, found none.")
    loose = sorted(d for d in entries if is_image_file(d) and os.path.isfile(os.path.join(root, d)))
    if loose:
        warn(f"{root}: {len(loose)} image file(s) outside the class folders not read (an image's class is the "
             f"folder it is in), e.g. {os.path.join(root, loose[0])}")
    class_names = order_classes(class_dirs)
    paths, labels, others, owner = [], [], [], {}
    for label, name in enumerate(class_names):
        found = find_images(os.path.join(root, name), others)
        if not found:
            raise DataError(f"{os.path.join(root, name)}: class {name!r} has no image files.")
        for path in found:
            real = file_identity(path)
            if real in owner:
                first_path, first_label = owner[real]
                if first_label != label:
                    raise DataError(f"{path}: the same file as {first_path}, in class {class_names[first_label]!r} "
                                    f"and class {name!r}; expected each file in one class.")
                warn(f"{path}: the same file as {first_path}; read once.")
                continue
            owner[real] = (path, label)
            paths.append(path)
            labels.append(label)
    if others:
        warn(f"{root}: {len(others)} file(s) without an image extension ({' '.join(IMAGE_EXTENSIONS)}) in the class "
             f"folders not read, e.g. {others[0]}")
    return LabeledFiles(paths, np.asarray(labels, np.int64), class_names, root)


def read_dataset(spec, split="train", warn=None):
    """Reads a dataset given as a folder tree, an annotation list, or a benchmark
    folder (then `split` picks its list). Raises DataError when `spec` does not exist, is an image file or is
    a zoo still being built."""
    if not os.path.exists(spec):
        raise DataError(f"{spec}: no such file or folder; expected a folder tree, an annotation list or a benchmark folder.")
    if os.path.isfile(spec) and is_image_file(spec):
        raise DataError(f"{spec}: expected a folder tree, an annotation list or a benchmark folder, received an "
                        f"image file.")
    if os.path.isfile(spec):
        return read_annotation_list(spec, warn)
    if is_benchmark_dir(spec):
        list_path = benchmark_split(spec, split)
        if not os.path.isfile(list_path):
            raise DataError(f"{spec}: benchmark folder has no {split}.txt.")
        return read_annotation_list(list_path, warn)
    if is_zoo_dir(spec):  # its images/ and models/ folders would read as classes
        raise DataError(f"{spec}: a zoo whose build has not finished (no classes.txt and split lists yet); run the "
                        f"same 'dnadet-tf zoo build --out {spec}' command again to finish it.")
    return read_folder_tree(spec, warn)


OPEN_SET_SPLIT = "open_set"


def read_unknown(spec):
    """Images of architectures a model was not trained on, for open-set evaluation: (paths, groups).

    `spec`: a benchmark folder (its open_set.txt), a list of `path<TAB>group` lines (paths
    relative to the list; group = the unknown architecture's name, optional), a folder of
    images (read recursively; group = the first subfolder's name, else the folder's) or an
    image file (group = the name of its folder, as for an image directly in a folder given).
    Raises DataError when it does not exist, holds no image, or is a list that is not UTF-8 text.
    """
    if is_benchmark_dir(spec):
        spec = benchmark_split(spec, OPEN_SET_SPLIT)
        if not os.path.isfile(spec):
            raise DataError(f"{os.path.dirname(spec)}: benchmark folder has no {OPEN_SET_SPLIT}.txt.")
    if os.path.isdir(spec):
        paths = find_images(spec)
        relative = [os.path.relpath(p, spec) for p in paths]
        folder_name = os.path.basename(os.path.abspath(spec))
        groups = [r.split(os.sep)[0] if os.sep in r else folder_name for r in relative]
    elif os.path.isfile(spec) and is_image_file(spec):
        paths, groups = [spec], [os.path.basename(os.path.dirname(os.path.abspath(spec)))]
    elif os.path.isfile(spec):
        folder = os.path.dirname(os.path.abspath(spec))
        paths, groups = [], []
        lines = read_text_lines(spec, "a list of images of unknown architectures (path<TAB>name lines)")
        for number, line in enumerate(lines, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t")
            path = parts[0].strip()
            full = path if os.path.isabs(path) else os.path.join(folder, path)
            if not os.path.isfile(full):
                raise DataError(f"{spec}:{number}: expected an image file, received {path!r}, which does not "
                                f"exist ({full}).")
            paths.append(full)
            groups.append(parts[1].strip() if len(parts) > 1 and parts[1].strip() else "unknown")
    else:
        raise DataError(f"--unknown {spec}: no such file or folder; expected a folder of images, an image, a list "
                        f"or a benchmark folder with {OPEN_SET_SPLIT}.txt.")
    if not paths:
        raise DataError(f"--unknown {spec}: expected images of unknown architectures, found none.")
    return paths, groups


def require_several_classes(files):
    """Raises DataError unless `files` holds at least two classes: attribution needs
    something to tell apart (a one-class run would learn a constant)."""
    if len(files.class_names) < 2:
        raise DataError(
            f"{files.source}: expected at least two classes to train an attributor, received one "
            f"({files.class_names[0]!r}); add a folder (or classes.txt line) per generator, e.g. 'real'."
        )


def annotation_lists_in(source):
    """The .txt files in folder `source` (read as a folder tree), sorted: annotation lists the user may have meant
    (a `zoo swap-content` folder holds its splits so; `looks_like_annotation_list` tells them from notes); [] for a
    file or a folder without any."""
    if not isinstance(source, str) or not os.path.isdir(source):
        return []
    return sorted(name for name in os.listdir(source) if name.endswith(".txt")
                  and os.path.isfile(os.path.join(source, name)))


def remap_to(files, class_names, flag=None, of="the model's classes"):
    """Re-expresses labels in another class list (e.g. a model's labels.txt).

    Raises DataError when a class of `files` with images is not in `class_names`, naming `flag` (the option that
    gave the files) when given and `of`, what `class_names` are.
    """
    if list(files.class_names) == list(class_names):
        return files
    index = {name: i for i, name in enumerate(class_names)}
    present = sorted(set(files.labels.tolist()))
    missing = [files.class_names[i] for i in present if files.class_names[i] not in index]
    if missing:
        lists = [name for name in annotation_lists_in(files.source)
                 if looks_like_annotation_list(os.path.join(files.source, name))]
        raise DataError(
            f"{flag + ' ' if flag else ''}{files.source}: classes {missing} are not among {of} {list(class_names)}"
            + (f"; the folder also holds the annotation lists {', '.join(lists)}: pass one of them." if lists else ".")
        )
    mapping = np.asarray([index.get(name, -1) for name in files.class_names])
    return dataclasses.replace(files, labels=mapping[files.labels], class_names=list(class_names))


def hold_out(files, fraction):
    """(kept, held) LabeledFiles: `fraction` of each class's images held out (for validation), the rest kept.

    Per class, round(fraction * n) images are held out, at least 1 and at most n - 1 when the class has 2 or
    more (a class of 1 keeps it). Which ones depends on the images alone, not on their order or on where the
    folder lies: the class's images ordered by the SHA-256 of their path relative to the common folder of all
    the files, the first held out. So a resumed run, or `calibrate` later, holds out the same images.
    The files' `skipped` list stays with the kept ones.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction: expected a number between 0 and 1, received {fraction!r}.")
    root = os.path.commonpath([os.path.abspath(p) for p in files.paths]) if files.paths else ""
    if files.paths and os.path.isfile(root):
        root = os.path.dirname(root)

    def key(i):
        return hashlib.sha256(os.path.relpath(os.path.abspath(files.paths[i]), root).encode()).hexdigest()

    held = []
    for label in range(len(files.class_names)):
        members = sorted(np.flatnonzero(files.labels == label).tolist(), key=key)
        if len(members) >= 2:
            held += members[:min(len(members) - 1, max(1, int(round(fraction * len(members)))))]
    held_set = set(held)
    kept = [i for i in range(len(files)) if i not in held_set]
    held = sorted(held)

    def subset(indices, name, skipped):
        return dataclasses.replace(files, paths=[files.paths[i] for i in indices],
                                   labels=files.labels[np.asarray(indices, dtype=int)],
                                   source=f"{files.source} ({name})", skipped=skipped)

    return (subset(kept, f"{1 - fraction:.0%} kept", files.skipped),
            subset(held, f"{fraction:.0%} held out", []))


def check_files(files, crop_size=1, min_side=8, require_every_class=True, workers=8, warn=None):
    """Decodes every file once; drops unusable ones with one warning line each.

    Too small (`preprocess.size_problem`) means a square image with sides below
    `min_side`, or a non-square image with a side below max(`crop_size`,
    `min_side`) (it could not be center-cropped).

    Returns a new LabeledFiles whose `skipped` lists (path, reason). Raises
    DataError when a class ends up with no usable image (if required) or
    nothing is left at all.
    """
    warn = warn or _warn

    def check(path):
        try:
            image = load_rgb(path)
        except ImageError as error:
            return str(error)
        problem = size_problem(image.shape[0], image.shape[1], crop_size, min_side)
        return f"{path}: {problem}" if problem else None

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(pool.map(check, files.paths))
    keep = [i for i, problem in enumerate(problems) if problem is None]
    skipped = [(files.paths[i], problems[i]) for i in range(len(problems)) if problems[i] is not None]
    for _, reason in skipped:
        warn(f"skipped {reason}")
    labels = files.labels[keep]
    if not keep:
        raise DataError(f"{files.source}: none of its {len(files.paths)} files is a usable image.")
    if require_every_class:
        counts = np.bincount(labels, minlength=len(files.class_names))
        for label, name in enumerate(files.class_names):
            if counts[label] == 0:
                raise DataError(f"{files.source}: class {name!r} has no usable image.")
    return LabeledFiles([files.paths[i] for i in keep], labels, files.class_names, files.source, skipped)


def _warn(message):
    print(f"warning: {message}", file=sys.stderr)


def collect_image_paths(inputs, warn=None):
    """Image paths from files and folders (folders read recursively, sorted). `warn`, when given, receives
    one line per folder that holds files without an image extension, which are not read.

    Raises DataError for a path that does not exist or when no image is found.
    """
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            others = []
            paths.extend(find_images(item, others))
            if others and warn is not None:
                warn(f"{item}: {len(others)} file(s) without an image extension ({' '.join(IMAGE_EXTENSIONS)}) "
                     f"not read, e.g. {others[0]}")
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise DataError(f"{item}: no such file or folder.")
    if not paths:
        raise DataError(f"{' '.join(map(os.fspath, inputs)) or 'inputs'}: expected image files, found none.")
    return paths


def usable_files(files, preprocess, warn=None, require_every_class=False):
    """`files` (LabeledFiles) without those `preprocess` (a PreprocessConfig) cannot take: undecodable, or below its
    `crop_size` / `min_side` (`check_files`: one warning line each, DataError when none is left; with
    `require_every_class` also when a class is left without). The one rule of which file a model can read."""
    return check_files(files, crop_size=preprocess.crop_size, min_side=preprocess.min_side,
                       require_every_class=require_every_class, warn=warn)


def read_usable(spec, split, class_names, preprocess, warn=None):
    """The usable images (`usable_files`) of `split` of dataset `spec`, labelled in the order of `class_names`
    (`remap_to`)."""
    return usable_files(remap_to(read_dataset(spec, split), class_names), preprocess, warn)


def readable_images(paths, preprocess, warn=None):
    """(usable paths, skipped [(path, reason)]): files that cannot be decoded, or are too small for
    `preprocess` (a PreprocessConfig), are skipped with one warning line each.

    Raises DataError when none is usable.
    """
    files = LabeledFiles(list(paths), np.zeros(len(paths), np.int64), ["image"], "the given images")
    kept = usable_files(files, preprocess, warn)
    return kept.paths, list(kept.skipped)

"""Text lists read as UTF-8 or refused in one line: annotation lists, classes.txt and --unknown lists given
a binary file (an image), Latin-1 or UTF-16 text; image files as --unknown; and only files that read as
annotation lists offered when a folder tree's classes do not fit."""
import os

import numpy as np
import pytest
from PIL import Image

from clirun import run_cli
from dnadet_tf.data import read_dataset, read_unknown, remap_to
from dnadet_tf.errors import DataError
from synthetic import make_upsampling_tree


def _image(path, size=32):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(str(path))
    return str(path)


def _refused(read, *args):
    """The DataError message of read(*args), which must be one line."""
    with pytest.raises(DataError) as caught:
        read(*args)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_an_image_file_is_an_unknown_architectures_image(tmp_path):
    """An image file as --unknown is one image, of the group named after its folder (as one directly in a folder
    given); a file that is neither an image nor UTF-8 text is refused in one line naming it."""
    image = _image(tmp_path / "stylegan" / "a.png")
    assert read_unknown(image) == ([image], ["stylegan"])
    binary = tmp_path / "model.bin"
    binary.write_bytes(open(image, "rb").read())
    assert _refused(read_unknown, str(binary)) == (
        f"{binary}: expected a list of images of unknown architectures (path<TAB>name lines) in UTF-8 text, "
        f"received a binary file (it holds NUL bytes).")


def test_an_image_file_as_data_is_refused(tmp_path):
    """`--data x.png` (or `--val x.png`) with a classes.txt beside it: one line saying it is an image file."""
    (tmp_path / "classes.txt").write_text("real\nfake\n")
    image = _image(tmp_path / "x.png")
    assert _refused(read_dataset, image, "val") == (
        f"{image}: expected a folder tree, an annotation list or a benchmark folder, received an image file.")


def test_a_zoo_whose_build_stopped_is_named_as_one(tmp_path):
    # A zoo build stopped after its first models holds build.json, images/ and models/: read as a folder tree,
    # "class 'models' has no image files".
    zoo = tmp_path / "zoo"
    (zoo / "models").mkdir(parents=True)
    _image(zoo / "images" / "progan" / "0.png")
    (zoo / "build.json").write_text("{}")
    assert _refused(read_dataset, str(zoo)) == (
        f"{zoo}: a zoo whose build has not finished (no classes.txt and split lists yet); run the same 'dnadet-tf zoo "
        f"build --out {zoo}' command again to finish it.")


def test_a_latin1_annotation_list_is_refused(tmp_path):
    (tmp_path / "classes.txt").write_text("real\nfake\n")
    _image(tmp_path / "caf\u00e9.png")
    listed = tmp_path / "list.txt"
    listed.write_bytes(b"caf\xe9.png\t1\n")
    assert _refused(read_dataset, str(listed)) == (
        f"{listed}: expected an annotation list (path<TAB>label lines) in UTF-8 text, received a file that is not "
        f"UTF-8 (byte 0xe9 at offset 3: another encoding such as Latin-1, or a binary file).")


@pytest.mark.parametrize("encoding, received", [("utf-16", "UTF-16 text (save it as UTF-8)"),
                                                ("utf-16-le", "a binary file (it holds NUL bytes)")])
def test_a_utf16_classes_file_is_refused(tmp_path, encoding, received):
    """UTF-16 with its byte order mark (Notepad's "Unicode", PowerShell's `>`) or without one."""
    (tmp_path / "classes.txt").write_bytes("real\nfake\n".encode(encoding))
    _image(tmp_path / "a.png")
    (tmp_path / "list.txt").write_text("a.png\t1\n")
    assert _refused(read_dataset, str(tmp_path / "list.txt")) == (
        f"{tmp_path / 'classes.txt'}: expected class names, one per line, in UTF-8 text, received {received}.")


def test_utf8_with_a_byte_order_mark_and_windows_line_ends_is_read(tmp_path):
    (tmp_path / "classes.txt").write_bytes("\ufeffreal\r\nfake\r\n".encode("utf-8"))
    image = _image(tmp_path / "caf\u00e9.png")
    (tmp_path / "list.txt").write_bytes("\ufeffcaf\u00e9.png\t1\r\n".encode("utf-8"))
    files = read_dataset(str(tmp_path / "list.txt"))
    assert (files.paths, files.labels.tolist(), files.class_names) == ([image], [1], ["real", "fake"])
    (tmp_path / "unknown.txt").write_bytes("\ufeffcaf\u00e9.png\tdcgan\r\n".encode("utf-8"))
    assert read_unknown(str(tmp_path / "unknown.txt")) == ([image], ["dcgan"])


def test_only_annotation_lists_are_offered_for_a_folder_tree(tmp_path):
    """A folder read as a tree whose classes do not fit names the .txt files in it that read as annotation
    lists, not notes, a classes.txt or a file that is not text."""
    folder = tmp_path / "data"
    _image(folder / "images" / "a.png")
    (folder / "notes.txt").write_text("hello\n")
    assert _refused(remap_to, read_dataset(str(folder)), ["real", "progan"]) == (
        f"{folder}: classes ['images'] are not among the model's classes ['real', 'progan'].")
    from dnadet_tf.data import looks_like_annotation_list

    (folder / "classes.txt").write_text("real\nprogan\n")
    (folder / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "fakes.txt").write_text("# split\n\nimages/a.png\t1\n")
    assert [looks_like_annotation_list(str(folder / name)) for name in
            ("notes.txt", "classes.txt", "binary.txt", "fakes.txt")] == [False, False, False, True]
    assert _refused(remap_to, read_dataset(str(folder)), ["real", "progan"]) == (
        f"{folder}: classes ['images'] are not among the model's classes ['real', 'progan']; the folder also holds "
        f"the annotation lists fakes.txt: pass one of them.")


def test_evaluate_takes_unknown_image_files_and_refuses_an_image_as_data(untrained_run, tmp_path):
    """Through the CLI: `--unknown a.png b.jpg` is read (the untrained model has no open-set score to give it);
    an image as --data stops with one line (exit code 2) before any inference."""
    import dnadet_tf

    data = str(tmp_path / "test")
    make_upsampling_tree(data, 1)
    png = _image(tmp_path / "unknown" / "a.png")
    jpg = str(tmp_path / "unknown" / "b.jpg")
    Image.open(png).convert("RGB").save(jpg)
    out = str(tmp_path / "evaluation.json")
    code, stdout, stderr = run_cli(["evaluate", "--model", untrained_run, "--data", data, "--unknown", png, jpg,
                                    "--json", out])
    assert code == 0, stderr
    assert "open set: the model stores no open-set score; the unknown images are not scored" in stdout + stderr
    (tmp_path / "unknown" / "classes.txt").write_text("real\nfake\n")
    code, _, stderr = run_cli(["evaluate", "--model", untrained_run, "--data", png, "--json", out])
    assert code == 2 and stderr.strip() == (
        f"dnadet-tf evaluate: error: {png}: expected a folder tree, an annotation list or a benchmark folder, "
        f"received an image file.")
    binary = tmp_path / "unknown" / "weights.bin"
    binary.write_bytes(b"\xff\xd8\xff")
    with pytest.raises(DataError, match=r"weights.bin: expected a list of images of unknown architectures .* "
                                        r"received a file that is not UTF-8 \(byte 0xff at offset 0"):
        dnadet_tf.evaluate(untrained_run, data, unknown=str(binary))

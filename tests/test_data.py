import os

import numpy as np
import pytest
from PIL import Image

from dnadet_tf.data import benchmark_digest, check_files, read_dataset, remap_to
from dnadet_tf.errors import DataError
from dnadet_tf.images import ImageError, load_rgb
from dnadet_tf.preprocess import PreprocessConfig, preprocess_image


def save(path, array, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def rgb(size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_folder_tree_real_first_recursive_and_extensions(tmp_path):
    save(str(tmp_path / "zgan" / "a.PNG"), rgb())
    save(str(tmp_path / "agan" / "sub" / "b.jpg"), rgb())
    save(str(tmp_path / "real" / "c.webp"), rgb())
    save(str(tmp_path / "real" / ".hidden.png"), rgb())
    (tmp_path / "real" / "notes.txt").write_text("x")
    files = read_dataset(str(tmp_path))
    assert files.class_names == ["real", "agan", "zgan"]
    assert [os.path.basename(p) for p in files.paths] == ["c.webp", "b.jpg", "a.PNG"]
    assert files.labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize("names,expected", [(("ProGAN", "Real", "SNGAN"), ["Real", "ProGAN", "SNGAN"]),
                                            (("1_fake", "0_real"), ["0_real", "1_fake"]),
                                            (("b", "real_a", "real_b"), ["b", "real_a", "real_b"])])
def test_a_real_class_named_otherwise_is_label_0_when_it_is_the_only_candidate(names, expected):
    from dnadet_tf.data import order_classes

    assert order_classes(list(names)) == expected


def test_annotation_list_relative_and_absolute_paths(tmp_path):
    save(str(tmp_path / "img" / "a.png"), rgb())
    save(str(tmp_path / "b.png"), rgb())
    (tmp_path / "classes.txt").write_text("real\ngan\n")
    (tmp_path / "train.txt").write_text(f"img/a.png\t1\n{tmp_path / 'b.png'}\t0\n")
    files = read_dataset(str(tmp_path / "train.txt"))
    assert files.class_names == ["real", "gan"]
    assert files.labels.tolist() == [1, 0]
    assert all(os.path.isfile(p) for p in files.paths)
    # A benchmark folder picks its split list.
    assert read_dataset(str(tmp_path), "train").labels.tolist() == [1, 0]


def test_benchmark_digest_follows_pixels_labels_and_lists_not_the_folder(tmp_path):
    def benchmark(root, pixels_seed=0, label=1):
        save(str(root / "img" / "a.png"), rgb(seed=pixels_seed))
        save(str(root / "img" / "b.png"), rgb(seed=5))
        (root / "classes.txt").write_text("real\ngan\n")
        (root / "train.txt").write_text(f"img/a.png\t{label}\n")
        (root / "test.txt").write_text("img/b.png\t0\nimg/a.png\t1\n")
        return benchmark_digest(str(root))

    reference = benchmark(tmp_path / "one")
    assert len(reference) == 64 and reference == benchmark(tmp_path / "two")  # another folder, same contents
    assert benchmark(tmp_path / "pixels", pixels_seed=1) != reference
    assert benchmark(tmp_path / "label", label=0) != reference
    (tmp_path / "one" / "val.txt").write_text("img/b.png\t0\n")  # a new split list counts too
    with_val = benchmark_digest(str(tmp_path / "one"))
    assert with_val != reference
    save(str(tmp_path / "one" / "unknown" / "c.png"), rgb(seed=7))
    (tmp_path / "one" / "open_set.txt").write_text("unknown/c.png\tnewgan\n")
    with_open_set = benchmark_digest(str(tmp_path / "one"))
    assert with_open_set != with_val
    save(str(tmp_path / "one" / "unknown" / "c.png"), rgb(seed=8))  # so do the open-set images' pixels
    assert benchmark_digest(str(tmp_path / "one")) != with_open_set


@pytest.mark.parametrize(
    "content, message",
    [("img.png\tnotalabel\n", "train.txt:1: expected 'path<TAB>integer label'"),
     ("img.png\t5\n", "label 5 is not in classes.txt"),
     ("", "holds no image lines")],
)
def test_annotation_list_errors_name_file_and_line(tmp_path, content, message):
    (tmp_path / "classes.txt").write_text("real\ngan\n")
    (tmp_path / "train.txt").write_text(content)
    with pytest.raises(DataError, match=message):
        read_dataset(str(tmp_path / "train.txt"))


def test_missing_path_and_missing_classes_file(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        read_dataset(str(tmp_path / "nowhere"))
    (tmp_path / "list.txt").write_text("a.png\t0\n")
    with pytest.raises(DataError, match="classes.txt not found"):
        read_dataset(str(tmp_path / "list.txt"))


def test_bad_files_are_skipped_with_one_warning_each(tmp_path):
    save(str(tmp_path / "real" / "good.png"), rgb())
    save(str(tmp_path / "gan" / "good.png"), rgb(seed=1))
    (tmp_path / "gan" / "empty.png").write_bytes(b"")
    (tmp_path / "gan" / "text.jpg").write_text("this is not an image")
    save(str(tmp_path / "gan" / "whole.jpg"), rgb(64))
    data = (tmp_path / "gan" / "whole.jpg").read_bytes()
    (tmp_path / "gan" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    save(str(tmp_path / "gan" / "tiny.png"), rgb(4))
    save(str(tmp_path / "gan" / "thin.png"), np.zeros((40, 20, 3), np.uint8))
    warnings = []
    files = check_files(read_dataset(str(tmp_path)), crop_size=32, warn=warnings.append)
    names = sorted(os.path.basename(p) for p, _ in files.skipped)
    assert names == ["empty.png", "text.jpg", "thin.png", "tiny.png", "truncated.jpg"]
    assert len(warnings) == 5 and all("\n" not in w for w in warnings)
    assert any("empty.png" in w and "empty" in w for w in warnings)
    assert any("thin.png" in w and "20x40" in w for w in warnings)
    assert sorted(os.path.basename(p) for p in files.paths) == ["good.png", "good.png", "whole.jpg"]


def test_too_small_means_below_min_side_if_square_below_the_crop_if_not(tmp_path):
    sizes = {"sq31.png": (31, 31), "sq32.png": (32, 32), "wide.png": (31, 60), "tall.png": (70, 40)}
    for name, (height, width) in sizes.items():
        save(str(tmp_path / "gan" / name), np.zeros((height, width, 3), np.uint8))
    warnings = []
    files = check_files(read_dataset(str(tmp_path)), crop_size=40, min_side=32, warn=warnings.append)
    assert sorted(os.path.basename(p) for p in files.paths) == ["sq32.png", "tall.png"]
    assert any("sq31.png" in w and ">= 32 px" in w and "31x31" in w for w in warnings)
    assert any("wide.png" in w and ">= 40 px" in w and "60x31" in w for w in warnings)


def test_class_without_usable_image_stops(tmp_path):
    save(str(tmp_path / "real" / "good.png"), rgb())
    (tmp_path / "gan").mkdir()
    (tmp_path / "gan" / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="class 'gan' has no usable image"):
        check_files(read_dataset(str(tmp_path)), warn=lambda m: None)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="class 'empty_class' has no image files"):
        read_dataset(str(tmp_path))


def test_remap_to_model_classes(tmp_path):
    save(str(tmp_path / "gan" / "a.png"), rgb())
    files = remap_to(read_dataset(str(tmp_path)), ["real", "gan"])
    assert files.labels.tolist() == [1]
    with pytest.raises(DataError, match="not among the model's classes"):
        remap_to(read_dataset(str(tmp_path)), ["real", "other"])


def test_every_mode_becomes_8bit_rgb(tmp_path):
    base = rgb(16)
    Image.fromarray(base).convert("P").save(tmp_path / "p.png")
    Image.fromarray(base).convert("L").save(tmp_path / "l.png")
    Image.fromarray(base).convert("CMYK").save(tmp_path / "cmyk.jpg")
    rgba = np.dstack([base, np.full((16, 16), 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(base[..., 0].astype(np.uint16) * 257).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    for name in ("p.png", "l.png", "cmyk.jpg", "rgba.png", "g16.png"):
        array = load_rgb(str(tmp_path / name))
        assert array.dtype == np.uint8 and array.shape == (16, 16, 3), name
    np.testing.assert_array_equal(load_rgb(str(tmp_path / "rgba.png")), base)
    assert abs(int(load_rgb(str(tmp_path / "g16.png"))[3, 3, 0]) - int(base[3, 3, 0])) <= 1


def test_exif_rotation_is_applied(tmp_path):
    image = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "rot.jpg", exif=exif)
    assert load_rgb(str(tmp_path / "rot.jpg")).shape == (20, 10, 3)


def test_decompression_bomb_guard_is_on(tmp_path, monkeypatch):
    save(str(tmp_path / "big.png"), np.zeros((64, 64, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match="decompression bomb .*; set DNADET_TF_MAX_PIXELS to a larger number of "
                                         "pixels to read it"):
        load_rgb(str(tmp_path / "big.png"))
    # The variable sets the limit (a 200 MP phone photo is no bomb); a value that is no number changes nothing.
    from dnadet_tf import images

    monkeypatch.setenv("DNADET_TF_MAX_PIXELS", "5000")
    images._apply_max_pixels()
    assert Image.MAX_IMAGE_PIXELS == 5000 and load_rgb(str(tmp_path / "big.png")).shape == (64, 64, 3)
    monkeypatch.setenv("DNADET_TF_MAX_PIXELS", "lots")
    images._apply_max_pixels()
    assert Image.MAX_IMAGE_PIXELS == 5000


def test_preprocess_crops_non_square_then_resizes_and_scales():
    config = PreprocessConfig(crop_size=32, resize1=32, resize2=64)
    image = np.zeros((40, 48, 3), np.uint8)
    image[4:36, 8:40] = 255  # exactly the central 32x32 crop
    out = preprocess_image(image, config).numpy()
    assert out.shape == (64, 64, 3)
    np.testing.assert_allclose(out, 1.0, atol=1e-5)
    square = np.full((20, 20, 3), 0, np.uint8)
    np.testing.assert_allclose(preprocess_image(square, config).numpy(), -1.0, atol=1e-5)
    noisy = rgb(32)
    values = preprocess_image(noisy, config).numpy()
    assert values.min() >= -1.0 and values.max() <= 1.0


def test_crop_square_crops_large_square_images_in_native_pixels_instead_of_squashing_them():
    squash = PreprocessConfig(crop_size=32, resize1=32, resize2=64)
    crop = PreprocessConfig(crop_size=32, resize1=32, resize2=64, crop_square=True)
    large = rgb(48)
    centre = large[8:40, 8:40]
    np.testing.assert_array_equal(preprocess_image(large, crop).numpy(), preprocess_image(centre, squash).numpy())
    assert not np.allclose(preprocess_image(large, squash).numpy(), preprocess_image(centre, squash).numpy())
    for side in (32, 20):  # the crop size itself, and smaller (resized up as before)
        small = rgb(side)
        np.testing.assert_array_equal(preprocess_image(small, crop).numpy(), preprocess_image(small, squash).numpy())
    wide = rgb(40)[:36]  # non-square: cropped either way
    np.testing.assert_array_equal(preprocess_image(wide, crop).numpy(), preprocess_image(wide, squash).numpy())
    assert PreprocessConfig.from_dict(crop.to_dict()) == crop
    older = {k: v for k, v in crop.to_dict().items() if k != "crop_square"}  # written before the field existed
    assert PreprocessConfig.from_dict(older).crop_square is False


def test_hold_out_is_stratified_and_depends_on_the_files_not_their_order_or_folder(tmp_path):
    from dnadet_tf.data import LabeledFiles, hold_out

    def files(root, order):
        paths = [f"{root}/{c}/{i:03d}.png" for c in ("real", "a") for i in range(20)] + [f"{root}/b/000.png"]
        labels = [0] * 20 + [1] * 20 + [2]
        return LabeledFiles(paths=[paths[i] for i in order], labels=np.asarray([labels[i] for i in order]),
                            class_names=["real", "a", "b"], source=root)

    kept, held = hold_out(files("/x/data", range(41)), 0.1)
    assert held.class_counts().tolist() == [2, 2, 0] and kept.class_counts().tolist() == [18, 18, 1]
    assert sorted(kept.paths + held.paths) == sorted(files("/x/data", range(41)).paths)
    reversed_elsewhere = hold_out(files("/y/moved", range(40, -1, -1)), 0.1)[1]
    assert sorted(p.replace("/y/moved", "/x/data") for p in reversed_elsewhere.paths) == sorted(held.paths)
    assert hold_out(files("/x/data", range(41)), 0.01)[1].class_counts().tolist() == [1, 1, 0]  # at least one
    with pytest.raises(ValueError, match="fraction: expected a number between 0 and 1, received 1.0"):
        hold_out(files("/x/data", range(41)), 1.0)

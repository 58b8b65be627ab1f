"""`dnadet-tf import-torch`: checkpoints of the authors' PyTorch release become run dirs that give the
release's probabilities.

The release's network is written here from its published definition (ICTMCG/DNA-Det,
models/models.py): Simple_CNN, full width (nf = 64), and SupConNet's projection head. A randomly
initialised and a briefly trained state are saved with torch.save, imported, and compared with
PyTorch on 12 images of mixed sizes, each preprocessed as the release's data loader does (PIL crop
and bicubic resizes, ToTensor, Normalize). The preprocessing chain is the in-the-wild one at half
the release's sizes (64 crop -> 64 -> 128) to keep the test fast; the network is full width.

PyTorch is an optional extra (`pip install -e ".[torch]"`); under CI the test fails rather than skips
without it (.ci/run installs it).
"""
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

if os.environ.get("CI"):
    import torch  # CI must run these tests: .ci/run installs the torch extra
else:
    torch = pytest.importorskip("torch", reason="the torch extra is not installed: pip install -e '.[torch]'")
from torch import nn  # noqa: E402

# One thread: on a busy 2-core machine torch's OpenMP workers spin against TensorFlow's and other
# processes' threads (a training step of this test took 1.6 s with 2 threads, 0.27 s with 1).
torch.set_num_threads(1)

import tensorflow as tf  # noqa: E402

from dnadet_tf.errors import CheckpointError  # noqa: E402
from dnadet_tf.predictor import KerasPredictor, predict_files  # noqa: E402
from dnadet_tf.preprocess import preprocess_image  # noqa: E402
from dnadet_tf.torch_files import read_torch_file  # noqa: E402
from dnadet_tf.torch_import import import_torch  # noqa: E402
from clirun import run_cli as _cli  # noqa: E402

CLASSES = ["real", "progan", "mmdgan", "sngan", "infomaxgan"]
CROP, RESIZE1, RESIZE2 = 64, 64, 128
SIZE_FLAGS = ["--crop-size", str(CROP), "--resize1", str(RESIZE1), "--resize2", str(RESIZE2)]
# (height, width): square ones are resized whole, others centre-cropped first (odd margins too).
SHAPES = [(64, 64), (96, 96), (128, 128), (80, 64), (64, 67), (70, 90), (100, 100), (65, 130), (72, 72),
          (90, 75), (200, 200), (64, 81)]


# ------------------------------------------------------------ the release's network, in PyTorch
class ConvBlock(nn.Module):
    """Conv -> BatchNorm -> LeakyReLU(0.2), held as `main` (the release's dcgan_conv / vgg_layer)."""

    def __init__(self, cin, cout, kernel, stride):
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))

    def forward(self, x):
        return self.main(x)


class ReleaseNet(nn.Module):
    """Simple_CNN: four stages of (4x4 stride 2, 3x3 stride 1) blocks, average pooling, Dropout + Linear."""

    def __init__(self, num_classes, nf=64):
        super().__init__()
        widths = [nf, nf, 2 * nf, 2 * nf, 4 * nf, 4 * nf, 8 * nf, 8 * nf]
        inputs = [3] + widths[:-1]
        self.main = nn.Sequential(*[ConvBlock(cin, cout, 4 if i % 2 == 0 else 3, 2 if i % 2 == 0 else 1)
                                    for i, (cin, cout) in enumerate(zip(inputs, widths))])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classification_head = nn.Sequential(nn.Dropout(0.2), nn.Linear(8 * nf, num_classes))

    def features(self, x):
        return self.pool(self.main(x)).flatten(1)

    def forward(self, x):
        """Logits (the release applies a softmax here in step 2; the tests take it themselves)."""
        return self.classification_head(self.features(x))


class SupConNet(nn.Module):
    """The release's training wrapper: the backbone and an MLP projection head."""

    def __init__(self, backbone, dim_in=512, feat_dim=128):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Linear(dim_in, dim_in), nn.ReLU(), nn.Linear(dim_in, feat_dim))


def release_pixels(path, crop=CROP, resize1=RESIZE1, resize2=RESIZE2):
    """The release's ImageDataset.load_sample (torchvision CenterCrop of a non-square image, PIL resizes with
    the default filter, ToTensor, Normalize): float32 (3, S, S)."""
    image = Image.open(path).convert("RGB")
    width, height = image.size
    if width != height:
        top, left = int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))
        image = image.crop((left, top, left + crop, top + crop))
    image = image.resize((resize1, resize1)).resize((resize2, resize2))
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)
    return (tensor - 0.5) / 0.5


def torch_probabilities(net, paths, sizes=(CROP, RESIZE1, RESIZE2)):
    net.eval()
    with torch.no_grad():
        return torch.softmax(net(torch.stack([release_pixels(p, *sizes) for p in paths])), 1).numpy()


# --------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """ROOT/<class>/<i>.png: 12 images of SHAPES, textured (smooth gradients plus noise), class i % 5."""
    root = tmp_path_factory.mktemp("release-images")
    rng = np.random.default_rng(0)
    paths = []
    for i, (height, width) in enumerate(SHAPES):
        ramp = np.cumsum(rng.normal(0, 5, (height, width, 3)), axis=1) + np.cumsum(rng.normal(0, 5, (height, 1, 3)), 0)
        pixels = np.clip(ramp + 128 + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
        folder = root / CLASSES[i % len(CLASSES)]
        folder.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
        paths.append(str(folder / f"{i:02d}.png"))
    return {"root": str(root), "paths": paths}


@pytest.fixture(scope="module")
def checkpoints(images, tmp_path_factory):
    """{'random': ..., 'trained': ...}: torch.save'd state dicts of full-width nets, and the nets."""
    folder = tmp_path_factory.mktemp("release-checkpoints")
    torch.manual_seed(0)
    random_net = ReleaseNet(len(CLASSES))
    torch.save(random_net.state_dict(), folder / "random.pth")

    torch.manual_seed(1)
    trained_net = ReleaseNet(len(CLASSES))
    pixels = torch.stack([release_pixels(p) for p in images["paths"]])
    labels = torch.tensor([i % len(CLASSES) for i in range(len(images["paths"]))])
    optimizer = torch.optim.Adam(trained_net.parameters(), lr=1e-3)
    trained_net.train()
    generator = torch.Generator().manual_seed(2)
    for _ in range(12):  # as the release trains: random 64 px crops of the preprocessed images
        top, left = torch.randint(0, RESIZE2 - 64 + 1, (2,), generator=generator).tolist()
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(trained_net(pixels[:, :, top:top + 64, left:left + 64]), labels)
        loss.backward()
        optimizer.step()
    torch.save(trained_net.state_dict(), folder / "trained.pth")
    bn = trained_net.main[3].main[1]
    assert bn.running_mean.abs().max() > 0.01 and (bn.running_var - 1).abs().max() > 0.01  # statistics moved
    return {"folder": folder, "random": (str(folder / "random.pth"), random_net),
            "trained": (str(folder / "trained.pth"), trained_net)}


@pytest.fixture(scope="module")
def imported(checkpoints, tmp_path_factory):
    runs = {}
    for state in ("random", "trained"):
        run = str(tmp_path_factory.mktemp("imported") / state)
        code, stdout, stderr = _cli(["import-torch", checkpoints[state][0], "--classes", ",".join(CLASSES),
                                     "--out", run] + SIZE_FLAGS)
        assert code == 0, stderr
        assert "imported 50 tensors" in stdout and "8 conv biases folded" in stdout
        runs[state] = run
    return runs


# ------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("state", ["random", "trained"])
def test_imported_run_gives_the_releases_probabilities(state, checkpoints, imported, images):
    path, net = checkpoints[state]
    expected = torch_probabilities(net, images["paths"])
    predictor = KerasPredictor(imported[state])
    assert predictor.class_names == CLASSES and predictor.preprocess.mode == "release"
    got = predict_files(predictor, images["paths"])
    difference = np.abs(got - expected).max()
    print(f"{state}: max |dp| = {difference:.2e} over {len(images['paths'])} images, "
          f"probabilities from {expected.min():.3f} to {expected.max():.3f}")
    assert len(images["paths"]) >= 10
    assert difference <= 1e-4
    assert (got.argmax(1) == expected.argmax(1)).all()
    if state == "trained":
        assert expected.max() > 0.5  # not a near-uniform output that any mapping would match


def test_both_networks_see_the_same_pixels_and_give_the_same_logits(imported, checkpoints, images):
    """The run's preprocessing (mode release) gives exactly the release loader's pixels, and on them
    the imported classifier's logits are PyTorch's (a check that does not saturate like probabilities)."""
    config = KerasPredictor(imported["random"]).preprocess
    preprocess = tf.function(lambda image: preprocess_image(image, config),
                             input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    pixels = []
    for path in images["paths"]:
        ours = preprocess(np.asarray(Image.open(path).convert("RGB"))).numpy()
        np.testing.assert_array_equal(ours, release_pixels(path).permute(1, 2, 0).numpy())
        pixels.append(ours)
    pixels = np.stack(pixels)
    for state in ("random", "trained"):
        net = checkpoints[state][1].eval()
        with torch.no_grad():
            expected = net(torch.from_numpy(pixels).permute(0, 3, 1, 2)).numpy()
        logits = KerasPredictor(imported[state]).model(pixels, training=False).numpy()
        difference = np.abs(logits - expected).max()
        print(f"{state}: max |dlogit| = {difference:.2e}, logits span {np.ptp(expected):.2f}")
        assert difference <= 1e-4 * max(1.0, np.abs(expected).max())


def test_run_dir_is_a_normal_one(imported, checkpoints):
    run = imported["trained"]
    assert {"best.keras", "labels.txt", "config.json", "import.json"} <= set(os.listdir(run))
    with open(os.path.join(run, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert config["preprocessing"] == {"crop_size": CROP, "resize1": RESIZE1, "resize2": RESIZE2,
                                       "preprocess_mode": "release", "crop_square": False}  # the release squashes
    assert config["model"]["width"] == 1.0
    with open(os.path.join(run, "import.json"), encoding="utf-8") as f:
        summary = json.load(f)
    assert summary["nf"] == 64 and summary["tensors_ignored"] == [f"main.{i}.main.1.num_batches_tracked"
                                                                  for i in range(8)]


def test_export_of_an_imported_model_passes_the_parity_report(imported, checkpoints, images, tmp_path):
    run = imported["trained"]
    code, stdout, stderr = _cli(["export", "--model", run, "--out", str(tmp_path), "--formats", "savedmodel,float32",
                                 "--eval", images["root"], "--max-eval", "0"])
    assert code == 0, stderr
    with open(tmp_path / "dnadet" / "report.json", encoding="utf-8") as f:
        report = json.load(f)
    assert report["preprocess"]["mode"] == "release" and report["eval"]["images"] == len(images["paths"])
    for row in report["rows"]:
        assert row["top1_agreement"] == 1.0 and row["max_abs_diff"] <= 1e-4, row
    # The SavedModel decodes and preprocesses in its graph: its answer to the PNG bytes is the release's.
    serve = tf.saved_model.load(str(tmp_path / "dnadet" / "1")).signatures["serving_default"]
    served = serve(images=tf.constant([open(p, "rb").read() for p in images["paths"]]))["probabilities"].numpy()
    assert np.abs(served - torch_probabilities(checkpoints["trained"][1], images["paths"])).max() <= 1e-4
    with open(tmp_path / "dnadet" / "tflite" / "dnadet-float32.json", encoding="utf-8") as f:
        steps = json.load(f)["app_preprocessing"]
    assert any("Pillow's Image.resize" in step for step in steps) and any("round((H - 64) / 2)" in s for s in steps)


def test_wrapped_and_prefixed_state_dicts_import_the_same_weights(checkpoints, imported, tmp_path):
    state = torch.load(checkpoints["trained"][0])
    variants = {
        "wrapped": {"state_dict": state, "epoch": 7, "best": 0.99},
        "dataparallel": {"model": {f"module.{k}": v for k, v in state.items()}},
    }
    reference = KerasPredictor(imported["trained"]).model.get_weights()
    for name, saved in variants.items():
        torch.save(saved, tmp_path / f"{name}.pth")
        import_torch(tmp_path / f"{name}.pth", tmp_path / name, CLASSES, crop_size=CROP, resize1=RESIZE1,
                     resize2=RESIZE2)
        for a, b in zip(KerasPredictor(str(tmp_path / name)).model.get_weights(), reference):
            np.testing.assert_array_equal(a, b)


def test_supconnet_state_keeps_the_projection_head(checkpoints, tmp_path):
    import keras

    import dnadet_tf.model  # noqa: F401  registers the classes

    torch.manual_seed(3)
    net = SupConNet(checkpoints["trained"][1])
    torch.save(net.state_dict(), tmp_path / "supcon.pth")
    summary = import_torch(tmp_path / "supcon.pth", tmp_path / "run", setting="celeba")
    assert summary["class_names"] == CLASSES and summary["preprocess"]["resize1"] == 512
    head = keras.saving.load_model(str(tmp_path / "run" / "projection_head.keras"))
    feature = np.random.default_rng(0).normal(size=(4, 512)).astype(np.float32)
    with torch.no_grad():
        expected = nn.functional.normalize(net.head(torch.from_numpy(feature)), dim=1).numpy()
    np.testing.assert_allclose(head(feature).numpy(), expected, atol=1e-5)


def test_pretrain_setting_at_another_width(images, tmp_path):
    """A step-1 checkpoint (170 transformations) of a narrower release network (nf = 16), at the release's own
    sizes (crop 128 -> 512): names, width and probabilities."""
    from dnadet_tf.transforms import TRANSFORM_NAMES

    torch.manual_seed(4)
    net = ReleaseNet(170, nf=16)
    torch.save(net.state_dict(), tmp_path / "pretrain.pth")
    summary = import_torch(tmp_path / "pretrain.pth", tmp_path / "run", setting="pretrain")
    predictor = KerasPredictor(str(tmp_path / "run"))
    assert predictor.class_names == list(TRANSFORM_NAMES) and predictor.model.backbone.width == 0.25
    assert summary["nf"] == 16 and (summary["preprocess"]["resize1"], summary["preprocess"]["resize2"]) == (512, 512)
    paths = [p for p in images["paths"] if min(Image.open(p).size) >= 128][:2]
    expected = torch_probabilities(net, paths, (128, 512, 512))
    assert np.abs(predict_files(predictor, paths) - expected).max() <= 1e-4


def _corrupt(checkpoints, tmp_path, change):
    state = torch.load(checkpoints["random"][0])
    change(state)
    path = str(tmp_path / "bad.pth")
    torch.save(state, path)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("main.3.main.1.running_var"),
     r"missing tensor 'main\.3\.main\.1\.running_var' of the release's Simple_CNN"),
    (lambda s: s.__setitem__("main.2.main.0.weight", torch.zeros(128, 64, 3, 3)),
     r"tensor 'main\.2\.main\.0\.weight' has shape \(128, 64, 3, 3\); expected \(128, 64, 4, 4\)"),
    (lambda s: s.__setitem__("extra.weight", torch.zeros(3)), r"unexpected tensor 'extra\.weight' \(3,\)"),
    (lambda s: s["main.0.main.0.weight"].view(-1)[:2].fill_(float("nan")),
     r"tensor 'main\.0\.main\.0\.weight' holds 2 NaN or infinite values; expected finite weights"),
])
def test_a_checkpoint_that_does_not_fit_stops_with_one_line(change, message, checkpoints, tmp_path):
    path = _corrupt(checkpoints, tmp_path, change)
    code, _, stderr = _cli(["import-torch", path, "--classes", ",".join(CLASSES), "--out", str(tmp_path / "run")])
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert stderr.startswith(f"dnadet-tf import-torch: error: {path}: ")
    assert re.search(message, stderr), stderr
    assert not os.path.exists(tmp_path / "run")


def test_class_count_must_match_the_head(checkpoints, tmp_path):
    code, _, stderr = _cli(["import-torch", checkpoints["random"][0], "--classes", "real,fake",
                            "--out", str(tmp_path / "run")])
    assert code == 2
    assert "error: --classes: expected 5 names for the 5-way head" in stderr and "received 2." in stderr


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_the_reader_runs_nothing_it_unpickles(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"weight": torch.zeros(2), "payload": _Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"holds a pickled (posix|os|nt)\.system, which this reader refuses"):
        read_torch_file(tmp_path / "evil.pth")
    assert not marker.exists()
    torch.save(nn.Linear(2, 2), tmp_path / "module.pth")  # a whole module, not its state dict
    with pytest.raises(CheckpointError, match=r"torch\.nn\.modules\.linear\.Linear"):
        read_torch_file(tmp_path / "module.pth")


def test_tensors_read_without_torch_equal_torchs(tmp_path):
    base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
    saved = {"t": base.transpose(0, 2), "view": base[1, :, 2:], "half": base.half(), "bf16": base.bfloat16(),
             "long": torch.arange(5), "param": nn.Parameter(base.clone()), "nested": [base[0]], "n": 3}
    torch.save(saved, tmp_path / "x.pth")
    read = read_torch_file(tmp_path / "x.pth")
    for key in ("t", "view", "half", "long"):
        np.testing.assert_array_equal(read[key], saved[key].numpy())
        assert read[key].dtype == saved[key].numpy().dtype
    np.testing.assert_array_equal(read["bf16"], saved["bf16"].float().numpy())
    np.testing.assert_array_equal(read["param"], base.numpy())
    np.testing.assert_array_equal(read["nested"][0], base[0].numpy())
    assert read["n"] == 3


@pytest.mark.parametrize("content, message", [
    (b"", r"the file is empty \(0 bytes\)"),
    (b"PK\x03\x04cut off", r"a damaged or cut-off zip archive"),
    (b"\x80\x02legacy", r"not a zip-format torch\.save file \(PyTorch >= 1\.6 writes one\)"),
    (b"\x89PNG\r\n", r"not a torch\.save file \(it starts with the bytes"),
])
def test_a_file_that_is_no_whole_checkpoint_says_what_it_is(content, message, tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_torch_file(path)
    with pytest.raises(CheckpointError, match=r"a folder; expected the checkpoint file"):
        read_torch_file(tmp_path)

"""The HTML report of `dnadet-tf evaluate --report`: self-contained, all sections, renders in Chromium."""
import base64
import io
import os
import re

import numpy as np
import pytest
from PIL import Image

from web_harness import report_screenshot_module


@pytest.fixture(scope="module")
def report(tiny_run, upsampling_data, tmp_path_factory):
    from dnadet_tf.cli.main import main

    folder = tmp_path_factory.mktemp("report")
    code = main(["evaluate", "--model", tiny_run, "--data", upsampling_data["test"], upsampling_data["val"],
                 "--json", str(folder / "evaluation" / "evaluation.json"), "--report", str(folder / "report")])
    assert code == 0
    path = folder / "report" / "report.html"
    return str(path), path.read_text(encoding="utf-8")


def test_report_is_self_contained(report):
    _, text = report
    sources = re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', text)
    assert sources
    for source in sources:
        assert source.startswith(("data:image/png;base64,", "#")), source[:60]
    assert not re.search(r"(?:src|href)\s*=\s*['\"]?\s*(?:https?:)?//", text)
    assert "<link" not in text and "@import" not in text and "<script" not in text
    assert "<style>" in text


def test_report_has_the_sections_and_valid_images(report, tiny_run, upsampling_data):
    from dnadet_tf.evaluation import expand_data_specs

    _, text = report
    for key in ("metrics", "confusion", "tsne", "gradcam", "config"):
        assert f'<section id="{key}">' in text
    for heading in ("Metrics", "Confusion matrices", "t-SNE of the pooled features", "Grad-CAM examples",
                    "Configuration"):
        assert f"<h2>{heading}</h2>" in text
    # Metrics rows for both datasets, class recall columns.
    for name, _ in expand_data_specs([upsampling_data["test"], upsampling_data["val"]]):
        assert f"<td>{name}</td>" in text
    for name in ("real", "nearest", "transposed"):
        assert f"recall {name} %" in text
    # Images: 2 confusion matrices + 1 t-SNE + 2 Grad-CAM examples for each of the 3 classes.
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 2 + 1 + 3 * 2
    for data in images:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            assert image.format == "PNG" and min(image.size) > 50
    # The run's configuration.
    assert "stage2_act2" in text and "learning_rate" in text and tiny_run in text


def test_tsne_embedding_clips_the_perplexity():
    from dnadet_tf.report import tsne_embedding

    features = np.random.default_rng(0).normal(size=(6, 8))
    points = tsne_embedding(features)  # perplexity 15 > 6 samples: clipped, no error
    assert points.shape == (6, 2) and np.isfinite(points).all()
    with pytest.raises(ValueError):
        tsne_embedding(features[:2])


def test_report_renders_in_chromium(report, tmp_path):
    screenshot = report_screenshot_module()
    chromium = screenshot.find_chromium()
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: CI must run the browser test (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    path, _ = report
    result = screenshot.check_report(path, str(tmp_path / "report.png"), chromium, min_images=9)
    assert result["ok"], result["problems"]
    assert len(result["images"]) == 9 and all(s["width"] > 0 for s in result["images"])
    # The check is not vacuous: a page whose images cannot load fails it.
    broken = tmp_path / "broken.html"
    broken.write_text('<html><body><img src="missing.png"><img src="https://example.invalid/a.png"></body></html>')
    result = screenshot.check_report(str(broken), str(tmp_path / "broken.png"), chromium)
    assert not result["ok"] and sum("did not load" in p for p in result["problems"]) == 2


def test_a_report_into_its_own_folder_again_keeps_only_its_own_gradcam(tiny_run, upsampling_data, tmp_path):
    from dnadet_tf.cli.main import main

    folder = tmp_path / "report"
    args = ["evaluate", "--model", tiny_run, "--json", str(tmp_path / "e" / "evaluation.json"), "--report",
            str(folder)]
    assert main(args[:3] + ["--data", upsampling_data["test"]] + args[3:]) == 0
    first = set(os.listdir(folder / "gradcam"))
    # a map of an image the next report does not explain, as an earlier report of other data leaves it
    (folder / "gradcam" / "elsewhere.gradcam.png").write_bytes((folder / "gradcam" / sorted(first)[0]).read_bytes())
    (folder / "gradcam" / "notes.txt").write_text("keep me")
    assert main(args[:3] + ["--data", upsampling_data["val"]] + args[3:]) == 0
    second = set(os.listdir(folder / "gradcam"))
    assert "elsewhere.gradcam.png" not in second and "notes.txt" in second and len(second) == len(first) + 1

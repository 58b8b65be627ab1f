"""The HTML report of `dnadet-tf evaluate --report`: self-contained, all sections, renders in Chromium."""
import base64
import io
import json
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


def test_a_report_into_its_own_folder_again_removes_only_the_gradcam_it_listed(tiny_run, upsampling_data, tmp_path):
    """The Grad-CAM PNGs an earlier report listed and this one does not write are removed; a user's own files in
    gradcam/ stay, even one named like a Grad-CAM PNG."""
    from dnadet_tf.cli.main import main

    folder = tmp_path / "report"
    gradcam = folder / "gradcam"

    def report(seed):  # another seed: Grad-CAM of other images
        assert main(["evaluate", "--model", tiny_run, "--data", upsampling_data["test"], "--seed", str(seed),
                     "--json", str(tmp_path / "e" / "evaluation.json"), "--report", str(folder)]) == 0
        return set(os.listdir(gradcam))

    first = {name for name in report(0) if name.endswith(".png")}
    (gradcam / "mine.gradcam.png").write_bytes((gradcam / sorted(first)[0]).read_bytes())
    (gradcam / "notes.txt").write_text("keep me")
    after = report(1)
    assert {"mine.gradcam.png", "notes.txt"} <= after
    listed = {os.path.basename(row["png"]) for row in json.loads((gradcam / "gradcam.json").read_text())}
    assert first - listed, "the second report should explain other images"
    assert after == listed | {"gradcam.json", "mine.gradcam.png", "notes.txt"}
    # a model with no Keras graph (an export) has no t-SNE or Grad-CAM: the earlier report's go, the user's stay
    assert main(["export", "--model", tiny_run, "--out", str(tmp_path / "export"), "--formats", "float32",
                 "--max-eval", "3"]) == 0
    tflite = str(tmp_path / "export" / "dnadet" / "tflite" / "dnadet-float32.tflite")
    assert main(["evaluate", "--model", tflite, "--data", upsampling_data["test"],
                 "--json", str(tmp_path / "e" / "evaluation.json"), "--report", str(folder)]) == 0
    assert not (folder / "tsne.png").exists()
    assert set(os.listdir(gradcam)) == {"mine.gradcam.png", "notes.txt"}


def test_a_report_with_an_open_set_row_samples_its_figures_from_the_known_images(tiny_run, upsampling_data, tmp_path):
    """`--unknown` (or a benchmark's open_set.txt) adds an open-set row, whose data are a list of unknown images: the
    t-SNE and Grad-CAM samples come from the closed-set rows (the open-set row stopped the report with a TypeError)."""
    from dnadet_tf.cli.main import main

    folder = tmp_path / "report"
    unknown = os.path.join(upsampling_data["val"], "transposed")
    assert main(["evaluate", "--model", tiny_run, "--data", upsampling_data["test"], "--unknown", unknown,
                 "--json", str(tmp_path / "evaluation.json"), "--report", str(folder)]) == 0
    rows = json.load(open(tmp_path / "evaluation.json", encoding="utf-8"))
    assert [row.get("kind") for row in rows][-1] == "open_set"
    text = (folder / "report.html").read_text(encoding="utf-8")
    assert 'id="tsne"' in text and os.path.isfile(folder / "tsne.png")

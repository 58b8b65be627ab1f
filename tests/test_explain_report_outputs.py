"""What `explain` and the HTML report read and write beside a user's own files, and names drawn in their figures:
an explain rerun into an --out inside its input folder, a report into a folder holding the user's report.html and
tsne.png, `$...$` in names (matplotlib mathtext), `|` in robustness's Markdown, the report's open-set and ECE."""
import glob
import json
import os
import shutil
import types

import numpy as np
import pytest

from synthetic import CLASSES

MATH_NAMES = ("$\\nope$", "cost$5 to $10")  # mathtext refused the first (ParseFatalException), garbled the second


def _explain(run, *args):
    from dnadet_tf.cli.main import main

    return main(["explain", "--model", run, *map(str, args)])


def _listed(out):
    return [(os.path.basename(row["path"]), os.path.basename(row["png"]))
            for row in json.loads((out / "explain.json").read_text())]


def test_explain_rerun_does_not_take_its_own_pngs_for_images(untrained_run, upsampling_data, tmp_path, capsys):
    """A rerun into an --out inside the input folder (or into that folder) explained the first run's PNGs too
    (a.gradcam.gradcam.png, ...); an image named as a file is still read, and then neither written over nor
    removed."""
    inp = tmp_path / "inp"
    inp.mkdir()
    shutil.copy(sorted(glob.glob(os.path.join(upsampling_data["test"], "real", "*.png")))[0], inp / "a.png")
    shutil.copy(sorted(glob.glob(os.path.join(upsampling_data["test"], "nearest", "*.png")))[0], inp / "b.png")
    cams = inp / "cams"
    assert _explain(untrained_run, inp, "--out", cams) == 0
    assert _explain(untrained_run, inp, "--out", cams, "--overwrite") == 0
    assert _listed(cams) == [("a.png", "a.gradcam.png"), ("b.png", "b.gradcam.png")]
    assert sorted(os.listdir(cams)) == ["a.gradcam.png", "b.gradcam.png", "explain.json"]
    # --out the input folder itself; the other explain's PNGs in cams/ are not images to explain either
    for _ in range(2):
        assert _explain(untrained_run, inp, "--out", inp, "--overwrite") == 0
        assert _listed(inp) == [("a.png", "a.gradcam.png"), ("b.png", "b.gradcam.png")]
    capsys.readouterr()
    # a folder that holds nothing but an explain's PNGs: refused in one line, nothing changed
    before = sorted(os.listdir(cams))
    assert _explain(untrained_run, cams, "--out", cams, "--overwrite") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "earlier explain" in err[0] and "name one as a file" in err[0]
    assert sorted(os.listdir(cams)) == before
    # named as a file, an earlier PNG is explained, and kept: the new PNG of a.png takes the next name
    earlier = (cams / "a.gradcam.png").read_bytes()
    assert _explain(untrained_run, cams / "a.gradcam.png", inp / "a.png", "--out", cams, "--overwrite") == 0
    assert _listed(cams) == [("a.gradcam.png", "a.gradcam.gradcam.png"), ("a.png", "a-2.gradcam.png")]
    assert (cams / "a.gradcam.png").read_bytes() == earlier
    assert sorted(os.listdir(cams)) == ["a-2.gradcam.png", "a.gradcam.gradcam.png", "a.gradcam.png", "explain.json"]


def _rows(data):
    """An evaluation's rows for `data` (the synthetic classes), made up: the report reads only these."""
    from dnadet_tf.metrics import classification_metrics

    metrics = classification_metrics([0, 1, 2, 2], [0, 1, 2, 1], list(CLASSES))
    metrics.update(ece=0.1234, ece_uncalibrated=0.2345, flagged_unknown=0.25)
    return [{"name": "test", "data": data, "class_names": list(CLASSES), "metrics": metrics}]


def _export_like(untrained_run):
    """A predictor without a Keras model, as an exported one is: the report has no t-SNE or Grad-CAM."""
    from dnadet_tf.predictor import KerasPredictor

    keras = KerasPredictor(untrained_run)
    return types.SimpleNamespace(class_names=keras.class_names, preprocess=keras.preprocess, source="model.tflite",
                                 kind="tflite", model=None)


def test_a_report_keeps_the_users_report_html_and_tsne_png(untrained_run, upsampling_data, tmp_path):
    """A report into a folder holding the user's report.html and tsne.png wrote over both (and, for an export,
    removed tsne.png): it writes report-2.html and tsne-2.png, says so, and a rerun replaces those of its own."""
    from dnadet_tf.predictor import KerasPredictor
    from dnadet_tf.report import write_report

    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "report.html").write_text("<html>my own report</html>")
    (folder / "tsne.png").write_bytes(b"\x89PNG my own figure")
    users = {name: (folder / name).read_bytes() for name in ("report.html", "tsne.png")}
    predictor = KerasPredictor(untrained_run)
    rows = _rows(upsampling_data["test"])
    said = []
    small = dict(gradcam_per_class=1, tsne_max_images=9, progress=said.append)
    for _ in range(2):
        path = write_report(predictor, rows, str(folder), **small)
        assert path == str(folder / "report-2.html")
        assert {name: (folder / name).read_bytes() for name in users} == users
        assert sorted(name for name in os.listdir(folder) if name.startswith(("report", "tsne"))) == [
            "report-2.html", "report.html", "tsne-2.png", "tsne.png"]
    assert sum(f"{folder / 'report.html'} is not an earlier report: kept; writing {path}" in s for s in said) == 2
    assert sum("tsne.png is not an earlier report's t-SNE: kept; writing" in s for s in said) == 2
    # the folder cleared of the user's files: the next report takes report.html and tsne.png
    for name in users:
        os.remove(folder / name)
    assert write_report(predictor, rows, str(folder), **small) == str(folder / "report.html")
    assert os.path.isfile(folder / "tsne.png")
    # an export's report draws no t-SNE: the tsne.png of the report it replaces goes, a user's tsne-2.png stays
    (folder / "tsne-2.png").write_bytes(b"\x89PNG mine now")
    assert write_report(_export_like(untrained_run), rows, str(folder), progress=said.append) == str(
        folder / "report.html")
    assert not os.path.exists(folder / "tsne.png")
    assert (folder / "tsne-2.png").read_bytes() == b"\x89PNG mine now"


def _record_texts(monkeypatch, module, drawn):
    """Appends to `drawn` (text, whether matplotlib would parse it as mathtext) for every text of the figures
    `module` saves through `save_figure_atomic`, which then saves them as before."""
    import matplotlib.text

    save = module.save_figure_atomic

    def recording(figure, path, **kwargs):
        for text in figure.findobj(matplotlib.text.Text):
            drawn.append((text.get_text(), text._preprocess_math(text.get_text())[1]))
        return save(figure, path, **kwargs)

    monkeypatch.setattr(module, "save_figure_atomic", recording)


@pytest.mark.parametrize("name", MATH_NAMES)
def test_names_holding_dollar_signs_are_drawn_as_text(name, tmp_path, monkeypatch):
    """Confusion matrix (class names, title), Grad-CAM figure (title) and t-SNE (legend): a `$...$` pair in a name
    is drawn as it is, not parsed as mathtext (`$\\nope$` stopped evaluate with a ParseFatalException)."""
    from dnadet_tf import explain, metrics, report

    names = [name, "real", "x"]
    drawn = []
    for module in (metrics, explain, report):
        _record_texts(monkeypatch, module, drawn)
    metrics.plot_confusion_matrix(np.eye(3, dtype=np.int64), names, str(tmp_path / "cm.png"), title=f"{name}: 50 %")
    image = np.zeros((32, 32, 3), np.uint8)
    explain.render_explanation(image, np.zeros((32, 32)), f"true {name}, predicted real", str(tmp_path / "g.png"),
                               subtitle=f"Grad-CAM at {name}")
    report.plot_tsne(np.random.default_rng(0).normal(size=(6, 2)), [0, 1, 2, 0, 1, 2], names,
                     str(tmp_path / "t.png"), groups=[0, 0, 0, 1, 1, 1], group_names=[name, f"b {name}"])
    with_name = [(text, math) for text, math in drawn if name in text]
    assert len(with_name) >= 2 + 1 + 2 + 2 + 1, drawn  # ticks, title; suptitle, subtitle; legend
    assert not any(math for _, math in with_name), with_name
    for png in ("cm.png", "g.png", "t.png"):
        assert os.path.getsize(tmp_path / png) > 1000


def test_robustness_markdown_escapes_a_bar_in_a_name():
    """A data name holding `|` split its cell in two: the row had one column more than the header."""
    import re

    from dnadet_tf.robustness import robustness_markdown

    rows = [{"name": name, "num_images": 3, "accuracy": {"none": 0.5, "jpeg": 0.25}}
            for name in ("a|b", "plain", "x||y")]
    lines = [line for line in robustness_markdown(rows).splitlines() if line.startswith("|")]
    cells = [re.split(r"(?<!\\)\|", line)[1:-1] for line in lines]
    assert [len(c) for c in cells] == [4] * 5, lines
    assert [c[0].strip() for c in cells[2:]] == ["a\\|b", "plain", "x\\|\\|y"]


def test_the_report_shows_the_open_set_row_and_ece(untrained_run, upsampling_data, tmp_path):
    """The report dropped the open-set row (AUROC, FPR95, unknown and known flagged) and every ECE."""
    from dnadet_tf.report import write_report

    rows = _rows(upsampling_data["test"]) + [{
        "name": "open-set", "kind": "open_set", "data": ["/somewhere/unknown|fakes"], "known": ["test"],
        "metrics": {"score": "mahalanobis", "threshold": 67.5417, "known_images": 30, "unknown_images": 16,
                    "auroc": 0.66875, "fpr_at_95_tpr": 0.5, "open_set_accuracy": 0.6304, "known_flagged": 0.1333,
                    "unknown_flagged": 0.5, "by_score": {"cosine": {"auroc": 0.6896, "fpr_at_95_tpr": 0.875}}}}]
    path = write_report(_export_like(untrained_run), rows, str(tmp_path / "report"), progress=lambda s: None)
    text = open(path, encoding="utf-8").read()
    assert '<section id="openset"><h2>Open set</h2>' in text and '<a href="#openset">' in text
    section = text[text.index('<section id="openset">'):]
    section = section[:section.index("</section>")]
    for cell in ("mahalanobis", "67.54", "30", "16", "0.6687", "50.00", "63.04", "50.0", "13.3", "cosine", "0.6896",
                 "87.50", "/somewhere/unknown|fakes"):
        assert f"<td>{cell}</td>" in section or cell in section, cell
    for header in ("ECE %", "ECE before temperature scaling %", "flagged unknown %"):
        assert f"<th>{header}</th>" in text
    assert "<td>12.34</td><td>23.45</td><td>25.00</td>" in text
    # without them, the table has no such columns and there is no open-set section
    rows[0]["metrics"] = {k: v for k, v in rows[0]["metrics"].items() if k not in ("ece_uncalibrated",
                                                                                    "flagged_unknown")}
    text = open(write_report(_export_like(untrained_run), rows[:1], str(tmp_path / "plain"),
                             progress=lambda s: None), encoding="utf-8").read()
    assert "<th>ECE %</th>" in text and "flagged unknown" not in text and 'id="openset"' not in text

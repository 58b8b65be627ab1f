"""Outputs that claimed what they are not, or were written over: an export with --overwrite into a version whose
other formats' files stay; confusion-matrix titles and class names clipped by the PNG's edge; explain.json paths
that resolved only from the working folder; a report's confusion PNGs and gradcam/gradcam.json over a user's
files."""
import json
import os

import numpy as np

from clirun import files_under, run_cli


def _sidecar_version(base, fmt):
    with open(os.path.join(base, "tflite", f"dnadet-{fmt}.json"), encoding="utf-8") as f:
        return json.load(f)["version"]


def test_overwrite_of_a_version_stops_when_another_formats_file_would_still_claim_it(untrained_run, upsampling_data,
                                                                                      tmp_path):
    out = str(tmp_path / "out")
    base = os.path.join(out, "dnadet")
    common = ["export", "--model", untrained_run, "--out", out, "--eval", upsampling_data["test"], "--max-eval", "3"]
    code, _, stderr = run_cli(common + ["--formats", "float32", "--version", "1"])
    assert code == 0, stderr
    before = files_under(base)

    # the float32 file says version 1; replacing version 1 with a SavedModel alone would leave it claiming it
    code, stdout, stderr = run_cli(common + ["--formats", "savedmodel", "--version", "1", "--overwrite"])
    float32 = os.path.join(base, "tflite", "dnadet-float32.tflite")
    assert code == 2 and "writing SavedModel" not in stdout
    assert stderr.strip().splitlines() == [
        f"dnadet-tf export: error: {float32}: version 1 of an earlier export, which this export (--formats "
        f"savedmodel) does not write, so it would still claim version 1 once replaced; add float32 to --formats to "
        f"replace it too, remove it, or pass another --version."]
    assert files_under(base) == before

    # with report.json gone the sidecar still holds version 1: the next free version is 2, not 1
    os.remove(os.path.join(base, "report.json"))
    code, stdout, stderr = run_cli(common + ["--formats", "savedmodel"])
    assert code == 0, stderr
    assert "exported dnadet version 2" in stdout and sorted(os.listdir(base)) == ["2", "report.json", "tflite"]
    assert _sidecar_version(base, "float32") == 1


def test_overwrite_of_a_version_with_its_every_format_replaces_it(untrained_run, upsampling_data, tmp_path):
    out = str(tmp_path / "out")
    base = os.path.join(out, "dnadet")
    common = ["export", "--model", untrained_run, "--out", out, "--eval", upsampling_data["test"], "--max-eval", "3",
              "--version", "1"]
    assert run_cli(common + ["--formats", "savedmodel,float32"])[0] == 0
    # the SavedModel folder 1 is of version 1 too: a float32 export alone would leave it
    code, _, stderr = run_cli(common + ["--formats", "float32", "--overwrite"])
    assert code == 2 and f"{os.path.join(base, '1')}: version 1 of an earlier export" in stderr
    assert "add savedmodel to --formats" in stderr
    code, _, stderr = run_cli(common + ["--formats", "savedmodel,float32", "--overwrite"])
    assert code == 0, stderr
    with open(os.path.join(base, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["version"] == 1 and "earlier" not in report  # nothing of the first export is left


def _drawn_texts(monkeypatch):
    """Patches Figure.savefig: the list it returns gets, per figure saved, (figure box, [(text, its box)]) of every
    non-empty text drawn, in pixels, measured as the figure is saved."""
    import matplotlib.text
    from matplotlib.figure import Figure

    saved, save = [], Figure.savefig

    def measuring(figure, *args, **kwargs):
        renderer = figure.canvas.get_renderer()
        texts = [(text.get_text(), text.get_window_extent(renderer))
                 for text in figure.findobj(matplotlib.text.Text) if text.get_text() and text.get_visible()]
        saved.append((figure.bbox, texts))
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", measuring)
    return saved


def _inside(box, outer):
    return box.x0 >= outer.x0 - 0.5 and box.y0 >= outer.y0 - 0.5 and box.x1 <= outer.x1 + 0.5 and \
        box.y1 <= outer.y1 + 0.5


def test_long_class_names_and_title_lie_inside_the_confusion_png(monkeypatch, tmp_path):
    from dnadet_tf.evaluation import write_confusion_pngs

    saved = _drawn_texts(monkeypatch)
    names = ["real photographs from the camera archive of 2019", "nearest-neighbour upsampling generator", "x"]
    rows = [{"name": "held-out-content-of-the-very-long-benchmark-folder-name_test",
             "metrics": {"confusion_matrix": (4 * np.eye(3, dtype=np.int64)).tolist(), "accuracy": 1.0}}]
    (png,) = write_confusion_pngs(rows, names, str(tmp_path / "pngs"))
    assert os.path.isfile(png) and len(saved) == 1
    figure_box, texts = saved[0]
    title = f"{rows[0]['name']}: accuracy 100.00 %"

    def drawn(text):  # a text as drawn: wrapped onto lines at spaces and hyphens
        return [box for shown, box in texts if shown.replace("\n", "").replace(" ", "") ==
                text.replace(" ", "")]

    assert len(drawn(title)) == 1 and _inside(drawn(title)[0], figure_box), (drawn(title), figure_box)
    for name in names:  # each name twice, on both axes, whole
        boxes = drawn(name)
        assert len(boxes) == 2 and all(_inside(box, figure_box) for box in boxes), (name, boxes, figure_box)


def test_explain_json_names_its_images_and_pngs_from_any_working_folder(untrained_run, upsampling_data, tmp_path,
                                                                         monkeypatch):
    import glob
    import shutil

    work = tmp_path / "work"
    (work / "images").mkdir(parents=True)
    for path in sorted(glob.glob(os.path.join(upsampling_data["test"], "*", "*.png")))[:2]:
        shutil.copy(path, work / "images" / os.path.basename(path))
    monkeypatch.chdir(work)
    code, stdout, stderr = run_cli(["explain", "--model", untrained_run, "images", "--out", "maps"])
    assert code == 0, stderr
    assert all(line.startswith(os.path.join("images", "")) for line in stdout.splitlines()[:2])  # as given
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with open(work / "maps" / "explain.json", encoding="utf-8") as f:
        rows = json.load(f)
    assert len(rows) == 2
    for row in rows:
        assert os.path.isfile(row["path"]) and os.path.isfile(row["png"]), row
        assert os.path.dirname(row["png"]) == str(work / "maps")
        # the PNG's name is as before: the image's stem and the method
        assert os.path.basename(row["png"]) == os.path.splitext(os.path.basename(row["path"]))[0] + ".gradcam.png"


def _made_up_rows(data):
    """An evaluation's rows for `data` without confusion PNGs (as `dnadet_tf.evaluate` without out_dir gives them)."""
    from dnadet_tf.metrics import classification_metrics
    from synthetic import CLASSES

    metrics = classification_metrics([0, 1, 2, 2], [0, 1, 2, 1], list(CLASSES))
    return [{"name": "test", "data": data, "class_names": list(CLASSES), "metrics": metrics}]


def test_api_evaluate_writes_no_png_over_a_file_in_out_dir(untrained_run, upsampling_data, tmp_path):
    import dnadet_tf

    out = tmp_path / "pngs"
    out.mkdir()
    (out / "confusion_test.png").write_bytes(b"\x89PNG my own figure")
    rows = dnadet_tf.evaluate(untrained_run, upsampling_data["test"], out_dir=str(out))
    assert (out / "confusion_test.png").read_bytes() == b"\x89PNG my own figure"
    assert rows[0]["confusion_png"] == str(out / "confusion_test-2.png") and os.path.isfile(rows[0]["confusion_png"])


def test_a_report_keeps_the_users_confusion_png_and_gradcam_listing(untrained_run, upsampling_data, tmp_path):
    """A report of rows without confusion PNGs drew them over a user's confusion_NAME.png; a user's own
    gradcam/gradcam.json was read as a listing (the PNGs it names removed) and written over. Reruns replace the
    report's own files."""
    from dnadet_tf.predictor import KerasPredictor
    from dnadet_tf.report import write_report

    folder = tmp_path / "report"
    (folder / "gradcam").mkdir(parents=True)
    (folder / "confusion_test.png").write_bytes(b"\x89PNG my own matrix")
    (folder / "gradcam" / "mine.png").write_bytes(b"\x89PNG my own map")
    (folder / "gradcam" / "gradcam.json").write_text(json.dumps([{"png": "mine.png", "note": "my own list"}]))
    users = files_under(str(folder))
    said = []
    for _ in range(2):
        path = write_report(KerasPredictor(untrained_run), _made_up_rows(upsampling_data["test"]), str(folder),
                            gradcam_per_class=1, tsne_max_images=9, progress=said.append)
        assert path == str(folder / "report.html")
        assert {rel: data for rel, data in files_under(str(folder)).items() if rel in users} == users
        html = open(path, encoding="utf-8").read()
        confusion = html[html.index('<section id="confusion">'):]
        confusion = confusion[:confusion.index("</section>")]
        from dnadet_tf.report import embed_png

        assert embed_png(str(folder / "confusion_test-2.png")) in confusion
        assert sorted(name for name in os.listdir(folder) if name.startswith("confusion")) == [
            "confusion_test-2.png", "confusion_test.png"]  # a rerun replaces its own
        listing = folder / "gradcam-2" / "gradcam.json"
        assert [os.path.dirname(row["png"]) for row in json.loads(listing.read_text())] == [
            str(folder / "gradcam-2")] * 3
        assert sorted(os.listdir(folder / "gradcam-2")) == sorted(
            ["gradcam.json"] + [os.path.basename(row["png"]) for row in json.loads(listing.read_text())])
    assert sum(f"{folder / 'gradcam' / 'gradcam.json'} is not an earlier report's listing: kept; writing the "
               f"Grad-CAM maps into {folder / 'gradcam-2'}" in line for line in said) == 2

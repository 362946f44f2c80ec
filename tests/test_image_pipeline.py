"""Images through the pipeline: `maskae train` on a folder of good images and `maskae screen` on a
folder of new ones (flags, where the defect is, quarantine, report, reuse), and the errors for a
model of the other kind."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from flows.cli import main
from flows.screening import screen_incoming
from pipeline.config import load_config
from pipeline.image_screen import screen_images
from pipeline.ingest import SchemaError
from pipeline.promote import promote
from pipeline.review import review
from pipeline.verdicts import VerdictError
from pipeline.screen import screen
from pipeline.train import train
from tests.conftest import card_like

SIZE, READ_AT, SQUARE = 24, 16, 6  # files are 24 px; the model reads them at 16 px


def write_images(folder, n: int, rng: np.random.Generator, defect: bool = False) -> dict[str, tuple[int, int]]:
    """``n`` flat gray PNGs with sensor noise; with ``defect`` a bright square in each (returns
    each file's square's top-left corner, x and y, in file pixels)."""
    folder.mkdir(parents=True, exist_ok=True)
    corners = {}
    for i in range(n):
        pixels = (120 + rng.integers(0, 10, (SIZE, SIZE, 3))).astype(np.uint8)
        if defect:
            x, y = (int(v) for v in rng.integers(2, SIZE - SQUARE - 2, 2))
            pixels[y:y + SQUARE, x:x + SQUARE] = 250
            corners[f"{folder.name}/{i:03d}.png"] = (x, y)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return corners


@pytest.fixture()
def image_workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rng = np.random.default_rng(0)
    write_images(tmp_path / "good", 60, rng)
    (tmp_path / "good" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n-cut-")  # truncated: quarantined
    write_images(tmp_path / "new" / "good", 10, rng)
    corners = write_images(tmp_path / "new" / "scratch", 4, rng, defect=True)
    (tmp_path / "new" / "notes.txt").write_text("not an image")
    return tmp_path, corners


def test_train_and_screen_a_folder_of_images(prefect_api, image_workdir, capfd, caplog):
    from mlflow import MlflowClient

    workdir, corners = image_workdir
    assert main(["train", "--data", "good", "--image-size", str(READ_AT), "--max-steps", "40",
                 "--model-name", "bottles", "--seed", "0", "--level", "0.1"]) == 0
    run = MlflowClient().get_run(MlflowClient().get_model_version("bottles", "1").run_id).data
    assert run.params["model.backend"] == "cnn" and run.params["model.batch_size"] == "16"  # the image defaults
    assert (run.metrics["rows_fit"] + run.metrics["rows_calibration"], run.metrics["rows_quarantined"]) == (60, 1)
    assert run.metrics["rows_calibration"] > 0

    assert main(["screen", "--data", "new", "--model", "bottles", "--out", "out/new"]) == 0
    out = workdir / "out" / "new"
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["rows_in"], summary["rows_scored"], summary["rows_quarantined"]) == (15, 14, 1)
    assert summary["id_column"] == "path" and summary["input"]["image_size"] == READ_AT
    assert pd.read_csv(out / "quarantine.csv")["path"].tolist() == ["notes.txt"]
    flagged = pd.read_csv(out / "flagged.csv")
    assert set(flagged["path"].head(4)) == set(corners) and (flagged["kind"].head(4) == "scratch").all()
    assert (flagged["anomaly_score"].diff().dropna() <= 0).all()  # most anomalous first
    for path, reasons in zip(flagged["path"].head(4), flagged["reasons"].head(4)):
        x, y = (int(v) for v in re.search(r"around x=(\d+), y=(\d+)", reasons).groups())
        x0, y0 = (v * READ_AT / SIZE for v in corners[path])  # the square, at the model's size
        assert x0 - 1 <= x <= x0 + SQUARE * READ_AT / SIZE and y0 - 1 <= y <= y0 + SQUARE * READ_AT / SIZE, reasons
    report = (out / "report.html").read_text()
    assert report.count('alt="overlay"') == len(flagged) and "scratch/" in report
    assert (out / "most_anomalous.png").stat().st_size > 0
    scores = pd.read_parquet(out / "scores.parquet")
    assert len(scores) == 14 and scores["flagged"].sum() == len(flagged) and scores["anomaly_score"].notna().all()

    again = screen_images("new", "bottles", out)  # the same folder, the same version: not repeated
    assert again.reused and again.summary["mlflow_run_id"] == summary["mlflow_run_id"]
    (workdir / "new" / "good" / "000.png").rename(workdir / "new" / "good" / "100.png")
    with pytest.raises(FileExistsError, match="a screening of new by bottles v1 from before its input changed"):
        screen_images("new", "bottles", out)  # same bytes, another name: another batch, not a rerun

    # A second version is challenger; promotion scores both on the labelled folder (good = normal).
    assert main(["train", "--data", "good", "--image-size", str(READ_AT), "--max-steps", "1", "--model-name", "bottles",
                 "--seed", "1", "--level", "0.1"]) == 0
    (workdir / "new" / "good" / "broken.png").write_bytes(b"not a png")  # left out, and the reason says so
    decision = promote("bottles", "new")
    assert (decision.challenger_version, decision.champion_version, decision.rows_evaluated) == ("2", "1", 14)
    assert re.search(r"; \d+ defective images among 14 \(14 of the 16 images read: 2 quarantined by the image "
                     r"ingest\)$", decision.reason)
    assert decision.champion["auroc"] == 1.0 and decision.decision == "keep"  # no gain over a perfect ranking
    with pytest.raises(ValueError, match="reads images"):
        promote("bottles", verdicts_from=workdir / "out")
    capfd.readouterr()
    assert main(["promote", "--model", "bottles", "--data", "new", "--label-col", "kind"]) == 2
    err = capfd.readouterr().err
    assert "'bottles' reads images: promote it on a folder" in err and "Beginning flow run" not in err  # at once
    assert main(["promote", "--model", "bottles", "--data", "new", "--margin", "0.5"]) == 0  # the command: no --label-col
    assert MlflowClient().get_model_version("bottles", "2").tags["promotion.evaluation_data"] == "labelled image folder"

    (workdir / "verdicts.csv").write_text("path,outcome\nscratch/000.png,fraud\n")
    with pytest.raises(VerdictError, match="'fraud' is not one of defect, good"):  # an image run's words
        review(out, workdir / "verdicts.csv")
    (workdir / "verdicts.csv").write_text("path,outcome\nscratch/000.png,Defect\n")
    reviewed = review(out, workdir / "verdicts.csv")  # the report is drawn again, with the images kept
    assert (reviewed.flags.reviewed, reviewed.flags.anomalous) == (1, 1)
    report = (out / "report.html").read_text()
    assert report.count('alt="overlay"') == len(flagged) and 'class="verdict-defect"' in report
    assert "1 defect, 0 good — precision of the reviewed flags 100.0%" in report
    card_like(200, seed=1).rename_axis("id").reset_index().to_csv(workdir / "cards.csv", index=False)
    with pytest.raises(SchemaError, match="trained on images"):
        screen("cards.csv", "bottles", workdir / "out" / "cards")
    train(load_config(overrides={"data.path": "cards.csv", "data.id_column": "id", "model.max_steps": 2,
                                 "calibration.level": 0.05, "mlflow.model_name": "cards"}), workdir)
    with pytest.raises(SchemaError, match="trained on a table"):
        screen_images("new", "cards", workdir / "out" / "tabled")
    capfd.readouterr()
    for data, model, said in (("cards.csv", "bottles", "trained on images: it reads folders of images, not a CSV"),
                              ("new", "cards", "trained on a table: it reads CSV or Parquet files, not a folder")):
        assert main(["screen", "--data", data, "--model", model, "--out", f"out/{model}-mixup"]) == 2
        err = capfd.readouterr().err
        assert said in err and "Beginning flow run" not in err  # said before Prefect starts
    assert not (workdir / "out" / "cards").exists() and not (workdir / "out" / "tabled").exists()
    mostly_bad = workdir / "mostly_bad"
    write_images(mostly_bad, 1, np.random.default_rng(3))
    for name in ("a.png", "b.png"):
        (mostly_bad / name).write_bytes(b"not a png")
    with pytest.warns(UserWarning, match=r"mostly_bad: 2 of its 3 files \(67%\) were quarantined"):
        screen_images(mostly_bad, "bottles", workdir / "out" / "mostly_bad")

    # The nightly sweep takes what the model reads: folders of images, or files of a table.
    incoming = workdir / "incoming"
    incoming.mkdir()
    (workdir / "new").rename(incoming / "line.3")
    (incoming / ".partial").mkdir()
    (workdir / "cards.csv").rename(incoming / "cards.csv")
    assert screen_incoming(str(incoming), "bottles", str(workdir / "nightly")) == [str(workdir / "nightly" / "line.3")]
    night = json.loads((workdir / "nightly" / "line.3" / "summary.json").read_text())
    assert night["rows_flagged"] == len(flagged) and night["model"]["alias"] == "champion"  # the flow pins the version
    with pytest.raises(FileNotFoundError, match="no such incoming folder"):
        screen_incoming(str(workdir / "incomming"), "bottles", str(workdir / "nightly"))
    # Images swapped between two files (the batch's size unchanged) fail the sweep, as a changed file does.
    one, two = incoming / "line.3" / "good" / "001.png", incoming / "line.3" / "good" / "002.png"
    one.rename(incoming / "line.3" / "swap"), two.rename(one), (incoming / "line.3" / "swap").rename(two)
    with pytest.raises(RuntimeError, match=r"line\.3: changed since it was screened .*same size, other bytes"):
        screen_incoming(str(incoming), "bottles", str(workdir / "nightly"))
    one.rename(incoming / "line.3" / "swap"), two.rename(one), (incoming / "line.3" / "swap").rename(two)
    # Files named alike get folders of their own; one that fails holds back none of the others.
    (incoming / "cards.2026-01-09.csv").write_bytes((incoming / "cards.csv").read_bytes())
    (incoming / "cards.2026-01-10.csv").write_text("id,amount\n1,2\n")  # lacks the model's columns
    # A table's file is known by the suffix of its format in any case, compressed or not.
    (incoming / "CARDS.2026-01-11.CSV").write_bytes((incoming / "cards.csv").read_bytes())
    pd.read_csv(incoming / "cards.csv").to_csv(incoming / "cards.2026-01-12.csv.bz2", index=False)
    (incoming / "notes.txt").write_text("not a batch")
    (incoming / "cards-link.csv").symlink_to(incoming / "cards.csv")  # a batch linked in, screened once
    with pytest.raises(RuntimeError, match=r"1 batch\(es\) .*cards\.2026-01-10\.csv: .*lacks column"):
        screen_incoming(str(incoming), "cards", str(workdir / "nightly"))
    for name in ("cards", "cards.2026-01-09", "CARDS.2026-01-11", "cards.2026-01-12", "cards-link"):
        assert (workdir / "nightly" / name / "summary.json").is_file(), name
    assert not (workdir / "nightly" / "cards.2026-01-10").exists() and not (workdir / "nightly" / "notes").exists()
    # A batch that grew after it was screened (it was still being copied) fails the sweep, every night, by name.
    (incoming / "cards.2026-01-10.csv").unlink()
    with open(incoming / "cards.2026-01-09.csv", "a") as batch:
        batch.write((incoming / "cards.csv").read_text().splitlines()[-1].replace(",", "9,", 1) + "\n")
    for _ in range(2):
        caplog.clear()
        with pytest.raises(RuntimeError, match=r"1 batch\(es\) .*cards\.2026-01-09\.csv: changed since it was screened"):
            screen_incoming(str(incoming), "cards", str(workdir / "nightly"))
        assert "screened 0 new batch(es)" in caplog.text  # the linked batch is not new each night (the flow logs prints)
    (incoming / "cards.2026-01-09.csv").unlink()
    # So does a batch replaced by a corrected export of the same size, and one where no row could be
    # scored (amounts with decimal commas): not only on the night it was screened.
    corrected = (incoming / "CARDS.2026-01-11.CSV").read_text()
    (incoming / "CARDS.2026-01-11.CSV").write_text(corrected.replace(",", "9,", 1).replace(",", "", 1))
    a_day_before = datetime(2026, 1, 10).timestamp()  # copied in as cp -p does: its old modification time kept
    os.utime(incoming / "CARDS.2026-01-11.CSV", (a_day_before, a_day_before))
    commas = pd.read_csv(incoming / "cards.csv")
    commas["amount"] = commas["amount"].map("{:.2f}".format).str.replace(".", ",")
    commas.to_csv(incoming / "cards.2026-01-13.csv", index=False)
    for _ in range(2):
        with pytest.raises(RuntimeError, match=r"2 batch\(es\) .*CARDS\.2026-01-11\.CSV: changed since it was screened "
                                               r".*same size, other bytes.*cards\.2026-01-13\.csv: no row of "
                                               r"cards\.2026-01-13\.csv could be scored"):
            screen_incoming(str(incoming), "cards", str(workdir / "nightly"))


"""`vt test`'s test_report.json (views, sampler, input, precision, the dataset manifest with every left-out video
and the annotation files' sha256, the checkpoint's sha256 and step, versions), its one-line summary, the W&B
run summary, and `vt compare`."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests import wandb_records
from tests.conftest import REPO
from tests.test_predict import DATA, make_checkpoint
from video_transformers.cli import run_cli
from video_transformers.commands.compare import main as compare
from video_transformers.data import synthetic

CONFIG = str(REPO / "configs" / "vivit_factorised.yaml")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def dataset(embedded_root, tmp_path_factory) -> Path:
    """The embedded test split as a `csv` dataset, plus a missing, an unreadable and a too-short video."""
    root = tmp_path_factory.mktemp("csvdata")
    shutil.copy(embedded_root / "classes.txt", root / "classes.txt")
    rows = list(csv.reader((embedded_root / "test.csv").open()))
    for path, _ in rows[1:]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(embedded_root / path, root / path)
    (root / "videos/broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    synthetic.write_mp4(root / "videos/short.mp4", synthetic.render("static", np.random.default_rng(0))[:4])
    rows += [["videos/gone.mp4", "static"], ["videos/broken.mp4", "blink"], ["videos/short.mp4", "static"]]
    with (root / "test.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return root


def run_test(root: Path, ckpt: Path, *extra: str) -> list[str]:
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rank_zero.addHandler(handler)
    data = [f"--data.{k}={v}" for k, v in DATA.items() if k != "mean"]
    try:
        run_cli(["test", "--config", CONFIG, "--data.dataset", "csv", "--data.root", str(root), *data,
                 "--data.on_bad_video", "skip", "--data.num_workers", "0", "--data.test_clips", "2",
                 "--data.test_crops", "3", "--ckpt_path", str(ckpt), *extra])  # fmt: skip
    finally:
        rank_zero.removeHandler(handler)
    return messages


def test_report_says_what_was_measured(dataset, embedded_root, tmp_path_factory, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = make_checkpoint(embedded_root, tmp_path_factory.mktemp("ckpt"))
    messages = run_test(dataset, ckpt)
    run = tmp_path / "runs/vivit_factorised/version_0"  # a checkpoint from outside a run: a new run folder
    report = json.loads((run / "test_report.json").read_text())
    assert report["predictions"] == "test_predictions.csv" and (run / "test_predictions.csv").is_file()

    m = report["manifest"]
    assert (m["listed"], m["found"], m["unreadable"], m["too_short"], m["usable"], m["evaluated"], m["missing"]) == (
        15, 14, 1, 1, 12, 12, 3)  # fmt: skip
    assert m["problems_by_kind"] == {"missing": 1, "unreadable": 1, "too_short": 1}
    assert [f"test.csv:{14 + i}: {dataset}/videos/{name}.mp4:" in m["left_out"][i] for i, name in
            enumerate(("gone", "broken", "short"))] == [True] * 3  # file:row: video: reason  # fmt: skip
    assert m["annotation_files"] == {str(dataset / "classes.txt"): sha256(dataset / "classes.txt"),
                                     str(dataset / "test.csv"): sha256(dataset / "test.csv")}  # fmt: skip
    assert f"evaluated 12 of 15 listed videos (3 missing, list in {run / 'test_report.json'})" in messages, messages

    assert report["views"] == {"clips": 2, "crops": 3, "per_video": 6, "aggregate": "softmax_mean"}
    assert report["sampler"]["sampling"] == "time" and report["sampler"]["clip_duration_s"] == 1.0
    assert report["input"]["crop_size"] == 32 and report["input"]["mean"] == [0.5, 0.5, 0.5]  # the model's
    assert report["input"]["decoder"] == "pyav" and report["precision"] == "32-true"
    assert report["checkpoint"]["sha256"] == sha256(ckpt) and report["checkpoint"]["global_step"] == 1
    assert report["software"]["torch"] and report["software"]["lightning"]
    predictions = list(csv.DictReader((run / "test_predictions.csv").open()))
    acc = sum(r["label"] == r["predicted"] for r in predictions) / len(predictions)
    assert report["metrics"]["test/acc1"] == pytest.approx(acc) and report["metrics"]["test/videos"] == 12

    # the same fields in the W&B run summary (offline run folder), and the file saved with the run
    (wandb_run,) = (run / "wandb").glob("offline-run-*")
    summary = wandb_records.summary(wandb_run, wait_for="test_report")["test_report"]
    assert summary["manifest"]["evaluated"] == 12 and summary["checkpoint"]["sha256"] == sha256(ckpt)
    assert summary["views"] == report["views"] and summary["metrics"]["test/acc1"] == pytest.approx(acc)
    assert json.loads((wandb_run / "files/test_report.json").read_text())["manifest"] == m


def test_compare_flags_every_difference(tmp_path, capsys):
    a = {"metrics": {"test/acc1": 0.8}, "views": {"clips": 4, "crops": 3}, "created": "2025-01-01",
         "manifest": {"left_out": [f"v{i}.mp4: missing" for i in range(6)], "evaluated": 94},
         "software": {"torch": "2.14.1"}}  # fmt: skip
    b = json.loads(json.dumps(a)) | {"created": "2025-02-02"}
    (tmp_path / "a").mkdir()
    (tmp_path / "a/test_report.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert compare([str(tmp_path / "a"), str(tmp_path / "b.json")]) == 0  # "created" is shown, not compared
    assert "agree on every compared field" in capsys.readouterr().out

    b["views"]["clips"], b["software"]["torch"] = 1, "2.5.0"
    b["manifest"]["left_out"] = b["manifest"]["left_out"][1:] + ["w.mp4: unreadable"]
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert compare([str(tmp_path / "a"), str(tmp_path / "b.json")]) == 1
    out = capsys.readouterr().out
    assert "! views.clips" in out and "! software.torch" in out and "  metrics.test/acc1" in out
    assert 'only in A: "v0.mp4: missing"' in out and 'only in B: "w.mp4: unreadable"' in out
    assert "3 fields differ" in out

    assert compare([str(tmp_path / "a"), str(tmp_path / "b.json"), "--diff"]) == 1
    assert "metrics.test/acc1" not in capsys.readouterr().out
    assert compare([str(tmp_path / "a"), str(tmp_path / "nothing")]) == 2
    assert "no such report or run folder" in capsys.readouterr().err

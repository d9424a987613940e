"""Experiment tracking: W&B offline without credentials, what a run logs (resolved config, lr, grad norm,
throughput, confusion matrix, per-class table) with W&B, CSV and TensorBoard loggers."""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from video_transformers.cli import run_cli
from video_transformers.lit.report import evaluation_summary
from video_transformers.lit.tracking import WandbLogger, wandb_has_credentials

CONFIG = str(REPO / "configs" / "vivit_factorised.yaml")
CLASSES = ["left", "right", "up", "down", "static"]


def _args(root, *extra):
    return [
        "--config",
        CONFIG,
        "--data.root",
        str(root),
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "4",
        "--data.eval_batch_size",
        "12",
        *extra,
    ]


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.com login x password y\n")
    monkeypatch.setenv("NETRC", str(netrc))
    return netrc


def test_wandb_goes_offline_without_credentials(no_credentials, tmp_path, monkeypatch):
    assert not wandb_has_credentials()
    logger = WandbLogger(save_dir=str(tmp_path), name="x")
    assert logger._offline and os.environ["WANDB_MODE"] == "offline"
    assert logger._wandb_init["project"] == "video-transformers"

    monkeypatch.delenv("WANDB_MODE", raising=False)
    no_credentials.write_text("machine api.wandb.ai login user password secret\n")
    assert wandb_has_credentials()
    assert not WandbLogger(save_dir=str(tmp_path))._offline
    monkeypatch.setenv("WANDB_MODE", "offline")  # an explicit mode wins over the credentials
    assert WandbLogger(save_dir=str(tmp_path))._offline


def test_evaluation_summary_by_hand():
    # 5 videos: left/right are a time-reversed pair; one pair video's direction is wrong.
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.0, 0.0, 0.0],  # left -> left
            [0.6, 0.4, 0.0, 0.0, 0.0],  # right -> left (direction wrong)
            [0.0, 0.0, 0.7, 0.3, 0.0],  # up -> up
            [0.0, 0.1, 0.0, 0.2, 0.7],  # down -> static (top-1 wrong, direction right: down 0.2 > up 0.0)
            [0.0, 0.0, 0.0, 0.0, 1.0],  # static -> static
        ]
    )
    labels = torch.tensor([0, 1, 2, 3, 4])
    s = evaluation_summary(scores, labels, CLASSES, [("left", "right"), ("up", "down")])
    assert s["acc1"] == pytest.approx(3 / 5)
    assert s["pair_acc1"] == pytest.approx(2 / 4) and s["direction_acc"] == pytest.approx(3 / 4)
    cm = torch.tensor(s["confusion_matrix"])
    assert cm.sum() == 5 and cm[1, 0] == 1 and cm[3, 4] == 1 and cm.trace() == 3
    assert s["per_class"]["right"] == {"acc1": 0.0, "videos": 1}


def test_fit_logs_to_wandb_offline_and_files_beside_checkpoints(embedded_root, tmp_path, monkeypatch, no_credentials):
    monkeypatch.chdir(tmp_path)
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    rank_zero_logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rank_zero_logger.addHandler(handler)
    try:
        run_cli(["fit", *_args(embedded_root, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3")])
    finally:
        rank_zero_logger.removeHandler(handler)
    ckpts = tmp_path / "runs/vivit_factorised/version_0/checkpoints"
    rows = list(csv.DictReader(open(ckpts / "val_per_class.csv")))
    assert [r["class"] for r in rows][:2] == ["move_right", "move_left"] and len(rows) == 12
    summary = json.loads((ckpts / "val_summary.json").read_text())
    assert torch.tensor(summary["confusion_matrix"]).sum() == 12  # one val video per class
    assert 0.0 <= summary["direction_acc"] <= 1.0 and (ckpts / "val_confusion_matrix.png").stat().st_size > 0
    train = json.loads((ckpts / "train_summary.json").read_text())
    assert train["steps"] == 3 and train["peak_mem_mb"] > 0

    runs = list((tmp_path / "runs/vivit_factorised/version_0/wandb").glob("offline-run-*"))
    assert len(runs) == 1, "expected one offline W&B run"
    assert any(f"wandb sync {runs[0].resolve()}" in m for m in messages), messages
    files = runs[0] / "files"
    assert list(files.glob("media/images/val/confusion_matrix_*.png"))
    assert list(files.glob("media/table/val/per_class_*.table.json"))
    assert next(runs[0].glob("run-*.wandb")).is_file()  # what `wandb sync` uploads


def test_csv_and_tensorboard_loggers_get_the_same(embedded_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_logger = [
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.init_args.save_dir={tmp_path}/csv",
    ]
    cli = run_cli(
        [
            "fit",
            *_args(
                embedded_root,
                "--trainer.max_epochs",
                "1",
                "--trainer.limit_train_batches",
                "4",
                "--trainer.log_every_n_steps",
                "1",
                "--monitor.skip_steps",
                "1",
                *csv_logger,
            ),
        ]
    )
    metrics = list(csv.DictReader(open(cli.trainer.logger.log_dir + "/metrics.csv")))
    columns = set(metrics[0])
    for key in (
        "train/grad_norm",
        "train/clips_per_s",
        "train/peak_mem_mb",
        "lr-AdamW/pg1",
        "val/acc1",
        "val/pair_acc1",
        "val/direction_acc",
    ):
        assert key in columns, f"{key} not logged; columns: {sorted(columns)}"
    grad_norms = [float(r["train/grad_norm"]) for r in metrics if r.get("train/grad_norm")]
    assert grad_norms and all(g > 0 for g in grad_norms)
    hparams = (Path(cli.trainer.logger.log_dir) / "hparams.yaml").read_text()
    assert "config/trainer.limit_train_batches" in hparams  # the resolved config, not only the module's hparams
    train = json.loads((tmp_path / "runs/vivit_factorised/version_0/checkpoints/train_summary.json").read_text())
    assert train["clips_per_s"] > 0

    ckpt = tmp_path / "runs/vivit_factorised/version_0/checkpoints/best.ckpt"
    tb = [
        "--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger",
        f"--trainer.logger.init_args.save_dir={tmp_path}/tb",
    ]
    run_cli(
        [
            "test",
            *_args(embedded_root, "--data.test_clips", "1", "--data.test_crops", "1", *tb),
            "--ckpt_path",
            str(ckpt),
        ]
    )
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    summary = json.loads((ckpt.parent / "test_summary.json").read_text())
    assert summary["stage"] == "test" and summary["videos"] == 12
    assert (ckpt.parent / "test_confusion_matrix.png").is_file() and (ckpt.parent / "test_per_class.csv").is_file()
